//! Passkeys (their rows are `store::passkeys`'): loading an approver's passkeys with the
//! signature counter and backup flags their latest assertion left, the row a new registration
//! stores (the credential and those values beside it), the key a passkey is stored under, and
//! moving those columns after an accepted assertion.
//!
//! The `passkey` text is the credential as registered and never changes; the counter and flag
//! columns override its values when a passkey is loaded, so that an approval updates three
//! integers instead of parsing and rewriting the whole stored credential.

use webauthn_rs::prelude::{
    AuthenticationResult, Credential, Passkey, RegisterPublicKeyCredential,
};

use crate::error::ApiError;
use crate::store::passkeys::PasskeyRow;
use crate::store::Tx;

/// Loads an approver's registered passkeys, each with the signature counter and backup flags
/// its latest assertion left (the columns override the registered credential's values).
pub fn passkeys_of(tx: &dyn Tx, approver: &str) -> Result<Vec<Passkey>, ApiError> {
    let rows = tx.passkey_rows(approver)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut cred: Credential = serde_json::from_str::<Passkey>(&row.passkey)
            .map_err(|e| ApiError::internal("stored passkey", e))?
            .into();
        cred.counter = row.counter;
        cred.backup_eligible = row.backup_eligible;
        cred.backup_state = row.backup_state;
        out.push(cred.into());
    }
    Ok(out)
}

/// The row that stores a newly registered passkey: the credential as registered and, beside
/// it, its signature counter and backup flags.
pub fn passkey_row(pk: &Passkey) -> Result<PasskeyRow, ApiError> {
    let (counter, backup_eligible, backup_state) = passkey_counters(pk);
    Ok(PasskeyRow {
        passkey: serde_json::to_string(pk).map_err(|e| ApiError::internal("passkey", e))?,
        counter,
        backup_eligible,
        backup_state,
    })
}

/// What the passkeys table keeps of `pk` besides the credential text: its signature counter
/// and backup flags (eligible, state).
pub fn passkey_counters(pk: &Passkey) -> (u32, bool, bool) {
    let cred = Credential::from(pk.clone());
    (cred.counter, cred.backup_eligible, cred.backup_state)
}

/// The key under which a passkey is stored: its credential id in unpadded base64url.
pub fn base64_cred_id(pk: &Passkey) -> String {
    cred_id_text(pk.cred_id().as_ref())
}

/// A raw credential id as the passkeys table keys it (unpadded base64url).
fn cred_id_text(raw: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Moves the counter, backup and last-used columns of the passkey that made an accepted
/// assertion, inside the transaction that accepts the decision; refuses the assertion if that
/// passkey was revoked after the challenge was issued.
pub(crate) fn record_assertion(
    tx: &dyn Tx,
    approver: &str,
    result: &AuthenticationResult,
    at: i64,
) -> Result<(), ApiError> {
    // Only the credential that made the assertion changes, as `Passkey::update_credential`
    // would change it: the counter only forward (approvals by one passkey may arrive out of
    // order), backup eligibility only from false to true, the backup state to the one of the
    // assertion with the highest counter so far.
    let active = tx.record_passkey_use(
        &cred_id_text(result.cred_id().as_ref()),
        approver,
        result.counter(),
        result.backup_eligible(),
        result.backup_state(),
        at,
    )?;
    // The challenge was issued for the passkeys the approver had then; one revoked since is
    // refused here.
    if !active {
        return Err(ApiError::forbidden(
            countersign_protocol::api::ErrorCode::PasskeyRejected,
            "The passkey that made this assertion was revoked.",
        ));
    }
    Ok(())
}

/// The AAGUID an authenticator claimed in its registration (the attested credential data of
/// its authenticator data, WebAuthn section 6.5.1), lowercase and hyphenated; all zeros when
/// it gave none. Only a verified attestation makes it more than a claim.
pub fn claimed_aaguid(cred: &RegisterPublicKeyCredential) -> String {
    use serde_cbor_2::Value;
    let bytes: Option<[u8; 16]> =
        match serde_cbor_2::from_slice::<Value>(cred.response.attestation_object.as_ref()) {
            Ok(Value::Map(m)) => match m.get(&Value::Text("authData".into())) {
                // rpIdHash (32), flags (1), signCount (4), then the AAGUID.
                Some(Value::Bytes(a)) => a.get(37..53).and_then(|b| b.try_into().ok()),
                _ => None,
            },
            _ => None,
        };
    uuid::Uuid::from_bytes(bytes.unwrap_or_default()).to_string()
}
