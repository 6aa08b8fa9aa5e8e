//! An approver revokes their own approval (`POST /v2/decisions` with verdict `revoke`), while
//! its grant is live: the request is approved, the approver's approval is among its votes, and
//! the grant is not revoked, not used and inside its window (`not_revocable` otherwise). Like
//! an approval it needs the device's signature and a passkey assertion over a challenge, which
//! the device asks for on demand (`challenges`). It is no vote: it is kept apart from the
//! decisions (table `revocations`, with its receipt), and its effect is one status change, the
//! grant's `revoked_at` and `revoked_by`, pushed to the request's addressees.

use countersign_protocol::api::ErrorCode;
use countersign_protocol::{ApprovalRequest, Decision, Receipt, Signed, StreamEvent, Verdict};
use serde_json::json;

use crate::ceremony;
use crate::error::{json_text, ApiError};
use crate::gateway::Gateway;
use crate::hub::Pushed;
use crate::signed_decision::{
    check_device, parse_stored_request, verify_device_signature, Applied,
};
use crate::status::status_of;
use crate::store::acks::NewRevocation;
use crate::store::Tx;

/// Whether `approver` may revoke their approval of request `id` at `now`: it is approved with a
/// live grant, and their approval is among its votes (`not_revocable`).
pub(crate) fn check_revocable(
    gw: &Gateway,
    tx: &dyn Tx,
    id: &str,
    approver: &str,
    now: i64,
) -> Result<(), ApiError> {
    let approved = tx
        .votes(id)?
        .iter()
        .any(|v| v.approver == approver && v.verdict == Verdict::Approve);
    if !approved {
        return Err(not_revocable(
            id,
            &format!("{approver} has no approval of it to revoke"),
        ));
    }
    check_grant_live(gw, tx, id, now)
}

fn not_revocable(id: &str, why: &str) -> ApiError {
    ApiError::conflict(
        ErrorCode::NotRevocable,
        format!("The approval of {id} cannot be revoked: {why}."),
    )
}

/// Whether request `id` is approved with a grant that is live at `now`: not revoked, not used
/// and inside its window (`not_revocable`, naming which).
pub(crate) fn check_grant_live(
    gw: &Gateway,
    tx: &dyn Tx,
    id: &str,
    now: i64,
) -> Result<(), ApiError> {
    let not_revocable = |why: &str| not_revocable(id, why);
    let (status, _) = status_of(gw, tx, id)?;
    let Some(grant) = status.body.grant else {
        return Err(not_revocable(&format!(
            "it is {}, not approved with a grant",
            status.body.state.as_str()
        )));
    };
    if grant.revoked_at.is_some() {
        return Err(not_revocable("it was revoked already"));
    }
    if grant.used_at.is_some() {
        return Err(not_revocable("it was used already"));
    }
    if !grant.is_live(now) {
        return Err(not_revocable("its grant window has passed"));
    }
    Ok(())
}

