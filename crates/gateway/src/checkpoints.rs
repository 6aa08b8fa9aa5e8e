//! Audit anchoring: each device uploads the latest checkpoint it signed over its local audit
//! log, and the gateway keeps the highest one per device (table `device_checkpoints`).
//!
//! The gateway refuses a checkpoint that goes backwards (`checkpoint_rollback`) or that names
//! the same entry with another head (`checkpoint_fork`), and records the refusal in its own
//! audit chain. A device whose local log was wiped or restored from an older copy cannot
//! upload past what the gateway holds, and it learns the held checkpoint from
//! `GET /v1/checkpoints/latest` and reports itself rolled back.

use axum::http::StatusCode;
use countersign_protocol::api::{CheckpointAck, CheckpointState, ErrorCode};
use countersign_protocol::audit::Checkpoint;
use countersign_protocol::types::Decode;
use countersign_protocol::{Signed, PROTOCOL_VERSION};
use serde_json::json;

use crate::devices::Device;
use crate::error::{ApiError, StoreError};
use crate::gateway::Gateway;
use crate::store::Tx;

fn held(c: &dyn Tx, device: &str) -> Result<Option<Signed<Checkpoint>>, StoreError> {
    c.device_checkpoint(device)?
        .map(|t| {
            Signed::<Checkpoint>::decode(t.as_bytes())
                .map_err(|e| StoreError::Corrupt(format!("a stored device checkpoint: {e}")))
        })
        .transpose()
}

/// The answer about the checkpoint held for `device_id`: it, and the gateway's signed
/// acknowledgement that it holds it.
fn state(
    gw: &Gateway,
    device_id: &str,
    checkpoint: Option<Signed<Checkpoint>>,
) -> Result<CheckpointState, ApiError> {
    let ack = match &checkpoint {
        Some(cp) => Some(Signed::sign(
            &gw.key,
            CheckpointAck {
                v: PROTOCOL_VERSION,
                gateway: gw.fingerprint.clone(),
                device_id: device_id.to_owned(),
                signer: cp.body.signer.clone(),
                seq: cp.body.seq,
                head: cp.body.head,
                acked_at: gw.now(),
            },
        )?),
        None => None,
    };
    Ok(CheckpointState {
        v: PROTOCOL_VERSION,
        checkpoint,
        ack,
    })
}

/// The checkpoint held for `device`.
pub fn latest(gw: &Gateway, device: &Device) -> Result<CheckpointState, ApiError> {
    let checkpoint = gw.store.read(|c| held(c, &device.id))?;
    state(gw, &device.id, checkpoint)
}

/// `GET /v2/devices/{device_id}/checkpoint` (auditor): the checkpoint held for any device
/// the gateway paired, revoked ones included, so an auditor can tell an approver's export
/// that was cut back with its newer acknowledgements removed.
pub fn of_device(gw: &Gateway, device_id: &str) -> Result<CheckpointState, ApiError> {
    let checkpoint = gw.store.read(|c| -> Result<_, ApiError> {
        if c.device(device_id)?.is_none() {
            return Err(ApiError::not_found(
                ErrorCode::UnknownDevice,
                format!("The gateway never paired a device {device_id}."),
            ));
        }
        Ok(held(c, device_id)?)
    })?;
    state(gw, device_id, checkpoint)
}

/// Verifies an uploaded checkpoint against the device's key and keeps it if it moves forward.
/// Uploading the checkpoint already held is accepted (retries are harmless).
pub fn upload(gw: &Gateway, device: &Device, body: &[u8]) -> Result<CheckpointState, ApiError> {
    let cp = Signed::<Checkpoint>::decode(body)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidCheckpoint, e.to_string()))?;
    if cp.body.signer != device.public_key.fingerprint() || cp.verify(&device.public_key).is_err() {
        return Err(ApiError::bad_request(
            ErrorCode::CheckpointNotSignedByDevice,
            "The checkpoint is not signed by this device's key.",
        ));
    }
    let text = serde_json::to_string(&cp).map_err(|e| ApiError::internal("checkpoint", e))?;
    let now = gw.now();
    let result = gw.store.write(|tx| -> Result<(), ApiError> {
        if let Some(old) = held(tx, &device.id)? {
            if old.body.seq > cp.body.seq {
                return Err(ApiError::conflict(
                    ErrorCode::CheckpointRollback,
                    format!(
                        "This gateway holds a checkpoint of this device at audit entry {} (head {}); \
                         the upload names entry {}. The device's audit log was wiped or rolled back.",
                        old.body.seq, old.body.head, cp.body.seq
                    ),
                ));
            }
            if old.body.seq == cp.body.seq {
                if old.body.head.ct_eq(&cp.body.head) {
                    return Ok(());
                }
                return Err(ApiError::conflict(
                    ErrorCode::CheckpointFork,
                    format!(
                        "This gateway holds a checkpoint of this device at audit entry {} with head {}; \
                         the upload names the same entry with head {}. The device's audit log was rewritten.",
                        old.body.seq, old.body.head, cp.body.head
                    ),
                ));
            }
        }
        tx.put_device_checkpoint(&device.id, cp.body.seq, &cp.body.head.to_hex(), &text, now)?;
        Ok(())
    });
    match result {
        Ok(()) => state(gw, &device.id, Some(cp)),
        Err(e) if e.status == StatusCode::CONFLICT => {
            // The refused write rolled back; the refusal itself goes on record in a write of
            // its own.
            tracing::warn!(device = %device.id, approver = %device.approver, code = e.code.as_str(), "audit checkpoint refused");
            let audited = gw.store.write(|tx| -> Result<_, StoreError> {
                tx.audit_append(
                    now,
                    "checkpoint.refused",
                    None,
                    json!({
                        "device_id": device.id,
                        "approver": device.approver,
                        "code": e.code.as_str(),
                        "seq": cp.body.seq,
                        "head": cp.body.head,
                    }),
                )
            });
            if let Err(a) = audited {
                tracing::error!(error = %a, "cannot audit a refused checkpoint");
            }
            Err(e)
        }
        Err(e) => Err(e),
    }
}
