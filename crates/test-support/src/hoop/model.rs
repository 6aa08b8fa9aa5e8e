//! The fake hoop's data and rules: users, reviews and their sessions as hoop serialises them
//! (`gateway/api/openapi/types.go`), and `DoReview` (`gateway/api/review/review.go`).

use std::collections::HashMap;

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};

/// A hoop user, as `GET /api/userinfo` describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoopUser {
    /// The subject: hoop's user id in sessions and reviews.
    pub id: String,
    pub name: String,
    pub email: String,
    pub groups: Vec<String>,
}

impl HoopUser {
    pub fn new(id: &str, email: &str, groups: &[&str]) -> HoopUser {
        HoopUser {
            id: id.to_owned(),
            name: email.split('@').next().unwrap_or(email).to_owned(),
            email: email.to_owned(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    pub(super) fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "admin")
    }
}

/// A review to create, with its session.
#[derive(Debug, Clone)]
pub struct NewReview {
    pub owner: HoopUser,
    pub connection: String,
    /// The connection's type and subtype (`database`, `postgres`).
    pub connection_type: String,
    pub connection_subtype: String,
    /// `exec` (a one-time review of `script`) or `connect` (a jit review).
    pub verb: String,
    pub script: String,
    /// The session's metadata (hoop keeps the justification there).
    pub metadata: Value,
    pub groups: Vec<String>,
    /// Set by an access-request rule; unset: every group must approve.
    pub min_approvals: Option<u32>,
    /// A jit review's access, in seconds.
    pub access_seconds: u64,
    /// hoop's AI analysis: `(risk_level, title, explanation)`.
    pub ai: Option<(String, String, String)>,
}

impl NewReview {
    /// A one-time review of `script` on a PostgreSQL connection, for the `sre` group.
    pub fn exec(owner: &HoopUser, script: &str) -> NewReview {
        NewReview {
            owner: owner.clone(),
            connection: "pgprod".into(),
            connection_type: "database".into(),
            connection_subtype: "postgres".into(),
            verb: "exec".into(),
            script: script.into(),
            metadata: json!({"reason": "fix the broken invoices"}),
            groups: vec!["sre".into()],
            min_approvals: None,
            access_seconds: 0,
            ai: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct ReviewOwner {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) email: String,
    pub(super) slack_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct ReviewGroup {
    pub(super) id: String,
    pub(super) group: String,
    pub(super) status: String,
    pub(super) reviewed_by: Option<ReviewOwner>,
    pub(super) review_date: Option<String>,
    pub(super) forced_review: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Review {
    pub(super) id: String,
    pub(super) kind: String,
    pub(super) access_duration_sec: u64,
    pub(super) status: String,
    pub(super) revoke_at: Option<String>,
    pub(super) created_at: String,
    pub(super) groups: Vec<ReviewGroup>,
    pub(super) rule: Option<String>,
    pub(super) min_approvals: Option<u32>,
    pub(super) rejection_reason: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) id: String,
    pub(super) new: NewReview,
    pub(super) created_at: String,
    pub(super) status: String,
    pub(super) review: Review,
}

/// A time as hoop writes it (RFC 3339, milliseconds, UTC), `seconds` after an epoch of the
/// fake's own.
pub(super) fn stamp(seconds: u64) -> String {
    let t =
        time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_796_000_000 + seconds as i64);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl Review {
    /// The review's JSON; `full`: as `GET /api/reviews/{id}` and a session by id give it,
    /// otherwise as the session listing nests it (without the rule's fields).
    pub(super) fn json(&self, session: Option<&str>, full: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "type": self.kind,
            "access_duration": self.access_duration_sec * 1_000_000_000,
            "status": self.status,
            "revoke_at": self.revoke_at,
            "created_at": self.created_at,
            "review_groups_data": self.groups,
            "time_window": null,
            "access_request_rule_name": if full { json!(self.rule) } else { Value::Null },
            "min_approvals": if full { json!(self.min_approvals) } else { Value::Null },
            "force_approval_groups": null,
        });
        if let Some(s) = session {
            v["session"] = json!(s);
        }
        if let Some(r) = &self.rejection_reason {
            v["rejection_reason"] = json!(r);
        }
        v
    }
}

impl Session {
    pub(super) fn json(&self, full: bool) -> Value {
        let n = &self.new;
        let ai = match (&n.ai, full) {
            (Some((risk, title, explanation)), true) => json!({
                "risk_level": risk, "title": title, "explanation": explanation,
                "action": "require_access_request",
            }),
            _ => Value::Null,
        };
        json!({
            "id": self.id,
            "org_id": "0cd7f941-2bb8-4f9f-93b0-11620d4652ab",
            "script": if full { json!({"data": n.script}) } else { Value::Null },
            "script_size": n.script.len(),
            "labels": null,
            "integrations_metadata": null,
            "metadata": n.metadata,
            "metrics": null,
            "user": n.owner.email,
            "user_id": n.owner.id,
            "user_name": n.owner.name,
            "type": n.connection_type,
            "connection_subtype": n.connection_subtype,
            "connection": n.connection,
            "resource_name": n.connection,
            "role_name": n.connection,
            "connection_tags": null,
            "review": self.review.json(None, full),
            "verb": n.verb,
            "status": self.status,
            "exit_code": null,
            "event_size": 0,
            "start_date": self.created_at,
            "end_date": null,
            "ai_analysis": ai,
            "guardrails_info": null,
            "identity_type": "user",
        })
    }
}

#[derive(Default)]
pub(super) struct World {
    pub(super) tokens: HashMap<String, HoopUser>,
    /// Oldest first.
    pub(super) sessions: Vec<Session>,
    /// The fake's clock, in seconds after its epoch; each review created moves it on.
    pub(super) now: u64,
}

/// What tests read and steer.
pub(super) enum Refusal {
    WrongState,
    SelfApproval,
    NotEligible,
    NotFound,
    UnknownStatus,
}

impl Refusal {
    /// hoop's status and message.
    pub(super) fn answer(&self) -> (StatusCode, &'static str) {
        match self {
            Refusal::WrongState => (StatusCode::BAD_REQUEST, "review is in wrong state"),
            Refusal::SelfApproval => (StatusCode::BAD_REQUEST, "unable to self approve review"),
            Refusal::NotEligible => (StatusCode::BAD_REQUEST, "not eligible for review"),
            Refusal::NotFound => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed updating review status: review not found",
            ),
            Refusal::UnknownStatus => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed updating review status: unknown status",
            ),
        }
    }
}

