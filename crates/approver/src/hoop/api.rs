//! hoop.dev's HTTP API as a connector uses it (read from hoop's source, `hoophq/hoop`:
//! `gateway/api/openapi/types.go`, `gateway/api/review/review.go`, `gateway/api/session/`):
//! who the token is (`GET /api/userinfo`), the reviews pending for an approver
//! (`GET /api/sessions?review.status=PENDING&review.approver=<email>`, paged), one session in
//! full (`GET /api/sessions/{id}`), one review (`GET /api/reviews/{id}`) and a decision
//! (`PUT /api/reviews/{id}`). Every answer is decoded into the types below, and every refusal
//! into a [`HoopError`] by hoop's status and message.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;
use zeroize::Zeroizing;

pub use crate::hoop_error::HoopError;

/// Upper bound of one call to hoop.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// The page size asked for (hoop cuts larger ones to 100).
const PAGE: usize = 100;
/// The deepest offset hoop serves.
const MAX_OFFSET: usize = 10_000;

/// `GET /api/userinfo`: who a token is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// hoop's user id (the identity provider's subject), as sessions name their owner.
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// `admin`, `auditor`, `standard` or `unregistered`.
    #[serde(default)]
    pub role: String,
}

/// One group of a review and who decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewGroup {
    #[serde(default)]
    pub id: String,
    pub group: String,
    pub status: String,
    #[serde(default)]
    pub reviewed_by: Option<Reviewer>,
    #[serde(default)]
    pub review_date: Option<String>,
}

impl ReviewGroup {
    /// When the group was decided (unix seconds), if hoop said so in a time that parses.
    pub fn decided_at(&self) -> Option<i64> {
        unix_time(self.review_date.as_deref())
    }
}

/// An RFC 3339 time, as hoop writes them, in unix seconds.
pub fn unix_time(rfc3339: Option<&str>) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339?, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reviewer {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
}

/// A review, as `GET /api/reviews/{id}` gives it, or nested in a session (without `session`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub id: String,
    #[serde(default)]
    pub session: Option<String>,
    /// `onetime` or `jit`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// A jit review's access, in nanoseconds.
    #[serde(default)]
    pub access_duration: u64,
    /// `PENDING`, `APPROVED`, `REJECTED`, `REVOKED`, `PROCESSING`, `EXECUTED`, `UNKNOWN`.
    pub status: String,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub review_groups_data: Vec<ReviewGroup>,
    #[serde(default)]
    pub min_approvals: Option<u32>,
    #[serde(default)]
    pub access_request_rule_name: Option<String>,
    #[serde(default)]
    pub rejection_reason: Option<String>,
}

impl Review {
    /// How many groups must approve: `min(groups, min_approvals)`, every group when hoop set no
    /// minimum.
    pub fn needed(&self) -> usize {
        let groups = self.review_groups_data.len();
        self.min_approvals
            .map_or(groups, |m| groups.min(m as usize))
    }

    pub fn approved_groups(&self) -> usize {
        self.review_groups_data
            .iter()
            .filter(|g| g.status == "APPROVED")
            .count()
    }

    /// A jit review's access duration in seconds.
    pub fn access_seconds(&self) -> u64 {
        self.access_duration / 1_000_000_000
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    #[serde(default)]
    pub data: String,
}

/// hoop's own risk analysis of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiAnalysis {
    #[serde(default)]
    pub risk_level: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub explanation: String,
}

/// A session (what a review is about).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    /// The owner's email.
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub user_name: String,
    /// The connection's type (`database`, ...).
    #[serde(rename = "type", default)]
    pub connection_type: String,
    #[serde(default)]
    pub connection_subtype: String,
    #[serde(default)]
    pub connection: String,
    /// `exec` or `connect`.
    #[serde(default)]
    pub verb: String,
    /// The exact input; only in a session read by id.
    #[serde(default)]
    pub script: Option<Script>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    pub review: Option<Review>,
    #[serde(default)]
    pub ai_analysis: Option<AiAnalysis>,
    #[serde(default)]
    pub start_date: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SessionPage {
    data: Vec<Session>,
    #[serde(default)]
    has_next_page: bool,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    message: String,
}

