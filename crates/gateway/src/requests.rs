//! Creating approval requests (`POST /v2/requests`): the time to live and the approvers named,
//! the policy's routing (`routing`: stages, constraints and addressees), collapsing an
//! identical pending request into the first, the rate limit and reporters' blocks, the match
//! code, the gateway's signature, one WebAuthn authentication per addressee (its once-only
//! state in table `challenges`) and one stream event per addressee, all in one write.

use axum::http::StatusCode;
use countersign_protocol::api::{CreatedRequest, ErrorCode, NewRequest};
use countersign_protocol::types::Decode as _;
use countersign_protocol::{ApprovalRequest, Digest, Mode, Signed, StreamEvent, PROTOCOL_VERSION};
use serde_json::json;
use sha2::Digest as _;

use crate::error::{json_text, ApiError};
use crate::gateway::Gateway;
use crate::hub::Pushed;
use crate::passkeys::passkeys_of;
use crate::reports::blocked_by;
use crate::routing::{route, Refused, Routed};
use crate::store::requests::NewRequest as NewRow;

fn random_match_code() -> String {
    use rand::Rng as _;
    format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32))
}

/// Creates, signs, stores and pushes a request from the authenticated `requester`. A refusal
/// by the policy, and a policy that gives no answer, are audited with the rule and the policy's
/// hash (`request.policy_refused`, `policy.error`).
pub fn create_request(
    gw: &Gateway,
    requester: &str,
    new: NewRequest,
) -> Result<CreatedRequest, ApiError> {
    create_request_as(gw, requester, Vouched::default(), new)
}

/// What an integration that creates a request vouches for and asks beyond a [`NewRequest`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Vouched<'a> {
    /// The requester's groups (a Kubernetes user's), which the policy reads as
    /// `input.requester.groups`.
    pub groups: &'a [String],
    /// The longest grant window the integration honours: the signed `grant_seconds` is the
    /// shorter of it and the policy's.
    pub grant_seconds: Option<u32>,
}

/// The request an integration asks for: what it describes, with no approvers named (the
/// policy routes it), no risk claimed and no reason (the requester gave none).
pub fn integration_request(
    action: String,
    resource: String,
    summary: String,
    detail: String,
    ttl_seconds: u32,
) -> NewRequest {
    NewRequest {
        action,
        resource,
        risk: None,
        summary,
        detail,
        reason: String::new(),
        ttl_seconds,
        approvers: Vec::new(),
        min_approvals: 0,
        require_match: false,
        break_glass: false,
    }
}

/// [`create_request`] for a requester that an integration vouches for (a Kubernetes user).
pub fn create_request_as(
    gw: &Gateway,
    requester: &str,
    vouched: Vouched<'_>,
    new: NewRequest,
) -> Result<CreatedRequest, ApiError> {
    create(gw, requester, vouched, new).map_err(|Refused { error, rule }| {
        audit_policy_refusal(gw, requester, &error, rule.as_deref());
        error
    })
}

fn audit_policy_refusal(gw: &Gateway, requester: &str, error: &ApiError, rule: Option<&str>) {
    let kind = match (&error.code, rule) {
        (ErrorCode::PolicyError, _) => "policy.error",
        (_, Some(_)) => "request.policy_refused",
        _ => return,
    };
    let policy_hash = gw.policy().hash.clone();
    let written = gw.store.write(|tx| {
        tx.audit_append(
            gw.now(),
            kind,
            None,
            json!({
                "requester": requester,
                "code": error.code,
                "rule": rule,
                "message": error.message,
                "policy_hash": policy_hash,
            }),
        )
    });
    if let Err(e) = written {
        tracing::error!(%e, kind, "could not audit a refusal by the policy");
    }
}

fn create(
    gw: &Gateway,
    requester: &str,
    vouched: Vouched<'_>,
    new: NewRequest,
) -> Result<CreatedRequest, Refused> {
    let now = gw.now();
    let ttl = if new.ttl_seconds == 0 {
        gw.config.default_ttl_seconds
    } else {
        new.ttl_seconds
    };
    if ttl > gw.config.max_ttl_seconds {
        return Err(ApiError::bad_request(
            ErrorCode::TtlTooLong,
            format!(
                "The time to live of {ttl} s is longer than this gateway allows ({} s).",
                gw.config.max_ttl_seconds
            ),
        )
        .into());
    }
    let named = crate::directory::sorted_unique(
        &new.approvers
            .iter()
            .map(|a| a.trim().to_string())
            .collect::<Vec<_>>(),
    );
    if named.len() != new.approvers.len() {
        return Err(ApiError::bad_request(
            ErrorCode::DuplicateApprover,
            "An approver is listed more than once.",
        )
        .into());
    }

    crate::reload::ensure_current(gw)?;
    let result =
        gw.store
            .write_publish(|tx| -> Result<(CreatedRequest, Vec<Pushed>), Refused> {
                let routing = std::time::Instant::now();
                let routed = route(gw, tx, requester, vouched.groups, &new, &named, now);
                gw.metrics.policy_evaluated(routing.elapsed());
                let routed = routed?;
                let body = signed_body(gw, requester, &new, &routed, ttl, vouched, now)?;
                create_in(gw, tx, requester, body, routed, now)
            })?;
    gw.changes.notify_waiters();
    Ok(result)
}

