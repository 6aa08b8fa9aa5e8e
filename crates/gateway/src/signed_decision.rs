//! What every signed decision shares, whatever its verdict: the answer ([`Applied`]), the
//! stored request it names, the device's signature over it, and the device row it is checked
//! against inside the write. `decisions` (votes) and `revocations` both use them.

use countersign_protocol::api::ErrorCode;
use countersign_protocol::{ApprovalRequest, Decision, Digest, PublicKey, Receipt, Signed};

use crate::error::ApiError;
use crate::store::Tx;

/// What a decision did.
pub enum Applied {
    New(Signed<Receipt>),
    /// The same signed decision was delivered before: its original receipt.
    Replay(Signed<Receipt>),
}

impl Applied {
    pub fn receipt(self) -> Signed<Receipt> {
        match self {
            Applied::New(r) | Applied::Replay(r) => r,
        }
    }
}

/// The decision's digest, verifying the device's signature over it when the device is paired.
/// An unknown device is refused inside the transaction (`unknown_device`), where every device
/// check runs against the current row.
pub(crate) fn verify_device_signature(
    signed: &Signed<Decision>,
    device_key: Option<&str>,
) -> Result<Digest, ApiError> {
    match device_key {
        Some(text) => {
            let key = PublicKey::parse("devices.public_key", text)
                .map_err(|e| ApiError::internal("stored device key", e))?;
            signed.verify_and_digest(&key).map_err(|e| match e {
                countersign_protocol::ProtocolError::BadSignature => ApiError::unauthorized(
                    ErrorCode::BadDecisionSignature,
                    "The decision's device signature does not verify.",
                ),
                other => ApiError::from(other),
            })
        }
        None => Ok(signed.digest()?),
    }
}

/// The stored request, read before the lock. Its signed content never changes after creation,
/// so this copy serves the checks inside the transaction as well.
pub(crate) fn parse_stored_request(
    text: Option<String>,
) -> Result<Option<Signed<ApprovalRequest>>, ApiError> {
    text.map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| ApiError::internal("stored request", e))
}

/// The deciding device is paired, not revoked, paired to the deciding approver, and still has
/// the key its signature was verified with before the lock.
pub(crate) fn check_device(
    tx: &dyn Tx,
    d: &Decision,
    verified_key: Option<&str>,
) -> Result<(), ApiError> {
    let device = tx.device(&d.device_id)?.ok_or_else(|| {
        ApiError::forbidden(
            ErrorCode::UnknownDevice,
            "The deciding device is not paired here.",
        )
    })?;
    if device.revoked_at.is_some() {
        return Err(ApiError::forbidden(
            ErrorCode::DeviceRevoked,
            "The deciding device's pairing was revoked.",
        ));
    }
    if device.approver != d.approver {
        return Err(ApiError::forbidden(
            ErrorCode::DeviceNotForApprover,
            format!(
                "The device is paired to {}, not to {}.",
                device.approver, d.approver
            ),
        ));
    }
    // The signature was verified before the lock against this same key.
    if verified_key != Some(device.public_key.as_str()) {
        return Err(ApiError::conflict(
            ErrorCode::DeviceChanged,
            "The device's pairing changed while the decision was being verified.",
        ));
    }
    Ok(())
}
