//! The rows of pairing (tables `invites`, `approvers`, `pairings`): one-time invite codes
//! (stored as their hash), each approver's WebAuthn user id, and the pairings in progress
//! between their two steps.

use crate::args;

use super::sql::Db;
use crate::error::StoreError;

/// An invite as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRow {
    pub approver: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// A pairing in progress as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingRow {
    pub approver: String,
    /// The device key given at the first step (base64).
    pub device_key: String,
    pub device_name: String,
    /// The webauthn-rs registration state, as JSON.
    pub state: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// The rows of invites, approvers and pairings.
pub trait PairingRows {
    /// Stores an invite under the hash of its code.
    fn insert_invite(
        &self,
        code_hash: &str,
        approver: &str,
        created_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError>;

    /// Stores the approver with `user_id` unless the approver is stored already.
    fn ensure_approver(&self, name: &str, user_id: &str) -> Result<(), StoreError>;

    /// The invite stored under `code_hash`.
    fn invite(&self, code_hash: &str) -> Result<Option<InviteRow>, StoreError>;

    /// Marks the invite used at `now`.
    fn use_invite(&self, code_hash: &str, now: i64) -> Result<(), StoreError>;

    /// The approver's WebAuthn user id; a missing approver is an error.
    fn approver_user_id(&self, name: &str) -> Result<String, StoreError>;

    /// Stores a pairing in progress.
    fn insert_pairing(&self, id: &str, row: &PairingRow) -> Result<(), StoreError>;

    /// The pairing `id`.
    fn pairing(&self, id: &str) -> Result<Option<PairingRow>, StoreError>;

    /// Marks the pairing completed at `now`.
    fn use_pairing(&self, id: &str, now: i64) -> Result<(), StoreError>;
}

impl PairingRows for Db<'_> {
    fn insert_invite(
        &self,
        code_hash: &str,
        approver: &str,
        created_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO invites(code_hash, approver, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            args![code_hash, approver, created_at, expires_at],
        )?;
        Ok(())
    }

    fn ensure_approver(&self, name: &str, user_id: &str) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO approvers(name, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            args![name, user_id],
        )?;
        Ok(())
    }

    fn invite(&self, code_hash: &str) -> Result<Option<InviteRow>, StoreError> {
        self.row(
            "SELECT approver, expires_at, used_at FROM invites WHERE code_hash = ?1",
            args![code_hash],
            |r| {
                Ok(InviteRow {
                    approver: r.get(0)?,
                    expires_at: r.get(1)?,
                    used_at: r.get(2)?,
                })
            },
        )
    }

    fn use_invite(&self, code_hash: &str, now: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE invites SET used_at = ?2 WHERE code_hash = ?1",
            args![code_hash, now],
        )?;
        Ok(())
    }

    fn approver_user_id(&self, name: &str) -> Result<String, StoreError> {
        self.one(
            "SELECT user_id FROM approvers WHERE name = ?1",
            args![name],
            |r| r.get(0),
        )
    }

    fn insert_pairing(&self, id: &str, row: &PairingRow) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO pairings(id, approver, device_key, device_name, state, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![
                id,
                row.approver,
                row.device_key,
                row.device_name,
                row.state,
                row.expires_at
            ],
        )?;
        Ok(())
    }

    fn pairing(&self, id: &str) -> Result<Option<PairingRow>, StoreError> {
        self.row(
            "SELECT approver, device_key, device_name, state, expires_at, used_at FROM pairings WHERE id = ?1",
            args![id],
            |r| {
                Ok(PairingRow {
                    approver: r.get(0)?,
                    device_key: r.get(1)?,
                    device_name: r.get(2)?,
                    state: r.get(3)?,
                    expires_at: r.get(4)?,
                    used_at: r.get(5)?,
                })
            },
        )
    }

    fn use_pairing(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE pairings SET used_at = ?2 WHERE id = ?1",
            args![id, now],
        )?;
        Ok(())
    }
}
