//! Creating approval requests (`POST /v1/requests`): the time to live and approver list,
//! collapsing an identical pending request into the first, the rate limit and reporters'
//! blocks, the match code, the gateway's signature, one WebAuthn authentication per eligible
//! approver (its once-only state in table `challenges`) and one stream event per approver, all
//! in one write.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use countersign_protocol::api::{CreatedRequest, ErrorCode, NewRequest};
use countersign_protocol::types::Decode as _;
use countersign_protocol::{ApprovalRequest, Digest, Risk, Signed, StreamEvent, PROTOCOL_VERSION};
use serde_json::json;
use sha2::Digest as _;

use crate::error::{json_text, ApiError};
use crate::gateway::Gateway;
use crate::hub::Pushed;
use crate::passkeys::passkeys_of;
use crate::reports::blocked_by;
use crate::store::requests::NewRequest as NewRow;

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
            ErrorCode::TtlTooLong,
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
            ErrorCode::DuplicateApprover,
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
        deny_needs_passkey: gw.config.deny_requires_passkey,
    };
    body.validate()
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidRequest, e.to_string()))?;
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
                ));
            }
            let blocked = blocked_by(tx, requester, &body.approvers)?;
            if !blocked.is_empty() {
                return Err(ApiError::forbidden(
                    ErrorCode::RequesterBlocked,
                    format!(
                        "{} reported an unexpected request from {requester}; the gateway's operator must lift the block (countersign-gateway unblock) before {requester} can ask them again.",
                        blocked.join(", ")
                    ),
                ));
            }
            // Separation of duties, on the person: the directory says who each name is.
            use crate::directory::{person_of, IdentityKind};
            let asking = person_of(tx, IdentityKind::Token, requester)?;
            for a in &body.approvers {
                match person_of(tx, IdentityKind::Approver, a)? {
                    None => {
                        return Err(ApiError::bad_request(
                            ErrorCode::UnknownApprover,
                            format!("{a} is not in the gateway's directory."),
                        ))
                    }
                    Some(p) if asking.as_deref() == Some(p.as_str()) => {
                        return Err(ApiError::forbidden(
                            ErrorCode::OwnRequest,
                            format!("{a} is {p}, who asks for this request ({requester}): nobody approves their own request."),
                        ))
                    }
                    Some(_) => {}
                }
            }
            let mut challenges = Vec::with_capacity(body.approvers.len());
            for a in &body.approvers {
                let passkeys = passkeys_of(tx, a)?;
                if passkeys.is_empty() {
                    return Err(ApiError::bad_request(
                        ErrorCode::UnknownApprover,
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
            tx.insert_request(&NewRow {
                id: &body.id,
                signed: &json_text(&signed)?,
                digest: &digest.to_hex(),
                requester,
                created_at: now,
                expires_at: body.expires_at,
                min_approvals: body.min_approvals,
                match_code: match_code.as_deref(),
                dup_key: &dup_key,
            })?;
            let mut pushed = Vec::new();
            for (a, rcr, state) in challenges {
                tx.insert_challenge(&body.id, &a, &json_text(&state)?)?;
                let event = StreamEvent::Request {
                    request: signed.clone(),
                    challenge: serde_json::to_value(&rcr)
                        .map_err(|e| ApiError::internal("challenge", e))?,
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
