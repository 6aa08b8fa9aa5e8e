//! Decisions (`POST /v2/decisions`): verifying a signed decision and applying it, auditing every
//! refusal with its code, and counting wrong match codes.

use countersign_protocol::api::ErrorCode;
use countersign_protocol::types::Decode;
use countersign_protocol::{
    ApprovalRequest, Decision, Digest, Receipt, Refusal, RequestState, Signed, StreamEvent,
    Verdict, PROTOCOL_VERSION,
};
use serde_json::json;

use crate::ceremony;
use crate::error::{json_text, ApiError, SignedRefusal, StoreError};
use crate::gateway::Gateway;
use crate::hub::Pushed;
use crate::refusals::{ANONYMOUS, DECISION_REJECTED};
use crate::routing::{eligibility, Eligibility};
pub use crate::signed_decision::Applied;
use crate::signed_decision::{check_device, parse_stored_request, verify_device_signature};
use crate::status::{outcome, push_status, status_of, Outcome};
use crate::store::challenges::Challenge;
use crate::store::decisions::{NewDecision, VoteRow};
use crate::store::Tx;

/// Verifies and applies a decision. Every refusal is written to the audit log.
pub fn decide(gw: &Gateway, body: &[u8]) -> Result<Applied, ApiError> {
    let signed = match Signed::<Decision>::decode(body) {
        Ok(s) => s,
        Err(e) => {
            // Nothing in the body can be named: aggregated, so garbage cannot flood the log.
            let err = ApiError::bad_request(ErrorCode::InvalidDecision, e.to_string());
            gw.audit_refused(DECISION_REJECTED, ANONYMOUS, &err);
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
            if matches!(err.code, ErrorCode::WrongMatchCode) {
                if let Err(e) = count_match_failure(gw, &signed.body.request_id) {
                    tracing::warn!(%e, "recording a match-code failure failed");
                }
            }
            if err.code.is_final_refusal() {
                return Err(refuse(gw, &signed, err));
            }
            audit_rejection(gw, &signed.body, &err);
            Err(err)
        }
    }
}

/// A decision refused for good: the signed refusal naming it, with the request's signed status
/// at that moment if the request exists and is addressed to the decision's approver, signed in
/// the transaction that audits the refusal (docs/protocol.md 8.5). If that fails, the answer
/// goes out unsigned, which an approver treats as "try again later".
fn refuse(gw: &Gateway, signed: &Signed<Decision>, mut err: ApiError) -> ApiError {
    let d = &signed.body;
    let now = gw.now();
    let result = gw.store.write(|tx| -> Result<SignedRefusal, ApiError> {
        // A request the approver was not addressed by is not disclosed.
        let status = if tx.has_challenge(&d.request_id, &d.approver)? {
            Some(status_of(gw, tx, &d.request_id)?.0)
        } else {
            None
        };
        let refusal = Signed::sign(
            &gw.key,
            Refusal {
                v: PROTOCOL_VERSION,
                gateway: gw.fingerprint.clone(),
                decision_id: d.decision_id.clone(),
                decision_digest: signed.digest()?,
                request_id: d.request_id.clone(),
                request_digest: d.request_digest,
                approver: d.approver.clone(),
                code: err.code.clone(),
                refused_at: now,
                status_seq: status.as_ref().map(|s| s.body.seq),
            },
        )?;
        tx.audit_append(now, "decision.rejected", Some(&d.request_id), {
            let mut detail = rejection_detail(d, &err);
            detail["refusal_digest"] = json!(refusal.digest()?);
            detail["status_seq"] = json!(refusal.body.status_seq);
            detail
        })?;
        Ok(SignedRefusal { refusal, status })
    });
    match result {
        Ok(s) => err.signed = Some(Box::new(s)),
        Err(e) => {
            tracing::error!(%e, "could not sign and audit a refused decision");
            audit_rejection(gw, d, &err);
        }
    }
    err
}

/// The detail of a `decision.rejected` entry for the decision `d`.
fn rejection_detail(d: &Decision, err: &ApiError) -> serde_json::Value {
    json!({
        "decision_id": d.decision_id,
        "approver": d.approver,
        "device_id": d.device_id,
        "code": err.code.as_str(),
        "message": err.message,
    })
}

