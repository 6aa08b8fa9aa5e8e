//! The WebAuthn ceremony states (table `challenges`, one per request and approver): storing
//! one when a request is created, reading it, and consuming it once.

use crate::args;

use super::sql::{Db, ToParam as _};

/// Rows per statement of [`ChallengeRows::insert_on_demand_all`] (SQLite takes at most 32,766
/// parameters in one statement).
const ON_DEMAND_ROWS: usize = 500;
use crate::error::StoreError;

/// A stored WebAuthn ceremony state and when it was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The webauthn-rs authentication state, as JSON.
    pub state: String,
    pub used_at: Option<i64>,
}

/// The rows of the ceremony states.
pub trait ChallengeRows {
    /// Stores the ceremony state of a request for one approver.
    fn insert_challenge(
        &self,
        request_id: &str,
        approver: &str,
        state: &str,
    ) -> Result<(), StoreError>;

    /// Records that a request approved at once (break-glass) was addressed to an approver, who
    /// is told after the fact: its row has no ceremony (`state` the JSON `null`) and is used
    /// from the start, since an approved request takes no decision.
    fn insert_addressee(
        &self,
        request_id: &str,
        approver: &str,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Records that a request was addressed to an approver who asks for a challenge when they
    /// decide (`POST /v2/challenges`): no ceremony yet (`state` the JSON `null`), unused.
    fn insert_on_demand(&self, request_id: &str, approver: &str) -> Result<(), StoreError>;

    /// [`ChallengeRows::insert_on_demand`] for each of `approvers`, a few hundred rows per
    /// statement (a group of thousands would otherwise be as many round trips to PostgreSQL).
    fn insert_on_demand_all(
        &self,
        request_id: &str,
        approvers: &[String],
    ) -> Result<(), StoreError>;

    /// Replaces the ceremony state of a request for an approver it was addressed to with a new,
    /// unused one (a challenge issued on demand); returns whether there was a row to replace.
    fn reissue_challenge(
        &self,
        request_id: &str,
        approver: &str,
        state: &str,
    ) -> Result<bool, StoreError>;

    /// The ceremony state of a request for an approver, if the request was addressed to them.
    fn challenge(&self, request_id: &str, approver: &str) -> Result<Option<Challenge>, StoreError>;

    /// Whether the request was addressed to the approver (it has a ceremony state for them).
    fn has_challenge(&self, request_id: &str, approver: &str) -> Result<bool, StoreError>;

    /// The approvers the request was addressed to (those with a ceremony state), by name.
    fn addressees(&self, request_id: &str) -> Result<Vec<String>, StoreError>;

    /// Marks the ceremony state used at `now` if it was unused; returns whether it was.
    fn consume_challenge(
        &self,
        request_id: &str,
        approver: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Keeps a gateway-signed Challenge under its digest (hex), for evidence bundles: every
    /// one issued, used or replaced.
    fn insert_issued_challenge(
        &self,
        digest: &str,
        request_id: &str,
        approver: &str,
        signed: &str,
        at: i64,
    ) -> Result<(), StoreError>;

    /// The gateway-signed Challenge with this digest (hex), as stored.
    fn issued_challenge(&self, digest: &str) -> Result<Option<String>, StoreError>;
}

impl ChallengeRows for Db<'_> {
    fn addressees(&self, request_id: &str) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT approver FROM challenges WHERE request_id = ?1 ORDER BY approver",
            args![request_id],
            |r| r.get(0),
        )
    }

    fn insert_challenge(
        &self,
        request_id: &str,
        approver: &str,
        state: &str,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO challenges(request_id, approver, state) VALUES (?1, ?2, ?3)",
            args![request_id, approver, state],
        )?;
        Ok(())
    }

    fn insert_addressee(
        &self,
        request_id: &str,
        approver: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO challenges(request_id, approver, state, used_at) VALUES (?1, ?2, 'null', ?3)",
            args![request_id, approver, now],
        )?;
        Ok(())
    }

    fn reissue_challenge(
        &self,
        request_id: &str,
        approver: &str,
        state: &str,
    ) -> Result<bool, StoreError> {
        let n = self.exec(
            "UPDATE challenges SET state = ?3, used_at = NULL WHERE request_id = ?1 AND approver = ?2",
            args![request_id, approver, state],
        )?;
        Ok(n > 0)
    }

    fn insert_on_demand(&self, request_id: &str, approver: &str) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO challenges(request_id, approver, state) VALUES (?1, ?2, 'null')",
            args![request_id, approver],
        )?;
        Ok(())
    }

    fn insert_on_demand_all(
        &self,
        request_id: &str,
        approvers: &[String],
    ) -> Result<(), StoreError> {
        for chunk in approvers.chunks(ON_DEMAND_ROWS) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("(?1, ?{}, 'null')", i + 2))
                .collect();
            let sql = format!(
                "INSERT INTO challenges(request_id, approver, state) VALUES {}",
                values.join(", ")
            );
            let mut params = Vec::with_capacity(chunk.len() + 1);
            params.push(request_id.param());
            params.extend(chunk.iter().map(|a| a.param()));
            self.exec(&sql, &params)?;
        }
        Ok(())
    }

    fn challenge(&self, request_id: &str, approver: &str) -> Result<Option<Challenge>, StoreError> {
        self.row(
            "SELECT state, used_at FROM challenges WHERE request_id = ?1 AND approver = ?2",
            args![request_id, approver],
            |r| {
                Ok(Challenge {
                    state: r.get(0)?,
                    used_at: r.get(1)?,
                })
            },
        )
    }

    fn has_challenge(&self, request_id: &str, approver: &str) -> Result<bool, StoreError> {
        Ok(self
            .row(
                "SELECT 1 FROM challenges WHERE request_id = ?1 AND approver = ?2",
                args![request_id, approver],
                |r| r.get::<i64>(0),
            )?
            .is_some())
    }

    fn insert_issued_challenge(
        &self,
        digest: &str,
        request_id: &str,
        approver: &str,
        signed: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO issued_challenges(digest, request_id, approver, signed, issued_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            args![digest, request_id, approver, signed, at],
        )?;
        Ok(())
    }

    fn issued_challenge(&self, digest: &str) -> Result<Option<String>, StoreError> {
        self.row(
            "SELECT signed FROM issued_challenges WHERE digest = ?1",
            args![digest],
            |r| r.get(0),
        )
    }

    fn consume_challenge(
        &self,
        request_id: &str,
        approver: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self.exec(
            "UPDATE challenges SET used_at = ?3
                         WHERE request_id = ?1 AND approver = ?2 AND used_at IS NULL",
            args![request_id, approver, now],
        )?;
        Ok(n == 1)
    }
}
