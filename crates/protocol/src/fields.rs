//! The field rules every message shares: length limits, identifiers, non-empty text, the
//! protocol version, safe integers and origin serialisations (protocol.md 1.3).

use crate::error::ProtocolError;
use crate::PROTOCOL_VERSION;

/// Field length limits, in bytes of UTF-8.
pub mod limits {
    pub const ID: usize = 64;
    /// A WebAuthn credential id in unpadded base64url (1023 bytes at most, WebAuthn 5.8.3).
    pub const CRED_ID: usize = 1364;
    pub const NAME: usize = 128;
    pub const ACTION: usize = 128;
    pub const RESOURCE: usize = 256;
    pub const SUMMARY: usize = 256;
    pub const DETAIL: usize = 64 * 1024;
    pub const REASON: usize = 2048;
    pub const APPROVERS: usize = 64;
    pub const MATCH_CODE: usize = 16;
    pub const URL: usize = 2048;
    /// Approvers named in one event's audience.
    pub const AUDIENCE: usize = 512;
}

pub(crate) fn check_version(v: u32) -> Result<(), ProtocolError> {
    if v != PROTOCOL_VERSION {
        return Err(ProtocolError::UnsupportedVersion {
            found: v,
            supported: PROTOCOL_VERSION,
        });
    }
    Ok(())
}

/// The largest integer every JSON implementation reads exactly (2^53 - 1). Event ids and status
/// sequence numbers stay below it.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

pub(crate) fn check_u53(field: &'static str, n: u64, min: u64) -> Result<(), ProtocolError> {
    if n < min || n > MAX_SAFE_INTEGER {
        return Err(ProtocolError::InvalidField {
            field,
            reason: format!("must be between {min} and 2^53 - 1"),
        });
    }
    Ok(())
}

/// A WebAuthn origin is written as an origin serialisation (`https://host[:port]`, no path).
pub(crate) fn check_origin(origin: &str) -> Result<(), ProtocolError> {
    if !crate::webauthn::is_origin_serialization(origin) {
        return Err(ProtocolError::InvalidField {
            field: "webauthn_origin",
            reason: "must be an origin serialisation such as https://host[:port], without a path"
                .into(),
        });
    }
    Ok(())
}

pub(crate) fn check_len(field: &'static str, s: &str, limit: usize) -> Result<(), ProtocolError> {
    if s.len() > limit {
        return Err(ProtocolError::FieldTooLong {
            field,
            len: s.len(),
            limit,
        });
    }
    Ok(())
}

pub(crate) fn check_nonempty(
    field: &'static str,
    s: &str,
    limit: usize,
) -> Result<(), ProtocolError> {
    check_len(field, s, limit)?;
    if s.trim().is_empty() {
        return Err(ProtocolError::InvalidField {
            field,
            reason: "must not be empty".into(),
        });
    }
    Ok(())
}

/// Identifiers (request ids, device ids, approver names) are printable ASCII without spaces
/// or control characters, so they can never hide anything when displayed.
pub(crate) fn check_ident(field: &'static str, s: &str, limit: usize) -> Result<(), ProtocolError> {
    check_nonempty(field, s, limit)?;
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ProtocolError::InvalidField {
            field,
            reason: "must be printable ASCII without spaces".into(),
        });
    }
    Ok(())
}