/// Checks a signed revocation and applies it, in the order of a decision (protocol.md 3.22):
/// the device signature and the assertion before the lock, then against the rows as they are.
pub(crate) fn apply(
    gw: &Gateway,
    signed: &Signed<Decision>,
    signed_text: String,
) -> Result<Applied, ApiError> {
    let now = gw.now();
    let d = &signed.body;
    let (device_key, challenge, request) = gw.store.read(|c| -> Result<_, ApiError> {
        Ok((
            c.device_key(&d.device_id)?,
            c.challenge(&d.request_id, &d.approver)?,
            parse_stored_request(c.request_signed(&d.request_id)?)?,
        ))
    })?;
    let decision_digest = verify_device_signature(signed, device_key.as_deref())?;
    let verified = ceremony::verify_assertion(gw, d, device_key.is_some(), challenge.as_ref())?;
    let out = gw
        .store
        .write_publish(|tx| -> Result<(Applied, Vec<Pushed>), ApiError> {
            check_device(tx, d, device_key.as_deref())?;
            if let Some(receipt) = replayed(tx, d, &decision_digest.to_hex())? {
                return Ok((Applied::Replay(receipt), Vec::new()));
            }
            check_request(gw, tx, d, request.as_ref())?;
            check_revocable(gw, tx, &d.request_id, &d.approver, now)?;
            ceremony::consume(tx, d, verified.as_ref(), now)?;
            tx.revoke_request(&d.request_id, &d.approver, now)?;
            let (status, addressees) = status_of(gw, tx, &d.request_id)?;
            let s = &status.body;
            let receipt = Signed::sign(
                &gw.key,
                Receipt {
                    v: countersign_protocol::PROTOCOL_VERSION,
                    decision_id: d.decision_id.clone(),
                    decision_digest,
                    request_id: d.request_id.clone(),
                    request_digest: d.request_digest,
                    approver: d.approver.clone(),
                    verdict: Verdict::Revoke,
                    accepted_at: now,
                    status_seq: s.seq,
                    request_state: s.state,
                    approvals: s.approvals,
                    min_approvals: s.min_approvals,
                    stages: s.stages.clone(),
                    challenge_digest: crate::bind::answered(d.assertion.as_ref()),
                },
            )?;
            tx.insert_revocation(&NewRevocation {
                decision_id: &d.decision_id,
                request_id: &d.request_id,
                approver: &d.approver,
                digest: &decision_digest.to_hex(),
                signed: &signed_text,
                receipt: &json_text(&receipt)?,
                at: now,
            })?;
            tx.audit_append(
                now,
                "request.revoked",
                Some(&d.request_id),
                json!({
                    "by": d.approver,
                    "reason": d.reason.clone().unwrap_or_default(),
                    "decision_id": d.decision_id,
                    "device_id": d.device_id,
                    "decision_digest": decision_digest,
                }),
            )?;
            let pushed = crate::envelope::enqueue_about(
                gw,
                tx,
                &d.request_id,
                &addressees,
                &StreamEvent::Status {
                    status: Box::new(status),
                },
            )?;
            Ok((Applied::New(receipt), pushed))
        })?;
    gw.changes.notify_waiters();
    Ok(out)
}

/// The receipt of this same revocation if it was accepted before; `decision_id_reused` if the
/// id names another revocation or a decision.
fn replayed(tx: &dyn Tx, d: &Decision, digest: &str) -> Result<Option<Signed<Receipt>>, ApiError> {
    let reused = || {
        ApiError::conflict(
            ErrorCode::DecisionIdReused,
            "This decision id was already used for a different decision.",
        )
    };
    if tx.decision_receipt(&d.decision_id)?.is_some() {
        return Err(reused());
    }
    let Some((stored, receipt)) = tx.revocation_receipt(&d.decision_id)? else {
        return Ok(None);
    };
    if stored != digest {
        return Err(reused());
    }
    serde_json::from_str(&receipt)
        .map(Some)
        .map_err(|e| ApiError::internal("stored receipt", e))
}

/// The request exists, is the version revoked, names this gateway, and was addressed to the
/// approver.
fn check_request(
    gw: &Gateway,
    tx: &dyn Tx,
    d: &Decision,
    request: Option<&Signed<ApprovalRequest>>,
) -> Result<(), ApiError> {
    let gate = tx.request_gate(&d.request_id)?;
    let (Some(gate), Some(_)) = (gate, request) else {
        return Err(ApiError::not_found(
            ErrorCode::UnknownRequest,
            format!("There is no request {} on this gateway.", d.request_id),
        ));
    };
    if d.gateway != gw.fingerprint {
        return Err(ApiError::bad_request(
            ErrorCode::WrongGateway,
            "The revocation names a different gateway key.",
        ));
    }
    if d.request_digest.to_hex() != gate.digest {
        return Err(ApiError::conflict(
            ErrorCode::RequestDigestMismatch,
            "The revocation was made for a different version of this request.",
        ));
    }
    if !tx.has_challenge(&d.request_id, &d.approver)? {
        return Err(ApiError::forbidden(
            ErrorCode::NotEligible,
            "The request was not addressed to this approver.",
        ));
    }
    Ok(())
}
