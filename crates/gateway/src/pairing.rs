//! Invites and device pairing. `invite` issues a one-time, expiring code inside a pairing link;
//! the device redeems it once (`/v1/pair/start`), proves possession of its new device key and
//! registers a passkey (`/v1/pair/finish`), and the gateway answers with a signed confirmation.

use countersign_protocol::api::ErrorCode;
use countersign_protocol::types::Decode;
use countersign_protocol::webauthn::Ceremony;
use countersign_protocol::{
    PairChallenge, PairFinish, PairStart, Paired, PairingLink, Signed, PROTOCOL_VERSION,
};
use serde_json::json;
use sha2::Digest as _;
use webauthn_rs::prelude::RegisterPublicKeyCredential;

use crate::error::{ApiError, StoreError};
use crate::gateway::Gateway;
use crate::passkeys::{base64_cred_id, claimed_aaguid, passkey_row, passkeys_of};
use crate::store::pairing::PairingRow;
use crate::store::passkeys::PasskeyOrigin;

/// How long a device has between the two pairing steps.
const PAIRING_WINDOW_SECONDS: i64 = 300;

fn code_hash(code: &str) -> String {
    hex::encode(sha2::Sha256::digest(code.as_bytes()))
}

/// Issues a pairing link for `approver`.
pub fn invite(gw: &Gateway, approver: &str, public_url: url::Url) -> Result<PairingLink, ApiError> {
    if approver.is_empty()
        || approver.len() > 128
        || !approver.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidName,
            "An approver name is 1 to 128 printable ASCII characters without spaces.",
        ));
    }
    use rand::distributions::{Alphanumeric, DistString};
    let code = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
    let now = gw.now();
    let expires_at = now + gw.config.invite_ttl_seconds;
    gw.store.write(|tx| -> Result<(), ApiError> {
        let person = crate::directory::person_for_invite(
            tx,
            approver,
            gw.config.directory_file.is_some(),
            now,
        )?;
        tx.insert_invite(&code_hash(&code), approver, now, expires_at)?;
        tx.ensure_approver(approver, &uuid::Uuid::new_v4().to_string())?;
        tx.audit_append(
            now,
            "pairing.invited",
            None,
            json!({"approver": approver, "person": person, "expires_at": expires_at}),
        )?;
        Ok(())
    })?;
    // The certificate pin goes with an https URL only (behind a TLS-terminating proxy the
    // operator sets an https public_url without a certificate here, and no pin is sent).
    let tls = gw
        .tls
        .as_ref()
        .filter(|_| public_url.scheme() == "https")
        .map(|t| t.pin.clone());
    Ok(PairingLink {
        gateway: public_url,
        code,
        fingerprint: gw.fingerprint.clone(),
        expires_at,
        tls,
    })
}

fn audit_pairing_rejection(gw: &Gateway, err: &ApiError) {
    let now = gw.now();
    let r = gw.store.write(|tx| -> Result<_, StoreError> {
        tx.audit_append(
            now,
            "pairing.rejected",
            None,
            json!({"code": err.code.as_str(), "message": err.message}),
        )
    });
    if let Err(e) = r {
        tracing::error!(%e, "could not audit a rejected pairing");
    }
}

/// `POST /v1/pair/start`: redeems the one-time code.
pub fn start(gw: &Gateway, body: &[u8]) -> Result<PairChallenge, ApiError> {
    let r = start_inner(gw, body);
    if let Err(e) = &r {
        audit_pairing_rejection(gw, e);
    }
    r
}

