//! WebAuthn challenges issued on demand (`POST /v2/challenges`, device authorization). A
//! request's challenges are pre-issued in its `request` events; a device asks for a new one
//! when it has none to use: to decide a pending request (its pre-issued one lost, say), or to
//! revoke the approver's live approval, whose challenge was spent approving. The new ceremony
//! state replaces the approver's old one for the request, so one challenge at a time is valid
//! per (request, approver), and it is consumed once, as a pre-issued one is.

use countersign_protocol::api::{ChallengeRequest, ErrorCode, IssuedChallenge};
use countersign_protocol::types::Decode;
use countersign_protocol::{ApprovalRequest, Signed, PROTOCOL_VERSION};
use serde_json::json;

use crate::devices::Device;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::passkeys::passkeys_of;
use crate::routing::eligibility;

/// Whether a request sent to a wide audience (more addressees than `prechallenge_max`) now
/// includes `approver`, who was not among the addressees at its creation.
fn joined_since(
    gw: &Gateway,
    tx: &dyn crate::store::Tx,
    approver: &str,
    body: &ApprovalRequest,
) -> Result<bool, ApiError> {
    let wide = crate::envelope::wide_audience(body);
    if wide.groups.is_empty() || tx.addressees(&body.id)?.len() <= gw.config.prechallenge_max {
        return Ok(false);
    }
    let member = tx
        .membership_of(approver)?
        .map(Into::into)
        .unwrap_or_default();
    Ok(wide.includes(approver, &member))
}

/// Checks the device's request for a challenge and issues one: the WebAuthn
/// `RequestChallengeResponse` over the approver's passkeys.
pub fn issue(gw: &Gateway, device: &Device, body: &[u8]) -> Result<IssuedChallenge, ApiError> {
    let asked = ChallengeRequest::decode(body)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidMessage, e.to_string()))?;
    let (id, approver) = (asked.request_id.as_str(), device.approver.as_str());
    let now = gw.now();
    gw.store.write(|tx| -> Result<IssuedChallenge, ApiError> {
        // A request not addressed to this approver is not disclosed.
        let unknown = || {
            ApiError::not_found(
                ErrorCode::UnknownRequest,
                format!("There is no request {id} addressed to {approver}."),
            )
        };
        let (Some(text), Some(gate)) = (tx.request_signed(id)?, tx.request_gate(id)?) else {
            return Err(unknown());
        };
        let request: Signed<ApprovalRequest> =
            serde_json::from_str(&text).map_err(|e| ApiError::internal("stored request", e))?;
        if !tx.has_challenge(id, approver)? {
            // A request sent once to its groups is addressed to whoever is in them now, as its
            // events are (protocol.md 3.12): one who joined a group since is asked from here on.
            if !joined_since(gw, tx, approver, &request.body)? {
                return Err(unknown());
            }
            tx.insert_on_demand(id, approver)?;
        }
        if asked.request_digest.to_hex() != gate.digest {
            return Err(ApiError::conflict(
                ErrorCode::RequestDigestMismatch,
                "The challenge was asked for a different version of this request.",
            ));
        }
        let purpose = match gate.state.as_str() {
            "pending" => {
                eligibility(tx, approver, &request.body)?;
                if now >= gate.expires_at {
                    return Err(ApiError::gone(
                        ErrorCode::RequestExpired,
                        "The request has expired.",
                    ));
                }
                if tx.has_decided(id, approver)? {
                    return Err(ApiError::conflict(
                        ErrorCode::AlreadyDecided,
                        format!("{approver} has already decided this request."),
                    ));
                }
                "decide"
            }
            "approved" => {
                crate::revocations::check_revocable(gw, tx, id, approver, now)?;
                "revoke"
            }
            state => {
                return Err(ApiError::conflict(
                    ErrorCode::RequestClosed,
                    format!("The request is already {state}."),
                ))
            }
        };
        let passkeys = passkeys_of(tx, approver)?;
        let started = gw
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| ApiError::internal("start passkey authentication", e))?;
        let bound = crate::bind::bind(
            gw,
            tx,
            &crate::bind::For {
                request_id: id,
                request_digest: asked.request_digest,
                approver,
                expires_at: gate.expires_at,
            },
            started,
        )?;
        tx.reissue_challenge(id, approver, &bound.state)?;
        tx.audit_append(
            now,
            "challenge.issued",
            Some(id),
            json!({
                "approver": approver,
                "device_id": device.id,
                "purpose": purpose,
                "challenge_digest": bound.digest,
            }),
        )?;
        Ok(IssuedChallenge {
            v: PROTOCOL_VERSION,
            request_id: id.to_owned(),
            request_digest: asked.request_digest,
            challenge: bound.options,
            signed_challenge: bound.signed,
        })
    })
}
