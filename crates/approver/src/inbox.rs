//! The inbox: verified requests as stored in the `inbox` table (which this module owns), the
//! rules a request must pass before it is stored, and the outcome of ingesting one stream
//! event.

use countersign_protocol::{
    ApprovalRequest, Digest, Grant, Membership, PublicKey, Receipt, RequestState, Signed,
    StageProgress, StatusUpdate, Verdict, Vote,
};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::error::EngineError;
use crate::gateway::GatewayRecord;

/// How far ahead of our clock a gateway's `not_before` may be, for clock skew between hosts.
/// Only `not_before` gets this allowance: accepting a request after it expired never helps.
pub const NOT_BEFORE_SKEW_SECONDS: i64 = 60;

/// The longest validity window (from `created_at` or `not_before`, whichever is later, to
/// `expires_at`) the approver accepts, whatever the gateway signed: 7 days, the reference
/// gateway's default `max_ttl_seconds`. A request that waits longer than that for a decision
/// is not "just in time", and a gateway key that signs one should not buy a standing approval.
pub const MAX_VALIDITY_SECONDS: i64 = 7 * 24 * 3600;

pub use crate::reject::RejectReason;

/// The checks a request must pass before it is stored, in the order they are made: nothing in
/// the body is trusted before its signature verifies.
pub(crate) fn check_request(
    request: &Signed<ApprovalRequest>,
    gateway: &GatewayRecord,
    now: i64,
) -> Result<(), RejectReason> {
    check_signature(request, &gateway.gateway_key)?;
    let body = &request.body;
    if body.gateway != gateway.fingerprint {
        return Err(RejectReason::WrongGateway {
            named: body.gateway.clone(),
            pinned: gateway.fingerprint.clone(),
        });
    }
    if now >= body.expires_at {
        return Err(RejectReason::Expired {
            expires_at: body.expires_at,
        });
    }
    if body.not_before > now + NOT_BEFORE_SKEW_SECONDS {
        return Err(RejectReason::NotYetValid {
            not_before: body.not_before,
        });
    }
    let valid_for = body
        .expires_at
        .saturating_sub(body.created_at.max(body.not_before));
    if valid_for > MAX_VALIDITY_SECONDS {
        return Err(RejectReason::ValidTooLong {
            seconds: valid_for,
            limit: MAX_VALIDITY_SECONDS,
        });
    }
    // Named in a list stage, or a group stage, for which the gateway-signed envelope that
    // carried the request names this approver in its audience (protocol.md 8.1).
    let named = body
        .named_approvers()
        .iter()
        .any(|a| a == &gateway.approver);
    let by_group = body.effective_stages().iter().any(|s| s.group.is_some());
    if !named && !by_group {
        return Err(RejectReason::NotAddressed {
            approver: gateway.approver.clone(),
        });
    }
    Ok(())
}

fn check_signature(request: &Signed<ApprovalRequest>, key: &PublicKey) -> Result<(), RejectReason> {
    request.verify(key).map_err(|_| RejectReason::BadSignature)
}

/// Which requests `list` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListFilter {
    /// Pending at the gateway and not yet expired by our clock.
    #[default]
    Pending,
    All,
}

/// Where this device's decision on a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Queued,
    Delivered,
    Refused,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(DeliveryState::Queued),
            "delivered" => Some(DeliveryState::Delivered),
            "refused" => Some(DeliveryState::Refused),
            _ => None,
        }
    }
}

/// This device's decision on an inbox item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalDecision {
    pub decision_id: String,
    pub verdict: Verdict,
    pub decided_at: i64,
    pub delivery: DeliveryState,
    pub last_error: Option<String>,
    pub receipt: Option<Signed<Receipt>>,
}

