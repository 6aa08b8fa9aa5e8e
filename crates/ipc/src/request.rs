//! The inbox as the page sees it: a request's row and its decision screen, each stage's
//! progress, the votes, and this device's decision with the gateway's receipt, built from the
//! engine's inbox items.

use countersign_approver::display;
use countersign_approver::{DeliveryState, InboxItem, LocalDecision};
use countersign_protocol::Verdict;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::{state_str, Text};

fn delivery_str(d: DeliveryState) -> String {
    match d {
        DeliveryState::Queued => "queued",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Refused => "refused",
    }
    .to_string()
}

/// A row of the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RequestSummary {
    pub id: String,
    /// `countersign`: a request a paired gateway signed; `hoop`: a review fetched from a hoop
    /// gateway, which signs nothing.
    #[ts(type = "\"countersign\" | \"hoop\"")]
    pub kind: String,
    /// For an unsigned item (a hoop review): the address it was fetched from over TLS.
    pub unsigned_from: Option<String>,
    /// The paired gateway's fingerprint, or the hoop connection's id.
    pub gateway: String,
    pub gateway_name: String,
    pub action: Text,
    pub resource: Text,
    /// low | medium | high | critical (hoop's own level for a hoop review; `unrated` when
    /// hoop made no analysis)
    pub risk: String,
    pub summary: Text,
    pub requester: Text,
    /// The gateway's last reported state, or `expired` once past expiry by the local clock.
    pub state: String,
    #[ts(type = "number")]
    pub created_at: i64,
    /// Null when it does not expire (a hoop review).
    #[ts(type = "number | null")]
    pub expires_at: Option<i64>,
    #[ts(type = "number")]
    pub received_at: i64,
    pub approvals: u32,
    pub min_approvals: u32,
    /// Each stage of approval with its progress, in the request's order (one stage, named
    /// `approvers`, for a request in the list form).
    pub stages: Vec<StageView>,
    pub match_required: bool,
    pub decision: Option<DecisionView>,
    /// ask | auto | break_glass
    pub mode: String,
    /// Approved without asking (break-glass) and acknowledged by nobody yet.
    pub needs_acknowledgement: bool,
}

/// A stage of approval and its progress: "dba 1/1 ✓".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct StageView {
    pub name: Text,
    /// The directory group the stage takes approvals from, if it is a group stage.
    pub group: Option<Text>,
    /// The approvers a list stage names (empty for a group stage).
    pub approvers: Vec<String>,
    pub approvals: u32,
    pub min: u32,
    pub satisfied: bool,
}

/// A stage's progress as a status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct StageProgressView {
    pub name: String,
    pub approvals: u32,
    pub min: u32,
    pub satisfied: bool,
}

impl From<&countersign_protocol::StageProgress> for StageProgressView {
    fn from(p: &countersign_protocol::StageProgress) -> Self {
        StageProgressView {
            name: p.name.clone(),
            approvals: p.approvals.min(p.min),
            min: p.min,
            satisfied: p.satisfied,
        }
    }
}

/// Everything the decision screen shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RequestDetail {
    pub summary: RequestSummary,
    pub detail: Text,
    /// The requester's reason: untrusted text.
    pub reason: Text,
    pub approvers: Vec<String>,
    pub votes: Vec<VoteView>,
    /// Why this approver was asked: one sentence per stage they may approve for.
    pub why_asked: Vec<Text>,
    /// The policy rule that set the stages, if a policy did.
    pub policy_rule: Option<Text>,
    /// True when one person's approval counts toward at most one stage.
    pub distinct_people: bool,
    /// How long an approval stays valid for the action to start, from approval.
    pub grant_seconds: Option<u32>,
    /// The time windows the gateway's policy allows, as it wrote them.
    pub windows: Vec<Text>,
    /// What the approval grants, once approved.
    pub grant: Option<GrantView>,
    #[ts(type = "number")]
    pub not_before: i64,
    /// The request digest the decision will be bound to.
    pub digest: String,
    /// True when the requester is this approver (flag "this is your own request").
    pub own_request: bool,
    /// A hoop review's own facts; null for a Countersign request.
    pub hoop: Option<HoopFacts>,
}

/// What only a hoop review has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct HoopFacts {
    /// The hoop gateway's address.
    pub url: String,
    /// "unsigned: fetched over TLS from <url>": all that vouches for the review.
    pub provenance: String,
    /// hoop's status, as it reported it: `PENDING`, `APPROVED`, `REJECTED`, `REVOKED`, ...
    pub status: String,
    /// `onetime` or `jit`.
    pub review_type: String,
    /// A jit review's access once approved, in seconds.
    #[ts(type = "number | null")]
    pub access_seconds: Option<u64>,
    /// Each group that reviews it, and who decided it.
    pub groups: Vec<HoopGroupView>,
    /// hoop's own risk analysis of the session, where it made one.
    pub analysis: Option<HoopAnalysisView>,
    /// hoop's access request rule that asked for the review.
    pub rule: Option<Text>,
    pub rejection_reason: Option<Text>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct HoopGroupView {
    pub group: Text,
    /// `PENDING`, `APPROVED` or `REJECTED`.
    pub status: String,
    pub reviewed_by: Option<Text>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct HoopAnalysisView {
    pub risk_level: Text,
    pub title: Text,
    pub explanation: Text,
}

/// What an approval grants: until when it lets the action start, when an integration used it
/// to start the action, its revocation, and who acknowledged a request approved without asking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct GrantView {
    #[ts(type = "number | null")]
    pub expires_at: Option<i64>,
    #[ts(type = "number | null")]
    pub used_at: Option<i64>,
    #[ts(type = "number | null")]
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<Text>,
    #[ts(type = "number | null")]
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<Text>,
}