/// Audits a refused decision that gets no signed refusal.
fn audit_rejection(gw: &Gateway, d: &Decision, err: &ApiError) {
    let now = gw.now();
    let detail = rejection_detail(d, err);
    let r = gw.store.write(|tx| -> Result<_, StoreError> {
        tx.audit_append(now, "decision.rejected", Some(&d.request_id), detail)
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
            tx.count_match_failure(request_id)?;
            if !tx.deny_after_match_failures(request_id, limit, now)? {
                return Ok(((), Vec::new()));
            }
            tx.audit_append(
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

/// What a decision needs read before the write lock.
struct PreRead {
    /// The deciding device's public key as stored, if the device is paired (revoked or not).
    device_key: Option<String>,
    /// The ceremony state stored for the request and approver.
    challenge: Option<Challenge>,
    /// The signed request as stored, parsed once.
    request: Option<Signed<ApprovalRequest>>,
    /// The votes recorded on the request so far, and the status `seq` they are at.
    votes: (Vec<VoteRow>, u64),
    /// Who the approver is now and the stages they may approve for, if eligible.
    eligibility: Option<Eligibility>,
}

/// Checks a decision and records it, in the order of ARCHITECTURE.md ("The flow", step 6).
///
/// The expensive checks (the device signature and the WebAuthn assertion) run before the write
/// transaction, outside the store's lock, so decisions verify in parallel. The transaction then
/// re-checks everything that could have changed meanwhile: the device row, and the challenge,
/// which is consumed atomically (`used_at IS NULL`).
fn apply(
    gw: &Gateway,
    signed: &Signed<Decision>,
    signed_text: String,
) -> Result<Applied, ApiError> {
    if signed.body.verdict == Verdict::Revoke {
        return crate::revocations::apply(gw, signed, signed_text);
    }
    let now = gw.now();
    let d = &signed.body;

    // Before the write lock, on a reader connection.
    let PreRead {
        device_key,
        challenge,
        request,
        votes,
        eligibility,
    } = pre_read(gw, d)?;
    let decision_digest = verify_device_signature(signed, device_key.as_deref())?;
    let prepared = presign_outcome(
        gw,
        d,
        request.as_ref(),
        device_key.is_some(),
        decision_digest,
        now,
        (votes, eligibility),
    )?;
    let needs_passkey = ceremony::needs_passkey(gw, d);
    let verified = ceremony::verify_assertion(
        gw,
        d,
        needs_passkey && device_key.is_some(),
        challenge.as_ref(),
    )?;

    // Inside the write transaction, against the rows as they are now.
    let out = gw
        .store
        .write_publish(|tx| -> Result<(Applied, Vec<Pushed>), ApiError> {
            check_device(tx, d, device_key.as_deref())?;
            if let Some(receipt) = replayed_receipt(tx, d, decision_digest)? {
                return Ok((Applied::Replay(receipt), Vec::new()));
            }
            let (request, match_code, eligible) = check_request(gw, tx, d, request.as_ref(), now)?;
            check_match_code(d, match_code.as_deref())?;
            if needs_passkey {
                ceremony::consume(tx, d, verified.as_ref(), now)?;
            }
            check_not_yet_decided(tx, d)?;
            let outcome = quorum_outcome(
                gw,
                tx,
                d,
                (request, eligible),
                decision_digest,
                prepared,
                now,
            )?;
            let pushed = record(gw, tx, d, decision_digest, &signed_text, &outcome)?;
            Ok((Applied::New(outcome.receipt), pushed))
        })?;
    gw.changes.notify_waiters();
    Ok(out)
}

/// Reads, on a reader connection, everything the checks before the lock need.
fn pre_read(gw: &Gateway, d: &Decision) -> Result<PreRead, ApiError> {
    gw.store.read(|c| -> Result<PreRead, ApiError> {
        // A request's signed content never changes after creation; only its state does, and
        // that is read again inside the transaction.
        let request = parse_stored_request(c.request_signed(&d.request_id)?)?;
        // Eligibility is computed again inside the transaction; an error here only means the
        // outcome is not signed in advance.
        let eligibility = match &request {
            Some(r) => eligibility(c, &d.approver, &r.body).ok(),
            None => None,
        };
        Ok(PreRead {
            device_key: c.device_key(&d.device_id)?,
            challenge: c.challenge(&d.request_id, &d.approver)?,
            request,
            votes: (c.votes(&d.request_id)?, status_seq(c, &d.request_id)?),
            eligibility,
        })
    })
}

/// Signs the receipt and the status outside the lock (see `Outcome`), once the device's
/// signature has verified; the transaction uses them only if the votes are still the same.
fn presign_outcome(
    gw: &Gateway,
    d: &Decision,
    request: Option<&Signed<ApprovalRequest>>,
    device_verified: bool,
    decision_digest: Digest,
    now: i64,
    (votes, eligibility): ((Vec<VoteRow>, u64), Option<Eligibility>),
) -> Result<Option<Outcome>, ApiError> {
    match (request, eligibility) {
        // A refusal here (an approval not needed) is only an outcome not signed in advance:
        // the transaction decides on the votes as they are then.
        (Some(r), Some(e)) if device_verified => {
            Ok(outcome(gw, d, r, decision_digest, now, votes, e).ok())
        }
        _ => Ok(None),
    }
}

/// Idempotency by decision id: the receipt already issued if this same decision was accepted
/// before, a refusal if the id was used for a different one. It is checked only after the
/// signature, so a copied body earns nothing.
fn replayed_receipt(
    tx: &dyn Tx,
    d: &Decision,
    decision_digest: Digest,
) -> Result<Option<Signed<Receipt>>, ApiError> {
    let Some((digest, receipt)) = tx.decision_receipt(&d.decision_id)? else {
        return Ok(None);
    };
    if digest == decision_digest.to_hex() {
        let receipt: Signed<Receipt> =
            serde_json::from_str(&receipt).map_err(|e| ApiError::internal("stored receipt", e))?;
        return Ok(Some(receipt));
    }
    Err(ApiError::conflict(
        ErrorCode::DecisionIdReused,
        "This decision id was already used for a different decision.",
    ))
}

/// The request exists on this gateway, is the version decided on, has the deciding approver
/// eligible for one of its stages and is not the requester's person, is still pending, has not
/// expired and is already valid, all on the gateway's clock. Returns the request, its match
/// code if it has one, and the approver's eligibility.
fn check_request<'r>(
    gw: &Gateway,
    tx: &dyn Tx,
    d: &Decision,
    request: Option<&'r Signed<ApprovalRequest>>,
    now: i64,
) -> Result<(&'r Signed<ApprovalRequest>, Option<String>, Eligibility), ApiError> {
    let unknown = || {
        ApiError::not_found(
            ErrorCode::UnknownRequest,
            format!("There is no request {} on this gateway.", d.request_id),
        )
    };
    let gate = tx.request_gate(&d.request_id)?.ok_or_else(unknown)?;
    let state = gate.state.as_str();
    let request = request.ok_or_else(unknown)?;
    if d.gateway != gw.fingerprint {
        return Err(ApiError::bad_request(
            ErrorCode::WrongGateway,
            "The decision names a different gateway key.",
        ));
    }
    if d.request_digest.to_hex() != gate.digest {
        return Err(ApiError::conflict(
            ErrorCode::RequestDigestMismatch,
            "The decision was made for a different version of this request.",
        ));
    }
    // Who is who is the directory's to say: someone removed from it approves nothing any
    // more, and nobody decides a request of their own, whatever names they ask and vote under.
    let eligible = eligibility(tx, &d.approver, &request.body)?;
    if state == "expired" {
        return Err(ApiError::gone(
            ErrorCode::RequestExpired,
            "The request expired before the decision reached the gateway.",
        ));
    }
    if state != "pending" {
        return Err(ApiError::conflict(
            ErrorCode::RequestClosed,
            format!("The request is already {state}."),
        ));
    }
    if now >= gate.expires_at {
        return Err(ApiError::gone(
            ErrorCode::RequestExpired,
            "The request expired before the decision reached the gateway.",
        ));
    }
    if now < request.body.not_before {
        return Err(ApiError::conflict(
            ErrorCode::RequestNotYetValid,
            "The request is not valid yet.",
        ));
    }
    Ok((request, gate.match_code, eligible))
}

/// An approval of a request with a match code carries that code, compared in constant time.
/// A wrong code is counted by `decide` once this write rolled back.
fn check_match_code(d: &Decision, expected: Option<&str>) -> Result<(), ApiError> {
    if d.verdict != Verdict::Approve {
        return Ok(());
    }
    let Some(expected) = expected else {
        return Ok(());
    };
    let typed = d.match_code.as_deref().ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::MatchCodeRequired,
            "This request requires the match code the requester sees.",
        )
    })?;
    use subtle::ConstantTimeEq;
    let ok: bool = typed.trim().as_bytes().ct_eq(expected.as_bytes()).into();
    if !ok {
        return Err(ApiError::forbidden(
            ErrorCode::WrongMatchCode,
            "The match code does not match the one the requester was shown.",
        ));
    }
    Ok(())
}