/// One verified request in the inbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxItem {
    /// Fingerprint of the gateway that sent it.
    pub gateway: String,
    pub gateway_name: String,
    /// The approver this device is paired as with that gateway.
    pub approver: String,
    /// The request exactly as signed by the gateway.
    pub request: Signed<ApprovalRequest>,
    pub digest: Digest,
    /// WebAuthn `RequestChallengeResponse` JSON for this request and approver.
    pub challenge: serde_json::Value,
    /// The last state the gateway reported.
    pub state: RequestState,
    pub approvals: u32,
    pub min_approvals: u32,
    pub votes: Vec<Vote>,
    /// The progress of each stage at the newest status applied; empty for the list form.
    pub stages: Vec<StageProgress>,
    /// What the approval grants, from the newest approved status; `None` until approved.
    pub grant: Option<Grant>,
    /// The gateway's newest signed statement of this approver's person and groups, if it sent
    /// one.
    pub membership: Option<Membership>,
    pub received_at: i64,
    pub decision: Option<LocalDecision>,
}

impl InboxItem {
    pub fn id(&self) -> &str {
        &self.request.body.id
    }

    /// Approved without asking (break-glass, or by the policy) and not acknowledged by anyone
    /// yet: it asks for this approver's attention until someone does.
    pub fn needs_acknowledgement(&self) -> bool {
        !self.request.body.mode.is_ask()
            && self.state != RequestState::Pending
            && self
                .grant
                .as_ref()
                .is_some_and(|g| g.acknowledged_at.is_none())
    }

    /// The state to show: a request still pending at the gateway but past its expiry by our
    /// clock is expired (the gateway will say so when we next hear from it).
    pub fn effective_state(&self, now: i64) -> RequestState {
        if self.state == RequestState::Pending && now >= self.request.body.expires_at {
            RequestState::Expired
        } else {
            self.state
        }
    }
}

// -------------------------------------------------------------------- the `inbox` table
//
// This module owns the table: every statement that reads or writes an inbox row is here.

/// Pending at the gateway and not past expiry by our clock (`?1`): `effective_state` in SQL;
/// or approved without asking and not acknowledged yet (`attention`).
const PENDING_WHERE: &str = "WHERE (i.state = 'pending' AND i.expires_at > ?1) OR i.attention = 1";
const LIST_ORDER: &str = "ORDER BY i.received_at DESC, i.request_id";

const ITEM_SELECT: &str = "SELECT i.gateway, g.name, i.request, i.digest, i.challenge, i.state, \
     i.approvals, i.min_approvals, i.votes, i.received_at, i.decision_id, o.verdict, o.state, \
     o.last_error, o.receipt, o.created_at, i.stages, g.approver, i.granted, g.membership \
     FROM inbox i JOIN gateways g ON g.fingerprint = i.gateway \
     LEFT JOIN outbox o ON o.decision_id = i.decision_id";