/// hoop's `DoReview` for `status` by `me` on the review or session `id`.
pub(super) fn do_review(
    w: &mut World,
    me: &HoopUser,
    id: &str,
    status: &str,
    reason: Option<&str>,
) -> Result<Value, Refusal> {
    let now = stamp(w.now);
    let now_secs = w.now;
    let x = w
        .sessions
        .iter_mut()
        .find(|x| x.review.id == id || x.id == id)
        .ok_or(Refusal::NotFound)?;
    let r = &mut x.review;
    if !matches!(status, "APPROVED" | "REJECTED" | "REVOKED") {
        return Err(Refusal::UnknownStatus);
    }
    if !matches!(r.status.as_str(), "PENDING" | "APPROVED") {
        return Err(Refusal::WrongState);
    }
    let owner = x.new.owner.id == me.id;
    if status == "APPROVED" && owner && !me.is_admin() {
        return Err(Refusal::SelfApproval);
    }
    if status == "REVOKED" {
        if r.status != "APPROVED" {
            return Err(Refusal::WrongState);
        }
        if r.kind != "jit" {
            return Err(Refusal::NotFound);
        }
    }
    let needed = match x.new.min_approvals {
        Some(m) => r.groups.len().min(m as usize),
        None => r.groups.len(),
    };
    let who = ReviewOwner {
        id: me.id.clone(),
        name: me.name.clone(),
        email: me.email.clone(),
        slack_id: String::new(),
    };
    let mut matched = false;
    for g in r.groups.iter_mut().filter(|g| me.groups.contains(&g.group)) {
        matched = true;
        g.status = status.to_owned();
        g.reviewed_by = Some(who.clone());
        g.review_date = Some(now.clone());
    }
    if !matched {
        if !(owner || me.is_admin()) {
            return Err(Refusal::NotEligible);
        }
        if status != "APPROVED" {
            let group = if me.is_admin() {
                "admin".to_owned()
            } else {
                me.groups.first().cloned().unwrap_or_default()
            };
            r.groups.push(ReviewGroup {
                id: uuid::Uuid::new_v4().to_string(),
                group,
                status: status.to_owned(),
                reviewed_by: Some(who),
                review_date: Some(now.clone()),
                forced_review: false,
            });
        }
    }
    let approved = r.groups.iter().filter(|g| g.status == "APPROVED").count();
    if status == "APPROVED" {
        if approved == needed {
            r.status = "APPROVED".into();
        }
    } else {
        r.status = status.to_owned();
    }
    if r.status == "APPROVED" {
        r.revoke_at = Some(stamp(now_secs + r.access_duration_sec));
        x.status = "ready".into();
    }
    if r.status == "REJECTED" {
        if let Some(reason) = reason.filter(|s| !s.is_empty()) {
            r.rejection_reason = Some(reason.to_owned());
        }
        x.status = "done".into();
    }
    Ok(r.json(Some(&x.id), true))
}
