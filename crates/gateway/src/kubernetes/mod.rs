//! The Kubernetes validating admission webhook (docs/kubernetes.md): its own HTTPS listener,
//! where only a client with a certificate from `client_ca` (the API server) is served, and one
//! route, `POST /admit`, that answers AdmissionReviews.
//!
//! A review the configuration holds (`operation`) becomes one exact operation with a key. The
//! first attempt creates a request through the policy, as the Kubernetes user (`k8s:<name>`)
//! in its groups, waits `hold_ms` for a fast approval and is otherwise denied as pending. Once
//! the request is approved, the next attempt of the same operation uses its grant, once,
//! inside the grant window (the shorter of the policy's and `grant_seconds`), and is admitted;
//! the grant's `used_at` is set in the same write, so two retries at once admit one. A
//! different command, object or user has another key and another request. A `dryRun` review
//! changes nothing here and is admitted with a warning. Every step is audited
//! (`kubernetes.*`, protocol.md 9.5).

pub mod diff;
pub mod operation;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use countersign_protocol::api::ErrorCode;
use countersign_protocol::RequestState;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube_core::DynamicObject;
use serde_json::json;

use crate::config::kubernetes::KubernetesConfig;
use crate::error::{ApiError, GatewayError};
use crate::gateway::Gateway;
use crate::hub::Pushed;
use crate::requests::{create_request_as, integration_request, Vouched};
use crate::status::push_status;
use operation::{classify, Classified, Held};

/// The running webhook.
pub struct Webhook {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// Stops accepting reviews and waits for the listener to end.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Ends the listener at once.
    pub fn abort(&self) {
        self.task.abort();
    }
}

struct Hook {
    gw: Arc<Gateway>,
    cfg: KubernetesConfig,
}

/// Binds `cfg.listen` and serves the webhook over mutual TLS.
pub fn serve(gw: Arc<Gateway>, cfg: KubernetesConfig) -> Result<Webhook, GatewayError> {
    let tls = crate::tls::load_mutual(
        &cfg.tls_cert,
        &cfg.tls_key,
        &cfg.client_ca,
        &cfg.client_names,
    )?;
    let listen = cfg.listen;
    let listener = std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| GatewayError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| GatewayError::Listen {
            addr: listen,
            source,
        })?;
    let limit = cfg.max_review_bytes;
    let app = Router::new()
        .route("/admit", post(admit))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Arc::new(Hook { gw, cfg }));
    let (stop, rx) = tokio::sync::oneshot::channel();
    let task = crate::tls::serve(listener, app, tls.server, rx)?;
    tracing::info!(%addr, "the Kubernetes admission webhook listens");
    Ok(Webhook {
        addr,
        stop: Some(stop),
        task,
    })
}

type Review = AdmissionReview<DynamicObject>;

async fn admit(
    State(hook): State<Arc<Hook>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Review>, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::AdmissionReviewTooLarge,
                format!(
                    "The AdmissionReview is larger than this webhook's max_review_bytes ({} bytes).",
                    hook.cfg.max_review_bytes
                ),
            )
        } else {
            invalid("The body could not be read.".into())
        }
    })?;
    let req = parse(&body)?;
    let response = decide(&hook, &req).await;
    Ok(Json(response.into_review()))
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidAdmissionReview, message)
}

/// The review's request, from an `admission.k8s.io/v1` AdmissionReview.
fn parse(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, ApiError> {
    let review: Review = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("The body is not an AdmissionReview: {e}.")))?;
    if review.types.api_version != kube_core::admission::META_API_VERSION_V1
        || review.types.kind != kube_core::admission::META_KIND
    {
        return Err(invalid(format!(
            "The webhook reads admission.k8s.io/v1 AdmissionReview, not {} {}.",
            review.types.api_version, review.types.kind
        )));
    }
    let req: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| invalid("The AdmissionReview carries no request.".into()))?;
    if req.uid.is_empty() {
        return Err(invalid("The AdmissionReview's request has no uid.".into()));
    }
    Ok(req)
}

fn denied(req: &AdmissionRequest<DynamicObject>, message: String) -> AdmissionResponse {
    let mut r = AdmissionResponse::from(req).deny(message);
    r.result.code = 403;
    r.result.reason = "Forbidden".into();
    r.result.status = Some(kube_core::response::StatusSummary::Failure);
    r
}

/// The answer to a review that parsed; a failure inside is a denial with its sentence.
async fn decide(hook: &Arc<Hook>, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let user = req.user_info.username.clone().unwrap_or_default();
    let held = match classify(&hook.cfg, req) {
        Ok(Classified::NotHeld) => return AdmissionResponse::from(req),
        Ok(Classified::Held(h)) => *h,
        Err(e) => {
            let detail = json!({"review_uid": req.uid, "user": user, "reason": e.0});
            let _ = hook
                .gw
                .blocking(move |gw| audit(gw, "kubernetes.refused", None, detail))
                .await;
            return denied(req, e.0);
        }
    };
    if req.dry_run {
        let mut r = AdmissionResponse::from(req);
        r.warnings = Some(vec![format!(
            "dry run: nothing was requested; the real {} will need an approval in Countersign",
            held.action
        )]);
        return r;
    }
    match hold(hook, &held, &req.uid).await {
        Ok(None) => AdmissionResponse::from(req),
        Ok(Some(id)) => denied(
            req,
            format!("approval pending: {id} — approve in Countersign, then retry"),
        ),
        Err(e) => {
            let detail = json!({
                "review_uid": req.uid, "user": user, "action": held.action,
                "resource": held.resource, "code": e.code, "reason": e.message,
            });
            let _ = hook
                .gw
                .blocking(move |gw| audit(gw, "kubernetes.refused", None, detail))
                .await;
            denied(
                req,
                format!("Countersign refused the request: {}", e.message),
            )
        }
    }
}

