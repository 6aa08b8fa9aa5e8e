//! Paired gateways: the pinned facts stored per gateway ([`GatewayRecord`]) in the `gateways`
//! table, which this module owns, and the HTTP calls the engine makes to a gateway (info,
//! pairing, decision delivery), with the rule that turns an HTTP answer into "accepted",
//! "refused for good" or "try again later".

use std::time::Duration;

use countersign_protocol::api::{ErrorBody, ErrorCode};
use countersign_protocol::types::Decode;
use countersign_protocol::{Digest, Membership, PublicKey, Signed};
use rusqlite::{params, Connection, Row};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::EngineError;

/// Upper bound for a non-streaming call, so a stuck gateway cannot hold a decision forever.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Upper bound for delivering one decision. A gateway answers a decision in milliseconds; a
/// connection that stays silent (half-open) must not keep the person who decided waiting, so
/// the decision is reported queued after this and retried (delivery is idempotent).
pub(crate) const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// What this device pinned when it paired with a gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayRecord {
    /// Fingerprint of `gateway_key`; the gateway's identity in the engine.
    pub fingerprint: String,
    /// Base URL (from the pairing link).
    pub url: Url,
    /// The pinned signing key: every request, status and receipt must verify with it.
    pub gateway_key: PublicKey,
    pub name: String,
    /// The approver identity this device acts as at this gateway.
    pub approver: String,
    /// The id the gateway gave this device.
    pub device_id: String,
    /// The WebAuthn origin used for every ceremony with this gateway.
    pub webauthn_origin: Url,
    /// Lowercase hex SHA-256 of the gateway's TLS certificate, pinned at pairing (from the
    /// link): every connection must present exactly this certificate. None for plain-http
    /// loopback gateways and for https gateways paired without a pin (validated by the system
    /// roots instead).
    #[serde(default)]
    pub tls_pin: Option<String>,
    pub paired_at: i64,
    /// The id of the last stream event stored (resume point).
    pub last_event_id: u64,
}

/// `base` joined with an absolute API path, keeping any path prefix of the base URL.
pub(crate) fn endpoint(base: &Url, path: &str) -> Result<Url, EngineError> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let p = format!("{}/", base.path());
        base.set_path(&p);
    }
    base.join(path.trim_start_matches('/'))
        .map_err(|e| EngineError::InvalidInput(format!("cannot build a gateway URL: {e}")))
}

/// A transport failure. The detail walks the error's sources, so the reason behind
/// "error sending request" (refused, reset, a certificate that does not match the pin) shows.
pub(crate) fn unreachable(url: &Url, e: impl std::fmt::Display) -> EngineError {
    EngineError::GatewayUnreachable {
        url: url.to_string(),
        detail: e.to_string(),
    }
}

pub(crate) fn send_failed(url: &Url, e: reqwest::Error) -> EngineError {
    unreachable(url, error_chain(&e))
}

/// An error's sentence followed by each of its sources that it does not already say, so the
/// reason behind "error sending request" (refused, reset, a certificate that does not match
/// the pin) shows.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !detail.contains(&text) {
            detail.push_str(": ");
            detail.push_str(&text);
        }
        source = s.source();
    }
    detail
}

/// Reads a response: 2xx is decoded strictly as `T`; 4xx is a final refusal with the gateway's
/// code and message; 5xx and anything unreadable are transient.
pub(crate) async fn read_answer<T: Decode>(
    url: &Url,
    resp: reqwest::Response,
) -> Result<T, EngineError> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| unreachable(url, e))?;
    if status.is_success() {
        return T::decode(&bytes).map_err(|e| EngineError::BadGatewayResponse(e.to_string()));
    }
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => (
            ErrorCode::Unknown(format!("http_{}", status.as_u16())),
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        ),
    };
    if status.is_client_error() {
        Err(EngineError::GatewayRefused {
            status: status.as_u16(),
            code,
            message,
        })
    } else {
        Err(unreachable(
            url,
            format!("HTTP {} ({code}: {message})", status.as_u16()),
        ))
    }
}

pub(crate) async fn get<T: Decode>(http: &reqwest::Client, url: Url) -> Result<T, EngineError> {
    let resp = http
        .get(url.clone())
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| send_failed(&url, e))?;
    read_answer(&url, resp).await
}

pub(crate) async fn post<B: Serialize, T: Decode>(
    http: &reqwest::Client,
    url: Url,
    body: &B,
) -> Result<T, EngineError> {
    post_within(http, url, body, CALL_TIMEOUT).await
}

