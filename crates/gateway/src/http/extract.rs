//! The API's own errors for what axum's extractors refuse: an unreadable or oversized body,
//! and a path parameter that does not parse.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::Path;
use axum::http::StatusCode;
use countersign_protocol::api::ErrorCode;
use countersign_protocol::types::MAX_MESSAGE_BYTES;

use crate::error::ApiError;

/// Turns axum's plain-text extractor rejections into the API's JSON errors.
pub(super) fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BodyTooLarge,
                format!("The body is larger than {MAX_MESSAGE_BYTES} bytes."),
            )
        } else {
            ApiError::bad_request(
                ErrorCode::UnreadableBody,
                "The request body could not be read.",
            )
        }
    })
}

pub(super) fn path_param(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(id)| id).map_err(|_| {
        ApiError::bad_request(ErrorCode::BadPath, "The request id in the path is invalid.")
    })
}
