//! The registered passkeys (table `passkeys`): an approver's passkeys with their counter and
//! backup columns, storing a new one, and moving those columns after an accepted assertion.
//! What the columns mean is the domain's `passkeys` module's.

use crate::args;

use super::sql::{Db, Dialect};
use crate::error::StoreError;

/// A registered passkey as stored: the credential as registered (JSON) and the signature
/// counter and backup flags its latest assertion left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRow {
    pub passkey: String,
    pub counter: u32,
    pub backup_eligible: bool,
    pub backup_state: bool,
}

/// Where a newly registered passkey came from, kept beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyOrigin {
    /// The device that registered it.
    pub device_id: String,
    /// The AAGUID its authenticator claimed (lowercase, hyphenated).
    pub aaguid: String,
    /// The registration response as the device sent it (JSON).
    pub registration: String,
    /// Registered under a verified attestation chain (`attestation = "direct"`).
    pub attested: bool,
}

/// A passkey as an administrator lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PasskeyListing {
    pub cred_id: String,
    pub approver: String,
    pub device_id: Option<String>,
    pub aaguid: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub counter: u32,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub retired_at: Option<i64>,
    /// Registered under a verified attestation chain: the AAGUID is then more than a claim.
    pub attested: bool,
    /// The model the AAGUID names, where known (`models`).
    pub model: Option<String>,
}

/// A passkey enrolment in progress (a device adding a passkey), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentRow {
    pub approver: String,
    pub device_id: String,
    /// The webauthn-rs authentication state of the proof, as JSON.
    pub proof_state: String,
    /// The webauthn-rs registration state of the new passkey, as JSON.
    pub registration_state: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// The rows of the passkeys.
pub trait PasskeyRows {
    /// The approver's passkeys, oldest first.
    fn passkey_rows(&self, approver: &str) -> Result<Vec<PasskeyRow>, StoreError>;

    /// Stores a newly registered passkey under `cred_id`; returns false, storing nothing, if a
    /// passkey is already stored under it.
    fn insert_passkey(
        &self,
        cred_id: &str,
        approver: &str,
        row: &PasskeyRow,
        origin: &PasskeyOrigin,
        created_at: i64,
    ) -> Result<bool, StoreError>;

    /// Moves the counter and backup columns of the approver's passkey `cred_id` after an
    /// accepted assertion: the counter only forward, backup eligibility only from false to
    /// true, the backup state to the assertion's if its counter is the highest so far. False,
    /// changing nothing, if that passkey is not the approver's or was retired.
    fn record_passkey_use(
        &self,
        cred_id: &str,
        approver: &str,
        counter: u32,
        backup_eligible: bool,
        backup_state: bool,
        at: i64,
    ) -> Result<bool, StoreError>;

    /// Every passkey (retired ones too), or `approver`'s, oldest first.
    fn passkey_listing(&self, approver: Option<&str>) -> Result<Vec<PasskeyListing>, StoreError>;

    /// The registration response a passkey was registered with, as the device sent it (JSON);
    /// `None` for an unknown passkey, `Some(None)` for one registered before it was kept.
    fn passkey_registration(&self, cred_id: &str) -> Result<Option<Option<String>>, StoreError>;

    /// Retires the passkey `cred_id` (never offered or used again); the approver it was of, or
    /// None if it is unknown or retired already.
    fn retire_passkey(&self, cred_id: &str, at: i64) -> Result<Option<String>, StoreError>;

    /// Stores a passkey enrolment in progress.
    fn insert_enrolment(&self, id: &str, row: &EnrolmentRow) -> Result<(), StoreError>;

    /// The enrolment `id`.
    fn enrolment(&self, id: &str) -> Result<Option<EnrolmentRow>, StoreError>;

    /// Marks the enrolment completed at `now`.
    fn use_enrolment(&self, id: &str, now: i64) -> Result<(), StoreError>;
}

