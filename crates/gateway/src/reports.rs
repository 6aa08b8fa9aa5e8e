//! Push-bombing containment: "I did not expect this" reports (`POST /v1/reports`).
//!
//! An approver's device signs a [`Report`] naming a request it received. The gateway then blocks
//! that request's requester from that approver (table `blocks`): every pending request from the
//! requester addressed to the approver is denied at once, and new requests from the requester
//! naming the approver are refused (`requester_blocked`) until an operator lifts the block with
//! `countersign-gateway unblock`. Reports, the denials and lifting are in the audit chain.

use countersign_protocol::api::{ErrorCode, ReportAck};
use countersign_protocol::types::Decode;
use countersign_protocol::RequestState;
use countersign_protocol::{Digest, Report, Signed, PROTOCOL_VERSION};
use serde_json::json;

use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::hub::Pushed;
use crate::store::reports::NewReport;
use crate::store::Tx;

/// Checks a signed report and applies it: block, deny, audit, push. Idempotent on `report_id`.
pub fn report(gw: &Gateway, body: &[u8]) -> Result<ReportAck, ApiError> {
    let signed = Signed::<Report>::decode(body)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidMessage, e.to_string()))?;
    let r = &signed.body;
    if r.gateway != gw.fingerprint {
        return Err(ApiError::bad_request(
            ErrorCode::WrongGateway,
            "The report names another gateway.",
        ));
    }
    let (approver, key) = crate::devices::paired_device(gw, &r.device_id)?;
    signed.verify(&key).map_err(|_| {
        ApiError::unauthorized(
            ErrorCode::BadReportSignature,
            "The report's signature does not verify with the device key.",
        )
    })?;
    if approver != r.approver {
        return Err(ApiError::forbidden(
            ErrorCode::DeviceNotForApprover,
            "This device is paired to another approver.",
        ));
    }
    let now = gw.now();
    let text = serde_json::to_string(&signed).map_err(|e| ApiError::internal("report", e))?;
    let ack = gw
        .store
        .write_publish(|tx| -> Result<(ReportAck, Vec<Pushed>), ApiError> {
            if let Some(ack) = stored_ack(tx, &r.report_id)? {
                return Ok((ack, Vec::new()));
            }
            let (requester, digest) = tx.request_requester_digest(&r.request_id)?.ok_or_else(|| {
                ApiError::not_found(ErrorCode::UnknownRequest, "There is no such request.")
            })?;
            let digest = Digest::parse("requests.digest", &digest)
                .map_err(|e| ApiError::internal("stored digest", e))?;
            if !digest.ct_eq(&r.request_digest) {
                return Err(ApiError::conflict(
                    ErrorCode::RequestDigestMismatch,
                    "The report names a different version of this request.",
                ));
            }
            if !tx.has_challenge(&r.request_id, &r.approver)? {
                return Err(ApiError::forbidden(
                    ErrorCode::NotEligible,
                    "The request was not addressed to this approver.",
                ));
            }
            tx.insert_block(&requester, &r.approver, &r.report_id, now)?;
            let pending = tx.pending_requests_to(&requester, &r.approver)?;
            let mut pushed = Vec::new();
            for id in &pending {
                tx.close_request(id, RequestState::Denied, now)?;
                tx.audit_append(
                    now,
                    "request.blocked",
                    Some(id),
                    json!({"report_id": r.report_id, "approver": r.approver, "requester": requester}),
                )?;
                pushed.extend(crate::status::push_status(gw, tx, id)?);
            }
            let ack = ReportAck {
                v: PROTOCOL_VERSION,
                report_id: r.report_id.clone(),
                request_id: r.request_id.clone(),
                requester: requester.clone(),
                denied: pending,
            };
            let ack_text = serde_json::to_string(&ack).map_err(|e| ApiError::internal("ack", e))?;
            tx.insert_report(&NewReport {
                report_id: &r.report_id,
                request_id: &r.request_id,
                approver: &r.approver,
                device_id: &r.device_id,
                requester: &requester,
                signed: &text,
                ack: &ack_text,
                at: now,
            })?;
            tx.audit_append(
                now,
                "report.unexpected",
                Some(&r.request_id),
                json!({
                    "report_id": r.report_id,
                    "approver": r.approver,
                    "device_id": r.device_id,
                    "requester": requester,
                    "denied": ack.denied,
                }),
            )?;
            Ok((ack, pushed))
        })?;
    gw.changes.notify_waiters();
    tracing::warn!(approver = %ack.report_id, requester = %ack.requester, denied = ack.denied.len(), "unexpected request reported; requester blocked for this approver");
    Ok(ack)
}

fn stored_ack(tx: &dyn Tx, report_id: &str) -> Result<Option<ReportAck>, ApiError> {
    tx.report_ack(report_id)?
        .map(|a| ReportAck::decode(a.as_bytes()).map_err(|e| ApiError::internal("stored ack", e)))
        .transpose()
}

/// The approvers among `approvers` who blocked `requester`, inside the caller's transaction.
pub fn blocked_by(
    tx: &dyn Tx,
    requester: &str,
    approvers: &[String],
) -> Result<Vec<String>, ApiError> {
    // One read, whatever the number of approvers (a group of thousands).
    let blocked = tx.blocked_for(requester)?;
    Ok(approvers
        .iter()
        .filter(|a| blocked.binary_search(a).is_ok())
        .cloned()
        .collect())
}

/// Lifts a block (operator action, audited). Returns whether there was one.
pub fn unblock(gw: &Gateway, requester: &str, approver: &str) -> Result<bool, ApiError> {
    let now = gw.now();
    gw.store.write(|tx| -> Result<bool, ApiError> {
        let lifted = tx.delete_block(requester, approver)?;
        if lifted {
            tx.audit_append(
                now,
                "block.lifted",
                None,
                json!({"requester": requester, "approver": approver}),
            )?;
        }
        Ok(lifted)
    })
}
