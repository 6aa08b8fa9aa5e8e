//! hoop.dev reviews as the page sees them: the same inbox row and decision screen as a
//! Countersign request, labelled as fetched unsigned from their hoop gateway, with what only a
//! hoop review has (its groups, a jit review's access, hoop's own risk analysis), and the
//! connections of Settings.
//!
//! hoop signs nothing, so nothing here claims more than the TLS connection vouches for: the
//! row's `unsigned_from` names where the review was fetched, and there is no receipt.

use countersign_approver::display;
use countersign_approver::hoop::api::{Review, UserInfo};
use countersign_approver::hoop::decide::SignedHoopDecision;
use countersign_approver::hoop::inbox::HoopItem;
use countersign_approver::hoop::{HoopConnection, HoopHealth};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::request::{
    DecisionView, HoopAnalysisView, HoopFacts, HoopGroupView, RequestDetail, RequestSummary,
};
use crate::Text;

/// A connected hoop gateway, for Settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct HoopConnectionView {
    pub id: String,
    /// Its host.
    pub name: String,
    pub url: String,
    /// Who the token is, as hoop said when the connection was made.
    pub user_email: String,
    pub user_name: String,
    /// hoop's role of that user (`admin`, `standard`, ...).
    pub role: String,
    /// Where the token is kept (the Secret Service, or an owner-only file).
    pub token_kept_in: String,
    #[ts(type = "number")]
    pub connected_at: i64,
    /// Since when its polls have failed (unix seconds); null while they reach hoop.
    #[ts(type = "number | null")]
    pub unreachable_since: Option<i64>,
    /// Why the newest poll failed.
    pub error: Option<String>,
}

impl HoopConnectionView {
    pub fn new(c: &HoopConnection, health: &HoopHealth) -> HoopConnectionView {
        HoopConnectionView {
            id: c.id.clone(),
            name: display::visible(&c.name()),
            url: c.url.to_string(),
            user_email: display::visible(&c.user.email),
            user_name: display::visible(&c.user.name),
            role: display::visible(&c.user.role),
            token_kept_in: c.token.describe(),
            connected_at: c.connected_at,
            unreachable_since: health.unreachable.as_ref().map(|(since, _)| *since),
            error: health
                .unreachable
                .as_ref()
                .map(|(_, e)| display::visible(e)),
        }
    }
}

/// hoop's status in the inbox's words, a closed set: `pending`, `approved`, `denied` (hoop's
/// rejected), `revoked`, `processing`, `executed`, and `unknown` for anything else.
fn state_of(status: &str) -> &'static str {
    match status {
        "PENDING" => "pending",
        "APPROVED" => "approved",
        "REJECTED" => "denied",
        "REVOKED" => "revoked",
        "PROCESSING" => "processing",
        "EXECUTED" => "executed",
        _ => "unknown",
    }
}

/// Why hoop lists the review for `me`: the review's groups that are theirs, as hoop said when
/// the connection was made; none of them (an admin, or groups changed since) is said too.
fn why_asked(r: &Review, me: &UserInfo) -> Vec<Text> {
    let mine: Vec<&str> = r
        .review_groups_data
        .iter()
        .map(|g| g.group.as_str())
        .filter(|g| me.groups.iter().any(|m| m == g))
        .collect();
    if mine.is_empty() {
        return vec![Text::new(
            "hoop lists it as pending for you, though none of its groups was yours when you connected",
        )];
    }
    mine.iter()
        .map(|g| Text::new(&format!("you are in group {g}, one of the review's groups")))
        .collect()
}

