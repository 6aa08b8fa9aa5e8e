//! A fake hoop.dev gateway on loopback, written from hoop's source (`hoophq/hoop`:
//! `gateway/api/openapi/types.go` for the JSON, `gateway/api/review/review.go` for the review
//! rules, `gateway/api/session/` for the listing, `gateway/api/apiroutes/auth.go` for the
//! Bearer check). It serves what a connector uses:
//!
//! - `GET /api/userinfo`: who the token is;
//! - `GET /api/sessions` with `review.status`, `review.approver`, `limit` (at most 100, more
//!   is cut to 100) and `offset`, answering `{data, total, total_is_capped, has_next_page}`,
//!   newest first, items without `script` and `ai_analysis` as hoop lists them;
//! - `GET /api/sessions/{id}`: the whole session;
//! - `GET /api/reviews/{id}` (a review or session id);
//! - `PUT /api/reviews/{id}` and `PUT /api/sessions/{id}/review`, with hoop's rules: a
//!   reviewer decides for every group of the review they are in; the review is approved when
//!   the approved groups reach `min(groups, min_approvals)` (hoop compares with `==`, kept
//!   here); one rejection rejects it; REJECTED, REVOKED, PROCESSING, EXECUTED are final
//!   (`review is in wrong state`); the owner may not approve unless admin (`unable to self
//!   approve review`); someone in no group is `not eligible for review`; an unknown id is hoop's
//!   500 `failed updating review status: review not found`.
//!
//! Errors are `{"message": ...}`. A test can decide as another user (as in hoop's web UI),
//! lose the answers of the next decisions after applying them, count the calls, and restart
//! the server on the same port with its state.

mod model;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use model::{do_review, stamp, Review, ReviewGroup, Session, World};
pub use model::{HoopUser, NewReview};

#[derive(Default)]
pub struct HoopState {
    world: Mutex<World>,
    /// Decisions to apply and then answer 502, as if the answer were lost.
    pub lose_answers: AtomicUsize,
    /// Every request the fake answered (for what a connector costs hoop).
    pub calls: AtomicUsize,
    /// Every `PUT` of a review that reached the rules.
    pub puts: AtomicUsize,
}

impl HoopState {
    /// Revokes `token`.
    pub fn world_remove_token(&self, token: &str) {
        self.world.lock().unwrap().tokens.remove(token);
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message}))).into_response()
}

fn denied() -> Response {
    error(StatusCode::UNAUTHORIZED, "access denied")
}

/// The user of `Authorization: Bearer <token>`, parsed as hoop does (exactly two parts,
/// `Bearer` case-sensitive).
fn caller(state: &HoopState, headers: &HeaderMap) -> Option<HoopUser> {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let h = headers.get("authorization")?.to_str().ok()?;
    let parts: Vec<&str> = h.split(' ').collect();
    match parts.as_slice() {
        ["Bearer", token] if !token.is_empty() => {
            state.world.lock().unwrap().tokens.get(*token).cloned()
        }
        _ => None,
    }
}

async fn userinfo(State(s): State<Arc<HoopState>>, headers: HeaderMap) -> Response {
    let Some(u) = caller(&s, &headers) else {
        return denied();
    };
    let role = if u.is_admin() { "admin" } else { "standard" };
    Json(json!({
        "id": u.id, "name": u.name, "email": u.email, "status": "active", "verified": true,
        "role": role, "slack_id": "", "picture": "", "groups": u.groups, "is_admin": u.is_admin(),
        "is_multitenant": false, "tenancy_type": "selfhosted",
        "org_id": "0cd7f941-2bb8-4f9f-93b0-11620d4652ab", "org_name": "acme", "org_license": "",
        "feature_ask_ai": "unavailable", "webapp_users_management": "on",
        "intercom_hmac_digest": "", "default_protection_profile": null,
        "show_origin_survey": false, "show_setup_checklist": false,
    }))
    .into_response()
}

fn invalid_option(name: &str, reason: &str) -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        &format!("failed listing sessions, invalid \"{name}\" option: {reason}"),
    )
}

