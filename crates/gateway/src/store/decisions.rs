//! The accepted decisions (table `decisions`): the votes recorded on a request, a decision
//! already accepted under an id (for idempotency), whether an approver has decided a request,
//! and storing an accepted decision with its receipt.

use crate::args;
use countersign_protocol::Verdict;

use super::sql::Db;
use crate::error::StoreError;

/// The votes on a request (`?1`), ordered by time, then approver.
pub(super) const VOTES_SQL: &str = "SELECT approver, verdict, at, person, eligible FROM decisions
     WHERE request_id = ?1 ORDER BY at, approver";

/// A vote as recorded: who decided, how and when, the approver's person then, and the stages
/// (indices) they were eligible for then. `eligible` is `None` for a vote on a request in the
/// list form, which has one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteRow {
    pub approver: String,
    pub verdict: Verdict,
    pub at: i64,
    pub person: Option<String>,
    pub eligible: Option<Vec<u32>>,
}

/// An accepted decision as stored.
pub struct NewDecision<'a> {
    pub decision_id: &'a str,
    pub request_id: &'a str,
    pub approver: &'a str,
    pub verdict: Verdict,
    /// The decision's digest (hex).
    pub digest: &'a str,
    /// The signed decision as the device sent it.
    pub signed: &'a str,
    /// The signed receipt answered for it.
    pub receipt: &'a str,
    pub at: i64,
    /// The approver's person when the decision was accepted.
    pub person: Option<&'a str>,
    /// The stages the approver was eligible for then; `None` for the list form.
    pub eligible: Option<&'a [u32]>,
}

/// The rows of the accepted decisions.
pub trait DecisionRows {
    /// The votes recorded on a request, ordered by time, then approver.
    fn votes(&self, request_id: &str) -> Result<Vec<VoteRow>, StoreError>;

    /// The digest (hex) and receipt text of the decision accepted under `decision_id`, if any.
    fn decision_receipt(&self, decision_id: &str) -> Result<Option<(String, String)>, StoreError>;

    /// Every accepted decision on a request and its receipt, both as stored (signed JSON), in
    /// the order accepted, the revocations (table `revocations`) after the votes.
    fn decisions_with_receipts(
        &self,
        request_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// Whether `approver` has a decision recorded on the request.
    fn has_decided(&self, request_id: &str, approver: &str) -> Result<bool, StoreError>;

    /// Stores an accepted decision.
    fn insert_decision(&self, d: &NewDecision<'_>) -> Result<(), StoreError>;
}

impl DecisionRows for Db<'_> {
    fn votes(&self, request_id: &str) -> Result<Vec<VoteRow>, StoreError> {
        let rows: Vec<(VoteRow, Option<String>)> =
            self.rows(VOTES_SQL, args![request_id], |r| {
                Ok((
                    VoteRow {
                        approver: r.get(0)?,
                        verdict: if r.get::<String>(1)? == "approve" {
                            Verdict::Approve
                        } else {
                            Verdict::Deny
                        },
                        at: r.get(2)?,
                        person: r.get(3)?,
                        eligible: None,
                    },
                    r.get(4)?,
                ))
            })?;
        rows.into_iter()
            .map(|(mut v, eligible)| {
                v.eligible = eligible
                    .map(|text| serde_json::from_str(&text))
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(format!("decisions.eligible: {e}")))?;
                Ok(v)
            })
            .collect()
    }

    fn decisions_with_receipts(
        &self,
        request_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = self.rows(
            "SELECT signed, receipt FROM decisions WHERE request_id = ?1 ORDER BY at, rowid",
            args![request_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        out.extend(self.rows(
            "SELECT signed, receipt FROM revocations WHERE request_id = ?1 ORDER BY at, rowid",
            args![request_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?);
        Ok(out)
    }

    fn decision_receipt(&self, decision_id: &str) -> Result<Option<(String, String)>, StoreError> {
        self.row(
            "SELECT digest, receipt FROM decisions WHERE decision_id = ?1",
            args![decision_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    fn has_decided(&self, request_id: &str, approver: &str) -> Result<bool, StoreError> {
        Ok(self
            .row(
                "SELECT 1 FROM decisions WHERE request_id = ?1 AND approver = ?2",
                args![request_id, approver],
                |_| Ok(()),
            )?
            .is_some())
    }

    fn insert_decision(&self, d: &NewDecision<'_>) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO decisions(decision_id, request_id, approver, verdict, digest, signed,
                     receipt, at, person, eligible)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            args![
                d.decision_id,
                d.request_id,
                d.approver,
                d.verdict.as_str(),
                d.digest,
                d.signed,
                d.receipt,
                d.at,
                d.person,
                d.eligible.map(|e| serde_json::json!(e).to_string())
            ],
        )?;
        Ok(())
    }
}
