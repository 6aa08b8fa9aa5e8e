//! Requester tokens: `countersign-gateway token create <name>` issues one; only its SHA-256 is
//! stored. The token's name is the requester identity approvers see.

use axum::http::HeaderMap;
use base64::Engine as _;
use countersign_protocol::api::ErrorCode;
use sha2::Digest as _;

use crate::error::ApiError;
use crate::gateway::Gateway;

/// Tokens start with this prefix so they are recognisable in secret scanners.
pub const TOKEN_PREFIX: &str = "cst_";

fn hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_graphic())
}

/// Creates a token for `name` and returns it. The token is shown once.
pub fn create(gw: &Gateway, name: &str) -> Result<String, ApiError> {
    if !valid_name(name) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidName,
            "A requester name is 1 to 128 printable ASCII characters without spaces.",
        ));
    }
    let raw: [u8; 32] = rand::random();
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let now = gw.now();
    gw.store.write(|tx| -> Result<(), ApiError> {
        tx.put_token(name, &hash(&token), now)?;
        tx.audit_append(
            now,
            "token.created",
            None,
            serde_json::json!({"name": name}),
        )?;
        Ok(())
    })?;
    Ok(token)
}

pub fn revoke(gw: &Gateway, name: &str) -> Result<bool, ApiError> {
    let now = gw.now();
    gw.store.write(|tx| -> Result<bool, ApiError> {
        let revoked = tx.revoke_token(name, now)?;
        if revoked {
            tx.audit_append(
                now,
                "token.revoked",
                None,
                serde_json::json!({"name": name}),
            )?;
        }
        Ok(revoked)
    })
}

/// `(name, created_at, revoked)` for every token.
pub fn list(gw: &Gateway) -> Result<Vec<(String, i64, bool)>, ApiError> {
    gw.store.read(|c| Ok(c.tokens()?))
}

/// The requester identity behind a `Bearer` token.
pub fn authenticate(gw: &Gateway, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::unauthorized(
                ErrorCode::TokenRequired,
                "This endpoint needs a requester token (Authorization: Bearer cst_...).",
            )
        })?;
    let h = hash(token);
    let row = gw
        .store
        .read(|c| -> Result<_, ApiError> { Ok(c.token_by_hash(&h)?) })?;
    match row {
        Some((name, None)) => Ok(name),
        Some((_, Some(_))) => Err(ApiError::unauthorized(
            ErrorCode::TokenRevoked,
            "This requester token was revoked.",
        )),
        None => Err(ApiError::unauthorized(
            ErrorCode::UnknownToken,
            "This requester token is not known to the gateway.",
        )),
    }
}