/// A passkey was used: its counter and backup flags only move forward (`?3`..`?6`). SQLite's
/// scalar `max` is PostgreSQL's `greatest`.
const PASSKEY_USED_SQLITE: &str = "UPDATE passkeys SET counter = max(counter, ?3),
        backup_eligible = max(backup_eligible, ?4),
        backup_state = CASE WHEN ?3 >= counter THEN ?5 ELSE backup_state END,
        last_used_at = max(coalesce(last_used_at, 0), ?6)
    WHERE cred_id = ?1 AND approver = ?2 AND retired_at IS NULL";
const PASSKEY_USED_POSTGRES: &str = "UPDATE passkeys SET counter = greatest(counter, ?3),
        backup_eligible = greatest(backup_eligible, ?4),
        backup_state = CASE WHEN ?3 >= counter THEN ?5 ELSE backup_state END,
        last_used_at = greatest(coalesce(last_used_at, 0), ?6)
    WHERE cred_id = ?1 AND approver = ?2 AND retired_at IS NULL";

impl PasskeyRows for Db<'_> {
    fn passkey_rows(&self, approver: &str) -> Result<Vec<PasskeyRow>, StoreError> {
        self.rows(
            "SELECT passkey, counter, backup_eligible, backup_state FROM passkeys
             WHERE approver = ?1 AND retired_at IS NULL ORDER BY created_at",
            args![approver],
            |r| {
                Ok(PasskeyRow {
                    passkey: r.get(0)?,
                    counter: r.get(1)?,
                    backup_eligible: r.get(2)?,
                    backup_state: r.get(3)?,
                })
            },
        )
    }

    fn insert_passkey(
        &self,
        cred_id: &str,
        approver: &str,
        row: &PasskeyRow,
        origin: &PasskeyOrigin,
        created_at: i64,
    ) -> Result<bool, StoreError> {
        // `ON CONFLICT` rather than catching the constraint failure: the write's transaction
        // goes on unharmed either way (PostgreSQL aborts a transaction on any failed statement).
        // A retired passkey (of a protocol version 1 pairing) may be registered again.
        let inserted = self.exec(
            "INSERT INTO passkeys(cred_id, approver, passkey, created_at, counter, backup_eligible,
                                  backup_state, device_id, aaguid, registration, attested)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (cred_id) DO UPDATE SET approver = excluded.approver,
                 passkey = excluded.passkey, created_at = excluded.created_at,
                 counter = excluded.counter, backup_eligible = excluded.backup_eligible,
                 backup_state = excluded.backup_state, device_id = excluded.device_id,
                 aaguid = excluded.aaguid, registration = excluded.registration,
                 attested = excluded.attested, last_used_at = NULL, retired_at = NULL
             WHERE passkeys.retired_at IS NOT NULL",
            args![
                cred_id,
                approver,
                row.passkey,
                created_at,
                row.counter,
                row.backup_eligible,
                row.backup_state,
                origin.device_id,
                origin.aaguid,
                origin.registration,
                origin.attested
            ],
        )?;
        Ok(inserted == 1)
    }

    fn record_passkey_use(
        &self,
        cred_id: &str,
        approver: &str,
        counter: u32,
        backup_eligible: bool,
        backup_state: bool,
        at: i64,
    ) -> Result<bool, StoreError> {
        // The right-hand sides read the old values.
        let sql = match self.dialect() {
            Dialect::Sqlite => PASSKEY_USED_SQLITE,
            Dialect::Postgres => PASSKEY_USED_POSTGRES,
        };
        let n = self.exec(
            sql,
            args![
                cred_id,
                approver,
                counter,
                backup_eligible,
                backup_state,
                at
            ],
        )?;
        Ok(n == 1)
    }

    fn passkey_listing(&self, approver: Option<&str>) -> Result<Vec<PasskeyListing>, StoreError> {
        self.rows(
            "SELECT cred_id, approver, device_id, aaguid, created_at, last_used_at, counter,
                    backup_eligible, backup_state, retired_at, attested
             FROM passkeys WHERE CAST(?1 AS TEXT) IS NULL OR approver = ?1 ORDER BY created_at, cred_id",
            args![approver],
            |r| {
                let aaguid: Option<String> = r.get(3)?;
                Ok(PasskeyListing {
                    cred_id: r.get(0)?,
                    approver: r.get(1)?,
                    device_id: r.get(2)?,
                    model: aaguid
                        .as_deref()
                        .and_then(crate::models::model)
                        .map(str::to_owned),
                    aaguid,
                    created_at: r.get(4)?,
                    last_used_at: r.get(5)?,
                    counter: r.get(6)?,
                    backup_eligible: r.get(7)?,
                    backup_state: r.get(8)?,
                    retired_at: r.get(9)?,
                    attested: r.get(10)?,
                })
            },
        )
    }

    fn passkey_registration(&self, cred_id: &str) -> Result<Option<Option<String>>, StoreError> {
        self.row(
            "SELECT registration FROM passkeys WHERE cred_id = ?1",
            args![cred_id],
            |r| r.get(0),
        )
    }

    fn insert_enrolment(&self, id: &str, row: &EnrolmentRow) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO passkey_enrolments(id, approver, device_id, proof_state,
                                            registration_state, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![
                id,
                row.approver,
                row.device_id,
                row.proof_state,
                row.registration_state,
                row.expires_at
            ],
        )?;
        Ok(())
    }

    fn enrolment(&self, id: &str) -> Result<Option<EnrolmentRow>, StoreError> {
        self.row(
            "SELECT approver, device_id, proof_state, registration_state, expires_at, used_at
             FROM passkey_enrolments WHERE id = ?1",
            args![id],
            |r| {
                Ok(EnrolmentRow {
                    approver: r.get(0)?,
                    device_id: r.get(1)?,
                    proof_state: r.get(2)?,
                    registration_state: r.get(3)?,
                    expires_at: r.get(4)?,
                    used_at: r.get(5)?,
                })
            },
        )
    }

    fn use_enrolment(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE passkey_enrolments SET used_at = ?2 WHERE id = ?1",
            args![id, now],
        )?;
        Ok(())
    }

    fn retire_passkey(&self, cred_id: &str, at: i64) -> Result<Option<String>, StoreError> {
        let approver: Option<String> = self.row(
            "SELECT approver FROM passkeys WHERE cred_id = ?1 AND retired_at IS NULL",
            args![cred_id],
            |r| r.get(0),
        )?;
        if approver.is_some() {
            self.exec(
                "UPDATE passkeys SET retired_at = ?2 WHERE cred_id = ?1",
                args![cred_id, at],
            )?;
        }
        Ok(approver)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::PasskeyRow;
    use crate::error::StoreError;
    use crate::store::Store;

    /// A second passkey under a taken credential id is refused without storing it, and the
    /// write's transaction goes on: its later statements still commit.
    #[test]
    fn a_taken_credential_id_is_refused_and_the_write_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("g.db"), Arc::default()).unwrap();
        let row = |passkey: &str| PasskeyRow {
            passkey: passkey.into(),
            counter: 0,
            backup_eligible: false,
            backup_state: false,
        };
        let (first, second) = store
            .write(|tx| -> Result<_, StoreError> {
                let origin = super::PasskeyOrigin {
                    device_id: "d".into(),
                    aaguid: "00000000-0000-0000-0000-000000000000".into(),
                    registration: "{}".into(),
                    attested: false,
                };
                let first = tx.insert_passkey("c", "alice", &row("one"), &origin, 1)?;
                let second = tx.insert_passkey("c", "bob", &row("two"), &origin, 2)?;
                tx.audit_append(2, "x", None, serde_json::json!({}))?;
                Ok((first, second))
            })
            .unwrap();
        assert!(first);
        assert!(!second);
        let (alice, bob, audit) = store
            .read(|tx| -> Result<_, StoreError> {
                Ok((
                    tx.passkey_rows("alice")?,
                    tx.passkey_rows("bob")?,
                    tx.audit_entries()?,
                ))
            })
            .unwrap();
        assert_eq!(alice, vec![row("one")]);
        assert!(bob.is_empty());
        assert_eq!(audit.len(), 1);
    }
}