fn item_row(r: &Row<'_>) -> rusqlite::Result<Result<InboxItem, EngineError>> {
    let request: String = r.get(2)?;
    let digest: String = r.get(3)?;
    let challenge: String = r.get(4)?;
    let state: String = r.get(5)?;
    let votes: String = r.get(8)?;
    let decision_id: Option<String> = r.get(10)?;
    let verdict: Option<String> = r.get(11)?;
    let delivery: Option<String> = r.get(12)?;
    let last_error: Option<String> = r.get(13)?;
    let receipt: Option<String> = r.get(14)?;
    let decided_at: Option<i64> = r.get(15)?;
    let gateway: String = r.get(0)?;
    let gateway_name: String = r.get(1)?;
    let approvals: u32 = r.get(6)?;
    let min_approvals: u32 = r.get(7)?;
    let received_at: i64 = r.get(9)?;
    let stages: String = r.get(16)?;
    let approver: String = r.get(17)?;
    let granted: Option<String> = r.get(18)?;
    let membership: Option<String> = r.get(19)?;
    let build = move || -> Result<InboxItem, EngineError> {
        let bad = |what: &str| EngineError::Corrupt(format!("inbox column {what} is unreadable"));
        let decision = match (decision_id, verdict, delivery) {
            (Some(decision_id), Some(verdict), Some(delivery)) => Some(LocalDecision {
                decision_id,
                verdict: match verdict.as_str() {
                    "approve" => Verdict::Approve,
                    "deny" => Verdict::Deny,
                    _ => return Err(bad("verdict")),
                },
                decided_at: decided_at.unwrap_or(0),
                delivery: DeliveryState::parse(&delivery).ok_or_else(|| bad("delivery"))?,
                last_error,
                receipt: receipt
                    .map(|t| serde_json::from_str(&t))
                    .transpose()
                    .map_err(|_| bad("receipt"))?,
            }),
            _ => None,
        };
        Ok(InboxItem {
            gateway,
            gateway_name,
            approver,
            request: serde_json::from_str(&request).map_err(|_| bad("request"))?,
            digest: Digest::parse("digest", &digest).map_err(|_| bad("digest"))?,
            challenge: serde_json::from_str(&challenge).map_err(|_| bad("challenge"))?,
            state: RequestState::parse(&state).ok_or_else(|| bad("state"))?,
            approvals,
            min_approvals,
            votes: serde_json::from_str(&votes).map_err(|_| bad("votes"))?,
            stages: serde_json::from_str(&stages).map_err(|_| bad("stages"))?,
            grant: granted
                .map(|g| serde_json::from_str(&g))
                .transpose()
                .map_err(|_| bad("granted"))?,
            membership: membership
                .map(|m| serde_json::from_str::<Signed<Membership>>(&m).map(|s| s.body))
                .transpose()
                .map_err(|_| bad("membership"))?,
            received_at,
            decision,
        })
    };
    Ok(build())
}

pub(crate) fn find_item(db: &Connection, id: &str) -> Result<InboxItem, EngineError> {
    if id.is_empty() {
        return Err(EngineError::UnknownRequest(String::new()));
    }
    // Request ids are printable ASCII (the protocol refuses others), so the ids that start with
    // `id` are exactly those in [id, id + DEL): a range of the request-id index, not a scan.
    // In id order the exact id, if stored, comes first; three rows tell one match from several.
    let mut stmt = db.prepare_cached(&find_item_sql())?;
    let mut found = Vec::new();
    for r in stmt.query_map(params![id, format!("{id}\u{7f}")], item_row)? {
        found.push(r??);
    }
    let exact = found.iter().filter(|i| i.id() == id).count();
    match (found.len(), exact) {
        (0, _) => Err(EngineError::UnknownRequest(id.to_owned())),
        (1, _) | (_, 1) => Ok(found.remove(0)),
        _ => Err(EngineError::AmbiguousRequest(id.to_owned())),
    }
}

/// The inbox items whose request id is in [?1, ?2), in id order (see `find_item`).
fn find_item_sql() -> String {
    format!("{ITEM_SELECT} WHERE i.request_id >= ?1 AND i.request_id < ?2 ORDER BY i.request_id LIMIT 3")
}

/// The inbox as `list` shows it, newest first.
pub(crate) fn list(
    db: &Connection,
    filter: ListFilter,
    now: i64,
) -> Result<Vec<InboxItem>, EngineError> {
    let mut out = Vec::new();
    match filter {
        ListFilter::All => {
            let mut stmt = db.prepare_cached(&format!("{ITEM_SELECT} {LIST_ORDER}"))?;
            for r in stmt.query_map([], item_row)? {
                out.push(r??);
            }
        }
        ListFilter::Pending => {
            // `inbox.expires_at` is the request's own `expires_at`, so this is
            // `effective_state` in SQL: closed requests are not read at all.
            let sql = format!("{ITEM_SELECT} {PENDING_WHERE} {LIST_ORDER}");
            let mut stmt = db.prepare_cached(&sql)?;
            for r in stmt.query_map(params![now], item_row)? {
                out.push(r??);
            }
        }
    }
    Ok(out)
}

