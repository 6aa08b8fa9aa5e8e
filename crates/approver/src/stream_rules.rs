//! The stream rules a connector applies around each connection (`docs/protocol.md` 7.4): a
//! gateway paired under protocol version 1 is not connected; a resume point that no verified
//! event set is dropped first; the signed hello must be for this gateway, device and
//! connection, and a resume point it shows to be implausible is dropped for a full resync; a
//! stream that breaks the order is audited and closed.

use countersign_protocol::api::ErrorCode;
use countersign_protocol::types::Decode;
use countersign_protocol::{Signed, StreamHello, StreamMode};

use crate::audit::kind;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::gateway::{self, GatewayRecord};

/// The stream rules before a connection: a gateway paired under protocol version 1 must be
/// paired again, and a resume point that no verified event set is dropped for a full resync.
/// Returns the gateway record and the highest stream head the gateway signed so far.
pub(crate) fn before_connect(
    engine: &Engine,
    fingerprint: &str,
) -> Result<(GatewayRecord, u64), EngineError> {
    let state = gateway::stream_state(&engine.db(), fingerprint)?;
    if state.protocol != countersign_protocol::PROTOCOL_VERSION {
        return Err(EngineError::GatewayRefused {
            status: 410,
            code: ErrorCode::ProtocolUpgraded,
            message: format!(
                "This device was paired under protocol version {}; pair it again with a new invite.",
                state.protocol
            ),
        });
    }
    if !state.resume_verified {
        engine.resync(fingerprint, "unverified_resume_point")?;
    }
    Ok((engine.gateway(fingerprint)?, state.head_seen))
}

/// Checks a stream's hello: signed by the pinned key, for this gateway, device and approver,
/// and bound to this connection by the nonce sent. Returns the resync reason when the resume
/// point the device sent is implausible (and has been dropped), else `None`.
pub(crate) fn check_hello(
    engine: &Engine,
    gw: &GatewayRecord,
    data: &str,
    nonce: &str,
    sent: Option<u64>,
    head_seen: u64,
) -> Result<(StreamHello, Option<&'static str>), EngineError> {
    let reject = |why: &str| -> EngineError {
        if let Err(e) = engine.audit_stream(
            kind::STREAM_HELLO_REJECTED,
            serde_json::json!({"gateway": gw.fingerprint, "reason": why}),
        ) {
            tracing::warn!(error = %e, "cannot audit a rejected stream hello");
        }
        EngineError::BadGatewayResponse(format!("the stream's hello is not valid: {why}"))
    };
    let hello =
        Signed::<StreamHello>::decode(data.as_bytes()).map_err(|_| reject("undecodable"))?;
    hello
        .verify(&gw.gateway_key)
        .map_err(|_| reject("bad_signature"))?;
    let h = hello.body;
    if h.gateway != gw.fingerprint {
        return Err(reject("wrong_gateway"));
    }
    if h.device_id != gw.device_id || h.approver != gw.approver {
        return Err(reject("not_this_device"));
    }
    if h.nonce != nonce {
        return Err(reject("not_this_connection"));
    }
    let reason = if h.head < head_seen {
        engine.audit_stream(
            kind::GATEWAY_ROLLED_BACK,
            serde_json::json!({
                "gateway": gw.fingerprint, "held_head": head_seen, "head": h.head,
            }),
        )?;
        Some("head_regressed")
    } else {
        match h.mode {
            StreamMode::Resync => Some(h.resync_reason.map_or("requested", |r| r.as_str())),
            StreamMode::Resume if h.resumed_from != sent => Some("resume_mismatch"),
            StreamMode::Resume if sent.is_some_and(|r| r > h.head) => Some("ahead"),
            StreamMode::Resume => None,
        }
    };
    gateway::see_head(&engine.db(), &gw.fingerprint, h.head)?;
    // Asking for no resume point is not implausible: there was nothing to drop.
    if let Some(r) = reason {
        if sent.is_some() {
            engine.resync(&gw.fingerprint, r)?;
        }
    }
    Ok((h, reason))
}

/// A stream that breaks the protocol's order: audited, and the connection is closed.
pub(crate) fn violation(
    engine: &Engine,
    gw: &GatewayRecord,
    what: &str,
) -> Result<EngineError, EngineError> {
    engine.audit_stream(
        kind::STREAM_VIOLATION,
        serde_json::json!({"gateway": gw.fingerprint, "reason": what}),
    )?;
    Ok(EngineError::BadGatewayResponse(format!(
        "the event stream broke the protocol ({what})"
    )))
}
