//! A request's status and its stages: the recorded votes, their stage credit and the signed
//! [`StatusUpdate`] built from them, the `Outcome` of accepting one more decision (new state,
//! signed receipt, signed status event), and storing a status event for every approver the
//! request is addressed to.

use countersign_protocol::api::ErrorCode;

use crate::error::{json_text, ApiError};
use crate::gateway::Gateway;
use crate::hub::Pushed;
use crate::routing::Eligibility;
use crate::store::decisions::VoteRow;
use crate::store::Tx;
use countersign_protocol::stages::{credit, Ballot, Credit};
use countersign_protocol::{
    ApprovalRequest, Decision, Digest, Grant, Receipt, RequestState, Signed, StatusUpdate,
    StreamEvent, Verdict, Vote, PROTOCOL_VERSION,
};

/// The signed current status of a request, built inside `tx`, and the approvers it is
/// addressed to.
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
    // the votes as recorded and the time of the change that made `seq`, never from the clock
    // or from the directory as it is now.
    let votes = tx.votes(request_id)?;
    let grant = (state == RequestState::Approved && !request.body.is_list_form()).then(|| {
        let mut g = granted(&request.body, row.closed_at.unwrap_or(row.status_at));
        (g.revoked_at, g.revoked_by) = row.revoked.clone().unzip();
        (g.acknowledged_at, g.acknowledged_by) = row.acked.clone().unzip();
        g.used_at = row.used_at;
        g
    });
    let status = StatusAt {
        request_id,
        request_digest: digest,
        seq: row.status_seq,
        state,
        at: row.status_at,
        grant,
    }
    .body(&request.body, &votes, credit_of(&request.body, &votes));
    Ok((Signed::sign(&gw.key, status)?, tx.addressees(request_id)?))
}

/// The grant of `request` approved at `approved_at`, before anything happened to it: valid
/// for the action to start for the request's `grant_seconds`, or until used.
pub(crate) fn granted(request: &ApprovalRequest, approved_at: i64) -> Grant {
    Grant {
        expires_at: request
            .grant_seconds
            .map(|s| approved_at.saturating_add(i64::from(s))),
        ..Grant::default()
    }
}

/// Which status of a request to build.
struct StatusAt<'a> {
    request_id: &'a str,
    request_digest: Digest,
    seq: u64,
    state: RequestState,
    at: i64,
    grant: Option<Grant>,
}

impl StatusAt<'_> {
    /// The status body at this `seq`, with the stage credit of `votes` (protocol.md 8.3a). A
    /// request in the list form gets the list form's status: no stages, and votes without
    /// person or stages.
    fn body(self, request: &ApprovalRequest, votes: &[VoteRow], credit: Credit) -> StatusUpdate {
        let list_form = request.stages.is_empty();
        let votes = votes
            .iter()
            .zip(credit.credited)
            .map(|(v, stages)| Vote {
                approver: v.approver.clone(),
                verdict: v.verdict,
                at: v.at,
                person: if list_form { None } else { v.person.clone() },
                stages: if list_form { Vec::new() } else { stages },
            })
            .collect();
        StatusUpdate {
            v: PROTOCOL_VERSION,
            request_id: self.request_id.to_string(),
            request_digest: self.request_digest,
            seq: self.seq,
            state: self.state,
            approvals: credit.stages.iter().map(|s| s.approvals.min(s.min)).sum(),
            min_approvals: request.quorum_total(),
            votes,
            at: self.at,
            stages: if list_form { Vec::new() } else { credit.stages },
            grant: self.grant,
        }
    }
}

/// Approvals that count: each stage's credited approvals, up to its `min`, summed.
fn met(credit: &Credit) -> u32 {
    credit.stages.iter().map(|s| s.approvals.min(s.min)).sum()
}

/// The stage credit of the recorded `votes` on `request`.
fn credit_of(request: &ApprovalRequest, votes: &[VoteRow]) -> Credit {
    const FIRST: &[u32] = &[0];
    let ballots: Vec<Ballot<'_>> = votes
        .iter()
        .map(|v| Ballot {
            person: v.person.as_deref().unwrap_or(&v.approver),
            approve: v.verdict == Verdict::Approve,
            eligible: v.eligible.as_deref().unwrap_or(FIRST),
        })
        .collect();
    credit(
        &request.effective_stages(),
        request.distinct_people,
        &ballots,
    )
}

/// What accepting a decision produces, given the votes recorded before it and the status `seq`
/// they were at: the new state and `seq`, the signed receipt and the signed status.
pub(crate) struct Outcome {
    pub(crate) votes_before: Vec<VoteRow>,
    pub(crate) seq_before: u64,
    pub(crate) eligibility: Eligibility,
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
    (votes_before, seq_before): (Vec<VoteRow>, u64),
    eligibility: Eligibility,
) -> Result<Outcome, ApiError> {
    let seq = seq_before + 1;
    let list_form = request.body.stages.is_empty();
    let mut votes = votes_before.clone();
    votes.push(VoteRow {
        approver: d.approver.clone(),
        verdict: d.verdict,
        at: now,
        person: eligibility.person.clone(),
        eligible: (!list_form).then(|| eligibility.stages.clone()),
    });
    votes.sort_by(|a, b| (a.at, &a.approver).cmp(&(b.at, &b.approver)));
    // One deny closes the request at once; otherwise the stages decide.
    let credit = credit_of(&request.body, &votes);
    // An approval that adds nothing (its stages are met, and no other assignment frees one) is
    // not recorded, so that a status lists at most the approvals that count and one deny.
    if d.verdict == Verdict::Approve
        && !list_form
        && met(&credit) <= met(&credit_of(&request.body, &votes_before))
    {
        return Err(ApiError::conflict(
            ErrorCode::ApprovalNotNeeded,
            "Every stage this approval could count toward already has its approvals.",
        ));
    }
    let new_state = match d.verdict {
        Verdict::Deny => RequestState::Denied,
        Verdict::Revoke => {
            return Err(ApiError::internal(
                "decision outcome",
                "a revocation is not a vote",
            ))
        }
        Verdict::Approve if credit.satisfied() => RequestState::Approved,
        Verdict::Approve => RequestState::Pending,
    };
    let status = StatusAt {
        request_id: &d.request_id,
        request_digest: d.request_digest,
        seq,
        state: new_state,
        at: now,
        grant: (new_state == RequestState::Approved && !list_form)
            .then(|| granted(&request.body, now)),
    }
    .body(&request.body, &votes, credit);
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
            approvals: status.approvals,
            min_approvals: status.min_approvals,
            stages: status.stages.clone(),
            challenge_digest: crate::bind::answered(d.assertion.as_ref()),
        },
    )?;
    Ok(Outcome {
        votes_before,
        seq_before,
        eligibility,
        seq,
        new_state,
        receipt_text: json_text(&receipt)?,
        receipt,
        status: Signed::sign(&gw.key, status)?,
    })
}

/// Stores and returns a status event for every approver of the request.
pub(crate) fn push_status(
    gw: &Gateway,
    tx: &dyn Tx,
    request_id: &str,
) -> Result<Vec<Pushed>, ApiError> {
    let (status, approvers) = status_of(gw, tx, request_id)?;
    crate::envelope::enqueue_about(
        gw,
        tx,
        request_id,
        &approvers,
        &StreamEvent::Status {
            status: Box::new(status),
        },
    )
}