fn audit(
    gw: &Gateway,
    kind: &str,
    request: Option<&str>,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    let now = gw.now();
    gw.store
        .write(|tx| tx.audit_append(now, kind, request, detail))?;
    Ok(())
}

/// What the newest request for an operation lets it do now.
enum Step {
    /// Its grant was used for this review: admitted.
    Admitted,
    /// It is pending: denied, naming it.
    Pending(String),
    /// There is none, or it cannot admit any more (decided otherwise, expired, withdrawn,
    /// revoked, used, or past its grant window): a new request is needed.
    New,
}

/// Holds the operation: `None` when it is admitted, or the id of the pending request it waits
/// for.
async fn hold(hook: &Arc<Hook>, held: &Held, uid: &str) -> Result<Option<String>, ApiError> {
    let gw = &hook.gw;
    let step = {
        let (held, uid) = (held.clone(), uid.to_owned());
        gw.blocking(move |gw| use_grant(gw, &held, &uid)).await?
    };
    match step {
        Step::Admitted => Ok(None),
        Step::Pending(id) => {
            let detail = json!({"review_uid": uid, "requester": held.requester, "key": held.key});
            let audited = id.clone();
            gw.blocking(move |gw| audit(gw, "kubernetes.pending", Some(&audited), detail))
                .await?;
            Ok(Some(id))
        }
        Step::New => {
            let id = {
                let (held, uid, cfg) = (held.clone(), uid.to_owned(), hook.cfg.clone());
                gw.blocking(move |gw| create(gw, &cfg, &held, &uid)).await?
            };
            // A fast approval (or a policy that approves by itself) admits this very attempt.
            let wait = Duration::from_millis(hook.cfg.hold_ms);
            let view = crate::lifecycle::view_wait(gw, &held.requester, &id, wait).await?;
            if view.status.body.state == RequestState::Approved {
                let (held, uid) = (held.clone(), uid.to_owned());
                if let Step::Admitted = gw.blocking(move |gw| use_grant(gw, &held, &uid)).await? {
                    return Ok(None);
                }
            }
            Ok(Some(id))
        }
    }
}

/// Creates the request for `held` and records it under the operation's key.
fn create(
    gw: &Gateway,
    cfg: &KubernetesConfig,
    held: &Held,
    uid: &str,
) -> Result<String, ApiError> {
    let created = create_request_as(
        gw,
        &held.requester,
        Vouched {
            groups: &held.groups,
            grant_seconds: Some(cfg.grant_seconds),
        },
        integration_request(
            held.action.clone(),
            held.resource.clone(),
            held.summary.clone(),
            held.detail.clone(),
            cfg.ttl_seconds,
        ),
    )?;
    let id = created.request.body.id.clone();
    let now = gw.now();
    gw.store.write(|tx| -> Result<(), ApiError> {
        tx.admission_hold_put(&held.key, &id, now)?;
        tx.audit_append(
            now,
            "kubernetes.held",
            Some(&id),
            json!({
                "review_uid": uid,
                "requester": held.requester,
                "groups": held.groups,
                "key": held.key,
            }),
        )?;
        Ok(())
    })?;
    Ok(id)
}

/// Looks at the newest request for the operation and, if it is approved with a live grant,
/// uses the grant for the review `uid` (one status change, pushed and audited
/// `kubernetes.admitted`), all in one write.
fn use_grant(gw: &Gateway, held: &Held, uid: &str) -> Result<Step, ApiError> {
    let now = gw.now();
    let step = gw
        .store
        .write_publish(|tx| -> Result<(Step, Vec<Pushed>), ApiError> {
            let Some(id) = tx.admission_hold_newest(&held.key)? else {
                return Ok((Step::New, Vec::new()));
            };
            let row = tx.request_status(&id)?;
            match RequestState::parse(&row.state) {
                Some(RequestState::Pending) => return Ok((Step::Pending(id), Vec::new())),
                Some(RequestState::Approved) => {}
                _ => return Ok((Step::New, Vec::new())),
            }
            let request: countersign_protocol::Signed<countersign_protocol::ApprovalRequest> =
                serde_json::from_str(&row.signed)
                    .map_err(|e| ApiError::internal("stored request", e))?;
            let approved_at = row.closed_at.unwrap_or(row.status_at);
            let window = request.body.grant_seconds.unwrap_or(0);
            let live = row.used_at.is_none()
                && row.revoked.is_none()
                && now < approved_at.saturating_add(i64::from(window));
            if !live || !tx.use_grant(&id, now)? {
                return Ok((Step::New, Vec::new()));
            }
            tx.audit_append(
                now,
                "kubernetes.admitted",
                Some(&id),
                json!({"review_uid": uid, "requester": held.requester, "key": held.key}),
            )?;
            Ok((Step::Admitted, push_status(gw, tx, &id)?))
        })?;
    gw.changes.notify_waiters();
    Ok(step)
}
