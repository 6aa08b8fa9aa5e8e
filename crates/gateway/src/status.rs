//! A request's status and its quorum: the recorded votes, the signed [`StatusUpdate`] built from
//! them, the `Outcome` of accepting one more decision (new state, signed receipt, signed
//! status event), and storing a status event for every approver of a request.

use crate::error::{json_text, ApiError};
use crate::gateway::Gateway;
use crate::hub::Pushed;
use crate::store::Tx;
use countersign_protocol::{
    ApprovalRequest, Decision, Digest, Receipt, RequestState, Signed, StatusUpdate, StreamEvent,
    Verdict, Vote, PROTOCOL_VERSION,
};

/// The signed current status of a request, built inside `tx`.
pub(crate) fn status_of(
    gw: &Gateway,
    tx: &dyn Tx,
    request_id: &str,
) -> Result<(Signed<StatusUpdate>, Vec<String>), ApiError> {
    let row = tx.request_status(request_id)?;
    let request: Signed<ApprovalRequest> =
        serde_json::from_str(&row.signed).map_err(|e| ApiError::internal("stored request", e))?;
    let digest = Digest::parse("requests.digest", &row.digest)
        .map_err(|e| ApiError::internal("stored digest", e))?;
    let state = RequestState::parse(&row.state)
        .ok_or_else(|| ApiError::internal("stored state", &row.state))?;
    let status = build_status(gw, tx, request_id, digest, state, row.min_approvals)?;
    Ok((status, request.body.approvers))
}

/// The signed status of a request whose digest, state and quorum are known, with its votes.
fn build_status(
    gw: &Gateway,
    tx: &dyn Tx,
    request_id: &str,
    request_digest: Digest,
    state: RequestState,
    min_approvals: u32,
) -> Result<Signed<StatusUpdate>, ApiError> {
    let votes = tx.votes(request_id)?;
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
pub(crate) struct Outcome {
    pub(crate) votes_before: Vec<Vote>,
    pub(crate) new_state: RequestState,
    pub(crate) receipt: Signed<Receipt>,
    pub(crate) receipt_text: String,
    pub(crate) status_data: String,
}

pub(crate) fn outcome(
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
    tx: &dyn Tx,
    request_id: &str,
) -> Result<Vec<Pushed>, ApiError> {
    let (status, approvers) = status_of(gw, tx, request_id)?;
    enqueue_status(tx, status, &approvers)
}

/// Stores the status event for every approver and returns what to publish after commit.
fn enqueue_status(
    tx: &dyn Tx,
    status: Signed<StatusUpdate>,
    approvers: &[String],
) -> Result<Vec<Pushed>, ApiError> {
    let data = json_text(&StreamEvent::Status { status })?;
    Ok(tx.enqueue(approvers, "status", &data)?)
}
