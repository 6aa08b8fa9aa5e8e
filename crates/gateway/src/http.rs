//! The axum router. Handlers are thin: authenticate, decode, call the module that owns the
//! rule, encode.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use countersign_protocol::api::{paths, CreatedRequest, NewRequest, RequestView};
use countersign_protocol::types::MAX_MESSAGE_BYTES;
use countersign_protocol::{GatewayInfo, PairChallenge, Paired, Receipt, Signed, PROTOCOL_VERSION};
use serde::Deserialize;

use crate::error::ApiError;
use crate::{approvals, pairing, stream, tokens, Gateway};

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route(paths::INFO, get(info))
        .route(paths::PAIR_START, post(pair_start))
        .route(paths::PAIR_FINISH, post(pair_finish))
        .route(paths::STREAM, get(stream::handler))
        .route(paths::REQUESTS, post(create_request))
        .route("/v1/requests/{id}", get(get_request))
        .route("/v1/requests/{id}/withdraw", post(withdraw))
        .route(paths::DECISIONS, post(decide))
        .route(paths::OPENAPI, get(openapi))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .with_state(gw)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no_such_endpoint", "There is no such endpoint.")
}

async fn info(State(gw): State<Arc<Gateway>>) -> Json<GatewayInfo> {
    Json(GatewayInfo {
        v: PROTOCOL_VERSION,
        name: gw.config.name.clone(),
        gateway_key: gw.key.public(),
        fingerprint: gw.fingerprint.clone(),
        webauthn_origin: gw.config.webauthn_origin.to_string(),
    })
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

async fn pair_start(
    State(gw): State<Arc<Gateway>>,
    body: Bytes,
) -> Result<Json<PairChallenge>, ApiError> {
    pairing::start(&gw, &body).map(Json)
}

async fn pair_finish(
    State(gw): State<Arc<Gateway>>,
    body: Bytes,
) -> Result<Json<Signed<Paired>>, ApiError> {
    pairing::finish(&gw, &body).map(Json)
}

async fn create_request(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedRequest>), ApiError> {
    let requester = tokens::authenticate(&gw, &headers)?;
    let new: NewRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!("The request body is invalid: {e}."),
        )
    })?;
    let created = approvals::create_request(&gw, &requester, new)?;
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
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<RequestView>, ApiError> {
    let requester = tokens::authenticate(&gw, &headers)?;
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(60));
    approvals::view_wait(&gw, &requester, &id, wait)
        .await
        .map(Json)
}

async fn withdraw(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    let requester = tokens::authenticate(&gw, &headers)?;
    approvals::withdraw(&gw, &requester, &id).map(Json)
}

async fn decide(
    State(gw): State<Arc<Gateway>>,
    body: Bytes,
) -> Result<Json<Signed<Receipt>>, ApiError> {
    approvals::decide(&gw, &body).map(|a| Json(a.receipt()))
}
