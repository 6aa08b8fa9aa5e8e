//! Acknowledging a request that was approved without asking (`POST /v2/acks`): break-glass, or
//! auto-approved. An addressed approver's device signs an [`Acknowledgement`]; the first one of
//! a request is a status change (its grant's `acknowledged_at` and `acknowledged_by`), pushed to
//! every addressee so that the request stops asking for attention on all their devices. Later
//! ones, and repeats of one `ack_id`, answer the current status. Every acknowledgement is
//! stored as signed and audited.

use countersign_protocol::api::ErrorCode;
use countersign_protocol::types::Decode;
use countersign_protocol::{Acknowledgement, ApprovalRequest, Digest, Signed, StatusUpdate};
use serde_json::json;

use crate::error::{json_text, ApiError};
use crate::gateway::Gateway;
use crate::hub::Pushed;
use crate::status::{push_status, status_of};
use crate::store::acks::NewAck;
use crate::store::Tx;

/// Checks a signed acknowledgement and applies it; answers the request's status after it.
/// Idempotent on `ack_id`.
pub fn acknowledge(gw: &Gateway, body: &[u8]) -> Result<Signed<StatusUpdate>, ApiError> {
    let signed = Signed::<Acknowledgement>::decode(body)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidMessage, e.to_string()))?;
    let a = &signed.body;
    if a.gateway != gw.fingerprint {
        return Err(ApiError::bad_request(
            ErrorCode::WrongGateway,
            "The acknowledgement names another gateway.",
        ));
    }
    let (approver, key) = crate::devices::paired_device(gw, &a.device_id)?;
    signed.verify(&key).map_err(|_| {
        ApiError::unauthorized(
            ErrorCode::BadDeviceSignature,
            "The acknowledgement's signature does not verify with the device key.",
        )
    })?;
    if approver != a.approver {
        return Err(ApiError::forbidden(
            ErrorCode::DeviceNotForApprover,
            "This device is paired to another approver.",
        ));
    }
    let now = gw.now();
    let text = json_text(&signed)?;
    let status = gw.store.write_publish(
        |tx| -> Result<(Signed<StatusUpdate>, Vec<Pushed>), ApiError> {
            if let Some(request_id) = tx.ack_request(&a.ack_id)? {
                if request_id != a.request_id {
                    return Err(ApiError::conflict(
                        ErrorCode::InvalidMessage,
                        "This ack_id was used for another request.",
                    ));
                }
                return Ok((status_of(gw, tx, &a.request_id)?.0, Vec::new()));
            }
            check_acknowledgeable(tx, a)?;
            let first = tx.acknowledge_request(&a.request_id, &a.approver, now)?;
            tx.insert_ack(&NewAck {
                ack_id: &a.ack_id,
                request_id: &a.request_id,
                approver: &a.approver,
                device_id: &a.device_id,
                signed: &text,
                at: now,
            })?;
            tx.audit_append(
                now,
                "request.acknowledged",
                Some(&a.request_id),
                json!({
                    "ack_id": a.ack_id,
                    "approver": a.approver,
                    "device_id": a.device_id,
                    "first": first,
                }),
            )?;
            let pushed = if first {
                push_status(gw, tx, &a.request_id)?
            } else {
                Vec::new()
            };
            Ok((status_of(gw, tx, &a.request_id)?.0, pushed))
        },
    )?;
    gw.changes.notify_waiters();
    Ok(status)
}

/// The request exists in the version the device names, was addressed to its approver, and was
/// approved without asking (`unknown_ack_request`, `request_digest_mismatch`).
fn check_acknowledgeable(tx: &dyn Tx, a: &Acknowledgement) -> Result<(), ApiError> {
    let unknown = || {
        ApiError::not_found(
            ErrorCode::UnknownAckRequest,
            "There is no break-glass or auto-approved request with this id addressed to this approver.",
        )
    };
    let Some(signed) = tx.request_signed(&a.request_id)? else {
        return Err(unknown());
    };
    if !tx.has_challenge(&a.request_id, &a.approver)? {
        return Err(unknown());
    }
    let request: Signed<ApprovalRequest> =
        serde_json::from_str(&signed).map_err(|e| ApiError::internal("stored request", e))?;
    if request.body.mode.is_ask() {
        return Err(unknown());
    }
    let digest = request.digest()?;
    let named: Digest = a.request_digest;
    if !digest.ct_eq(&named) {
        return Err(ApiError::conflict(
            ErrorCode::RequestDigestMismatch,
            "The acknowledgement names a different version of this request.",
        ));
    }
    Ok(())
}
