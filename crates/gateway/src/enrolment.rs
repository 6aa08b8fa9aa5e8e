//! An approver's passkeys, changed from one of its devices (docs/protocol.md 8.8): adding a
//! passkey (a backup security key) needs an assertion by a passkey already registered, proven
//! to the gateway in the same message as the new registration; a passkey is removed by a
//! device-signed request, never the last one. Every change is audited.

use countersign_protocol::api::ErrorCode;
use countersign_protocol::types::Decode;
use countersign_protocol::webauthn::Ceremony;
use countersign_protocol::{
    PasskeyAdd, PasskeyEnrolment, PasskeyInfo, PasskeyList, PasskeyRemove, Signed, PROTOCOL_VERSION,
};
use serde::Deserialize as _;
use serde_json::json;
use webauthn_rs::prelude::{
    PasskeyAuthentication, PublicKeyCredential, RegisterPublicKeyCredential,
};

use crate::ceremony::{check_client_data, passkey_error};
use crate::devices::{Device, AUTH_WINDOW_SECONDS};
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::passkeys::{base64_cred_id, claimed_aaguid, passkey_row, passkeys_of, record_assertion};
use crate::store::passkeys::{EnrolmentRow, PasskeyOrigin};
use crate::store::Tx;

/// How long a device has between asking to add a passkey and sending both ceremonies.
const ENROLMENT_WINDOW_SECONDS: i64 = 300;

/// `POST /v2/passkeys/enrol`: the two challenges for adding a passkey.
pub fn begin(gw: &Gateway, device: &Device) -> Result<PasskeyEnrolment, ApiError> {
    let now = gw.now();
    let approver = device.approver.clone();
    gw.store.write(|tx| -> Result<PasskeyEnrolment, ApiError> {
        let passkeys = passkeys_of(tx, &approver)?;
        if passkeys.is_empty() {
            return Err(ApiError::forbidden(
                ErrorCode::PasskeyRequired,
                "This approver has no passkey left to prove a new one with; pair again.",
            ));
        }
        let user_id = uuid::Uuid::parse_str(&tx.approver_user_id(&approver)?)
            .map_err(|e| ApiError::internal("user id", e))?;
        let (proof, proof_state) = gw
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| ApiError::internal("start passkey authentication", e))?;
        let existing = passkeys.iter().map(|p| p.cred_id().clone()).collect();
        let (creation, registration_state) =
            crate::attestation::start(gw, user_id, &approver, existing)?;
        let enrolment_id = uuid::Uuid::new_v4().to_string();
        let expires_at = now + ENROLMENT_WINDOW_SECONDS;
        tx.insert_enrolment(
            &enrolment_id,
            &EnrolmentRow {
                approver: approver.clone(),
                device_id: device.id.clone(),
                proof_state: to_json(&proof_state)?,
                registration_state: to_json(&registration_state)?,
                expires_at,
                used_at: None,
            },
        )?;
        tx.audit_append(
            now,
            "passkey.enrolment_started",
            None,
            json!({"approver": approver, "device_id": device.id, "enrolment_id": enrolment_id}),
        )?;
        Ok(PasskeyEnrolment {
            v: PROTOCOL_VERSION,
            enrolment_id,
            approver: approver.clone(),
            webauthn_origin: gw.origin(),
            proof: serde_json::to_value(&proof).map_err(|e| ApiError::internal("rcr", e))?,
            creation: serde_json::to_value(&creation).map_err(|e| ApiError::internal("ccr", e))?,
            expires_at,
        })
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, ApiError> {
    serde_json::to_string(v).map_err(|e| ApiError::internal("ceremony state", e))
}

/// A device-signed body, verified with the authenticated device's key and naming it.
fn device_signed<T: Decode + countersign_protocol::types::SignedBody>(
    device: &Device,
    body: &[u8],
    named: impl Fn(&T) -> &str,
) -> Result<Signed<T>, ApiError> {
    let signed = Signed::<T>::decode(body)?;
    if named(&signed.body) != device.id {
        return Err(ApiError::forbidden(
            ErrorCode::DeviceChanged,
            "The message names another device than the one that sent it.",
        ));
    }
    signed.verify(&device.public_key).map_err(|_| {
        ApiError::unauthorized(
            ErrorCode::BadDeviceSignature,
            "The message's device signature does not verify.",
        )
    })?;
    Ok(signed)
}

/// `POST /v2/passkeys`: verifies the proof and the new registration, then stores the passkey.
pub fn add(gw: &Gateway, device: &Device, body: &[u8]) -> Result<Signed<PasskeyList>, ApiError> {
    let signed = device_signed::<PasskeyAdd>(device, body, |a| &a.device_id)?;
    let a = &signed.body;
    let now = gw.now();
    let row = gw
        .store
        .read(|tx| -> Result<_, ApiError> { Ok(tx.enrolment(&a.enrolment_id)?) })?;
    let row = open_enrolment(row, device, now)?;
    // Both ceremonies are verified before the write, as a decision's assertion is.
    let proof = PublicKeyCredential::deserialize(&a.proof).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::BadAssertion,
            format!("The proof assertion is malformed: {e}."),
        )
    })?;
    check_client_data(gw, proof.response.client_data_json.as_ref(), Ceremony::Get)?;
    let proof_state: PasskeyAuthentication = serde_json::from_str(&row.proof_state)
        .map_err(|e| ApiError::internal("stored proof state", e))?;
    let proven = gw
        .webauthn
        .finish_passkey_authentication(&proof, &proof_state)
        .map_err(passkey_error)?;
    let cred: RegisterPublicKeyCredential =
        serde_json::from_value(a.credential.clone()).map_err(|e| {
            ApiError::bad_request(
                ErrorCode::BadCredential,
                format!("The passkey registration is malformed: {e}."),
            )
        })?;
    check_client_data(
        gw,
        cred.response.client_data_json.as_ref(),
        Ceremony::Create,
    )?;
    let registration_state: crate::attestation::Registration =
        serde_json::from_str(&row.registration_state)
            .map_err(|e| ApiError::internal("stored registration state", e))?;
    let passkey = crate::attestation::finish(gw, &cred, &registration_state)?;
    let cred_id = base64_cred_id(&passkey);
    let aaguid = claimed_aaguid(&cred);
    gw.store
        .write(|tx| -> Result<Signed<PasskeyList>, ApiError> {
            // Checked again under the write lock: each enrolment completes once.
            open_enrolment(tx.enrolment(&a.enrolment_id)?, device, now)?;
            tx.use_enrolment(&a.enrolment_id, now)?;
            // The proving passkey must still be active; its counter moves as for an approval.
            record_assertion(tx, &row.approver, &proven, now)?;
            let origin = PasskeyOrigin {
                device_id: device.id.clone(),
                aaguid: aaguid.clone(),
                registration: a.credential.to_string(),
                attested: registration_state.attested(),
            };
            if !tx.insert_passkey(
                &cred_id,
                &row.approver,
                &passkey_row(&passkey)?,
                &origin,
                now,
            )? {
                return Err(ApiError::conflict(
                    ErrorCode::PasskeyExists,
                    "This passkey is already registered.",
                ));
            }
            tx.audit_append(
                now,
                "passkey.added",
                None,
                json!({
                    "approver": row.approver,
                    "device_id": device.id,
                    "cred_id": cred_id,
                    "aaguid": aaguid,
                    "proven_by": base64_raw(proven.cred_id().as_ref()),
                    "enrolment_id": a.enrolment_id,
                }),
            )?;
            signed_list(gw, tx, &row.approver, now)
        })
}