impl DecisionView {
    /// This device's decision on a hoop review (`state` and `note` as the hoop outbox keeps
    /// them: `queued`, `delivered`, `refused` or `superseded`). There is no receipt: hoop
    /// signs nothing.
    pub fn from_hoop(d: &SignedHoopDecision, state: &str, note: Option<&str>) -> DecisionView {
        DecisionView {
            decision_id: d.body.decision_id.clone(),
            verdict: if d.body.verdict == "approve" {
                "approve"
            } else {
                "deny"
            }
            .to_owned(),
            decided_at: d.body.decided_at,
            delivery: state.to_owned(),
            // The transport error of a queued one, or hoop's words of a refused one; a
            // delivered or superseded one's note is hoop's status, shown with the review.
            last_error: matches!(state, "queued" | "refused")
                .then_some(note)
                .flatten()
                .map(display::visible),
            receipt: None,
        }
    }
}

impl RequestSummary {
    /// A hoop review's row; `decision`, this device's decision on it.
    pub fn from_hoop(item: &HoopItem, decision: Option<DecisionView>) -> RequestSummary {
        let r = &item.review;
        RequestSummary {
            id: r.id.clone(),
            kind: "hoop".to_owned(),
            unsigned_from: Some(item.url.to_string()),
            gateway: item.connection.clone(),
            gateway_name: display::visible(item.gateway_name()),
            action: Text::new(item.action()),
            resource: Text::new(&item.resource()),
            risk: item.risk().map_or("unrated", |r| r.as_str()).to_owned(),
            summary: Text::new(item.summary()),
            requester: Text::new(item.requester()),
            state: state_of(&r.status).to_owned(),
            created_at: item.created_at(),
            expires_at: None,
            received_at: item.received_at,
            approvals: u32::try_from(r.approved_groups()).unwrap_or(u32::MAX),
            min_approvals: u32::try_from(r.needed()).unwrap_or(u32::MAX),
            // hoop's rule is "min_approvals of these groups", not stages that must each be met:
            // the groups are in `HoopFacts`.
            stages: Vec::new(),
            match_required: false,
            decision,
            mode: "ask".to_owned(),
            needs_acknowledgement: false,
        }
    }
}