/// One decision per approver and request. Checked after the ceremony so that a replayed
/// assertion is named as such.
fn check_not_yet_decided(tx: &dyn Tx, d: &Decision) -> Result<(), ApiError> {
    if tx.has_decided(&d.request_id, &d.approver)? {
        return Err(ApiError::conflict(
            ErrorCode::AlreadyDecided,
            format!("{} has already decided this request.", d.approver),
        ));
    }
    Ok(())
}

/// The quorum's outcome of this decision. The one signed before the lock was computed from the
/// votes then recorded; it is used only if those votes are still exactly the recorded ones.
fn quorum_outcome(
    gw: &Gateway,
    tx: &dyn Tx,
    d: &Decision,
    (request, eligible): (&Signed<ApprovalRequest>, Eligibility),
    decision_digest: Digest,
    prepared: Option<Outcome>,
    now: i64,
) -> Result<Outcome, ApiError> {
    let before = tx.votes(&d.request_id)?;
    let seq_before = status_seq(tx, &d.request_id)?;
    match prepared {
        Some(p)
            if p.votes_before == before
                && p.seq_before == seq_before
                && p.eligibility == eligible =>
        {
            Ok(p)
        }
        _ => outcome(
            gw,
            d,
            request,
            decision_digest,
            now,
            (before, seq_before),
            eligible,
        ),
    }
}

