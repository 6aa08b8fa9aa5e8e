//! Signed stream events: every event a device receives is a [`Signed<Event>`] whose envelope
//! names its id, its time and its audience (docs/protocol.md 7.2), stored in the write that
//! causes it and handed to the hub after that write committed.

use std::sync::Arc;

use countersign_protocol::{Audience, Event, Signed, StreamEvent, PROTOCOL_VERSION};

use crate::error::{json_text, ApiError};
use crate::gateway::Gateway;
use crate::hub::Pushed;
use crate::store::events::EVERYONE;
use crate::store::Tx;

/// Stores `payload` as one signed event for each of `approvers`, each with its own id and an
/// audience of that approver alone, and returns what to publish after commit.
pub(crate) fn enqueue(
    gw: &Gateway,
    tx: &dyn Tx,
    approvers: &[String],
    payload: &StreamEvent,
) -> Result<Vec<Pushed>, ApiError> {
    let kind = payload.kind();
    let at = gw.now();
    let mut out = Vec::with_capacity(approvers.len());
    for approver in approvers {
        let id = tx.next_event_id()?;
        let envelope = Signed::sign(
            &gw.key,
            Event {
                v: PROTOCOL_VERSION,
                gateway: gw.fingerprint.clone(),
                id,
                at,
                audience: Audience::approver(approver),
                payload: payload.clone(),
            },
        )?;
        let data = json_text(&envelope)?;
        tx.insert_event(id, approver, kind, &data)?;
        out.push(Pushed {
            seq: id,
            approver: approver.clone(),
            kind: kind.to_string(),
            data: Arc::from(data),
            published: None,
        });
    }
    Ok(out)
}

/// Stores `payload` as one signed event to every device (audience `all`), replacing the older
/// stored events of its kind to every device, and returns what to publish after commit.
pub(crate) fn enqueue_everyone(
    gw: &Gateway,
    tx: &dyn Tx,
    payload: &StreamEvent,
) -> Result<Pushed, ApiError> {
    let kind = payload.kind();
    let id = tx.next_event_id()?;
    let envelope = Signed::sign(
        &gw.key,
        Event {
            v: PROTOCOL_VERSION,
            gateway: gw.fingerprint.clone(),
            id,
            at: gw.now(),
            audience: Audience::everyone(),
            payload: payload.clone(),
        },
    )?;
    let data = json_text(&envelope)?;
    tx.insert_event(id, EVERYONE, kind, &data)?;
    tx.drop_older_to_everyone(kind, id)?;
    Ok(Pushed {
        seq: id,
        approver: EVERYONE.to_string(),
        kind: kind.to_string(),
        data: Arc::from(data),
        published: None,
    })
}