impl RequestDetail {
    /// A hoop review's decision screen. `me`: who the connection's token is, to flag the
    /// approver's own session and say which of the review's groups are theirs.
    pub fn from_hoop(
        item: &HoopItem,
        decision: Option<DecisionView>,
        me: &UserInfo,
    ) -> RequestDetail {
        let r = &item.review;
        let s = &item.session;
        RequestDetail {
            summary: RequestSummary::from_hoop(item, decision),
            detail: Text::new(item.detail()),
            reason: Text::new(&item.reason()),
            approvers: Vec::new(),
            // Who decided each group is in `hoop.groups`.
            votes: Vec::new(),
            why_asked: why_asked(r, me),
            policy_rule: None,
            distinct_people: true,
            grant_seconds: None,
            windows: Vec::new(),
            grant: None,
            not_before: item.created_at(),
            digest: item.script_sha256(),
            own_request: !me.email.is_empty() && me.email.eq_ignore_ascii_case(item.requester()),
            hoop: Some(HoopFacts {
                url: item.url.to_string(),
                provenance: item.provenance(),
                status: display::visible(&r.status),
                review_type: display::visible(&r.kind),
                access_seconds: (r.kind == "jit").then(|| r.access_seconds()),
                groups: r
                    .review_groups_data
                    .iter()
                    .map(|g| HoopGroupView {
                        group: Text::new(&g.group),
                        status: display::visible(&g.status),
                        reviewed_by: g.reviewed_by.as_ref().map(|b| {
                            Text::new(if b.email.is_empty() {
                                &b.name
                            } else {
                                &b.email
                            })
                        }),
                    })
                    .collect(),
                analysis: s.ai_analysis.as_ref().map(|a| HoopAnalysisView {
                    risk_level: Text::new(&a.risk_level),
                    title: Text::new(&a.title),
                    explanation: Text::new(&a.explanation),
                }),
                rule: r.access_request_rule_name.as_deref().map(Text::new),
                rejection_reason: r.rejection_reason.as_deref().map(Text::new),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pending jit review of two groups, one approved by carol, as hoop's API gives it.
    fn item(status: &str) -> HoopItem {
        let review: Review = serde_json::from_value(serde_json::json!({
            "id": "rev-1", "type": "jit", "access_duration": 1_800_000_000_000u64,
            "status": status, "created_at": "2026-12-07T10:00:00Z", "min_approvals": 1,
            "review_groups_data": [
                {"group": "sre", "status": "PENDING"},
                {"group": "dba", "status": "APPROVED", "review_date": "2026-12-07T10:01:00Z",
                 "reviewed_by": {"id": "auth0|carol", "email": "carol@example.com"}},
            ],
        }))
        .unwrap();
        let session = serde_json::from_value(serde_json::json!({
            "id": "s-1", "user": "bob@example.com", "connection": "pgprod",
            "connection_subtype": "postgres", "verb": "connect",
            "script": {"data": "\n  SELECT 1;\u{202E}\n"},
            "ai_analysis": {"risk_level": "HIGH", "title": "", "explanation": "reads"},
        }))
        .unwrap();
        HoopItem {
            connection: "hoop-1".into(),
            url: "https://hoop.example.com".parse().unwrap(),
            review,
            session,
            received_at: 5,
            updated_at: 5,
        }
    }

    fn user(email: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            id: "auth0|x".into(),
            name: String::new(),
            email: email.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            role: "standard".into(),
        }
    }

    #[test]
    fn a_hoop_row_is_unsigned_does_not_expire_and_counts_groups() {
        let row = RequestSummary::from_hoop(&item("PENDING"), None);
        assert_eq!(row.kind, "hoop");
        assert_eq!(
            row.unsigned_from.as_deref(),
            Some("https://hoop.example.com/")
        );
        assert_eq!(row.gateway_name, "hoop.example.com");
        assert_eq!(row.action.raw, "hoop.connect");
        assert_eq!(row.resource.raw, "pgprod (postgres)");
        assert_eq!(row.risk, "high");
        // No analysis title: the script's first non-blank line, its hidden character flagged.
        assert_eq!(row.summary.raw, "SELECT 1;\u{202E}");
        assert!(!row.summary.warnings.is_empty());
        assert_eq!(row.expires_at, None);
        assert_eq!(row.created_at, 1_796_637_600);
        assert_eq!((row.approvals, row.min_approvals), (1, 1));
        assert_eq!(
            RequestSummary::from_hoop(&item("REJECTED"), None).state,
            "denied"
        );
        assert_eq!(
            RequestSummary::from_hoop(&item("REVOKED"), None).state,
            "revoked"
        );
        assert_eq!(
            RequestSummary::from_hoop(&item("<b>odd</b>"), None).state,
            "unknown"
        );
    }

    #[test]
    fn a_hoop_detail_has_its_groups_access_votes_and_script_digest() {
        let it = item("PENDING");
        let d = RequestDetail::from_hoop(&it, None, &user("BOB@example.com", &["sre"]));
        assert!(d.own_request, "the session's user is the approver");
        assert_eq!(d.why_asked.len(), 1);
        assert_eq!(
            d.why_asked[0].raw,
            "you are in group sre, one of the review's groups"
        );
        let h = d.hoop.as_ref().unwrap();
        assert_eq!(h.access_seconds, Some(1800));
        assert_eq!(
            h.provenance,
            "unsigned: fetched over TLS from https://hoop.example.com/"
        );
        let mut local = it.clone();
        local.url = "http://127.0.0.1:8009".parse().unwrap();
        assert_eq!(
            local.provenance(),
            "unsigned: fetched over plain HTTP from http://127.0.0.1:8009/ (this machine)"
        );
        assert_eq!(h.groups.len(), 2);
        assert_eq!(
            h.groups[1].reviewed_by.as_ref().map(|t| t.raw.as_str()),
            Some("carol@example.com")
        );
        assert_eq!(d.digest, it.script_sha256());
        let other = RequestDetail::from_hoop(&it, None, &user("alice@example.com", &["dev"]));
        assert!(!other.own_request);
        assert!(other.why_asked[0].raw.contains("none of its groups"));
    }
}
