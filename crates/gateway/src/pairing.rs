//! Invites and device pairing. `invite` issues a one-time, expiring code inside a pairing link;
//! the device redeems it once (`/v1/pair/start`), proves possession of its new device key and
//! registers a passkey (`/v1/pair/finish`), and the gateway answers with a signed confirmation.

use countersign_protocol::api::ErrorCode;
use countersign_protocol::types::Decode;
use countersign_protocol::{
    PairChallenge, PairFinish, PairStart, Paired, PairingLink, Signed, PROTOCOL_VERSION,
};
use rusqlite::{params, OptionalExtension};
use serde_json::json;
use sha2::Digest as _;
use webauthn_rs::prelude::{PasskeyRegistration, RegisterPublicKeyCredential};

use crate::error::{sql, ApiError, StoreError};
use crate::gateway::Gateway;
use crate::passkeys::{base64_cred_id, passkey_counters, passkeys_of};
use crate::store::audit_append;

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
        crate::store::execute(tx,
            "INSERT INTO invites(code_hash, approver, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![code_hash(&code), approver, now, expires_at],
        )
        .map_err(sql)?;
        crate::store::execute(tx,
            "INSERT OR IGNORE INTO approvers(name, user_id) VALUES (?1, ?2)",
            params![approver, uuid::Uuid::new_v4().to_string()],
        )
        .map_err(sql)?;
        audit_append(tx, now, "pairing.invited", None, json!({"approver": approver, "expires_at": expires_at}))?;
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
        audit_append(
            tx,
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
        let invite: Option<(String, i64, Option<i64>)> = crate::store::query_row(
            tx,
            "SELECT approver, expires_at, used_at FROM invites WHERE code_hash = ?1",
            params![code_hash(&req.code)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(sql)?;
        let (approver, expires_at, used_at) = invite.ok_or_else(|| {
            ApiError::not_found(
                ErrorCode::UnknownPairingCode,
                "This pairing code is not known to the gateway.",
            )
        })?;
        if used_at.is_some() {
            return Err(ApiError::conflict(
                ErrorCode::PairingCodeUsed,
                "This pairing code was already used; ask for a new invite.",
            ));
        }
        if now >= expires_at {
            return Err(ApiError::gone(
                ErrorCode::PairingCodeExpired,
                "This pairing code has expired; ask for a new invite.",
            ));
        }
        crate::store::execute(
            tx,
            "UPDATE invites SET used_at = ?2 WHERE code_hash = ?1",
            params![code_hash(&req.code), now],
        )
        .map_err(sql)?;
        let user_id: String = crate::store::query_row(
            tx,
            "SELECT user_id FROM approvers WHERE name = ?1",
            params![approver],
            |r| r.get(0),
        )
        .map_err(sql)?;
        let user_id =
            uuid::Uuid::parse_str(&user_id).map_err(|e| ApiError::internal("user id", e))?;
        let existing: Vec<_> = passkeys_of(tx, &approver)?
            .iter()
            .map(|p| p.cred_id().clone())
            .collect();
        let (ccr, state) = gw
            .webauthn
            .start_passkey_registration(user_id, &approver, &approver, Some(existing))
            .map_err(|e| ApiError::internal("start passkey registration", e))?;
        let pairing_id = uuid::Uuid::new_v4().to_string();
        crate::store::execute(
            tx,
            "INSERT INTO pairings(id, approver, device_key, device_name, state, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                pairing_id,
                approver,
                req.device_key.to_base64(),
                req.device_name,
                serde_json::to_string(&state).map_err(|e| ApiError::internal("state", e))?,
                now + PAIRING_WINDOW_SECONDS
            ],
        )
        .map_err(sql)?;
        audit_append(
            tx,
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
            webauthn_origin: gw.config.webauthn_origin.to_string(),
            creation: serde_json::to_value(&ccr).map_err(|e| ApiError::internal("ccr", e))?,
        })
    })
}

/// `POST /v1/pair/finish`: registers the passkey and the device key.
pub fn finish(gw: &Gateway, body: &[u8]) -> Result<Signed<Paired>, ApiError> {
    let r = finish_inner(gw, body);
    if let Err(e) = &r {
        audit_pairing_rejection(gw, e);
    }
    r
}

fn finish_inner(gw: &Gateway, body: &[u8]) -> Result<Signed<Paired>, ApiError> {
    let signed = Signed::<PairFinish>::decode(body)?;
    let f = &signed.body;
    let now = gw.now();
    gw.store.write(|tx| -> Result<Signed<Paired>, ApiError> {
        let row: Option<(String, String, String, String, i64, Option<i64>)> = crate::store::query_row(tx,
                "SELECT approver, device_key, device_name, state, expires_at, used_at FROM pairings WHERE id = ?1",
                params![f.pairing_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional()
            .map_err(sql)?;
        let (approver, device_key, device_name, state, expires_at, used_at) = row.ok_or_else(|| {
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
        let state: PasskeyRegistration =
            serde_json::from_str(&state).map_err(|e| ApiError::internal("stored registration", e))?;
        let passkey = gw.webauthn.finish_passkey_registration(&cred, &state).map_err(|e| {
            ApiError::forbidden(ErrorCode::PasskeyRegistrationRejected, format!("The passkey registration does not verify: {e}."))
        })?;
        let (counter, backup_eligible, backup_state) = passkey_counters(&passkey);
        crate::store::execute(tx,
            "UPDATE pairings SET used_at = ?2 WHERE id = ?1",
            params![f.pairing_id, now],
        )
        .map_err(sql)?;
        crate::store::execute(tx,
            "INSERT INTO passkeys(cred_id, approver, passkey, created_at, counter, backup_eligible, backup_state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                base64_cred_id(&passkey),
                approver,
                serde_json::to_string(&passkey).map_err(|e| ApiError::internal("passkey", e))?,
                now,
                counter,
                backup_eligible,
                backup_state
            ],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                ApiError::conflict(ErrorCode::PasskeyExists, "This passkey is already registered.")
            }
            e => sql(e),
        })?;
        let device_id = uuid::Uuid::new_v4().to_string();
        crate::store::execute(tx,
            "INSERT INTO devices(id, approver, public_key, name, paired_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![device_id, approver, device_key, device_name, now],
        )
        .map_err(sql)?;
        audit_append(
            tx,
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
