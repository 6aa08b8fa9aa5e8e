//! The handlers of the gateway log (docs/protocol.md, section 9.6) and of evidence bundles:
//! authenticate (none, an auditor token, a device, or the request's own requester token),
//! decode the query, call `tlog` or `evidence`.

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use countersign_protocol::api::{paths, ErrorCode};
use countersign_protocol::log::Proof;
use countersign_protocol::types::Decode;
use serde::Deserialize;

use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::tokens::{self, Role};
use crate::{devices, tlog};

fn is_bearer(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "))
}

/// Whoever reads the log's proofs: an auditor token or a paired device.
fn auditor_or_device(gw: &Gateway, headers: &HeaderMap, path: &str) -> Result<(), ApiError> {
    if is_bearer(headers) {
        auditor(gw, headers)
    } else {
        devices::authenticate_device(gw, headers, "GET", path).map(|_| ())
    }
}

/// An auditor token, and nothing else.
pub(super) fn auditor(gw: &Gateway, headers: &HeaderMap) -> Result<(), ApiError> {
    match tokens::authenticate_any(gw, headers)? {
        (_, Role::Auditor) => Ok(()),
        (_, Role::Requester) => Err(ApiError::forbidden(
            ErrorCode::AuditorTokenRequired,
            "This endpoint needs an auditor token (countersign-gateway token create NAME --auditor).",
        )),
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>, what: &str) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|_| {
        ApiError::bad_request(
            ErrorCode::BadQuery,
            format!("The query must give {what} as whole numbers."),
        )
    })
}

pub(super) async fn checkpoint(State(gw): State<Arc<Gateway>>) -> Result<Response, ApiError> {
    let note = gw.blocking(tlog::latest).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response())
}

#[derive(Deserialize)]
pub(super) struct Range {
    start: u64,
    end: u64,
}

pub(super) async fn entries(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    q: Result<Query<Range>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q, "`start` and `end`")?;
    let lines = gw
        .blocking(move |gw| {
            auditor(gw, &headers)?;
            tlog::entries(gw, q.start, q.end)
        })
        .await?;
    let mut body = String::new();
    for e in lines {
        body.push_str(
            &serde_json::to_string(&e).map_err(|e| ApiError::internal("log entries", e))?,
        );
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/jsonl")], body).into_response())
}

#[derive(Deserialize)]
pub(super) struct Inclusion {
    index: u64,
    size: u64,
}

pub(super) async fn inclusion(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    q: Result<Query<Inclusion>, QueryRejection>,
) -> Result<Json<Proof>, ApiError> {
    let q = query(q, "`index` and `size`")?;
    gw.blocking(move |gw| {
        auditor_or_device(gw, &headers, paths::LOG_INCLUSION)?;
        tlog::inclusion(gw, q.index, q.size)
    })
    .await
    .map(Json)
}

#[derive(Deserialize)]
pub(super) struct Consistency {
    old: u64,
    size: u64,
}

pub(super) async fn consistency(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    q: Result<Query<Consistency>, QueryRejection>,
) -> Result<Json<Proof>, ApiError> {
    let q = query(q, "`old` and `size`")?;
    gw.blocking(move |gw| {
        auditor_or_device(gw, &headers, paths::LOG_CONSISTENCY)?;
        tlog::consistency(gw, q.old, q.size)
    })
    .await
    .map(Json)
}

/// `GET /v2/requests/{id}/evidence`: for an auditor token, the request's own requester, or a
/// device whose approver the request was addressed to (for anyone else's device, the request
/// does not exist).
pub(super) async fn evidence(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<countersign_protocol::evidence::Evidence>, ApiError> {
    let id = super::extract::path_param(id)?;
    gw.blocking(move |gw| {
        if !is_bearer(&headers) {
            let path = format!("{}/{id}/evidence", paths::REQUESTS);
            let device = devices::authenticate_device(gw, &headers, "GET", &path)?;
            let addressed = gw.store.read(|tx| -> Result<bool, ApiError> {
                Ok(tx.addressees(&id)?.contains(&device.approver))
            })?;
            if !addressed {
                return Err(ApiError::not_found(
                    ErrorCode::UnknownRequest,
                    "The gateway has no request with this id for this approver.",
                ));
            }
            return crate::evidence::bundle(gw, &id);
        }
        let (name, role) = tokens::authenticate_any(gw, &headers)?;
        let bundle = crate::evidence::bundle(gw, &id)?;
        if role == Role::Requester && bundle.request.body.requester != name {
            return Err(ApiError::forbidden(
                ErrorCode::AuditorTokenRequired,
                "A request's evidence is for its own requester or an auditor token.",
            ));
        }
        Ok(bundle)
    })
    .await
    .map(Json)
}

/// `POST /v2/log/cosignatures` (device): a witness's cosignature of a checkpoint.
pub(super) async fn cosignature(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    b: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<countersign_protocol::log::CosignatureAck>, ApiError> {
    let b = super::extract::body(b)?;
    gw.blocking(move |gw| {
        let device = devices::authenticate_device(gw, &headers, "POST", paths::LOG_COSIGNATURES)?;
        let cosignature = <countersign_protocol::log::Cosignature as Decode>::decode(&b)
            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidMessage, e.to_string()))?;
        tlog::cosigned(gw, &device, &cosignature)
    })
    .await
    .map(Json)
}

/// `GET /v2/devices/{device_id}/checkpoint` (auditor): the audit checkpoint the gateway holds
/// for a device, with its signed acknowledgement.
pub(super) async fn device_checkpoint(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<countersign_protocol::api::CheckpointState>, ApiError> {
    let id = super::extract::path_param(id)?;
    gw.blocking(move |gw| {
        auditor(gw, &headers)?;
        crate::checkpoints::of_device(gw, &id)
    })
    .await
    .map(Json)
}
