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
    // The status at a given `seq` is always the same body: it is built from the stored state,
    // the votes and the time of the change that made `seq`, never from the clock.
    let votes = tx.votes(request_id)?;
    let status = status_from_votes(
        gw,
        StatusAt {
            request_id,
            request_digest: digest,
            seq: row.status_seq,
            state,
            min_approvals: row.min_approvals,
            at: row.status_at,
        },
        votes,
    )?;
    Ok((status, request.body.approvers))
}

/// Which status of a request to sign.
struct StatusAt<'a> {
    request_id: &'a str,
    request_digest: Digest,
    seq: u64,
    state: RequestState,
    min_approvals: u32,
    at: i64,
}

fn status_from_votes(
    gw: &Gateway,
    s: StatusAt<'_>,
    votes: Vec<Vote>,
) -> Result<Signed<StatusUpdate>, ApiError> {
    let StatusAt {
        request_id,
        request_digest,
        seq,
        state,
        min_approvals,
        at,
    } = s;
    let update = StatusUpdate {
        v: PROTOCOL_VERSION,
        request_id: request_id.to_string(),
        request_digest,
        seq,
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

/// What accepting a decision produces, given the votes recorded before it and the status `seq`
/// they were at: the new state and `seq`, the signed receipt and the signed status.
pub(crate) struct Outcome {
    pub(crate) votes_before: Vec<Vote>,
    pub(crate) seq_before: u64,
    pub(crate) seq: u64,
    pub(crate) new_state: RequestState,
    pub(crate) receipt: Signed<Receipt>,
    pub(crate) receipt_text: String,
    pub(crate) status: Signed<StatusUpdate>,
}

pub(crate) fn outcome(
    gw: &Gateway,
    d: &Decision,
    request: &Signed<ApprovalRequest>,
    decision_digest: Digest,
    now: i64,
    (votes_before, seq_before): (Vec<Vote>, u64),
) -> Result<Outcome, ApiError> {
    let seq = seq_before + 1;
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
            status_seq: seq,
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
        StatusAt {
            request_id: &d.request_id,
            request_digest: d.request_digest,
            seq,
            state: new_state,
            min_approvals: min,
            at: now,
        },
        votes,
    )?;
    Ok(Outcome {
        votes_before,
        seq_before,
        seq,
        new_state,
        receipt_text: json_text(&receipt)?,
        receipt,
        status,
    })
}

/// Stores and returns a status event for every approver of the request.
pub(crate) fn push_status(
    gw: &Gateway,
    tx: &dyn Tx,
    request_id: &str,
) -> Result<Vec<Pushed>, ApiError> {
    let (status, approvers) = status_of(gw, tx, request_id)?;
    crate::envelope::enqueue(gw, tx, &approvers, &StreamEvent::Status { status })
}