/// The request's current status `seq` (1 for an unknown request: its decision is refused
/// before the outcome counts).
fn status_seq(tx: &dyn Tx, request_id: &str) -> Result<u64, ApiError> {
    Ok(tx
        .request_gate(request_id)?
        .map(|g| g.status_seq)
        .unwrap_or(1))
}

/// Stores the accepted decision with its receipt, closes the request if the outcome decided it,
/// audits the acceptance and queues the new status for every approver of the request, all at
/// the time the receipt names.
fn record(
    gw: &Gateway,
    tx: &dyn Tx,
    d: &Decision,
    decision_digest: Digest,
    signed_text: &str,
    outcome: &Outcome,
) -> Result<Vec<Pushed>, ApiError> {
    let now = outcome.receipt.body.accepted_at;
    let new_state = outcome.new_state;
    let digest = decision_digest.to_hex();
    tx.insert_decision(&NewDecision {
        decision_id: &d.decision_id,
        request_id: &d.request_id,
        approver: &d.approver,
        verdict: d.verdict,
        digest: &digest,
        signed: signed_text,
        receipt: &outcome.receipt_text,
        at: now,
        person: outcome.eligibility.person.as_deref(),
        // The list form has one stage, and its votes record none.
        eligible: (!outcome.status.body.stages.is_empty())
            .then_some(outcome.eligibility.stages.as_slice()),
    })?;
    if new_state != RequestState::Pending {
        tx.close_request(&d.request_id, new_state, now)?;
    }
    // One status change, whether or not it closed the request.
    tx.set_status_seq(&d.request_id, outcome.seq, now)?;
    tx.audit_append(
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
            "person": outcome.eligibility.person,
            "eligible_stages": outcome.eligibility.stages,
        }),
    )?;
    crate::envelope::enqueue_about(
        gw,
        tx,
        &d.request_id,
        &tx.addressees(&d.request_id)?,
        &StreamEvent::Status {
            status: Box::new(outcome.status.clone()),
        },
    )
}
