//! Passkey rows (table `passkeys`): loading an approver's passkeys with the signature counter
//! and backup flags their latest assertion left, the values a new registration stores beside
//! the credential, the key a passkey is stored under, and moving those columns after an
//! accepted assertion.
//!
//! The `passkey` text is the credential as registered and never changes; the counter and flag
//! columns override its values when a passkey is loaded, so that an approval updates three
//! integers instead of parsing and rewriting the whole stored credential.

use rusqlite::{params, Connection};
use webauthn_rs::prelude::{AuthenticationResult, Credential, Passkey};

use crate::error::{sql, ApiError};

/// Loads an approver's registered passkeys, each with the signature counter and backup flags
/// its latest assertion left (the columns override the registered credential's values).
pub fn passkeys_of(tx: &rusqlite::Connection, approver: &str) -> Result<Vec<Passkey>, ApiError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT passkey, counter, backup_eligible, backup_state FROM passkeys
             WHERE approver = ?1 ORDER BY created_at",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![approver], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })
        .map_err(sql)?;
    let mut out = Vec::new();
    for r in rows {
        let (text, counter, backup_eligible, backup_state) = r.map_err(sql)?;
        let mut cred: Credential = serde_json::from_str::<Passkey>(&text)
            .map_err(|e| ApiError::internal("stored passkey", e))?
            .into();
        cred.counter = counter;
        cred.backup_eligible = backup_eligible;
        cred.backup_state = backup_state;
        out.push(cred.into());
    }
    Ok(out)
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

/// Moves the counter and backup columns of the passkey that made an accepted assertion, inside
/// the transaction that accepts the decision, if the assertion changed them.
pub(crate) fn record_assertion(
    tx: &Connection,
    approver: &str,
    result: &AuthenticationResult,
) -> Result<(), ApiError> {
    if !result.needs_update() {
        return Ok(());
    }
    // Only the credential that made the assertion changes, as `Passkey::update_credential`
    // would change it: the counter only forward (approvals by one passkey may arrive out of
    // order), backup eligibility only from false to true, the backup state to the one of the
    // assertion with the highest counter so far (the right-hand side reads old values).
    crate::store::execute(
        tx,
        "UPDATE passkeys SET counter = max(counter, ?3),
                             backup_eligible = max(backup_eligible, ?4),
                             backup_state = CASE WHEN ?3 >= counter THEN ?5 ELSE backup_state END
                         WHERE cred_id = ?1 AND approver = ?2",
        params![
            cred_id_text(result.cred_id().as_ref()),
            approver,
            result.counter(),
            result.backup_eligible(),
            result.backup_state()
        ],
    )
    .map_err(sql)?;
    Ok(())
}
