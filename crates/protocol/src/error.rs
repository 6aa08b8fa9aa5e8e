//! The one error type of the protocol crate.

/// Why a message could not be decoded, verified or encoded.
///
/// Every variant names the field or rule that failed so that a rejection can be reported to a
/// person and written to an audit log verbatim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("The message is {size} bytes, more than the limit of {limit} bytes.")]
    TooLarge { size: usize, limit: usize },
    #[error("The message is not valid JSON for this type: {0}")]
    Json(String),
    #[error("Protocol version {found} is not supported; this build speaks version {supported}.")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("Field `{field}` is {len} bytes long, more than the limit of {limit}.")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("Field `{field}` is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("Field `{field}` is not valid {encoding}.")]
    InvalidEncoding {
        field: &'static str,
        encoding: &'static str,
    },
    #[error("The signature does not verify against the expected key.")]
    BadSignature,
    #[error("The message could not be put in canonical form: {0}")]
    Canonical(String),
    #[error("The pairing link is invalid: {0}")]
    InvalidLink(String),
    #[error("The device authorization header is invalid: {0}")]
    InvalidAuthHeader(String),
}
