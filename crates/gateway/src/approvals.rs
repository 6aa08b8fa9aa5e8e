//! Approval requests, decisions and quorum: creating and signing requests, starting one
//! WebAuthn authentication per eligible approver, verifying decisions, deciding the quorum,
//! signing receipts and status updates, and expiring requests on the gateway's clock.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use countersign_protocol::api::{CreatedRequest, NewRequest, RequestView};
use countersign_protocol::types::Decode;
use countersign_protocol::{
    ApprovalRequest, Decision, Digest, PublicKey, Receipt, RequestState, Risk, Signed,
    StatusUpdate, StreamEvent, Verdict, Vote, PROTOCOL_VERSION,
};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize as _;
use serde_json::json;
use sha2::Digest as _;
use webauthn_rs::prelude::{
    Credential, Passkey, PasskeyAuthentication, PublicKeyCredential, WebauthnError,
};

use crate::error::{json_text, sql, ApiError, StoreError};
use crate::gateway::Gateway;
use crate::hub::{enqueue, Pushed};
use crate::store::audit_append;

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

fn random_match_code() -> String {
    use rand::Rng as _;
    format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32))
}

/// Creates, signs, stores and pushes a request from the authenticated `requester`.
pub fn create_request(
    gw: &Gateway,
    requester: &str,
    new: NewRequest,
) -> Result<CreatedRequest, ApiError> {
    let now = gw.now();
    let ttl = if new.ttl_seconds == 0 {
        gw.config.default_ttl_seconds
    } else {
        new.ttl_seconds
    };
    if ttl > gw.config.max_ttl_seconds {
        return Err(ApiError::bad_request(
            "ttl_too_long",
            format!(
                "The time to live of {ttl} s is longer than this gateway allows ({} s).",
                gw.config.max_ttl_seconds
            ),
        ));
    }
    let approvers: Vec<String> = new
        .approvers
        .iter()
        .map(|a| a.trim().to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if approvers.len() != new.approvers.len() {
        return Err(ApiError::bad_request(
            "duplicate_approver",
            "An approver is listed more than once.",
        ));
    }
    let match_required =
        new.require_match || gw.config.match_required_for(&new.action, &new.resource);
    let body = ApprovalRequest {
        v: PROTOCOL_VERSION,
        id: uuid::Uuid::now_v7().to_string(),
        gateway: gw.fingerprint.clone(),
        action: new.action,
        resource: new.resource,
        risk: new.risk.unwrap_or(Risk::Medium),
        summary: new.summary,
        detail: new.detail,
        requester: requester.to_string(),
        reason: new.reason,
        created_at: now,
        not_before: now,
        expires_at: now + i64::from(ttl),
        approvers,
        min_approvals: new.min_approvals,
        match_required,
    };
    body.validate()
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let dup_key = {
        let key = json!([
            body.requester,
            body.action,
            body.resource,
            body.risk,
            body.summary,
            body.detail,
            body.reason,
            body.approvers,
            body.min_approvals,
            body.match_required
        ]);
        hex::encode(sha2::Sha256::digest(json_text(&key)?.as_bytes()))
    };

    let result = gw.store.write_publish(
        |tx| -> Result<(CreatedRequest, Vec<Pushed>), ApiError> {
            // Collapse an identical pending request from the same requester into the first.
            let existing: Option<(String, String, Option<String>)> = crate::store::query_row(tx,
                    "SELECT signed, digest, match_code FROM requests
                     WHERE dup_key = ?1 AND state = 'pending' AND expires_at > ?2",
                    params![dup_key, now],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(sql)?;
            if let Some((signed, digest, match_code)) = existing {
                let request: Signed<ApprovalRequest> = serde_json::from_str(&signed)
                    .map_err(|e| ApiError::internal("stored request", e))?;
                let digest = Digest::parse("requests.digest", &digest)
                    .map_err(|e| ApiError::internal("stored digest", e))?;
                audit_append(
                    tx,
                    now,
                    "request.collapsed",
                    Some(&request.body.id),
                    json!({"requester": requester}),
                )?;
                return Ok((
                    CreatedRequest {
                        request,
                        digest,
                        match_code,
                        duplicate: true,
                    },
                    Vec::new(),
                ));
            }
            let recent: i64 = crate::store::query_row(tx,
                    "SELECT count(*) FROM requests WHERE requester = ?1 AND created_at > ?2",
                    params![requester, now - 60],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            if recent >= i64::from(gw.config.rate_limit_per_minute) {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "{requester} created {recent} requests in the last minute; the limit is {}.",
                        gw.config.rate_limit_per_minute
                    ),
                ));
            }
            let blocked = crate::reports::blocked_by(tx, requester, &body.approvers)?;
            if !blocked.is_empty() {
                return Err(ApiError::forbidden(
                    "requester_blocked",
                    format!(
                        "{} reported an unexpected request from {requester}; the gateway's operator must lift the block (countersign-gateway unblock) before {requester} can ask them again.",
                        blocked.join(", ")
                    ),
                ));
            }
            let mut challenges = Vec::with_capacity(body.approvers.len());
            for a in &body.approvers {
                let passkeys = passkeys_of(tx, a)?;
                if passkeys.is_empty() {
                    return Err(ApiError::bad_request(
                        "unknown_approver",
                        format!("{a} has no paired device with a passkey on this gateway."),
                    ));
                }
                let (rcr, state) = gw
                    .webauthn
                    .start_passkey_authentication(&passkeys)
                    .map_err(|e| ApiError::internal("start passkey authentication", e))?;
                challenges.push((a.clone(), rcr, state));
            }
            let signed = Signed::sign(&gw.key, body.clone())?;
            let digest = signed.digest()?;
            let match_code = match_required.then(random_match_code);
            crate::store::execute(tx,
                "INSERT INTO requests(id, signed, digest, requester, state, created_at, expires_at,
                    min_approvals, match_code, dup_key)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?8, ?9)",
                params![
                    body.id,
                    json_text(&signed)?,
                    digest.to_hex(),
                    requester,
                    now,
                    body.expires_at,
                    body.min_approvals,
                    match_code,
                    dup_key
                ],
            )
            .map_err(sql)?;
            let mut pushed = Vec::new();
            for (a, rcr, state) in challenges {
                crate::store::execute(tx,
                    "INSERT INTO challenges(request_id, approver, state) VALUES (?1, ?2, ?3)",
                    params![body.id, a, json_text(&state)?],
                )
                .map_err(sql)?;
                let event = StreamEvent::Request {
                    request: signed.clone(),
                    challenge: serde_json::to_value(&rcr)
                        .map_err(|e| ApiError::internal("challenge", e))?,
                };
                let data = json_text(&event)?;
                pushed.extend(enqueue(tx, std::slice::from_ref(&a), "request", |_| {
                    Ok(data.clone())
                })?);
            }
            audit_append(
                tx,
                now,
                "request.created",
                Some(&body.id),
                json!({
                    "requester": requester,
                    "action": body.action,
                    "resource": body.resource,
                    "approvers": body.approvers,
                    "digest": digest,
                }),
            )?;
            Ok((
                CreatedRequest {
                    request: signed,
                    digest,
                    match_code,
                    duplicate: false,
                },
                pushed,
            ))
        }
    )?;
    gw.changes.notify_waiters();
    Ok(result)
}