/// `limit` (default 20, at most 100) and `offset` (at most 10000), or the option that is
/// wrong and why, as hoop says it.
fn page_of(q: &HashMap<String, String>) -> Result<(usize, usize), (&'static str, String)> {
    let number = |name: &'static str, default: i64| match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| (name, format!("\"{v}\" is not a number"))),
    };
    let limit = number("limit", 20)?;
    if limit < 1 {
        return Err(("limit", format!("must be at least 1, got {limit}")));
    }
    let offset = number("offset", 0)?;
    if offset < 0 {
        return Err(("offset", format!("must not be negative, got {offset}")));
    }
    if offset > 10_000 {
        return Err((
            "offset",
            format!("must not be greater than 10000, got {offset}; narrow the result set with a filter instead of paginating deeper"),
        ));
    }
    Ok((limit.min(100) as usize, offset as usize))
}

async fn sessions(
    State(s): State<Arc<HoopState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(me) = caller(&s, &headers) else {
        return denied();
    };
    let (limit, offset) = match page_of(&q) {
        Ok(p) => p,
        Err((name, reason)) => return invalid_option(name, &reason),
    };
    let w = s.world.lock().unwrap();
    let approver_groups = q.get("review.approver").map(|email| {
        w.tokens
            .values()
            .find(|u| u.email == *email)
            .map(|u| u.groups.clone())
            .unwrap_or_default()
    });
    let matching: Vec<&Session> = w
        .sessions
        .iter()
        .rev()
        .filter(|x| {
            // Visibility: admins see all; others their own and their groups' reviews.
            me.is_admin()
                || x.new.owner.id == me.id
                || x.review.groups.iter().any(|g| me.groups.contains(&g.group))
        })
        .filter(|x| {
            q.get("review.status")
                .is_none_or(|st| x.review.status == *st)
        })
        .filter(|x| {
            approver_groups
                .as_ref()
                .is_none_or(|groups| x.review.groups.iter().any(|g| groups.contains(&g.group)))
        })
        .collect();
    let total = matching.len();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|x| x.json(false))
        .collect();
    Json(json!({
        "data": page,
        "total": total,
        "total_is_capped": false,
        "has_next_page": offset + limit < total,
    }))
    .into_response()
}

async fn session(
    State(s): State<Arc<HoopState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(me) = caller(&s, &headers) else {
        return denied();
    };
    let w = s.world.lock().unwrap();
    let Some(x) = w.sessions.iter().find(|x| x.id == id) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let allowed = me.is_admin()
        || x.new.owner.id == me.id
        || x.review.groups.iter().any(|g| me.groups.contains(&g.group));
    if !allowed {
        return error(
            StatusCode::FORBIDDEN,
            "user is not allowed to access this session",
        );
    }
    Json(x.json(true)).into_response()
}

async fn review(
    State(s): State<Arc<HoopState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if caller(&s, &headers).is_none() {
        return denied();
    }
    let w = s.world.lock().unwrap();
    match w.sessions.iter().find(|x| x.review.id == id || x.id == id) {
        Some(x) => Json(x.review.json(Some(&x.id), true)).into_response(),
        None => error(StatusCode::NOT_FOUND, "resource not found"),
    }
}

/// Why hoop refuses a review.
async fn put_review(
    State(s): State<Arc<HoopState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(me) = caller(&s, &headers) else {
        return denied();
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid character in the request body",
        );
    };
    let Some(status) = body["status"].as_str().filter(|s| !s.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Key: 'ReviewRequest.Status' Error:Field validation for 'Status' failed on the 'required' tag",
        );
    };
    s.puts.fetch_add(1, Ordering::SeqCst);
    let status = status.to_uppercase();
    let answer = {
        let mut w = s.world.lock().unwrap();
        do_review(&mut w, &me, &id, &status, body["rejection_reason"].as_str())
    };
    match answer {
        Ok(review) => {
            if s.lose_answers
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return error(
                    StatusCode::BAD_GATEWAY,
                    "the answer was lost on its way back",
                );
            }
            Json(review).into_response()
        }
        Err(r) => {
            let (status, message) = r.answer();
            error(status, message)
        }
    }
}

