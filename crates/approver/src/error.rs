//! The engine's error type: every failure a caller (CLI, desktop shell, tests) can see, each
//! with a full-sentence message and a stable machine-readable code.

use countersign_protocol::api::ErrorCode;
use countersign_protocol::audit::ChainBreak;
use countersign_protocol::ProtocolError;

/// Everything that can go wrong in the approver engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("A file in the data directory could not be read or written: {0}")]
    Io(std::io::Error),
    #[error("The local database failed: {0}")]
    Database(rusqlite::Error),
    #[error("The disk holding the data directory is full, so this step stored nothing ({0}). Free some space and try again; nothing stored earlier was lost.")]
    StorageFull(String),
    #[error("The data directory cannot be written: it is read-only or this user lacks write permission ({0}). Nothing was changed.")]
    StorageReadOnly(String),
    #[error("The local store is damaged: {0}")]
    Corrupt(String),
    #[error("The local store was written by a newer version (schema {found}; this build knows {supported}).")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("Another Countersign instance{} is using the data directory {dir}; only one may run on it at a time. Use that one, or close it first.", pid.map(|p| format!(" (process {p})")).unwrap_or_default())]
    InUse { dir: String, pid: Option<u32> },
    #[error(
        "The device key file {path} is readable by other users; run `chmod 600 {path}` first."
    )]
    KeyPermissions { path: String },
    #[error("The Secret Service (the desktop keyring) could not keep or give back the device key: {0}. Unlock the keyring, or choose the file store (COUNTERSIGN_KEY_STORE=file) for a new device.")]
    KeyStore(String),
    #[error("A message could not be encoded, decoded or verified: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("The pairing link expired at {expires_at}; ask for a new invitation.")]
    LinkExpired { expires_at: String },
    #[error("The gateway presented key {presented}, but the pairing link pins {pinned}; pairing was refused.")]
    GatewayKeyMismatch { pinned: String, presented: String },
    #[error("No paired gateway matches `{0}`.")]
    UnknownGateway(String),
    #[error("`{0}` matches more than one paired gateway; give more of the fingerprint.")]
    AmbiguousGateway(String),
    #[error("No request in the inbox matches `{0}`.")]
    UnknownRequest(String),
    #[error("`{0}` matches more than one request; give more of the id.")]
    AmbiguousRequest(String),
    #[error("Request {request_id} is {state}, so it can no longer be decided.")]
    RequestNotPending { request_id: String, state: String },
    #[error("Request {request_id} expired at {expires_at}.")]
    RequestExpired {
        request_id: String,
        expires_at: String,
    },
    #[error("Request {request_id} was already decided on this device (decision {decision_id}).")]
    AlreadyDecided {
        request_id: String,
        decision_id: String,
    },
    #[error("Request {0} requires the match code the requester sees; pass it with --match-code.")]
    MatchCodeRequired(String),
    #[error("The gateway of request {0} wants a passkey for denials too; confirm with your security key.")]
    DenyNeedsPasskey(String),
    #[error("No passkey authenticator is chosen; pass --authenticator usb for a security key, or --authenticator soft (or set COUNTERSIGN_AUTHENTICATOR=soft) for the development-mode software authenticator.")]
    NoAuthenticator,
    #[error("`{0}` is not an authenticator; choose `usb`, `soft` or `dev-key`.")]
    UnknownAuthenticator(String),
    #[error("This build has no USB support for security keys (built without the `usb` feature); for development use the software authenticator with --authenticator soft.")]
    SecurityKeyUnsupported,
    #[error("The passkey ceremony failed: {0}")]
    Ceremony(String),
    #[error(transparent)]
    SecurityKey(#[from] crate::key_error::KeyError),
    #[error("The gateway at {url} could not be reached: {detail}")]
    GatewayUnreachable { url: String, detail: String },
    #[error("The gateway refused with {code}: {message}")]
    GatewayRefused {
        status: u16,
        /// The gateway's code (`Unknown("http_<status>")` when its answer had no ErrorBody).
        code: ErrorCode,
        message: String,
    },
    #[error("The gateway sent an answer that does not hold up: {0}")]
    BadGatewayResponse(String),
    #[error("{0}")]
    AuditBroken(#[from] ChainBreak),
    #[error("The input is not valid: {0}")]
    InvalidInput(String),
    #[error(transparent)]
    Hoop(#[from] crate::hoop_error::HoopError),
}

impl From<std::io::Error> for EngineError {
    /// A full disk and a read-only or forbidden data directory get their own errors, so that
    /// the user is told what to fix.
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
                EngineError::StorageFull(e.to_string())
            }
            ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => {
                EngineError::StorageReadOnly(e.to_string())
            }
            _ => EngineError::Io(e),
        }
    }
}

