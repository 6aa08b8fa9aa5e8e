//! The approval requests (table `requests`): storing a new one, the reads each step needs
//! (each selects only its columns: a decision reads the signed request before the lock and
//! the gate columns inside it), the duplicate and rate-limit lookups, and every change of a
//! request's state.
//!
//! One read here crosses into another owner's table: [`RequestRows::pending_requests_to`]
//! joins `challenges` (see `challenges`), where a request's approvers are recorded, one row
//! each; it is the store's only statement on two tables.

use crate::args;
use countersign_protocol::RequestState;

use super::sql::Db;
use crate::error::StoreError;

/// A new request as stored: `pending`, or `approved` at once by the policy.
pub struct NewRequest<'a> {
    pub id: &'a str,
    /// The signed request, as JSON.
    pub signed: &'a str,
    /// The signed request's digest (hex).
    pub digest: &'a str,
    pub requester: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
    pub min_approvals: u32,
    pub match_code: Option<&'a str>,
    /// The key under which identical pending requests collapse.
    pub dup_key: &'a str,
    /// Approved when created, by the policy (`mode = "auto"`) or by breaking glass: stored
    /// closed, `approved`.
    pub approved_at_once: bool,
}

/// What a decision is checked against inside its write: the columns that can change or that
/// the signed request does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestGate {
    /// The signed request's digest (hex).
    pub digest: String,
    pub state: String,
    pub expires_at: i64,
    pub match_code: Option<String>,
    /// The status sequence number of the latest change.
    pub status_seq: u64,
}

/// What a request's status is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestStatusRow {
    /// The signed request, as JSON.
    pub signed: String,
    /// Its digest (hex).
    pub digest: String,
    pub state: String,
    pub min_approvals: u32,
    /// The status sequence number of the latest change, and when it committed.
    pub status_seq: u64,
    pub status_at: i64,
    /// When the request reached its final state (for an approved one, the approval).
    pub closed_at: Option<i64>,
    /// The revocation of its approval, and the first acknowledgement: (when, by whom).
    pub revoked: Option<(i64, String)>,
    pub acked: Option<(i64, String)>,
    /// When an integration used the approval's grant to let the action start.
    pub used_at: Option<i64>,
}

/// A pending request found under a duplicate key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDuplicate {
    /// The signed request, as JSON.
    pub signed: String,
    /// Its digest (hex).
    pub digest: String,
    pub match_code: Option<String>,
}