pub(crate) async fn post_within<B: Serialize, T: Decode>(
    http: &reqwest::Client,
    url: Url,
    body: &B,
    timeout: Duration,
) -> Result<T, EngineError> {
    let resp = http
        .post(url.clone())
        .timeout(timeout)
        .json(body)
        .send()
        .await
        .map_err(|e| send_failed(&url, e))?;
    read_answer(&url, resp).await
}

// -------------------------------------------------------------------- the `gateways` table
//
// This module owns the table: every statement that reads or writes a gateway row is here.

const GATEWAY_COLUMNS: &str = "fingerprint, url, gateway_key, name, approver, device_id, \
     webauthn_origin, paired_at, last_event_id, tls_pin";

fn gateway_row(r: &Row<'_>) -> rusqlite::Result<Result<GatewayRecord, EngineError>> {
    let url: String = r.get(1)?;
    let key: String = r.get(2)?;
    let origin: String = r.get(6)?;
    let last: i64 = r.get(8)?;
    let build = || -> Result<GatewayRecord, EngineError> {
        Ok(GatewayRecord {
            fingerprint: r.get(0)?,
            url: Url::parse(&url).map_err(|e| EngineError::Corrupt(format!("gateway url: {e}")))?,
            gateway_key: PublicKey::parse("gateway_key", &key)?,
            name: r.get(3)?,
            approver: r.get(4)?,
            device_id: r.get(5)?,
            webauthn_origin: Url::parse(&origin)
                .map_err(|e| EngineError::Corrupt(format!("webauthn origin: {e}")))?,
            paired_at: r.get(7)?,
            last_event_id: u64::try_from(last).unwrap_or(0),
            tls_pin: r.get(9)?,
        })
    };
    Ok(build())
}

pub(crate) fn find_gateway(db: &Connection, selector: &str) -> Result<GatewayRecord, EngineError> {
    if selector.is_empty() {
        return Err(EngineError::UnknownGateway(String::new()));
    }
    let sql = format!(
        "SELECT {GATEWAY_COLUMNS} FROM gateways WHERE fingerprint = ?1 \
         OR substr(fingerprint, 1, length(?1)) = ?1 ORDER BY fingerprint = ?1 DESC LIMIT 2"
    );
    let mut stmt = db.prepare_cached(&sql)?;
    let mut found: Vec<GatewayRecord> = Vec::new();
    for r in stmt.query_map([selector], gateway_row)? {
        found.push(r??);
    }
    match found.len() {
        0 => Err(EngineError::UnknownGateway(selector.to_owned())),
        1 => Ok(found.remove(0)),
        _ if found[0].fingerprint == selector => Ok(found.remove(0)),
        _ => Err(EngineError::AmbiguousGateway(selector.to_owned())),
    }
}

pub(crate) fn upsert_gateway(db: &Connection, g: &GatewayRecord) -> Result<(), EngineError> {
    // A re-pairing gets a new device id and so a new event stream: the resume point restarts.
    crate::store::execute(
        db,
        "INSERT INTO gateways (fingerprint, url, gateway_key, name, approver, device_id, \
         webauthn_origin, paired_at, last_event_id, tls_pin, protocol) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
         ON CONFLICT(fingerprint) DO UPDATE SET url = excluded.url, name = excluded.name, \
         approver = excluded.approver, device_id = excluded.device_id, \
         webauthn_origin = excluded.webauthn_origin, paired_at = excluded.paired_at, \
         last_event_id = excluded.last_event_id, tls_pin = excluded.tls_pin, \
         protocol = excluded.protocol, resume_digest = NULL, head_seen = 0",
        params![
            g.fingerprint,
            g.url.as_str(),
            g.gateway_key.to_base64(),
            g.name,
            g.approver,
            g.device_id,
            g.webauthn_origin.as_str(),
            g.paired_at,
            g.last_event_id as i64,
            g.tls_pin,
            countersign_protocol::PROTOCOL_VERSION
        ],
    )?;
    Ok(())
}

/// Every paired gateway, in pairing order.
pub(crate) fn all(db: &Connection) -> Result<Vec<GatewayRecord>, EngineError> {
    let mut stmt = db.prepare_cached(&format!(
        "SELECT {GATEWAY_COLUMNS} FROM gateways ORDER BY paired_at"
    ))?;
    let rows = stmt.query_map([], gateway_row)?;
    rows.map(|r| r?).collect()
}