fn base64_raw(raw: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The enrolment as stored, if it is this device's, unused and not expired.
fn open_enrolment(
    row: Option<EnrolmentRow>,
    device: &Device,
    now: i64,
) -> Result<EnrolmentRow, ApiError> {
    let row = row.filter(|r| r.device_id == device.id).ok_or_else(|| {
        ApiError::not_found(
            ErrorCode::UnknownEnrolment,
            "There is no such passkey enrolment for this device.",
        )
    })?;
    if row.used_at.is_some() {
        return Err(ApiError::conflict(
            ErrorCode::EnrolmentUsed,
            "This passkey enrolment was already completed.",
        ));
    }
    if now >= row.expires_at {
        return Err(ApiError::gone(
            ErrorCode::EnrolmentExpired,
            "This passkey enrolment took too long; start again.",
        ));
    }
    Ok(row)
}

/// `GET /v2/passkeys`: the approver's active passkeys.
pub fn list(gw: &Gateway, device: &Device) -> Result<Signed<PasskeyList>, ApiError> {
    let now = gw.now();
    gw.store
        .read(|tx| signed_list(gw, tx, &device.approver, now))
}

/// `POST /v2/passkeys/remove`: retires one of the approver's passkeys, never the last.
pub fn remove(gw: &Gateway, device: &Device, body: &[u8]) -> Result<Signed<PasskeyList>, ApiError> {
    let signed = device_signed::<PasskeyRemove>(device, body, |r| &r.device_id)?;
    let r = &signed.body;
    let now = gw.now();
    if (now - r.at).abs() > AUTH_WINDOW_SECONDS {
        return Err(ApiError::unauthorized(
            ErrorCode::StaleDeviceAuth,
            "The removal was signed too far from the gateway's clock (limit 300 s).",
        ));
    }
    gw.store
        .write(|tx| -> Result<Signed<PasskeyList>, ApiError> {
            let active: Vec<String> = tx
                .passkey_listing(Some(&device.approver))?
                .into_iter()
                .filter(|p| p.retired_at.is_none())
                .map(|p| p.cred_id)
                .collect();
            if !active.contains(&r.cred_id) {
                return Err(ApiError::not_found(
                    ErrorCode::UnknownPasskey,
                    "This approver has no active passkey by that credential id.",
                ));
            }
            if active.len() == 1 {
                return Err(ApiError::conflict(
                    ErrorCode::LastPasskey,
                    "This is the approver's last passkey; add another before removing it.",
                ));
            }
            tx.retire_passkey(&r.cred_id, now)?;
            tx.audit_append(
                now,
                "passkey.removed",
                None,
                json!({"approver": device.approver, "device_id": device.id, "cred_id": r.cred_id}),
            )?;
            signed_list(gw, tx, &device.approver, now)
        })
}

fn signed_list(
    gw: &Gateway,
    tx: &dyn Tx,
    approver: &str,
    now: i64,
) -> Result<Signed<PasskeyList>, ApiError> {
    let passkeys = tx
        .passkey_listing(Some(approver))?
        .into_iter()
        .filter(|p| p.retired_at.is_none())
        .map(|p| PasskeyInfo {
            cred_id: p.cred_id,
            aaguid: p.aaguid,
            device_id: p.device_id,
            created_at: p.created_at,
            last_used_at: p.last_used_at,
        })
        .collect();
    Ok(Signed::sign(
        &gw.key,
        PasskeyList {
            v: PROTOCOL_VERSION,
            approver: approver.to_owned(),
            passkeys,
            at: now,
        },
    )?)
}