impl From<&countersign_protocol::Grant> for GrantView {
    fn from(g: &countersign_protocol::Grant) -> Self {
        GrantView {
            expires_at: g.expires_at,
            used_at: g.used_at,
            revoked_at: g.revoked_at,
            revoked_by: g.revoked_by.as_deref().map(Text::new),
            acknowledged_at: g.acknowledged_at,
            acknowledged_by: g.acknowledged_by.as_deref().map(Text::new),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct VoteView {
    pub approver: String,
    /// approve | deny
    pub verdict: String,
    #[ts(type = "number")]
    pub at: i64,
    /// The names of the stages the gateway credits this approval to.
    pub stages: Vec<String>,
}

/// This device's decision on a request and where its delivery stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct DecisionView {
    pub decision_id: String,
    /// approve | deny
    pub verdict: String,
    #[ts(type = "number")]
    pub decided_at: i64,
    /// queued | delivered | refused, and for a hoop review also superseded (decided elsewhere
    /// before it reached hoop: never sent)
    pub delivery: String,
    pub last_error: Option<String>,
    pub receipt: Option<ReceiptView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ReceiptView {
    /// The request's state after this decision, as the gateway signed it.
    pub request_state: String,
    pub approvals: u32,
    pub min_approvals: u32,
    /// Each stage's progress after this decision; empty for a request in the list form.
    pub stages: Vec<StageProgressView>,
    #[ts(type = "number")]
    pub accepted_at: i64,
    /// Digest of the signed receipt body.
    pub digest: String,
}

impl DecisionView {
    pub fn from_local(d: &LocalDecision) -> DecisionView {
        DecisionView {
            decision_id: d.decision_id.clone(),
            verdict: verdict_str(d.verdict),
            decided_at: d.decided_at,
            delivery: delivery_str(d.delivery),
            // The gateway's words (a refusal) or a transport error: shown, never interpreted.
            last_error: d.last_error.as_deref().map(display::visible),
            receipt: d.receipt.as_ref().map(|r| ReceiptView {
                request_state: state_str(r.body.request_state),
                approvals: r.body.approvals,
                min_approvals: r.body.min_approvals,
                stages: r.body.stages.iter().map(Into::into).collect(),
                accepted_at: r.body.accepted_at,
                digest: r.digest().map(|d| d.to_hex()).unwrap_or_default(),
            }),
        }
    }
}

fn verdict_str(v: Verdict) -> String {
    v.as_str().to_string()
}

impl RequestSummary {
    pub fn from_item(item: &InboxItem, now: i64) -> RequestSummary {
        let b = &item.request.body;
        RequestSummary {
            id: b.id.clone(),
            kind: "countersign".to_owned(),
            unsigned_from: None,
            gateway: item.gateway.clone(),
            gateway_name: item.gateway_name.clone(),
            action: Text::new(&b.action),
            resource: Text::new(&b.resource),
            risk: b.risk.as_str().to_string(),
            summary: Text::new(&b.summary),
            requester: Text::new(&b.requester),
            state: state_str(item.effective_state(now)),
            created_at: b.created_at,
            expires_at: Some(b.expires_at),
            received_at: item.received_at,
            approvals: item.approvals,
            min_approvals: item.min_approvals,
            stages: b
                .effective_stages()
                .iter()
                .zip(item.progress())
                .map(|(s, p)| StageView {
                    name: Text::new(&s.name),
                    group: s.group.as_deref().map(Text::new),
                    approvers: s.approvers.clone().unwrap_or_default(),
                    approvals: p.approvals.min(p.min),
                    min: p.min,
                    satisfied: p.satisfied,
                })
                .collect(),
            match_required: b.match_required,
            decision: item.decision.as_ref().map(DecisionView::from_local),
            mode: b.mode.as_str().to_owned(),
            needs_acknowledgement: item.needs_acknowledgement(),
        }
    }
}

impl RequestDetail {
    /// `me`: the approver identity this device acts as at the request's gateway.
    pub fn from_item(item: &InboxItem, now: i64, me: Option<&str>) -> RequestDetail {
        let b = &item.request.body;
        let stages = b.effective_stages();
        RequestDetail {
            summary: RequestSummary::from_item(item, now),
            detail: Text::new(&b.detail),
            reason: Text::new(&b.reason),
            approvers: b.named_approvers(),
            votes: item
                .votes
                .iter()
                .map(|v| VoteView {
                    approver: v.approver.clone(),
                    verdict: verdict_str(v.verdict),
                    at: v.at,
                    stages: v
                        .stages
                        .iter()
                        .filter_map(|&i| stages.get(i as usize).map(|s| s.name.clone()))
                        .collect(),
                })
                .collect(),
            why_asked: item.why_asked().iter().map(|w| Text::new(w)).collect(),
            policy_rule: b.policy.as_ref().map(|p| Text::new(&p.rule)),
            distinct_people: b.distinct_people,
            grant_seconds: b.grant_seconds,
            windows: b.windows.iter().map(|w| Text::new(w)).collect(),
            grant: item.grant.as_ref().map(GrantView::from),
            not_before: b.not_before,
            digest: item.digest.to_hex(),
            own_request: me.is_some_and(|m| m == b.requester),
            hoop: None,
        }
    }
}