/// A hoop gateway and the token the connector calls it with.
#[derive(Clone)]
pub struct HoopClient {
    http: reqwest::Client,
    base: Url,
    token: Zeroizing<String>,
}

impl std::fmt::Debug for HoopClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoopClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// The decision sent to hoop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoopVerdict {
    Approve,
    Reject,
}

impl HoopVerdict {
    pub fn status(self) -> &'static str {
        match self {
            HoopVerdict::Approve => "APPROVED",
            HoopVerdict::Reject => "REJECTED",
        }
    }
}

impl HoopClient {
    /// A client of the hoop gateway at `base` (its web address, as `https://hoop.example.com`).
    pub fn new(http: reqwest::Client, base: Url, token: Zeroizing<String>) -> HoopClient {
        HoopClient { http, base, token }
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Result<Url, HoopError> {
        let mut base = self.base.clone();
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        base.join(path)
            .map_err(|e| HoopError::BadAnswer(format!("cannot build a hoop URL: {e}")))
    }

    fn unreachable(&self, detail: impl std::fmt::Display) -> HoopError {
        HoopError::Unreachable {
            url: self.base.to_string(),
            detail: detail.to_string(),
        }
    }

    async fn call(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), HoopError> {
        let resp = req
            .bearer_auth(self.token.as_str())
            .header("accept", "application/json")
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.unreachable(crate::gateway::error_chain(&e)))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        Ok((status, body.to_vec()))
    }

    /// Sorts an answer: 2xx decoded as `T`; anything else a [`HoopError`] by hoop's rules.
    fn answer<T: serde::de::DeserializeOwned>(
        &self,
        status: reqwest::StatusCode,
        body: &[u8],
        review: Option<&str>,
    ) -> Result<T, HoopError> {
        if status.is_success() {
            return serde_json::from_slice(body).map_err(|e| HoopError::BadAnswer(e.to_string()));
        }
        let message = serde_json::from_slice::<Message>(body)
            .map(|m| m.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
        Err(classify(&self.base, status.as_u16(), message, review))
    }

    /// `GET /api/userinfo`.
    pub async fn userinfo(&self) -> Result<UserInfo, HoopError> {
        let (status, body) = self.call(self.http.get(self.url("api/userinfo")?)).await?;
        self.answer(status, &body, None)
    }

    /// Every session whose review is pending and which `email` may decide, newest first,
    /// read page by page.
    pub async fn pending(&self, email: &str) -> Result<Vec<Session>, HoopError> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let mut url = self.url("api/sessions")?;
            url.query_pairs_mut()
                .append_pair("review.status", "PENDING")
                .append_pair("review.approver", email)
                .append_pair("limit", &PAGE.to_string())
                .append_pair("offset", &offset.to_string());
            let (status, body) = self.call(self.http.get(url)).await?;
            let page: SessionPage = self.answer(status, &body, None)?;
            let n = page.data.len();
            out.extend(page.data);
            offset += PAGE;
            if !page.has_next_page || n == 0 || offset > MAX_OFFSET {
                return Ok(out);
            }
        }
    }

    /// `GET /api/sessions/{id}`: the session in full (its script and hoop's analysis).
    pub async fn session(&self, id: &str) -> Result<Session, HoopError> {
        let url = self.url(&format!("api/sessions/{}", segment(id)))?;
        let (status, body) = self.call(self.http.get(url)).await?;
        self.answer(status, &body, Some(id))
    }

    /// `GET /api/reviews/{id}`.
    pub async fn review(&self, id: &str) -> Result<Review, HoopError> {
        let url = self.url(&format!("api/reviews/{}", segment(id)))?;
        let (status, body) = self.call(self.http.get(url)).await?;
        self.answer(status, &body, Some(id))
    }

    /// `PUT /api/reviews/{id}` with `verdict` and, for a rejection, `reason`: the review as
    /// hoop left it.
    pub async fn decide(
        &self,
        id: &str,
        verdict: HoopVerdict,
        reason: &str,
    ) -> Result<Review, HoopError> {
        let url = self.url(&format!("api/reviews/{}", segment(id)))?;
        let mut body = serde_json::json!({"status": verdict.status()});
        if verdict == HoopVerdict::Reject && !reason.is_empty() {
            body["rejection_reason"] = Value::from(reason);
        }
        let (status, answer) = self.call(self.http.put(url).json(&body)).await?;
        self.answer(status, &answer, Some(id))
    }
}