/// The request to sign: what the requester asked, with the policy's stages and constraints.
fn signed_body(
    gw: &Gateway,
    requester: &str,
    new: &NewRequest,
    routed: &Routed,
    ttl: u32,
    vouched: Vouched<'_>,
    now: i64,
) -> Result<ApprovalRequest, ApiError> {
    let outcome = &routed.outcome;
    // The policy's longest wait shortens the request's time to live, never lengthens it.
    let ttl = outcome.max_wait_seconds.map_or(ttl, |w| ttl.min(w));
    let body = ApprovalRequest {
        v: PROTOCOL_VERSION,
        id: uuid::Uuid::now_v7().to_string(),
        gateway: gw.fingerprint.clone(),
        action: new.action.clone(),
        resource: new.resource.clone(),
        risk: crate::routing::effective_risk(new, outcome),
        summary: new.summary.clone(),
        detail: new.detail.clone(),
        requester: requester.to_string(),
        reason: new.reason.clone(),
        created_at: now,
        not_before: now,
        expires_at: now + i64::from(ttl),
        approvers: Vec::new(),
        min_approvals: 0,
        match_required: new.require_match
            || outcome.require_match
            || gw.config.match_required_for(&new.action, &new.resource),
        deny_needs_passkey: gw.config.deny_requires_passkey || outcome.deny_requires_passkey,
        stages: routed.stages.clone(),
        mode: outcome.mode,
        distinct_people: outcome.distinct_people,
        requester_person: routed.requester.person.clone(),
        policy: Some(routed.policy.clone()),
        grant_seconds: match (outcome.grant_seconds, vouched.grant_seconds) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
        windows: outcome.windows.clone(),
    };
    body.validate()
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidRequest, e.to_string()))?;
    Ok(body)
}