/// The signed current status of a request, built inside `tx`.
fn status_of(
    gw: &Gateway,
    tx: &rusqlite::Connection,
    request_id: &str,
) -> Result<(Signed<StatusUpdate>, Vec<String>), ApiError> {
    let (signed, digest, state, min): (String, String, String, u32) = crate::store::query_row(
        tx,
        "SELECT signed, digest, state, min_approvals FROM requests WHERE id = ?1",
        params![request_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .map_err(sql)?;
    let request: Signed<ApprovalRequest> =
        serde_json::from_str(&signed).map_err(|e| ApiError::internal("stored request", e))?;
    let digest = Digest::parse("requests.digest", &digest)
        .map_err(|e| ApiError::internal("stored digest", e))?;
    let state =
        RequestState::parse(&state).ok_or_else(|| ApiError::internal("stored state", &state))?;
    let status = build_status(gw, tx, request_id, digest, state, min)?;
    Ok((status, request.body.approvers))
}

/// The signed status of a request whose digest, state and quorum are known, with its votes.
fn build_status(
    gw: &Gateway,
    tx: &Connection,
    request_id: &str,
    request_digest: Digest,
    state: RequestState,
    min_approvals: u32,
) -> Result<Signed<StatusUpdate>, ApiError> {
    let votes = votes_of(tx, request_id)?;
    status_from_votes(
        gw,
        request_id,
        request_digest,
        state,
        min_approvals,
        votes,
        gw.now(),
    )
}

/// The votes on a request (`?1`), ordered by time, then approver.
pub(crate) const VOTES_SQL: &str =
    "SELECT approver, verdict, at FROM decisions WHERE request_id = ?1 ORDER BY at, approver";

/// The recorded votes on a request, ordered by time, then approver.
fn votes_of(c: &Connection, request_id: &str) -> Result<Vec<Vote>, ApiError> {
    let mut stmt = c.prepare_cached(VOTES_SQL).map_err(sql)?;
    let rows = stmt
        .query_map(params![request_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    Ok(rows
        .into_iter()
        .map(|(approver, verdict, at)| Vote {
            approver,
            verdict: if verdict == "approve" {
                Verdict::Approve
            } else {
                Verdict::Deny
            },
            at,
        })
        .collect())
}

fn status_from_votes(
    gw: &Gateway,
    request_id: &str,
    request_digest: Digest,
    state: RequestState,
    min_approvals: u32,
    votes: Vec<Vote>,
    at: i64,
) -> Result<Signed<StatusUpdate>, ApiError> {
    let update = StatusUpdate {
        v: PROTOCOL_VERSION,
        request_id: request_id.to_string(),
        request_digest,
        state,
        approvals: votes
            .iter()
            .filter(|v| v.verdict == Verdict::Approve)
            .count() as u32,
        min_approvals,
        votes,
        at,
    };
    Ok(Signed::sign(&gw.key, update)?)
}

/// What accepting a decision produces, given the votes recorded before it: the new state, the
/// signed receipt and the signed status event.
struct Outcome {
    votes_before: Vec<Vote>,
    new_state: RequestState,
    receipt: Signed<Receipt>,
    receipt_text: String,
    status_data: String,
}

fn outcome(
    gw: &Gateway,
    d: &Decision,
    request: &Signed<ApprovalRequest>,
    decision_digest: Digest,
    now: i64,
    votes_before: Vec<Vote>,
) -> Result<Outcome, ApiError> {
    // One deny closes the request at once; otherwise the quorum decides.
    let approved_before = votes_before
        .iter()
        .filter(|v| v.verdict == Verdict::Approve)
        .count() as u32;
    let approvals = approved_before + u32::from(d.verdict == Verdict::Approve);
    let min = request.body.min_approvals;
    let new_state = match d.verdict {
        Verdict::Deny => RequestState::Denied,
        Verdict::Approve if approvals >= min => RequestState::Approved,
        Verdict::Approve => RequestState::Pending,
    };
    let receipt = Signed::sign(
        &gw.key,
        Receipt {
            v: PROTOCOL_VERSION,
            decision_id: d.decision_id.clone(),
            decision_digest,
            request_id: d.request_id.clone(),
            request_digest: d.request_digest,
            approver: d.approver.clone(),
            verdict: d.verdict,
            accepted_at: now,
            request_state: new_state,
            approvals,
            min_approvals: min,
        },
    )?;
    let mut votes = votes_before.clone();
    votes.push(Vote {
        approver: d.approver.clone(),
        verdict: d.verdict,
        at: now,
    });
    votes.sort_by(|a, b| (a.at, &a.approver).cmp(&(b.at, &b.approver)));
    let status = status_from_votes(
        gw,
        &d.request_id,
        d.request_digest,
        new_state,
        min,
        votes,
        now,
    )?;
    Ok(Outcome {
        votes_before,
        new_state,
        receipt_text: json_text(&receipt)?,
        receipt,
        status_data: json_text(&StreamEvent::Status { status })?,
    })
}

/// Stores and returns a status event for every approver of the request.
pub(crate) fn push_status(
    gw: &Gateway,
    tx: &Connection,
    request_id: &str,
) -> Result<Vec<Pushed>, ApiError> {
    let (status, approvers) = status_of(gw, tx, request_id)?;
    enqueue_status(tx, status, &approvers)
}

/// Stores the status event for every approver and returns what to publish after commit.
fn enqueue_status(
    tx: &Connection,
    status: Signed<StatusUpdate>,
    approvers: &[String],
) -> Result<Vec<Pushed>, ApiError> {
    let data = json_text(&StreamEvent::Status { status })?;
    enqueue(tx, approvers, "status", |_| Ok(data.clone()))
}

/// The request and its status, for its requester.
pub fn view(gw: &Gateway, requester: &str, id: &str) -> Result<RequestView, ApiError> {
    gw.store.read(|c| {
        let signed: Option<(String, String)> = crate::store::query_row(
            c,
            "SELECT signed, requester FROM requests WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql)?;
        let Some((signed, owner)) = signed.filter(|(_, owner)| owner == requester) else {
            return Err(ApiError::not_found(
                "unknown_request",
                format!("There is no request {id} from {requester}."),
            ));
        };
        let _ = owner;
        let request: Signed<ApprovalRequest> =
            serde_json::from_str(&signed).map_err(|e| ApiError::internal("stored request", e))?;
        let (status, _) = status_of(gw, c, id)?;
        Ok(RequestView { request, status })
    })
}

/// Waits up to `wait` for the request to reach a final state, then returns its view.
pub async fn view_wait(
    gw: &Gateway,
    requester: &str,
    id: &str,
    wait: Duration,
) -> Result<RequestView, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let changed = gw.changes.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let v = view(gw, requester, id)?;
        if v.status.body.state.is_final() || tokio::time::Instant::now() >= deadline {
            return Ok(v);
        }
        let _ = tokio::time::timeout_at(deadline, changed).await;
    }
}

/// The requester withdraws its own pending request.
pub fn withdraw(gw: &Gateway, requester: &str, id: &str) -> Result<RequestView, ApiError> {
    let now = gw.now();
    gw.store
        .write_publish(|tx| -> Result<((), Vec<Pushed>), ApiError> {
            let n = crate::store::execute(
                tx,
                "UPDATE requests SET state = 'withdrawn', closed_at = ?3
                     WHERE id = ?1 AND requester = ?2 AND state = 'pending'",
                params![id, requester, now],
            )
            .map_err(sql)?;
            if n == 0 {
                return Err(ApiError::conflict(
                    "not_withdrawable",
                    format!("There is no pending request {id} from {requester} to withdraw."),
                ));
            }
            audit_append(
                tx,
                now,
                "request.withdrawn",
                Some(id),
                json!({"by": requester}),
            )?;
            Ok(((), push_status(gw, tx, id)?))
        })?;
    gw.changes.notify_waiters();
    view(gw, requester, id)
}

/// Marks due pending requests expired and pushes the change. Returns how many expired.
pub fn expire_due(gw: &Gateway) -> Result<usize, ApiError> {
    let now = gw.now();
    let n = gw.store.write_publish(
        |tx| -> Result<(usize, Vec<Pushed>), ApiError> {
            let ids: Vec<String> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT id FROM requests WHERE state = 'pending' AND expires_at <= ?1 LIMIT 500",
                    )
                    .map_err(sql)?;
                let rows = stmt
                    .query_map(params![now], |r| r.get(0))
                    .map_err(sql)?
                    .collect::<Result<Vec<String>, _>>()
                    .map_err(sql)?;
                rows
            };
            let mut pushed = Vec::new();
            for id in &ids {
                crate::store::execute(tx,
                    "UPDATE requests SET state = 'expired', closed_at = ?2 WHERE id = ?1",
                    params![id, now],
                )
                .map_err(sql)?;
                audit_append(tx, now, "request.expired", Some(id), json!({}))?;
                pushed.extend(push_status(gw, tx, id)?);
            }
            Ok((ids.len(), pushed))
        }
    )?;
    if n > 0 {
        gw.changes.notify_waiters();
    }
    Ok(n)
}

/// Background task: expires requests on the gateway's clock.
pub async fn expiry_sweeper(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(Duration::from_millis(gw.config.expiry_sweep_ms.max(10)));
    loop {
        tick.tick().await;
        if let Err(e) = expire_due(&gw) {
            tracing::warn!(%e, "expiry sweep failed");
        }
    }
}

/// What a decision did.
pub enum Applied {
    New(Signed<Receipt>),
    /// The same signed decision was delivered before: its original receipt.
    Replay(Signed<Receipt>),
}

impl Applied {
    pub fn receipt(self) -> Signed<Receipt> {
        match self {
            Applied::New(r) | Applied::Replay(r) => r,
        }
    }
}

/// Verifies and applies a decision. Every refusal is written to the audit log.
pub fn decide(gw: &Gateway, body: &[u8]) -> Result<Applied, ApiError> {
    let signed = match Signed::<Decision>::decode(body) {
        Ok(s) => s,
        Err(e) => {
            let err = ApiError::bad_request("invalid_decision", e.to_string());
            audit_rejection(gw, None, &err);
            return Err(err);
        }
    };
    // The decision is stored as the device sent it: those are the bytes it signed over (in
    // canonical form), and keeping them spares serialising the assertion again. A body that
    // decoded is UTF-8 JSON; the fallback only guards that.
    let signed_text = match std::str::from_utf8(body) {
        Ok(text) => text.to_owned(),
        Err(_) => json_text(&signed)?,
    };
    match apply(gw, &signed, signed_text) {
        Ok(a) => Ok(a),
        Err(err) => {
            if err.code == "wrong_match_code" {
                if let Err(e) = count_match_failure(gw, &signed.body.request_id) {
                    tracing::warn!(%e, "recording a match-code failure failed");
                }
            }
            audit_rejection(gw, Some(&signed.body), &err);
            Err(err)
        }
    }
}

fn audit_rejection(gw: &Gateway, d: Option<&Decision>, err: &ApiError) {
    let now = gw.now();
    let detail = json!({
        "decision_id": d.map(|d| d.decision_id.clone()),
        "approver": d.map(|d| d.approver.clone()),
        "device_id": d.map(|d| d.device_id.clone()),
        "code": err.code,
        "message": err.message,
    });
    let request_id = d.map(|d| d.request_id.clone());
    let r = gw.store.write(|tx| -> Result<_, StoreError> {
        audit_append(tx, now, "decision.rejected", request_id.as_deref(), detail)
    });
    if let Err(e) = r {
        tracing::error!(%e, "could not audit a rejected decision");
    }
}

/// Counts a wrong match code; at the configured limit the request is denied, so that the code
/// cannot be guessed.
fn count_match_failure(gw: &Gateway, request_id: &str) -> Result<(), ApiError> {
    let now = gw.now();
    let limit = gw.config.max_match_failures.max(1);
    gw.store
        .write_publish(|tx| -> Result<((), Vec<Pushed>), ApiError> {
            crate::store::execute(
                tx,
                "UPDATE requests SET match_failures = match_failures + 1 WHERE id = ?1",
                params![request_id],
            )
            .map_err(sql)?;
            let n = crate::store::execute(
                tx,
                "UPDATE requests SET state = 'denied', closed_at = ?3
                     WHERE id = ?1 AND state = 'pending' AND match_failures >= ?2",
                params![request_id, limit, now],
            )
            .map_err(sql)?;
            if n == 0 {
                return Ok(((), Vec::new()));
            }
            audit_append(
                tx,
                now,
                "request.denied",
                Some(request_id),
                json!({"reason": format!("{limit} wrong match codes")}),
            )?;
            Ok(((), push_status(gw, tx, request_id)?))
        })?;
    gw.changes.notify_waiters();
    Ok(())
}

fn passkey_error(e: WebauthnError) -> ApiError {
    match e {
        WebauthnError::UserNotVerified => ApiError::forbidden(
            "user_not_verified",
            "The passkey assertion lacks user verification, which approvals require.",
        ),
        WebauthnError::MismatchedChallenge => ApiError::forbidden(
            "assertion_not_for_this_request",
            "The passkey assertion was made for a different challenge, not for this request.",
        ),
        WebauthnError::CredentialPossibleCompromise => ApiError::forbidden(
            "passkey_counter_regressed",
            "The passkey's signature counter went backwards; the credential may be cloned.",
        ),
        WebauthnError::InvalidRPOrigin => ApiError::forbidden(
            "wrong_webauthn_origin",
            "The passkey assertion names a different WebAuthn origin.",
        ),
        other => ApiError::forbidden(
            "passkey_rejected",
            format!("The passkey assertion does not verify: {other}."),
        ),
    }
}

/// A stored WebAuthn ceremony state and when it was used.
type ChallengeRow = (String, Option<i64>);

/// What a decision needs read before the write lock: the device key, the challenge, the
/// stored request and the votes recorded so far.
type PreRead = (
    Option<String>,
    Option<ChallengeRow>,
    Option<String>,
    Vec<Vote>,
);

fn apply(
    gw: &Gateway,
    signed: &Signed<Decision>,
    signed_text: String,
) -> Result<Applied, ApiError> {
    let now = gw.now();
    let d = &signed.body;

    // The expensive checks (the device signature and the WebAuthn assertion) run before the
    // write transaction, outside the store's lock, so decisions verify in parallel. The
    // transaction then re-checks everything that could have changed meanwhile: the device
    // row, and the challenge, which is consumed atomically (`used_at IS NULL`).
    let (device_key_text, challenge, stored_request, votes_before) =
        gw.store.read(|c| -> Result<PreRead, ApiError> {
            let key: Option<String> = c
                .prepare_cached("SELECT public_key FROM devices WHERE id = ?1")
                .and_then(|mut st| st.query_row(params![d.device_id], |r| r.get(0)).optional())
                .map_err(sql)?;
            let challenge: Option<ChallengeRow> = c
                .prepare_cached(
                    "SELECT state, used_at FROM challenges WHERE request_id = ?1 AND approver = ?2",
                )
                .and_then(|mut st| {
                    st.query_row(params![d.request_id, d.approver], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                })
                .map_err(sql)?;
            // A request's signed content never changes after creation; only its state does,
            // and that is read again inside the transaction.
            let request: Option<String> = crate::store::query_row(
                c,
                "SELECT signed FROM requests WHERE id = ?1",
                params![d.request_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
            let votes = votes_of(c, &d.request_id)?;
            Ok((key, challenge, request, votes))
        })?;
    let decision_digest = match &device_key_text {
        Some(text) => {
            let key = PublicKey::parse("devices.public_key", text)
                .map_err(|e| ApiError::internal("stored device key", e))?;
            signed.verify_and_digest(&key).map_err(|e| match e {
                countersign_protocol::ProtocolError::BadSignature => ApiError::unauthorized(
                    "bad_decision_signature",
                    "The decision's device signature does not verify.",
                ),
                other => ApiError::from(other),
            })?
        }
        None => signed.digest()?,
    };
    let request: Option<Signed<ApprovalRequest>> = stored_request
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| ApiError::internal("stored request", e))?;
    // Sign the receipt and the status outside the lock (see `Outcome`), once the device's
    // signature has verified.
    let prepared = match (&request, &device_key_text) {
        (Some(r), Some(_)) => Some(outcome(gw, d, r, decision_digest, now, votes_before)?),
        _ => None,
    };
    let needs_passkey =
        d.verdict == Verdict::Approve || gw.config.deny_requires_passkey || d.assertion.is_some();
    let mut verified: Option<webauthn_rs::prelude::AuthenticationResult> = None;
    if let (true, Some(assertion), Some((state, None))) = (
        needs_passkey && device_key_text.is_some(),
        &d.assertion,
        &challenge,
    ) {
        let cred: PublicKeyCredential =
            PublicKeyCredential::deserialize(assertion).map_err(|e| {
                ApiError::bad_request(
                    "bad_assertion",
                    format!("The passkey assertion is malformed: {e}."),
                )
            })?;
        let state: PasskeyAuthentication =
            serde_json::from_str(state).map_err(|e| ApiError::internal("stored challenge", e))?;
        verified = Some(
            gw.webauthn
                .finish_passkey_authentication(&cred, &state)
                .map_err(passkey_error)?,
        );
    }

    let out = gw.store.write_publish(
        |tx| -> Result<(Applied, Vec<Pushed>), ApiError> {
            let device: Option<(String, String, Option<i64>)> = crate::store::query_row(tx,
                    "SELECT approver, public_key, revoked_at FROM devices WHERE id = ?1",
                    params![d.device_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(sql)?;
            let (device_approver, device_key, revoked) = device.ok_or_else(|| {
                ApiError::forbidden("unknown_device", "The deciding device is not paired here.")
            })?;
            if revoked.is_some() {
                return Err(ApiError::forbidden(
                    "device_revoked",
                    "The deciding device's pairing was revoked.",
                ));
            }
            if device_approver != d.approver {
                return Err(ApiError::forbidden(
                    "device_not_for_approver",
                    format!("The device is paired to {device_approver}, not to {}.", d.approver),
                ));
            }
            // The signature was verified above against this same key.
            if device_key_text.as_deref() != Some(device_key.as_str()) {
                return Err(ApiError::conflict(
                    "device_changed",
                    "The device's pairing changed while the decision was being verified.",
                ));
            }

            // Idempotency is checked only after the signature, so a copied body earns nothing.
            let earlier: Option<(String, String)> = crate::store::query_row(tx,
                    "SELECT digest, receipt FROM decisions WHERE decision_id = ?1",
                    params![d.decision_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql)?;
            if let Some((digest, receipt)) = earlier {
                if digest == decision_digest.to_hex() {
                    let receipt = serde_json::from_str(&receipt)
                        .map_err(|e| ApiError::internal("stored receipt", e))?;
                    return Ok((Applied::Replay(receipt), Vec::new()));
                }
                return Err(ApiError::conflict(
                    "decision_id_reused",
                    "This decision id was already used for a different decision.",
                ));
            }

            let unknown = || {
                ApiError::not_found(
                    "unknown_request",
                    format!("There is no request {} on this gateway.", d.request_id),
                )
            };
            let row: Option<(String, String, i64, Option<String>)> = crate::store::query_row(
                tx,
                "SELECT digest, state, expires_at, match_code FROM requests WHERE id = ?1",
                params![d.request_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(sql)?;
            let (digest, state, expires_at, match_code) = row.ok_or_else(unknown)?;
            let request = request.as_ref().ok_or_else(unknown)?;
            if d.gateway != gw.fingerprint {
                return Err(ApiError::bad_request(
                    "wrong_gateway",
                    "The decision names a different gateway key.",
                ));
            }
            if d.request_digest.to_hex() != digest {
                return Err(ApiError::conflict(
                    "request_digest_mismatch",
                    "The decision was made for a different version of this request.",
                ));
            }
            if !request.body.approvers.iter().any(|a| a == &d.approver) {
                return Err(ApiError::forbidden(
                    "not_eligible",
                    format!("{} is not an approver of this request.", d.approver),
                ));
            }
            if state == "expired" {
                return Err(ApiError::gone(
                    "request_expired",
                    "The request expired before the decision reached the gateway.",
                ));
            }
            if state != "pending" {
                return Err(ApiError::conflict(
                    "request_closed",
                    format!("The request is already {state}."),
                ));
            }
            if now >= expires_at {
                return Err(ApiError::gone(
                    "request_expired",
                    "The request expired before the decision reached the gateway.",
                ));
            }
            if now < request.body.not_before {
                return Err(ApiError::conflict(
                    "request_not_yet_valid",
                    "The request is not valid yet.",
                ));
            }
            if d.verdict == Verdict::Approve {
                if let Some(expected) = &match_code {
                    let typed = d.match_code.as_deref().ok_or_else(|| {
                        ApiError::bad_request(
                            "match_code_required",
                            "This request requires the match code the requester sees.",
                        )
                    })?;
                    use subtle::ConstantTimeEq;
                    let ok: bool = typed.trim().as_bytes().ct_eq(expected.as_bytes()).into();
                    if !ok {
                        return Err(ApiError::forbidden(
                            "wrong_match_code",
                            "The match code does not match the one the requester was shown.",
                        ));
                    }
                }
            }
            if needs_passkey {
                let assertion = d.assertion.as_ref().ok_or_else(|| {
                    ApiError::bad_request(
                        "passkey_required",
                        "This decision needs a passkey assertion.",
                    )
                })?;
                if verified.is_none() {
                    // Not parsed before the transaction: name a malformed assertion as such.
                    PublicKeyCredential::deserialize(assertion).map_err(
                        |e| {
                            ApiError::bad_request(
                                "bad_assertion",
                                format!("The passkey assertion is malformed: {e}."),
                            )
                        },
                    )?;
                }
                let challenge: Option<Option<i64>> = crate::store::query_row(
                    tx,
                    "SELECT used_at FROM challenges WHERE request_id = ?1 AND approver = ?2",
                    params![d.request_id, d.approver],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
                let used = challenge.ok_or_else(|| {
                    ApiError::conflict(
                        "no_challenge",
                        "There is no passkey challenge for this request and approver.",
                    )
                })?;
                if used.is_some() {
                    return Err(ApiError::conflict(
                        "assertion_replayed",
                        "The passkey challenge for this request was already used; an assertion is accepted only once.",
                    ));
                }
                // Verified before the transaction against this challenge while it was unused.
                let result = verified.as_ref().ok_or_else(|| {
                    ApiError::conflict(
                        "assertion_replayed",
                        "The passkey challenge for this request was already used.",
                    )
                })?;
                let consumed = crate::store::execute(tx,
                        "UPDATE challenges SET used_at = ?3
                         WHERE request_id = ?1 AND approver = ?2 AND used_at IS NULL",
                        params![d.request_id, d.approver, now],
                    )
                    .map_err(sql)?;
                if consumed != 1 {
                    return Err(ApiError::conflict(
                        "assertion_replayed",
                        "The passkey challenge for this request was already used.",
                    ));
                }
                if result.needs_update() {
                    // Only the credential that made the assertion changes, as
                    // `Passkey::update_credential` would change it: the counter only forward
                    // (approvals by one passkey may arrive out of order), backup eligibility
                    // only from false to true, the backup state to the one of the assertion
                    // with the highest counter so far (the right-hand side reads old values).
                    crate::store::execute(
                        tx,
                        "UPDATE passkeys SET counter = max(counter, ?3),
                             backup_eligible = max(backup_eligible, ?4),
                             backup_state = CASE WHEN ?3 >= counter THEN ?5 ELSE backup_state END
                         WHERE cred_id = ?1 AND approver = ?2",
                        params![
                            cred_id_text(result.cred_id().as_ref()),
                            d.approver,
                            result.counter(),
                            result.backup_eligible(),
                            result.backup_state()
                        ],
                    )
                    .map_err(sql)?;
                }
            }

            // Checked after the passkey so that a replayed assertion is named as such.
            let already: bool = crate::store::query_row(tx,
                    "SELECT 1 FROM decisions WHERE request_id = ?1 AND approver = ?2",
                    params![d.request_id, d.approver],
                    |_| Ok(()),
                )
                .optional()
                .map_err(sql)?
                .is_some();
            if already {
                return Err(ApiError::conflict(
                    "already_decided",
                    format!("{} has already decided this request.", d.approver),
                ));
            }
            // The outcome was signed before the lock from the votes then recorded; it is used
            // only if those votes are still exactly the recorded ones.
            let before = votes_of(tx, &d.request_id)?;
            let outcome = match prepared {
                Some(p) if p.votes_before == before => p,
                _ => outcome(gw, d, request, decision_digest, now, before)?,
            };
            let new_state = outcome.new_state;
            crate::store::execute(tx,
                "INSERT INTO decisions(decision_id, request_id, approver, verdict, digest, signed, receipt, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    d.decision_id,
                    d.request_id,
                    d.approver,
                    d.verdict.as_str(),
                    decision_digest.to_hex(),
                    signed_text,
                    outcome.receipt_text,
                    now
                ],
            )
            .map_err(sql)?;
            if new_state != RequestState::Pending {
                crate::store::execute(tx,
                    "UPDATE requests SET state = ?2, closed_at = ?3 WHERE id = ?1",
                    params![d.request_id, new_state.as_str(), now],
                )
                .map_err(sql)?;
            }
            audit_append(
                tx,
                now,
                "decision.accepted",
                Some(&d.request_id),
                json!({
                    "decision_id": d.decision_id,
                    "approver": d.approver,
                    "device_id": d.device_id,
                    "verdict": d.verdict,
                    "decision_digest": decision_digest,
                    "request_state": new_state,
                }),
            )?;
            let data = outcome.status_data;
            let pushed = enqueue(tx, &request.body.approvers, "status", |_| Ok(data.clone()))?;
            Ok((Applied::New(outcome.receipt), pushed))
        }
    )?;
    gw.changes.notify_waiters();
    Ok(out)
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