/// How many requests `list(ListFilter::Pending)` would return, without reading them.
pub(crate) fn count_pending(db: &Connection, now: i64) -> Result<usize, EngineError> {
    let sql = format!("SELECT count(*) FROM inbox i {PENDING_WHERE}");
    let n: i64 = crate::store::query_row(db, &sql, params![now], |r| r.get(0))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// The item `id` from `gateway` (a full fingerprint).
pub(crate) fn get(db: &Connection, gateway: &str, id: &str) -> Result<InboxItem, EngineError> {
    let sql = format!("{ITEM_SELECT} WHERE i.gateway = ?1 AND i.request_id = ?2");
    crate::store::query_row(db, &sql, params![gateway, id], item_row)
        .optional()?
        .ok_or_else(|| EngineError::UnknownRequest(id.to_owned()))?
}

/// The digest stored for request `id` from `gateway`, if it is stored.
pub(crate) fn stored_digest(
    db: &Connection,
    gateway: &str,
    id: &str,
) -> Result<Option<String>, EngineError> {
    Ok(crate::store::query_row(
        db,
        "SELECT digest FROM inbox WHERE gateway = ?1 AND request_id = ?2",
        params![gateway, id],
        |r| r.get(0),
    )
    .optional()?)
}

/// Stores a verified request as pending, with the passkey challenge the gateway bound to it.
pub(crate) fn insert(
    db: &Connection,
    gateway: &str,
    request: &Signed<ApprovalRequest>,
    digest: &Digest,
    challenge: &serde_json::Value,
    now: i64,
) -> Result<(), EngineError> {
    let b = &request.body;
    let request_json = serde_json::to_string(request)
        .map_err(|e| EngineError::Corrupt(format!("cannot encode the request: {e}")))?;
    crate::store::execute(
        db,
        "INSERT INTO inbox (gateway, request_id, request, digest, challenge, state, approvals, \
         min_approvals, votes, expires_at, received_at, status_seq, attention) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, '[]', ?7, ?8, ?9, ?10)",
        params![
            gateway,
            b.id,
            request_json,
            digest.to_hex(),
            challenge.to_string(),
            b.quorum_total(),
            b.expires_at,
            now,
            // A request approved at once arrives with its status at `seq` 1, which follows.
            if b.mode.is_ask() { 1 } else { 0 },
            !b.mode.is_ask()
        ],
    )?;
    Ok(())
}

/// Whether the request `id` from `gateway` asks for attention though it is approved: approved
/// without asking this approver, and acknowledged by nobody yet.
pub(crate) fn asks_attention(
    db: &Connection,
    gateway: &str,
    id: &str,
) -> Result<bool, EngineError> {
    let attention: Option<bool> = db
        .query_row(
            "SELECT attention FROM inbox WHERE gateway = ?1 AND request_id = ?2",
            params![gateway, id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(attention.unwrap_or(false))
}

/// How a signed status (or a receipt's status part) met the request held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusApplied {
    Applied,
    /// Its `seq` is not above the one held.
    Stale {
        held: u64,
    },
    /// The request held is already final; it never moves out of that state.
    AfterFinal {
        held: u64,
    },
}

/// Applies a verified status to a request held, under the ordering rule: only a status with a
/// higher `seq` than the one held, and only while the request is pending.
pub(crate) fn apply_status(
    db: &Connection,
    gateway: &str,
    status: &StatusUpdate,
) -> Result<StatusApplied, EngineError> {
    let votes = serde_json::to_string(&status.votes)
        .map_err(|e| EngineError::Corrupt(format!("cannot encode votes: {e}")))?;
    let granted = status
        .grant
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| EngineError::Corrupt(format!("cannot encode the grant: {e}")))?;
    let acknowledged = status
        .grant
        .as_ref()
        .is_some_and(|g| g.acknowledged_at.is_some());
    let mut n = crate::store::execute(
        db,
        "UPDATE inbox SET state = ?1, approvals = ?2, min_approvals = ?3, votes = ?4, \
         status_seq = ?5, stages = ?8, granted = ?9, \
         attention = CASE WHEN ?10 THEN 0 ELSE attention END \
         WHERE gateway = ?6 AND request_id = ?7 AND status_seq < ?5 AND state = 'pending'",
        params![
            status.state.as_str(),
            status.approvals,
            status.min_approvals,
            votes,
            status.seq as i64,
            gateway,
            status.request_id,
            stages_json(&status.stages)?,
            granted,
            acknowledged
        ],
    )?;
    if n == 0 && status.state == RequestState::Approved {
        // After approval only the grant changes (protocol.md 3.3): its revocation, or its
        // first acknowledgement, which ends the request's call for attention. A receipt that
        // approved the request set its `seq` without the grant, which the status of that same
        // `seq` brings.
        n = crate::store::execute(
            db,
            "UPDATE inbox SET status_seq = ?1, granted = ?2, \
             attention = CASE WHEN ?3 THEN 0 ELSE attention END \
             WHERE gateway = ?4 AND request_id = ?5 AND state = 'approved' \
             AND (status_seq < ?1 OR (status_seq = ?1 AND granted IS NULL AND ?2 IS NOT NULL))",
            params![
                status.seq as i64,
                granted,
                acknowledged,
                gateway,
                status.request_id
            ],
        )?;
    }
    applied(db, gateway, &status.request_id, n)
}

fn applied(
    db: &Connection,
    gateway: &str,
    request_id: &str,
    changed: usize,
) -> Result<StatusApplied, EngineError> {
    if changed > 0 {
        return Ok(StatusApplied::Applied);
    }
    let row: Option<(i64, String)> = db
        .query_row(
            "SELECT status_seq, state FROM inbox WHERE gateway = ?1 AND request_id = ?2",
            params![gateway, request_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    // Nothing held: nothing to update.
    let Some((held, state)) = row else {
        return Ok(StatusApplied::Applied);
    };
    let held = u64::try_from(held).unwrap_or(0);
    Ok(if state == RequestState::Pending.as_str() {
        StatusApplied::Stale { held }
    } else {
        StatusApplied::AfterFinal { held }
    })
}

/// Takes the request's state from a verified receipt for a decision made here, under the same
/// ordering rule as a status (its `status_seq`).
pub(crate) fn apply_receipt(
    db: &Connection,
    gateway: &str,
    request_id: &str,
    receipt: &Receipt,
) -> Result<StatusApplied, EngineError> {
    let n = crate::store::execute(
        db,
        "UPDATE inbox SET state = ?1, approvals = ?2, min_approvals = ?3, status_seq = ?4, \
         stages = ?7 WHERE gateway = ?5 AND request_id = ?6 AND status_seq < ?4 \
         AND state = 'pending'",
        params![
            receipt.request_state.as_str(),
            receipt.approvals,
            receipt.min_approvals,
            receipt.status_seq as i64,
            gateway,
            request_id,
            stages_json(&receipt.stages)?
        ],
    )?;
    applied(db, gateway, request_id, n)
}

fn stages_json(stages: &[StageProgress]) -> Result<String, EngineError> {
    serde_json::to_string(stages)
        .map_err(|e| EngineError::Corrupt(format!("cannot encode stages: {e}")))
}

/// Links a request to the decision made on it here (the outbox row).
pub(crate) fn link_decision(
    db: &Connection,
    gateway: &str,
    request_id: &str,
    decision_id: &str,
) -> Result<(), EngineError> {
    crate::store::execute(
        db,
        "UPDATE inbox SET decision_id = ?1 WHERE gateway = ?2 AND request_id = ?3",
        params![decision_id, gateway, request_id],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `show` takes an id prefix; finding it reads a range of the request-id index instead of
    /// scanning the inbox.
    #[test]
    fn an_id_prefix_is_found_in_a_range_of_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open(&dir.path().join("approver.db"), 0).unwrap();
        let mut st = db
            .prepare(&format!("EXPLAIN QUERY PLAN {}", find_item_sql()))
            .unwrap();
        let plan: Vec<String> = st
            .query_map(params!["0b7c", "0b7c\u{7f}"], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(
                |step| step.starts_with("SEARCH i USING INDEX inbox_request_id")
                    && step.contains("request_id>? AND request_id<?")
            ),
            "{plan:?}"
        );
    }
}
