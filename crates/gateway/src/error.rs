//! The gateway's error types: [`ApiError`], the one error HTTP clients see (a stable code and a
//! sentence; internal details such as the database's and I/O errors are logged, never sent),
//! [`StoreError`], what the database reports, with the one mapping from it to an [`ApiError`],
//! and [`GatewayError`], why the gateway could not start or run an administrative command.
//!
//! This module depends on no other module of the crate, so every module can return these
//! errors without importing the module that produces them.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use countersign_protocol::api::{ErrorBody, ErrorCode, ErrorDetail};
use countersign_protocol::{Refusal, Signed, StatusUpdate};

/// A failure of the gateway's database. The database's own error is kept as the source of
/// [`StoreError::Database`], as an opaque error: no database type appears outside the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A statement failed; `disk_full` when the database reported a full disk.
    #[error("The gateway database failed: {source}")]
    Database {
        source: Box<dyn std::error::Error + Send + Sync>,
        disk_full: bool,
    },
    #[error("Cannot create the gateway database file: {0}")]
    Io(std::io::Error),
    #[error("The gateway database has schema version {found}, newer than this build's {supported}; upgrade the gateway.")]
    TooNew { found: i64, supported: i64 },
    #[error("A stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("The gateway database could not commit: {message}")]
    CommitFailed { message: String, disk_full: bool },
    #[error("The gateway's database lock is poisoned by an earlier panic.")]
    Poisoned,
}

impl StoreError {
    /// The database reported a full disk (directly, or as the reason a group commit failed).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Database { disk_full, .. } | StoreError::CommitFailed { disk_full, .. } => {
                *disk_full
            }
            _ => false,
        }
    }
}

/// Why the gateway could not start or run an administrative command.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Cannot use the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("The gateway key file {path} is invalid: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("The WebAuthn settings are invalid (rp id `{rp_id}`, origin `{origin}`): {reason}")]
    WebAuthn {
        rp_id: String,
        origin: String,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("Cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A failure answered to an HTTP client: its status, its stable code (the wire's
/// `error.code`, one of docs/protocol.md 6.2) and a sentence. A decision refused for good also
/// carries the signed refusal and the request's signed status (docs/protocol.md 8.5).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub signed: Option<Box<SignedRefusal>>,
}

/// The signed part of a final refusal of a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedRefusal {
    pub refusal: Signed<Refusal>,
    pub status: Option<Signed<StatusUpdate>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            signed: None,
        }
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn forbidden(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn gone(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, code, message)
    }

    /// An internal failure: logged in full, answered with a fixed sentence.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(%err, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "The gateway hit an internal error; the operator can find the details in its log.",
        )
    }
}

impl From<countersign_protocol::ProtocolError> for ApiError {
    fn from(e: countersign_protocol::ProtocolError) -> Self {
        ApiError::bad_request(ErrorCode::InvalidMessage, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    /// A full disk is named (the caller may retry once the operator freed space); any other
    /// store failure is internal.
    fn from(e: StoreError) -> Self {
        if e.is_disk_full() {
            tracing::error!(err = %e, "the gateway's disk is full");
            return Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::StorageFull,
                "The gateway's disk is full, so nothing was stored; try again once the operator freed space.",
            );
        }
        ApiError::internal("store", e)
    }
}

/// `v` as JSON text; failing to serialise is an internal error.
pub(crate) fn json_text<T: serde::Serialize>(v: &T) -> Result<String, ApiError> {
    serde_json::to_string(v).map_err(|e| ApiError::internal("serialise", e))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (refusal, status) = match self.signed {
            Some(s) => (Some(s.refusal), s.status),
            None => (None, None),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
            refusal,
            status,
        };
        (self.status, Json(body)).into_response()
    }
}