/// An id as one path segment (hoop's ids are UUIDs; anything else is escaped, never a path).
fn segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

/// hoop's refusals, by status and message (`gateway/api/review/review.go`,
/// `gateway/api/apiroutes/auth.go`).
pub(crate) fn classify(
    base: &Url,
    status: u16,
    message: String,
    review: Option<&str>,
) -> HoopError {
    match (status, message.as_str()) {
        (401, _) | (403, "access denied") => HoopError::Unauthorized {
            url: base.to_string(),
            status,
            message,
        },
        (400, "unable to self approve review") => HoopError::SelfApproval,
        (400, "not eligible for review") => HoopError::NotEligible,
        (400, "review is in wrong state") => HoopError::AlreadyDecided {
            status: "no longer pending".into(),
        },
        (404, _) => HoopError::UnknownReview(review.unwrap_or_default().to_owned()),
        (500, m) if m.ends_with("review not found") => {
            HoopError::UnknownReview(review.unwrap_or_default().to_owned())
        }
        (s, _) if s >= 500 => HoopError::Unreachable {
            url: base.to_string(),
            detail: format!("HTTP {s}: {message}"),
        },
        _ => HoopError::Refused { status, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        "https://hoop.example.com".parse().unwrap()
    }

    #[test]
    fn hoops_refusals_are_sorted_by_status_and_message() {
        let c = |s, m: &str| classify(&base(), s, m.to_owned(), Some("r1"));
        assert_eq!(
            c(400, "unable to self approve review"),
            HoopError::SelfApproval
        );
        assert_eq!(c(400, "not eligible for review"), HoopError::NotEligible);
        assert!(matches!(
            c(400, "review is in wrong state"),
            HoopError::AlreadyDecided { .. }
        ));
        assert_eq!(
            c(500, "failed updating review status: review not found"),
            HoopError::UnknownReview("r1".into())
        );
        assert_eq!(
            c(404, "resource not found"),
            HoopError::UnknownReview("r1".into())
        );
        assert!(matches!(
            c(401, "access denied"),
            HoopError::Unauthorized { .. }
        ));
        assert!(matches!(
            c(403, "access denied"),
            HoopError::Unauthorized { .. }
        ));
        assert!(c(502, "bad gateway").is_transient());
        assert!(matches!(
            c(400, "both from and to time must be provided"),
            HoopError::Refused { status: 400, .. }
        ));
    }

    #[test]
    fn the_needed_approvals_follow_hoops_rule() {
        let group = |s: &str| ReviewGroup {
            id: String::new(),
            group: "g".into(),
            status: s.into(),
            reviewed_by: None,
            review_date: None,
        };
        let mut r = Review {
            id: "r".into(),
            session: None,
            kind: "jit".into(),
            access_duration: 1_800_000_000_000,
            status: "PENDING".into(),
            created_at: None,
            review_groups_data: vec![group("APPROVED"), group("PENDING"), group("PENDING")],
            min_approvals: None,
            access_request_rule_name: None,
            rejection_reason: None,
        };
        assert_eq!((r.needed(), r.approved_groups()), (3, 1));
        r.min_approvals = Some(2);
        assert_eq!(r.needed(), 2);
        assert_eq!(r.access_seconds(), 1800);
    }
}
