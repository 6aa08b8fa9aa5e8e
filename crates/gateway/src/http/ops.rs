//! The operations endpoints, for load balancers, orchestrators and Prometheus
//! (docs/operations.md):
//!
//! - `GET /healthz`: the process is alive and answers (200), nothing more; a restart is the
//!   remedy when it does not.
//! - `GET /readyz`: this gateway should get traffic: its database answers, its schema is the
//!   one this build writes, and it is not shutting down. 200, or 503 with what is wrong; the
//!   load balancer's remedy is to send traffic elsewhere.
//! - `GET /metrics` (only on the operations listener, `operations_listen`): the figures of
//!   `metrics` as OpenMetrics text.
//!
//! The API's listener serves the first two as well, so a load balancer can check the port it
//! forwards to; `/metrics` stays off it, since counts of requests are nobody else's business.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::error::ApiError;
use crate::gateway::Gateway;

/// The OpenMetrics text format's media type, which Prometheus asks for.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The router of the operations listener.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(gw)
}

/// The answer of `/healthz`.
#[derive(Serialize)]
pub(super) struct Alive {
    alive: bool,
}

pub(super) async fn healthz() -> Json<Alive> {
    Json(Alive { alive: true })
}

/// The answer of `/readyz`: ready, or the reasons it is not.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// Whether a read of the database succeeded.
    pub database: bool,
    /// The schema version in the database (absent when it did not answer) and this build's.
    pub schema: Option<i64>,
    pub schema_wanted: i64,
    pub draining: bool,
    /// Why it is not ready, in words; empty when it is.
    pub problems: Vec<String>,
}

fn readiness(gw: &Gateway) -> Readiness {
    let mut problems = Vec::new();
    let draining = gw.is_draining();
    if draining {
        problems.push("the gateway is shutting down".to_string());
    }
    let wanted = gw.store.schema_wanted();
    let schema = match gw.store.schema_version() {
        Ok(found) => {
            if found != wanted {
                problems.push(format!(
                    "the database's schema is version {found}, this build writes {wanted}"
                ));
            }
            Some(found)
        }
        Err(e) => {
            tracing::warn!(%e, "readiness: the database does not answer");
            problems.push(format!("the database does not answer: {e}"));
            None
        }
    };
    Readiness {
        ready: problems.is_empty(),
        database: schema.is_some(),
        schema,
        schema_wanted: wanted,
        draining,
        problems,
    }
}

pub(super) async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    match gw.blocking(|gw| Ok(readiness(gw))).await {
        Ok(r) if r.ready => (StatusCode::OK, Json(r)).into_response(),
        Ok(r) => (StatusCode::SERVICE_UNAVAILABLE, Json(r)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Result<Response, ApiError> {
    let text = gw
        .blocking(|gw| gw.metrics.render(gw.hub.streams_open(), &gw.store))
        .await?;
    Ok(([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response())
}
