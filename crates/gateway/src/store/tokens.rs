//! The requester tokens (table `tokens`, each stored as its SHA-256): issuing or reissuing one
//! under a name, revoking it, listing them and looking one up by its hash.

use rusqlite::params;

use super::sqlite::SqliteTx;
use crate::error::StoreError;

/// The rows of the requester tokens.
pub trait TokenRows {
    /// Stores the token `hash` under `name`, replacing (and un-revoking) an earlier one.
    fn put_token(&self, name: &str, hash: &str, created_at: i64) -> Result<(), StoreError>;

    /// Revokes the token `name` at `now`; returns whether it was valid until then.
    fn revoke_token(&self, name: &str, now: i64) -> Result<bool, StoreError>;

    /// `(name, created_at, revoked)` for every token, by name.
    fn tokens(&self) -> Result<Vec<(String, i64, bool)>, StoreError>;

    /// The name of the token with `hash` and when it was revoked, if it is stored.
    fn token_by_hash(&self, hash: &str) -> Result<Option<(String, Option<i64>)>, StoreError>;
}

impl TokenRows for SqliteTx<'_> {
    fn put_token(&self, name: &str, hash: &str, created_at: i64) -> Result<(), StoreError> {
        let n = self.exec(
            "INSERT INTO tokens(name, hash, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET hash = excluded.hash,
                    created_at = excluded.created_at, revoked_at = NULL",
            params![name, hash, created_at],
        )?;
        debug_assert_eq!(n, 1);
        Ok(())
    }

    fn revoke_token(&self, name: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.exec(
            "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            params![name, now],
        )?;
        Ok(n > 0)
    }

    fn tokens(&self) -> Result<Vec<(String, i64, bool)>, StoreError> {
        self.rows(
            "SELECT name, created_at, revoked_at IS NOT NULL FROM tokens ORDER BY name",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<(String, Option<i64>)>, StoreError> {
        self.row(
            "SELECT name, revoked_at FROM tokens WHERE hash = ?1",
            params![hash],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }
}