fn start_inner(gw: &Gateway, body: &[u8]) -> Result<PairChallenge, ApiError> {
    let req = PairStart::decode(body)?;
    let now = gw.now();
    gw.store.write(|tx| -> Result<PairChallenge, ApiError> {
        let invite = tx.invite(&code_hash(&req.code))?.ok_or_else(|| {
            ApiError::not_found(
                ErrorCode::UnknownPairingCode,
                "This pairing code is not known to the gateway.",
            )
        })?;
        if invite.used_at.is_some() {
            return Err(ApiError::conflict(
                ErrorCode::PairingCodeUsed,
                "This pairing code was already used; ask for a new invite.",
            ));
        }
        if now >= invite.expires_at {
            return Err(ApiError::gone(
                ErrorCode::PairingCodeExpired,
                "This pairing code has expired; ask for a new invite.",
            ));
        }
        tx.use_invite(&code_hash(&req.code), now)?;
        let approver = invite.approver;
        let user_id = tx.approver_user_id(&approver)?;
        let user_id =
            uuid::Uuid::parse_str(&user_id).map_err(|e| ApiError::internal("user id", e))?;
        let existing: Vec<_> = passkeys_of(tx, &approver)?
            .iter()
            .map(|p| p.cred_id().clone())
            .collect();
        let (ccr, state) = crate::attestation::start(gw, user_id, &approver, existing)?;
        let pairing_id = uuid::Uuid::new_v4().to_string();
        tx.insert_pairing(
            &pairing_id,
            &PairingRow {
                approver: approver.clone(),
                device_key: req.device_key.to_base64(),
                device_name: req.device_name.clone(),
                state: serde_json::to_string(&state).map_err(|e| ApiError::internal("state", e))?,
                expires_at: now + PAIRING_WINDOW_SECONDS,
                used_at: None,
            },
        )?;
        tx.audit_append(
            now,
            "pairing.started",
            None,
            json!({"approver": approver, "pairing_id": pairing_id}),
        )?;
        Ok(PairChallenge {
            v: PROTOCOL_VERSION,
            pairing_id,
            approver,
            gateway_key: gw.key.public(),
            webauthn_origin: gw.origin(),
            creation: serde_json::to_value(&ccr).map_err(|e| ApiError::internal("ccr", e))?,
        })
    })
}

/// `POST /v1/pair/finish`: registers the passkey and the device key.
pub fn finish(gw: &Gateway, body: &[u8]) -> Result<Signed<Paired>, ApiError> {
    let r = finish_inner(gw, body);
    match &r {
        Err(e) => audit_pairing_rejection(gw, e),
        // The invite may have put the approver in the directory: their first statement.
        Ok(paired) => {
            if let Err(e) = crate::memberships::sync_one(gw, &paired.body.approver) {
                tracing::error!(%e, "the membership statements could not be brought up to date");
            }
        }
    }
    r
}

fn finish_inner(gw: &Gateway, body: &[u8]) -> Result<Signed<Paired>, ApiError> {
    let signed = Signed::<PairFinish>::decode(body)?;
    let f = &signed.body;
    let now = gw.now();
    gw.store.write(|tx| -> Result<Signed<Paired>, ApiError> {
        let row = tx.pairing(&f.pairing_id)?;
        let PairingRow { approver, device_key, device_name, state, expires_at, used_at } = row.ok_or_else(|| {
            ApiError::not_found(ErrorCode::UnknownPairing, "There is no such pairing in progress.")
        })?;
        if used_at.is_some() {
            return Err(ApiError::conflict(ErrorCode::PairingUsed, "This pairing was already completed."));
        }
        if now >= expires_at {
            return Err(ApiError::gone(ErrorCode::PairingExpired, "This pairing took too long; start again with a new invite."));
        }
        if device_key != f.device_key.to_base64() {
            return Err(ApiError::forbidden(
                ErrorCode::DeviceKeyMismatch,
                "The device key differs from the one given when pairing started.",
            ));
        }
        signed.verify(&f.device_key).map_err(|_| {
            ApiError::unauthorized(ErrorCode::BadPairingSignature, "The pairing request's device signature does not verify.")
        })?;
        let cred: RegisterPublicKeyCredential = serde_json::from_value(f.credential.clone())
            .map_err(|e| ApiError::bad_request(ErrorCode::BadCredential, format!("The passkey registration is malformed: {e}.")))?;
        crate::ceremony::check_client_data(gw, cred.response.client_data_json.as_ref(), Ceremony::Create)?;
        let state: crate::attestation::Registration =
            serde_json::from_str(&state).map_err(|e| ApiError::internal("stored registration", e))?;
        let passkey = crate::attestation::finish(gw, &cred, &state)?;
        let row = passkey_row(&passkey)?;
        tx.use_pairing(&f.pairing_id, now)?;
        let device_id = uuid::Uuid::new_v4().to_string();
        let origin = PasskeyOrigin {
            device_id: device_id.clone(),
            aaguid: claimed_aaguid(&cred),
            registration: f.credential.to_string(),
            attested: state.attested(),
        };
        if !tx.insert_passkey(&base64_cred_id(&passkey), &approver, &row, &origin, now)? {
            return Err(ApiError::conflict(ErrorCode::PasskeyExists, "This passkey is already registered."));
        }
        tx.insert_device(&device_id, &approver, &device_key, &device_name, now)?;
        tx.audit_append(
            now,
            "device.paired",
            None,
            json!({"approver": approver, "device_id": device_id, "device_key": device_key, "device_name": device_name}),
        )?;
        Ok(Signed::sign(
            &gw.key,
            Paired {
                v: PROTOCOL_VERSION,
                device_id,
                approver,
                device_key: f.device_key,
                paired_at: now,
            },
        )?)
    })
}
