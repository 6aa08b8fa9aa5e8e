//! "I did not expect this": the approver denies the request and reports it to the gateway,
//! which blocks the requester from this approver (their pending requests to this approver are
//! denied, new ones refused) until its operator lifts the block. See docs/protocol.md.

use countersign_protocol::api::{paths, ReportAck};
use countersign_protocol::{Report, RequestState, Signed, PROTOCOL_VERSION};
use serde::Serialize;
use serde_json::json;

use crate::audit::{self, kind};
use crate::decide::DecisionOutcome;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::gateway;
use crate::inbox::DeliveryState;

/// The denial reason recorded with a report.
pub const UNEXPECTED_REASON: &str = "Reported: I did not expect this request";

/// What a report did: the denial made here (none if the request was already decided here or
/// no longer pending) and the gateway's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportOutcome {
    pub denial: Option<DecisionOutcome>,
    pub ack: ReportAck,
}

impl Engine {
    /// Denies `request_id` (unless it was already decided here or is closed) and reports it to
    /// its gateway. The denial goes through the outbox, so it is kept and delivered even if the
    /// report cannot be sent now; the report itself needs the gateway and may be repeated.
    /// A request whose gateway wants denials confirmed with a passkey is refused with
    /// [`EngineError::DenyNeedsPasskey`]: use [`Engine::report_unexpected_with`].
    pub async fn report_unexpected(&self, request_id: &str) -> Result<ReportOutcome, EngineError> {
        self.report_unexpected_with(request_id, None).await
    }

    /// [`Engine::report_unexpected`], with the denial confirmed by `authenticator` when given
    /// (required when the request says its gateway wants a passkey on denials). Blocks the
    /// calling thread for the ceremony.
    pub async fn report_unexpected_with(
        &self,
        request_id: &str,
        authenticator: Option<&mut dyn crate::Authenticator>,
    ) -> Result<ReportOutcome, EngineError> {
        let item = self.show(request_id)?;
        let decided_here = item
            .decision
            .as_ref()
            .is_some_and(|d| d.delivery != DeliveryState::Refused);
        let denial = if !decided_here && item.effective_state(self.now()) == RequestState::Pending {
            Some(
                self.deny_with(item.id(), UNEXPECTED_REASON, authenticator)
                    .await?,
            )
        } else {
            None
        };
        let gw = self.gateway(&item.gateway)?;
        let report = Signed::sign(
            &self.inner.key,
            Report {
                v: PROTOCOL_VERSION,
                report_id: uuid::Uuid::new_v4().to_string(),
                request_id: item.id().to_owned(),
                request_digest: item.digest,
                gateway: gw.fingerprint.clone(),
                approver: gw.approver.clone(),
                device_id: gw.device_id.clone(),
                reported_at: self.now(),
            },
        )?;
        let url = gateway::endpoint(&gw.url, paths::REPORTS)?;
        let ack: ReportAck = gateway::post(&self.http_for(&gw)?, url, &report).await?;
        if ack.report_id != report.body.report_id || ack.request_id != report.body.request_id {
            return Err(EngineError::BadGatewayResponse(
                "the gateway acknowledged another report".into(),
            ));
        }
        let now = self.now();
        {
            let mut db = self.db();
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            audit::append(
                &tx,
                now,
                kind::REPORT_SENT,
                Some(item.id()),
                json!({
                    "gateway": gw.fingerprint,
                    "report_id": ack.report_id,
                    "requester": ack.requester,
                    "denied": ack.denied,
                }),
            )?;
            tx.commit()?;
        }
        Ok(ReportOutcome { denial, ack })
    }
}
