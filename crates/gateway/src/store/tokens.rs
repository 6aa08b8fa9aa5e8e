//! The requester tokens (table `tokens`, each stored as its SHA-256): issuing or reissuing one
//! under a name, revoking it, listing them and looking one up by its hash.

use crate::args;

use super::sql::{Db, Row};
use crate::error::StoreError;

/// A requester token as listed (never its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub name: String,
    pub created_at: i64,
    pub revoked: bool,
    pub team: Option<String>,
    /// A JSON array of environment names.
    pub environments: String,
    /// `requester`, or `auditor` (read-only).
    pub role: String,
}

/// The rows of the requester tokens.
pub trait TokenRows {
    /// Stores the token `hash` under `name` with its attributes (`team`, and `environments`
    /// as a JSON array), replacing (and un-revoking) an earlier one.
    /// `role` is `requester` or `auditor`.
    fn put_token(
        &self,
        name: &str,
        hash: &str,
        created_at: i64,
        team: Option<&str>,
        environments: &str,
        role: &str,
    ) -> Result<(), StoreError>;

    /// Revokes the token `name` at `now`; returns whether it was valid until then.
    fn revoke_token(&self, name: &str, now: i64) -> Result<bool, StoreError>;

    /// Every token, by name.
    fn tokens(&self) -> Result<Vec<TokenRow>, StoreError>;

    /// The stored token `name`, if there is one.
    fn token(&self, name: &str) -> Result<Option<TokenRow>, StoreError>;

    /// The name of the token with `hash`, when it was revoked and its role, if it is stored.
    fn token_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<(String, Option<i64>, String)>, StoreError>;
}

/// A `TokenRow` from `name, created_at, revoked, team, environments, role`.
fn token_row(r: &Row<'_>) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        name: r.get(0)?,
        created_at: r.get(1)?,
        revoked: r.get(2)?,
        team: r.get(3)?,
        environments: r.get(4)?,
        role: r.get(5)?,
    })
}

impl TokenRows for Db<'_> {
    fn put_token(
        &self,
        name: &str,
        hash: &str,
        created_at: i64,
        team: Option<&str>,
        environments: &str,
        role: &str,
    ) -> Result<(), StoreError> {
        let n = self.exec(
            "INSERT INTO tokens(name, hash, created_at, team, environments, role)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(name) DO UPDATE SET hash = excluded.hash,
                    created_at = excluded.created_at, revoked_at = NULL,
                    team = excluded.team, environments = excluded.environments,
                    role = excluded.role",
            args![name, hash, created_at, team, environments, role],
        )?;
        debug_assert_eq!(n, 1);
        Ok(())
    }

    fn revoke_token(&self, name: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.exec(
            "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            args![name, now],
        )?;
        Ok(n > 0)
    }

    fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.rows(
            "SELECT name, created_at, revoked_at IS NOT NULL, team, environments, role
                 FROM tokens ORDER BY name",
            args![],
            token_row,
        )
    }

    fn token(&self, name: &str) -> Result<Option<TokenRow>, StoreError> {
        self.row(
            "SELECT name, created_at, revoked_at IS NOT NULL, team, environments, role
                 FROM tokens WHERE name = ?1",
            args![name],
            token_row,
        )
    }

    fn token_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<(String, Option<i64>, String)>, StoreError> {
        self.row(
            "SELECT name, revoked_at, role FROM tokens WHERE hash = ?1",
            args![hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }
}
