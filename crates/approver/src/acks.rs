//! Acknowledging a request approved without asking (break-glass): the device signs an
//! [`Acknowledgement`] and sends it to its gateway, which answers the request's status after
//! it. That status, verified with the pinned gateway key, is applied here at once (the same
//! status reaches the approver's other devices through their streams), and the acknowledgement
//! is written to the audit log. An acknowledgement changes nothing if it is sent twice, so it
//! needs no outbox: one that cannot be sent now is an error the person may retry.

use countersign_protocol::api::paths;
use countersign_protocol::{Acknowledgement, Signed, StatusUpdate, PROTOCOL_VERSION};
use serde_json::json;

use crate::audit::{self, kind};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::EngineEvent;
use crate::gateway;
use crate::inbox::{self, InboxItem};

impl Engine {
    /// Acknowledges `request_id`, a request approved without asking this approver. Returns the
    /// item as it is after the gateway's answer; [`EngineError::InvalidInput`] for a request
    /// that was asked of the approver, who decides it instead.
    pub async fn acknowledge(&self, request_id: &str) -> Result<InboxItem, EngineError> {
        let item = self.show(request_id)?;
        if item.request.body.mode.is_ask() {
            return Err(EngineError::InvalidInput(format!(
                "{} asks for your decision; only a request approved without asking you is acknowledged",
                item.id()
            )));
        }
        let gw = self.gateway(&item.gateway)?;
        let ack = Signed::sign(
            &self.inner.key,
            Acknowledgement {
                v: PROTOCOL_VERSION,
                ack_id: uuid::Uuid::new_v4().to_string(),
                request_id: item.id().to_owned(),
                request_digest: item.digest,
                gateway: gw.fingerprint.clone(),
                approver: gw.approver.clone(),
                device_id: gw.device_id.clone(),
                acked_at: self.now(),
            },
        )?;
        let url = gateway::endpoint(&gw.url, paths::ACKS)?;
        let status: Signed<StatusUpdate> = gateway::post(&self.http_for(&gw)?, url, &ack).await?;
        let b = &status.body;
        if status.verify(&gw.gateway_key).is_err()
            || b.request_id != item.id()
            || b.request_digest != item.digest
        {
            return Err(EngineError::BadGatewayResponse(
                "the gateway answered the acknowledgement with a status that is not this request's, or not signed by its key".into(),
            ));
        }
        let now = self.now();
        {
            let mut db = self.db();
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            inbox::apply_status(&tx, &gw.fingerprint, b)?;
            audit::append(
                &tx,
                now,
                kind::ACK_SENT,
                Some(item.id()),
                json!({
                    "gateway": gw.fingerprint,
                    "ack_id": ack.body.ack_id,
                    "seq": b.seq,
                    "acknowledged_by": b.grant.as_ref().and_then(|g| g.acknowledged_by.clone()),
                }),
            )?;
            tx.commit()?;
        }
        if b.grant.as_ref().is_none_or(|g| g.acknowledged_at.is_some()) {
            self.notifier().request_resolved(&b.request_id, b.state);
        }
        self.emit(EngineEvent::StatusChanged {
            gateway: gw.fingerprint.clone(),
            request_id: b.request_id.clone(),
            state: b.state,
            approvals: b.approvals,
            min_approvals: b.min_approvals,
            stages: b.stages.clone(),
        });
        self.show(item.id())
    }
}
