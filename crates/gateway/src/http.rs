//! The axum router. Handlers are thin: authenticate, decode, call the module that owns the
//! rule, encode.
//!
//! This is the store's async edge: the domain's functions and their transaction closures are
//! synchronous, and a handler runs every one that touches the store (authentication included)
//! on tokio's blocking pool through [`Gateway::blocking`], never inline on an async worker.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use countersign_protocol::api::{
    paths, CheckpointState, CreatedRequest, ErrorCode, NewRequest, ReportAck, RequestView,
};
use countersign_protocol::types::MAX_MESSAGE_BYTES;
use countersign_protocol::{GatewayInfo, PairChallenge, Paired, Receipt, Signed, PROTOCOL_VERSION};
use serde::Deserialize;

use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::metrics::Outcome;
use crate::refusals::{refused, ANONYMOUS, DECISION_REJECTED, PASSKEY_REFUSED, REQUEST_REFUSED};
use crate::{
    checkpoints, decisions, devices, lifecycle, pairing, reports, requests, stream, tokens,
};

mod extract;
mod log;
pub mod ops;

use extract::{body, path_param};

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route(paths::INFO, get(info))
        .route(paths::PAIR_START, post(pair_start))
        .route(paths::PAIR_FINISH, post(pair_finish))
        .route(paths::STREAM, get(stream::handler))
        .route(paths::REQUESTS, post(create_request))
        .route("/v2/requests/{id}", get(get_request))
        .route("/v2/requests/{id}/withdraw", post(withdraw))
        .route(paths::DECISIONS, post(decide))
        .route(paths::CHECKPOINTS, post(upload_checkpoint))
        .route(paths::CHECKPOINT_LATEST, get(latest_checkpoint))
        .route(paths::REPORTS, post(report))
        .route(paths::ACKS, post(acknowledge))
        .route(paths::CHALLENGES, post(challenge))
        .route(paths::PASSKEYS, get(list_passkeys).post(add_passkey))
        .route(paths::PASSKEYS_ENROL, post(enrol_passkey))
        .route(paths::PASSKEYS_REMOVE, post(remove_passkey))
        .route(paths::LOG_CHECKPOINT, get(log::checkpoint))
        .route(paths::LOG_ENTRIES, get(log::entries))
        .route(paths::LOG_INCLUSION, get(log::inclusion))
        .route(paths::LOG_CONSISTENCY, get(log::consistency))
        .route(paths::LOG_COSIGNATURES, post(log::cosignature))
        .route("/v2/requests/{id}/evidence", get(log::evidence))
        .route("/v2/devices/{id}/checkpoint", get(log::device_checkpoint))
        .route("/github/webhook", post(github_webhook))
        .route(paths::OPENAPI, get(openapi))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/v1", axum::routing::any(protocol_upgraded))
        .route("/v1/{*rest}", axum::routing::any(protocol_upgraded))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .with_state(gw)
}

async fn not_found() -> ApiError {
    ApiError::not_found(ErrorCode::NoSuchEndpoint, "There is no such endpoint.")
}

/// Every path of protocol version 1: a device paired under it must pair again.
async fn protocol_upgraded() -> ApiError {
    ApiError::gone(
        ErrorCode::ProtocolUpgraded,
        "This gateway speaks Countersign protocol version 2; pair this device again with a new invite.",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "This endpoint does not accept that HTTP method.",
    )
}

/// The requester behind a requester token; a refused token is audited.
fn requester(gw: &Gateway, headers: &HeaderMap) -> Result<String, ApiError> {
    refused(
        gw,
        REQUEST_REFUSED,
        ANONYMOUS,
        tokens::authenticate(gw, headers),
    )
}

