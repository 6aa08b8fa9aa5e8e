//! Device authentication: looking up a paired, unrevoked device (table `devices`), which a
//! device-signed message such as a report names, and the `Countersign-Device` authorization
//! header a device signs for the endpoints it calls (the stream, checkpoints), checked against
//! the gateway's clock and accepted once.

use crate::error::ApiError;
use crate::gateway::Gateway;
use axum::http::HeaderMap;
use countersign_protocol::api::ErrorCode;
use countersign_protocol::{DeviceAuth, PublicKey};

/// How far a device-auth timestamp may be from the gateway's clock.
pub const AUTH_WINDOW_SECONDS: i64 = 300;

/// A paired device, as authenticated from its `Authorization` header.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub approver: String,
    pub public_key: PublicKey,
    /// The nonce of the Authorization header this request was authenticated with.
    pub nonce: String,
}

/// The paired, unrevoked device `id`: the approver it acts for and its public key.
pub fn paired_device(gw: &Gateway, id: &str) -> Result<(String, PublicKey), ApiError> {
    let row = gw
        .store
        .read(|c| -> Result<_, ApiError> { Ok(c.device(id)?) })?;
    let device = row.ok_or_else(|| {
        ApiError::unauthorized(
            ErrorCode::UnknownDevice,
            "This device is not paired with the gateway.",
        )
    })?;
    if device.revoked_at.is_some() {
        return Err(ApiError::unauthorized(
            ErrorCode::DeviceRevoked,
            "This device's pairing was revoked.",
        ));
    }
    let key = PublicKey::parse("devices.public_key", &device.public_key)
        .map_err(|e| ApiError::internal("stored device key", e))?;
    Ok((device.approver, key))
}

/// Checks the `Countersign-Device` header for `method` and `path`.
pub fn authenticate_device(
    gw: &Gateway,
    headers: &HeaderMap,
    method: &str,
    path: &str,
) -> Result<Device, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized(
                ErrorCode::DeviceAuthRequired,
                "This endpoint needs a Countersign-Device authorization header.",
            )
        })?;
    let auth = DeviceAuth::parse_header(header)
        .map_err(|e| ApiError::unauthorized(ErrorCode::BadDeviceAuth, e.to_string()))?;
    let (approver, key) = paired_device(gw, &auth.device)?;
    auth.verify(&key, method, path).map_err(|_| {
        ApiError::unauthorized(
            ErrorCode::BadDeviceSignature,
            "The device authorization signature does not verify.",
        )
    })?;
    let skew = (gw.now() - auth.ts).abs();
    if skew > AUTH_WINDOW_SECONDS {
        return Err(ApiError::unauthorized(
            ErrorCode::StaleDeviceAuth,
            format!(
                "The device authorization is {skew} s away from the gateway's clock (limit 300 s)."
            ),
        ));
    }
    // Each authorization once, on every replica: a nonce is kept for twice the clock window,
    // past which its timestamp is refused anyway.
    let once = format!("{}:{}", auth.device, auth.nonce);
    if !gw
        .store
        .claim_once(&once, auth.ts, gw.now() - 2 * AUTH_WINDOW_SECONDS)?
    {
        return Err(ApiError::unauthorized(
            ErrorCode::ReplayedDeviceAuth,
            "This device authorization was already used; each one is single-use.",
        ));
    }
    Ok(Device {
        id: auth.device,
        approver,
        public_key: key,
        nonce: auth.nonce,
    })
}