/// Stores, signs and queues the routed request inside `tx`, or answers the identical pending
/// one it collapses into.
fn create_in(
    gw: &Gateway,
    tx: &dyn crate::store::Tx,
    requester: &str,
    body: ApprovalRequest,
    routed: Routed,
    now: i64,
) -> Result<(CreatedRequest, Vec<Pushed>), Refused> {
    let match_required = body.match_required;
    let dup_key = {
        let key = json!([
            body.requester,
            body.action,
            body.resource,
            body.risk,
            body.summary,
            body.detail,
            body.reason,
            body.stages,
            body.match_required,
            body.deny_needs_passkey,
            body.mode,
            body.distinct_people,
            body.requester_person,
            body.policy,
            body.grant_seconds,
            body.windows,
            body.expires_at - body.created_at
        ]);
        hex::encode(sha2::Sha256::digest(json_text(&key)?.as_bytes()))
    };
    // Collapse an identical pending request from the same requester into the first.
    if let Some(existing) = tx.pending_duplicate(&dup_key, now)? {
        let request: Signed<ApprovalRequest> = serde_json::from_str(&existing.signed)
            .map_err(|e| ApiError::internal("stored request", e))?;
        let digest = Digest::parse("requests.digest", &existing.digest)
            .map_err(|e| ApiError::internal("stored digest", e))?;
        tx.audit_append(
            now,
            "request.collapsed",
            Some(&request.body.id),
            json!({"requester": requester}),
        )?;
        return Ok((
            CreatedRequest {
                request,
                digest,
                match_code: existing.match_code,
                duplicate: true,
            },
            Vec::new(),
        ));
    }
    let recent = tx.requests_since(requester, now - 60)?;
    if recent >= i64::from(gw.config.rate_limit_per_minute) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!(
                "{requester} created {recent} requests in the last minute; the limit is {}.",
                gw.config.rate_limit_per_minute
            ),
        )
        .into());
    }
    let blocked = blocked_by(tx, requester, &routed.addressees)?;
    if !blocked.is_empty() {
        return Err(ApiError::forbidden(
            ErrorCode::RequesterBlocked,
            format!(
                "{} reported an unexpected request from {requester}; the gateway's operator must lift the block (countersign-gateway unblock) before {requester} can ask them again.",
                blocked.join(", ")
            ),
        )
        .into());
    }
    // One WebAuthn authentication per addressee, each approver's ceremony state kept once; a
    // request approved at once takes no decision, and one addressed to more approvers than
    // `prechallenge_max` has each of them ask for theirs when they decide.
    let prechallenged = routed.addressees.len() <= gw.config.prechallenge_max;
    let mut challenges = Vec::with_capacity(routed.addressees.len());
    for a in routed
        .addressees
        .iter()
        .filter(|_| body.mode.is_ask() && prechallenged)
    {
        let passkeys = passkeys_of(tx, a)?;
        let (rcr, state) = gw
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| ApiError::internal("start passkey authentication", e))?;
        challenges.push((a.clone(), rcr, state));
    }
    let signed = Signed::sign(&gw.key, body.clone()).map_err(ApiError::from)?;
    let digest = signed.digest().map_err(ApiError::from)?;
    let match_code = match_required.then(random_match_code);
    tx.insert_request(&NewRow {
        id: &body.id,
        signed: &json_text(&signed)?,
        digest: &digest.to_hex(),
        requester,
        created_at: now,
        expires_at: body.expires_at,
        min_approvals: body.quorum_total(),
        match_code: match_code.as_deref(),
        dup_key: &dup_key,
        approved_at_once: !body.mode.is_ask(),
    })?;
    let mut pushed = Vec::new();
    if body.mode == Mode::BreakGlass {
        pushed = tell_after_the_fact(gw, tx, &signed, &routed, now)?;
    } else if body.mode.is_ask() && !prechallenged {
        tx.insert_on_demand_all(&body.id, &routed.addressees)?;
        pushed = without_challenge(gw, tx, &signed, &routed.addressees)?;
    }
    for (a, rcr, state) in challenges {
        let bound = crate::bind::bind(
            gw,
            tx,
            &crate::bind::For {
                request_id: &body.id,
                request_digest: digest,
                approver: &a,
                expires_at: body.expires_at,
            },
            (rcr, state),
        )?;
        tx.insert_challenge(&body.id, &a, &bound.state)?;
        let event = StreamEvent::Request {
            request: Box::new(signed.clone()),
            challenge: bound.options,
            signed_challenge: Some(Box::new(bound.signed)),
        };
        pushed.extend(crate::envelope::enqueue(
            gw,
            tx,
            std::slice::from_ref(&a),
            &event,
        )?);
    }
    tx.audit_append(
        now,
        "request.created",
        Some(&body.id),
        json!({
            "requester": requester,
            "action": body.action,
            "resource": body.resource,
            "approvers": routed.addressees,
            "stages": body.stages,
            "rule": routed.policy.rule,
            "policy_hash": routed.policy.policy_hash,
            "mode": body.mode,
            "challenges": if prechallenged { "pre-issued" } else { "on demand" },
            "request_digest": digest,
        }),
    )?;
    if body.mode == Mode::Auto {
        tx.audit_append(
            now,
            "request.auto_approved",
            Some(&body.id),
            json!({
                "requester": requester,
                "rule": routed.policy.rule,
                "policy_hash": routed.policy.policy_hash,
                "risk": body.risk,
                "ceiling": gw.config.auto_approve_max_risk.as_str(),
                "request_digest": digest,
            }),
        )?;
    }
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

/// Breaking glass: the request is approved as it is stored, and every eligible approver is
/// told after the fact. Each gets the request, without a challenge since there is nothing to
/// decide, and its approved status, which they acknowledge (`POST /v2/acks`). Audited
/// `request.break_glass` with the reason.
fn tell_after_the_fact(
    gw: &Gateway,
    tx: &dyn crate::store::Tx,
    signed: &Signed<ApprovalRequest>,
    routed: &Routed,
    now: i64,
) -> Result<Vec<Pushed>, ApiError> {
    let body = &signed.body;
    let mut pushed = Vec::new();
    for a in &routed.addressees {
        tx.insert_addressee(&body.id, a, now)?;
    }
    pushed.extend(without_challenge(gw, tx, signed, &routed.addressees)?);
    pushed.extend(crate::status::push_status(gw, tx, &body.id)?);
    tx.audit_append(
        now,
        "request.break_glass",
        Some(&body.id),
        json!({
            "requester": body.requester,
            "reason": body.reason,
            "rule": routed.policy.rule,
            "policy_hash": routed.policy.policy_hash,
            "approvers": routed.addressees,
        }),
    )?;
    Ok(pushed)
}

/// The `request` event for `addressees`, without a challenge: they are told after the fact, or
/// ask for theirs when they decide. Sent once to the request's audience when they are many.
fn without_challenge(
    gw: &Gateway,
    tx: &dyn crate::store::Tx,
    signed: &Signed<ApprovalRequest>,
    addressees: &[String],
) -> Result<Vec<Pushed>, ApiError> {
    let event = StreamEvent::Request {
        request: Box::new(signed.clone()),
        challenge: serde_json::Value::Null,
        signed_challenge: None,
    };
    crate::envelope::enqueue_about(gw, tx, &signed.body.id, addressees, &event)
}