/// Moves a gateway's stream resume point to a verified event, inside the transaction that
/// consumed the event: `digest` is the envelope's, so a resume point can be told from one that
/// no verified event set.
pub(crate) fn set_resume_point(
    db: &Connection,
    fingerprint: &str,
    event_id: u64,
    digest: &Digest,
) -> Result<(), EngineError> {
    crate::store::execute(
        db,
        "UPDATE gateways SET last_event_id = ?1, resume_digest = ?2 WHERE fingerprint = ?3",
        params![event_id as i64, digest.to_hex(), fingerprint],
    )?;
    Ok(())
}

/// Forgets a gateway's resume point (before a full resync).
pub(crate) fn clear_resume_point(db: &Connection, fingerprint: &str) -> Result<(), EngineError> {
    crate::store::execute(
        db,
        "UPDATE gateways SET last_event_id = 0, resume_digest = NULL WHERE fingerprint = ?1",
        params![fingerprint],
    )?;
    Ok(())
}

/// What the stream rules need of a gateway row beyond its record: the protocol version it was
/// paired under, whether its resume point was set by a verified event, and the highest stream
/// head the gateway signed so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamState {
    pub protocol: u32,
    pub resume_verified: bool,
    pub head_seen: u64,
}

pub(crate) fn stream_state(db: &Connection, fingerprint: &str) -> Result<StreamState, EngineError> {
    Ok(db.query_row(
        "SELECT protocol, resume_digest IS NOT NULL OR last_event_id = 0, head_seen \
         FROM gateways WHERE fingerprint = ?1",
        [fingerprint],
        |r| {
            Ok(StreamState {
                protocol: r.get(0)?,
                resume_verified: r.get(1)?,
                head_seen: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            })
        },
    )?)
}

/// Records the stream head a verified hello named, if it is the highest yet.
pub(crate) fn see_head(db: &Connection, fingerprint: &str, head: u64) -> Result<(), EngineError> {
    crate::store::execute(
        db,
        "UPDATE gateways SET head_seen = max(head_seen, ?1) WHERE fingerprint = ?2",
        params![head as i64, fingerprint],
    )?;
    Ok(())
}

/// The groups of the membership statement held for `gateway` (none before the first): the
/// groups through which a group audience addresses this device (protocol.md 3.12).
pub(crate) fn membership_groups(
    db: &Connection,
    gateway: &str,
) -> Result<Vec<String>, EngineError> {
    let held: Option<String> = db.query_row(
        "SELECT membership FROM gateways WHERE fingerprint = ?1",
        params![gateway],
        |r| r.get(0),
    )?;
    Ok(held
        .and_then(|m| serde_json::from_str::<Signed<Membership>>(&m).ok())
        .map(|m| m.body.groups)
        .unwrap_or_default())
}

/// Stores `membership` for `gateway` if its `seq` is above the one held; returns the `seq` held
/// before (0 for none) and whether it was stored.
pub(crate) fn store_membership(
    db: &Connection,
    gateway: &str,
    membership: &Signed<Membership>,
) -> Result<(u64, bool), EngineError> {
    let held: Option<String> = db.query_row(
        "SELECT membership FROM gateways WHERE fingerprint = ?1",
        params![gateway],
        |r| r.get(0),
    )?;
    let held_seq = held
        .and_then(|m| serde_json::from_str::<Signed<Membership>>(&m).ok())
        .map_or(0, |m| m.body.seq);
    if membership.body.seq <= held_seq {
        return Ok((held_seq, false));
    }
    let text = serde_json::to_string(membership)
        .map_err(|e| EngineError::Corrupt(format!("cannot encode the membership: {e}")))?;
    crate::store::execute(
        db,
        "UPDATE gateways SET membership = ?1 WHERE fingerprint = ?2",
        params![text, gateway],
    )?;
    Ok((held_seq, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keeps_prefix() {
        let u = Url::parse("http://127.0.0.1:8/gw").unwrap();
        assert_eq!(
            endpoint(&u, "/v2/stream").unwrap().as_str(),
            "http://127.0.0.1:8/gw/v2/stream"
        );
        let u = Url::parse("http://127.0.0.1:8/").unwrap();
        assert_eq!(
            endpoint(&u, "/v2/info").unwrap().as_str(),
            "http://127.0.0.1:8/v2/info"
        );
    }
}