/// The rows of the approval requests.
pub trait RequestRows {
    /// Stores a new pending request.
    fn insert_request(&self, r: &NewRequest<'_>) -> Result<(), StoreError>;

    /// The signed request (JSON), which never changes after creation.
    fn request_signed(&self, id: &str) -> Result<Option<String>, StoreError>;

    /// The signed request (JSON) and its requester.
    fn request_and_requester(&self, id: &str) -> Result<Option<(String, String)>, StoreError>;

    /// The requester and the digest (hex) of the request.
    fn request_requester_digest(&self, id: &str) -> Result<Option<(String, String)>, StoreError>;

    /// What a decision on the request is checked against.
    fn request_gate(&self, id: &str) -> Result<Option<RequestGate>, StoreError>;

    /// What the request's status is built from; a missing request is an error.
    fn request_status(&self, id: &str) -> Result<RequestStatusRow, StoreError>;

    /// The pending, unexpired request stored under `dup_key` at `now`.
    fn pending_duplicate(
        &self,
        dup_key: &str,
        now: i64,
    ) -> Result<Option<PendingDuplicate>, StoreError>;

    /// How many requests `requester` created after `since`.
    fn requests_since(&self, requester: &str, since: i64) -> Result<i64, StoreError>;

    /// How many requests are stored in each state (states without one are left out).
    fn requests_by_state(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// The pending requests from `requester` addressed to `approver`, oldest first. The
    /// addressees are the approvers with a ceremony row, so this reads `challenges` too.
    fn pending_requests_to(
        &self,
        requester: &str,
        approver: &str,
    ) -> Result<Vec<String>, StoreError>;

    /// Up to 500 pending requests due to expire at `now`.
    fn due_requests(&self, now: i64) -> Result<Vec<String>, StoreError>;

    /// Sets the request's status sequence number and the time of that change (a vote).
    fn set_status_seq(&self, id: &str, seq: u64, at: i64) -> Result<(), StoreError>;

    /// Closes the request in `state` at `now`, one status change.
    fn close_request(&self, id: &str, state: RequestState, now: i64) -> Result<(), StoreError>;

    /// Records the revocation of the request's approval by `by` at `now`, one status change, if
    /// it is approved and not revoked; returns whether it was.
    fn revoke_request(&self, id: &str, by: &str, now: i64) -> Result<bool, StoreError>;

    /// Records that an integration used the approved request's grant at `now`, one status
    /// change, if it is approved, not revoked and not used yet; returns whether it was. (The
    /// grant's window is the caller's to check.)
    fn use_grant(&self, id: &str, now: i64) -> Result<bool, StoreError>;

    /// Records the first acknowledgement of the approved request by `approver` at `now`, one
    /// status change; returns whether this was the first.
    fn acknowledge_request(&self, id: &str, approver: &str, now: i64) -> Result<bool, StoreError>;

    /// Withdraws the request if it is pending and from `requester`; returns whether it was.
    fn withdraw_request(&self, id: &str, requester: &str, now: i64) -> Result<bool, StoreError>;

    /// Counts one more wrong match code on the request.
    fn count_match_failure(&self, id: &str) -> Result<(), StoreError>;

    /// Denies the request at `now` if it is pending and has `limit` wrong match codes or more;
    /// returns whether it did.
    fn deny_after_match_failures(&self, id: &str, limit: u32, now: i64)
        -> Result<bool, StoreError>;
}

impl RequestRows for Db<'_> {
    fn insert_request(&self, r: &NewRequest<'_>) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO requests(id, signed, digest, requester, state, created_at, expires_at,
                    min_approvals, match_code, dup_key, status_seq, status_at, closed_at)
                 VALUES (?1, ?2, ?3, ?4, ?10, ?5, ?6, ?7, ?8, ?9, 1, ?5,
                    CASE WHEN ?10 = 'pending' THEN NULL ELSE CAST(?5 AS BIGINT) END)",
            args![
                r.id,
                r.signed,
                r.digest,
                r.requester,
                r.created_at,
                r.expires_at,
                r.min_approvals,
                r.match_code,
                r.dup_key,
                if r.approved_at_once {
                    RequestState::Approved.as_str()
                } else {
                    RequestState::Pending.as_str()
                }
            ],
        )?;
        Ok(())
    }

    fn request_signed(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.row(
            "SELECT signed FROM requests WHERE id = ?1",
            args![id],
            |r| r.get(0),
        )
    }

    fn request_and_requester(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        self.row(
            "SELECT signed, requester FROM requests WHERE id = ?1",
            args![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    fn request_requester_digest(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        self.row(
            "SELECT requester, digest FROM requests WHERE id = ?1",
            args![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    fn request_gate(&self, id: &str) -> Result<Option<RequestGate>, StoreError> {
        self.row(
            "SELECT digest, state, expires_at, match_code, status_seq FROM requests WHERE id = ?1",
            args![id],
            |r| {
                Ok(RequestGate {
                    digest: r.get(0)?,
                    state: r.get(1)?,
                    expires_at: r.get(2)?,
                    match_code: r.get(3)?,
                    status_seq: r.get::<i64>(4)? as u64,
                })
            },
        )
    }

    fn request_status(&self, id: &str) -> Result<RequestStatusRow, StoreError> {
        self.one(
            "SELECT signed, digest, state, min_approvals, status_seq, status_at, closed_at,
                    revoked_at, revoked_by, acked_at, acked_by, used_at FROM requests WHERE id = ?1",
            args![id],
            |r| {
                let pair = |at: usize| -> Result<Option<(i64, String)>, StoreError> {
                    Ok(match (r.get(at)?, r.get(at + 1)?) {
                        (Some(t), Some(by)) => Some((t, by)),
                        _ => None,
                    })
                };
                Ok(RequestStatusRow {
                    signed: r.get(0)?,
                    digest: r.get(1)?,
                    state: r.get(2)?,
                    min_approvals: r.get(3)?,
                    status_seq: r.get::<i64>(4)? as u64,
                    status_at: r.get(5)?,
                    closed_at: r.get(6)?,
                    revoked: pair(7)?,
                    acked: pair(9)?,
                    used_at: r.get(11)?,
                })
            },
        )
    }

    fn pending_duplicate(
        &self,
        dup_key: &str,
        now: i64,
    ) -> Result<Option<PendingDuplicate>, StoreError> {
        self.row(
            "SELECT signed, digest, match_code FROM requests
                     WHERE dup_key = ?1 AND state = 'pending' AND expires_at > ?2",
            args![dup_key, now],
            |r| {
                Ok(PendingDuplicate {
                    signed: r.get(0)?,
                    digest: r.get(1)?,
                    match_code: r.get(2)?,
                })
            },
        )
    }

    fn requests_since(&self, requester: &str, since: i64) -> Result<i64, StoreError> {
        self.one(
            "SELECT count(*) FROM requests WHERE requester = ?1 AND created_at > ?2",
            args![requester, since],
            |r| r.get(0),
        )
    }

    fn requests_by_state(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.rows(
            "SELECT state, count(*) FROM requests GROUP BY state",
            args![],
            |r| Ok((r.get(0)?, r.get::<i64>(1)?.try_into().unwrap_or(0))),
        )
    }

    fn pending_requests_to(
        &self,
        requester: &str,
        approver: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT r.id FROM requests r JOIN challenges c ON c.request_id = r.id
                         WHERE r.requester = ?1 AND c.approver = ?2 AND r.state = 'pending'
                         ORDER BY r.created_at, r.id",
            args![requester, approver],
            |row| row.get(0),
        )
    }

    fn due_requests(&self, now: i64) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT id FROM requests WHERE state = 'pending' AND expires_at <= ?1 LIMIT 500",
            args![now],
            |r| r.get(0),
        )
    }

    fn set_status_seq(&self, id: &str, seq: u64, at: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE requests SET status_seq = ?2, status_at = ?3 WHERE id = ?1",
            args![id, seq as i64, at],
        )?;
        Ok(())
    }

    fn close_request(&self, id: &str, state: RequestState, now: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE requests SET state = ?2, closed_at = ?3, status_seq = status_seq + 1,
                    status_at = ?3 WHERE id = ?1",
            args![id, state.as_str(), now],
        )?;
        Ok(())
    }

    fn use_grant(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.exec(
            "UPDATE requests SET used_at = ?2, status_seq = status_seq + 1, status_at = ?2
                     WHERE id = ?1 AND state = 'approved' AND revoked_at IS NULL
                       AND used_at IS NULL",
            args![id, now],
        )?;
        Ok(n > 0)
    }

    fn revoke_request(&self, id: &str, by: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.exec(
            "UPDATE requests SET revoked_at = ?3, revoked_by = ?2,
                    status_seq = status_seq + 1, status_at = ?3
                     WHERE id = ?1 AND state = 'approved' AND revoked_at IS NULL",
            args![id, by, now],
        )?;
        Ok(n > 0)
    }

    fn acknowledge_request(&self, id: &str, approver: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.exec(
            "UPDATE requests SET acked_at = ?3, acked_by = ?2,
                    status_seq = status_seq + 1, status_at = ?3
                     WHERE id = ?1 AND state = 'approved' AND acked_at IS NULL",
            args![id, approver, now],
        )?;
        Ok(n > 0)
    }

    fn withdraw_request(&self, id: &str, requester: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.exec(
            "UPDATE requests SET state = 'withdrawn', closed_at = ?3,
                    status_seq = status_seq + 1, status_at = ?3
                     WHERE id = ?1 AND requester = ?2 AND state = 'pending'",
            args![id, requester, now],
        )?;
        Ok(n > 0)
    }

    fn count_match_failure(&self, id: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE requests SET match_failures = match_failures + 1 WHERE id = ?1",
            args![id],
        )?;
        Ok(())
    }

    fn deny_after_match_failures(
        &self,
        id: &str,
        limit: u32,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self.exec(
            "UPDATE requests SET state = 'denied', closed_at = ?3,
                    status_seq = status_seq + 1, status_at = ?3
                     WHERE id = ?1 AND state = 'pending' AND match_failures >= ?2",
            args![id, limit, now],
        )?;
        Ok(n > 0)
    }
}