async fn info(State(gw): State<Arc<Gateway>>) -> Json<GatewayInfo> {
    Json(GatewayInfo {
        v: PROTOCOL_VERSION,
        name: gw.config.name.clone(),
        gateway_key: gw.key.public(),
        fingerprint: gw.fingerprint.clone(),
        webauthn_origin: gw.origin(),
    })
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

async fn pair_start(
    State(gw): State<Arc<Gateway>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<PairChallenge>, ApiError> {
    let b = body(b)?;
    gw.blocking(move |gw| pairing::start(gw, &b))
        .await
        .map(Json)
}

async fn pair_finish(
    State(gw): State<Arc<Gateway>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<Signed<Paired>>, ApiError> {
    let b = body(b)?;
    gw.blocking(move |gw| pairing::finish(gw, &b))
        .await
        .map(Json)
}

async fn create_request(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedRequest>), ApiError> {
    let created = gw
        .blocking(move |gw| {
            let requester = requester(gw, &headers)?;
            let created = body(b)
                .and_then(|b| {
                    serde_json::from_slice::<NewRequest>(&b).map_err(|e| {
                        ApiError::bad_request(
                            ErrorCode::InvalidRequest,
                            format!("The request body is invalid: {e}."),
                        )
                    })
                })
                .and_then(|new| requests::create_request(gw, &requester, new));
            refused(gw, REQUEST_REFUSED, &requester, created)
        })
        .await?;
    let status = if created.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(created)))
}

#[derive(Deserialize)]
struct WaitQuery {
    wait: Option<u64>,
}

async fn get_request(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<RequestView>, ApiError> {
    let requester = gw.blocking(move |gw| requester(gw, &headers)).await?;
    let id = path_param(id)?;
    let Query(q) = q.map_err(|_| {
        ApiError::bad_request(
            ErrorCode::BadQuery,
            "`wait` must be a whole number of seconds.",
        )
    })?;
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(60));
    lifecycle::view_wait(&gw, &requester, &id, wait)
        .await
        .map(Json)
}

async fn withdraw(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<RequestView>, ApiError> {
    let id = path_param(id);
    gw.blocking(move |gw| {
        let requester = requester(gw, &headers)?;
        let withdrawn = id.and_then(|id| lifecycle::withdraw(gw, &requester, &id));
        refused(gw, REQUEST_REFUSED, &requester, withdrawn)
    })
    .await
    .map(Json)
}

async fn upload_checkpoint(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<CheckpointState>, ApiError> {
    let b = body(b)?;
    gw.blocking(move |gw| {
        let device = devices::authenticate_device(gw, &headers, "POST", paths::CHECKPOINTS)?;
        checkpoints::upload(gw, &device, &b)
    })
    .await
    .map(Json)
}

/// A passkey endpoint: the device authenticated for `method` and `path`, then `f`; a refusal
/// is audited (aggregated `passkey.refused`).
async fn passkey_call<T: serde::Serialize + Send + 'static>(
    gw: Arc<Gateway>,
    headers: HeaderMap,
    method: &'static str,
    path: &'static str,
    f: impl FnOnce(&Gateway, &devices::Device) -> Result<T, ApiError> + Send + 'static,
) -> Result<Json<T>, ApiError> {
    gw.blocking(move |gw| {
        let r = devices::authenticate_device(gw, &headers, method, path).and_then(|d| f(gw, &d));
        refused(
            gw,
            PASSKEY_REFUSED,
            &crate::stream::claimed_device(&headers),
            r,
        )
    })
    .await
    .map(Json)
}

async fn enrol_passkey(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Json<countersign_protocol::PasskeyEnrolment>, ApiError> {
    passkey_call(
        gw,
        headers,
        "POST",
        paths::PASSKEYS_ENROL,
        crate::enrolment::begin,
    )
    .await
}

async fn add_passkey(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<Signed<countersign_protocol::PasskeyList>>, ApiError> {
    let b = body(b)?;
    passkey_call(gw, headers, "POST", paths::PASSKEYS, move |gw, d| {
        crate::enrolment::add(gw, d, &b)
    })
    .await
}

async fn list_passkeys(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Json<Signed<countersign_protocol::PasskeyList>>, ApiError> {
    passkey_call(gw, headers, "GET", paths::PASSKEYS, crate::enrolment::list).await
}

async fn remove_passkey(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<Signed<countersign_protocol::PasskeyList>>, ApiError> {
    let b = body(b)?;
    passkey_call(gw, headers, "POST", paths::PASSKEYS_REMOVE, move |gw, d| {
        crate::enrolment::remove(gw, d, &b)
    })
    .await
}

async fn latest_checkpoint(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Json<CheckpointState>, ApiError> {
    gw.blocking(move |gw| {
        let device = devices::authenticate_device(gw, &headers, "GET", paths::CHECKPOINT_LATEST)?;
        checkpoints::latest(gw, &device)
    })
    .await
    .map(Json)
}

async fn report(
    State(gw): State<Arc<Gateway>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<ReportAck>, ApiError> {
    let b = body(b)?;
    gw.blocking(move |gw| reports::report(gw, &b))
        .await
        .map(Json)
}

async fn challenge(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<countersign_protocol::api::IssuedChallenge>, ApiError> {
    let b = body(b)?;
    gw.blocking(move |gw| {
        let device = devices::authenticate_device(gw, &headers, "POST", paths::CHALLENGES)?;
        crate::challenges::issue(gw, &device, &b)
    })
    .await
    .map(Json)
}

async fn acknowledge(
    State(gw): State<Arc<Gateway>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<Signed<countersign_protocol::StatusUpdate>>, ApiError> {
    let b = body(b)?;
    gw.blocking(move |gw| crate::acks::acknowledge(gw, &b))
        .await
        .map(Json)
}

async fn decide(
    State(gw): State<Arc<Gateway>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<Signed<Receipt>>, ApiError> {
    let b = match body(b) {
        Ok(b) => b,
        Err(e) => {
            let gw = gw.clone();
            let audited = e.clone();
            let _ = gw
                .blocking(move |gw| {
                    gw.audit_refused(DECISION_REJECTED, ANONYMOUS, &audited);
                    Ok(())
                })
                .await;
            return Err(e);
        }
    };
    let started = std::time::Instant::now();
    let answer = gw.blocking(move |gw| decisions::decide(gw, &b)).await;
    let outcome = match &answer {
        Ok(_) => Outcome::Receipt,
        Err(_) => Outcome::Refused,
    };
    gw.metrics.decision(outcome, started.elapsed());
    answer.map(|a| Json(a.receipt()))
}

/// A GitHub App webhook (docs/github.md); refusals are audited as `github.refused`.
async fn github_webhook(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    gw.blocking(move |gw| {
        let answer = body(b).and_then(|b| crate::github::receive(gw, &headers, &b));
        crate::refusals::refused(
            gw,
            crate::refusals::GITHUB_REFUSED,
            crate::refusals::ANONYMOUS,
            answer,
        )
    })
    .await
    .map(|(status, v)| (status, Json(v)))
}