impl From<rusqlite::Error> for EngineError {
    /// SQLite's full-disk, read-only and corruption results become the errors a user can act
    /// on; everything else stays a database failure.
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => EngineError::StorageFull(e.to_string()),
            Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
                EngineError::StorageReadOnly(e.to_string())
            }
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => EngineError::Corrupt(
                format!("the database file is not a readable SQLite database ({e})"),
            ),
            _ => EngineError::Database(e),
        }
    }
}

impl EngineError {
    /// An I/O error on `path`, classified as in `From<std::io::Error>`, naming the path.
    pub fn at_path(path: &std::path::Path, e: std::io::Error) -> Self {
        let named = std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        EngineError::from(named)
    }

    /// A stable code for scripts and the UI. Codes never change meaning once released.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Io(_) => "io",
            EngineError::Database(_) => "database",
            EngineError::StorageFull(_) => "storage_full",
            EngineError::StorageReadOnly(_) => "storage_read_only",
            EngineError::Corrupt(_) => "corrupt_store",
            EngineError::SchemaTooNew { .. } => "schema_too_new",
            EngineError::InUse { .. } => "data_dir_in_use",
            EngineError::KeyPermissions { .. } => "key_permissions",
            EngineError::KeyStore(_) => "key_store_unavailable",
            EngineError::Protocol(_) => "protocol",
            EngineError::LinkExpired { .. } => "link_expired",
            EngineError::GatewayKeyMismatch { .. } => "gateway_key_mismatch",
            EngineError::UnknownGateway(_) => "unknown_gateway",
            EngineError::AmbiguousGateway(_) => "ambiguous_gateway",
            EngineError::UnknownRequest(_) => "unknown_request",
            EngineError::AmbiguousRequest(_) => "ambiguous_request",
            EngineError::RequestNotPending { .. } => "request_not_pending",
            EngineError::RequestExpired { .. } => "request_expired",
            EngineError::AlreadyDecided { .. } => "already_decided",
            EngineError::MatchCodeRequired(_) => "match_code_required",
            EngineError::DenyNeedsPasskey(_) => "passkey_required",
            EngineError::NoAuthenticator => "no_authenticator",
            EngineError::UnknownAuthenticator(_) => "unknown_authenticator",
            EngineError::SecurityKeyUnsupported => "security_key_unsupported",
            EngineError::Ceremony(_) => "passkey_failed",
            EngineError::SecurityKey(e) => e.code(),
            EngineError::GatewayUnreachable { .. } => "gateway_unreachable",
            EngineError::GatewayRefused { .. } => "gateway_refused",
            EngineError::BadGatewayResponse(_) => "bad_gateway_response",
            EngineError::AuditBroken(_) => "audit_chain_broken",
            EngineError::InvalidInput(_) => "invalid_input",
            EngineError::Hoop(e) => e.code(),
        }
    }

    /// True when trying again later may succeed (the gateway was not reached or failed on its
    /// side); false when the answer is final.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::GatewayUnreachable { .. } => true,
            EngineError::Hoop(e) => e.is_transient(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_sentences_and_codes_are_snake_case() {
        let samples = [
            EngineError::NoAuthenticator,
            EngineError::SecurityKeyUnsupported,
            EngineError::UnknownRequest("x".into()),
            EngineError::MatchCodeRequired("r".into()),
            EngineError::GatewayRefused {
                status: 409,
                code: ErrorCode::AlreadyDecided,
                message: "Already.".into(),
            },
        ];
        for e in samples {
            let m = e.to_string();
            assert!(m.ends_with('.'), "{m}");
            assert!(m.chars().next().is_some_and(|c| c.is_uppercase()), "{m}");
            assert!(e
                .code()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }
}
