//! Signed stream events: every event a device receives is a [`Signed<Event>`] whose envelope
//! names its id, its time and its audience (docs/protocol.md 7.2), stored in the write that
//! causes it and handed to the hub after that write committed.

use std::sync::Arc;

use countersign_protocol::{
    ApprovalRequest, Audience, Event, Signed, StreamEvent, PROTOCOL_VERSION,
};

use crate::error::{json_text, ApiError};
use crate::gateway::Gateway;
use crate::hub::{Pushed, Wide};
use crate::store::events::{EVERYONE, WIDE};
use crate::store::Tx;

/// The audience of a request sent once to many: the approvers of its list stages and the groups
/// of its group stages, except the requester's own person.
pub(crate) fn wide_audience(body: &ApprovalRequest) -> Wide {
    let groups: Vec<String> = body
        .effective_stages()
        .iter()
        .filter_map(|s| s.group.clone())
        .collect();
    let audience = Audience::wide(&body.named_approvers(), &groups);
    Wide {
        approvers: audience.approvers,
        groups: audience.groups,
        except: body.requester_person.clone(),
    }
}

/// Stores `payload`, a `request` or `status` event about request `request_id`, for its
/// `addressees`: one event to each when they are at most `prechallenge_max`, as their
/// challenges are then pre-issued; otherwise one event to the request's audience, the
/// approvers of its list stages and the groups of its group stages, however many people those
/// groups hold (docs/protocol.md 3.12).
pub(crate) fn enqueue_about(
    gw: &Gateway,
    tx: &dyn Tx,
    request_id: &str,
    addressees: &[String],
    payload: &StreamEvent,
) -> Result<Vec<Pushed>, ApiError> {
    if addressees.len() <= gw.config.prechallenge_max {
        return enqueue(gw, tx, addressees, payload);
    }
    let signed: Signed<ApprovalRequest> =
        serde_json::from_str(&tx.request_status(request_id)?.signed)
            .map_err(|e| ApiError::internal("stored request", e))?;
    let wide = wide_audience(&signed.body);
    let audience = Audience {
        approvers: wide.approvers.clone(),
        groups: wide.groups.clone(),
        all: false,
    };
    let pushed = store(gw, tx, gw.now(), WIDE, audience, Some(wide), payload)?;
    Ok(vec![pushed])
}

/// Stores `payload` as one signed event for each of `approvers`, each with its own id and an
/// audience of that approver alone, and returns what to publish after commit.
pub(crate) fn enqueue(
    gw: &Gateway,
    tx: &dyn Tx,
    approvers: &[String],
    payload: &StreamEvent,
) -> Result<Vec<Pushed>, ApiError> {
    let at = gw.now();
    approvers
        .iter()
        .map(|a| store(gw, tx, at, a, Audience::approver(a), None, payload))
        .collect()
}

/// Stores `payload` as one signed event to every device (audience `all`), replacing the older
/// stored events of its kind to every device, and returns what to publish after commit.
pub(crate) fn enqueue_everyone(
    gw: &Gateway,
    tx: &dyn Tx,
    payload: &StreamEvent,
) -> Result<Pushed, ApiError> {
    let pushed = store(
        gw,
        tx,
        gw.now(),
        EVERYONE,
        Audience::everyone(),
        None,
        payload,
    )?;
    tx.drop_older_to_everyone(payload.kind(), pushed.seq)?;
    Ok(pushed)
}

/// Signs `payload` into the envelope of the next event id for `audience`, stores it under the
/// row key `to` (an approver, [`EVERYONE`] or [`WIDE`] with `wide`), and returns what to
/// publish after commit.
fn store(
    gw: &Gateway,
    tx: &dyn Tx,
    at: i64,
    to: &str,
    audience: Audience,
    wide: Option<Wide>,
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
            at,
            audience,
            payload: payload.clone(),
        },
    )?;
    let data = json_text(&envelope)?;
    tx.insert_event(id, to, kind, &data, wide.as_ref())?;
    Ok(Pushed {
        seq: id,
        approver: to.to_string(),
        wide: wide.map(Arc::new),
        kind: kind.to_string(),
        data: Arc::from(data),
        published: None,
    })
}