/// The fake server.
pub struct FakeHoop {
    pub addr: SocketAddr,
    pub state: Arc<HoopState>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn router(state: Arc<HoopState>) -> axum::Router {
    use axum::routing::{get, put};
    axum::Router::new()
        .route("/api/userinfo", get(userinfo))
        .route("/api/sessions", get(sessions))
        .route("/api/sessions/{id}", get(session))
        .route("/api/sessions/{id}/review", put(put_review))
        .route("/api/reviews/{id}", get(review).put(put_review))
        .with_state(state)
}

fn serve(listener: tokio::net::TcpListener, state: Arc<HoopState>) -> tokio::task::JoinHandle<()> {
    let app = router(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

impl FakeHoop {
    /// Starts a fake hoop on a free loopback port.
    pub async fn start() -> FakeHoop {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state: Arc<HoopState> = Arc::default();
        FakeHoop {
            addr: listener.local_addr().unwrap(),
            task: Some(serve(listener, state.clone())),
            state,
        }
    }

    /// The gateway's URL (what `countersign connect hoop --url` takes).
    pub fn url(&self) -> url::Url {
        format!("http://{}", self.addr).parse().unwrap()
    }

    /// Stops serving, and waits until it has: connections are refused until
    /// [`FakeHoop::start_again`].
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Serves again on the same port with the same state.
    pub async fn start_again(&mut self) {
        self.stop().await;
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    tries += 1;
                    assert!(tries < 100, "cannot bind {} again: {e}", self.addr);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        };
        self.task = Some(serve(listener, self.state.clone()));
    }

    /// Revokes `token` (hoop answers 401 to it from now on).
    pub fn remove_token(&self, token: &str) {
        self.state.world_remove_token(token);
    }

    /// Gives `user` the token `token` (an `hpk_...` API key or an access token).
    pub fn add_user(&self, token: &str, user: &HoopUser) {
        self.state
            .world
            .lock()
            .unwrap()
            .tokens
            .insert(token.to_owned(), user.clone());
    }

    /// Creates a pending review and its session; returns `(session id, review id)`.
    pub fn create(&self, new: NewReview) -> (String, String) {
        let mut w = self.state.world.lock().unwrap();
        w.now += 1;
        let created = stamp(w.now);
        let session_id = uuid::Uuid::new_v4().to_string();
        let review_id = uuid::Uuid::new_v4().to_string();
        let kind = if new.verb == "connect" {
            "jit"
        } else {
            "onetime"
        };
        let review = Review {
            id: review_id.clone(),
            kind: kind.into(),
            access_duration_sec: if kind == "jit" { new.access_seconds } else { 0 },
            status: "PENDING".into(),
            revoke_at: None,
            created_at: created.clone(),
            groups: new
                .groups
                .iter()
                .map(|g| ReviewGroup {
                    id: uuid::Uuid::new_v4().to_string(),
                    group: g.clone(),
                    status: "PENDING".into(),
                    reviewed_by: None,
                    review_date: None,
                    forced_review: false,
                })
                .collect(),
            rule: new.min_approvals.map(|_| "prod-writes".to_owned()),
            min_approvals: new.min_approvals,
            rejection_reason: None,
        };
        w.sessions.push(Session {
            id: session_id.clone(),
            new,
            created_at: created,
            status: "open".into(),
            review,
        });
        (session_id, review_id)
    }

    /// `user` decides review `id` as in hoop's web UI: the review's JSON, or hoop's refusal
    /// `(status, message)`.
    pub fn decide_as(
        &self,
        user: &HoopUser,
        id: &str,
        status: &str,
    ) -> Result<Value, (u16, String)> {
        let mut w = self.state.world.lock().unwrap();
        do_review(&mut w, user, id, status, None).map_err(|r| {
            let (status, message) = r.answer();
            (status.as_u16(), message.to_owned())
        })
    }

    /// The review's status now.
    pub fn status(&self, review_id: &str) -> String {
        let w = self.state.world.lock().unwrap();
        w.sessions
            .iter()
            .find(|x| x.review.id == review_id)
            .map(|x| x.review.status.clone())
            .unwrap_or_default()
    }

    /// Who reviewed each group of a review: `(group, status, reviewer email)`.
    pub fn groups(&self, review_id: &str) -> Vec<(String, String, Option<String>)> {
        let w = self.state.world.lock().unwrap();
        w.sessions
            .iter()
            .find(|x| x.review.id == review_id)
            .map(|x| {
                x.review
                    .groups
                    .iter()
                    .map(|g| {
                        (
                            g.group.clone(),
                            g.status.clone(),
                            g.reviewed_by.as_ref().map(|o| o.email.clone()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for FakeHoop {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
