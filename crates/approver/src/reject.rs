//! Why an incoming event was not accepted into the inbox: [`RejectReason`], its stable code and
//! the sentence written to the audit log.

use serde::Serialize;

use crate::clock::format_time;

/// Why an incoming event was not accepted. Every reason is written to the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum RejectReason {
    /// The signature does not verify with the pinned key. Cryptographically, "signed by another
    /// key" and "changed after signing" are the same failure.
    BadSignature,
    WrongGateway {
        named: String,
        pinned: String,
    },
    Expired {
        expires_at: i64,
    },
    NotYetValid {
        not_before: i64,
    },
    /// Valid for longer than [`MAX_VALIDITY_SECONDS`].
    ValidTooLong {
        seconds: i64,
        limit: i64,
    },
    NotAddressed {
        approver: String,
    },
    Duplicate,
    ConflictingDuplicate,
    StatusBadSignature,
    StatusDigestMismatch,
    Malformed {
        error: String,
    },
    /// A log checkpoint that does not extend the newest one this device witnessed.
    LogHistoryChanged {
        damage: String,
    },
}

impl RejectReason {
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::BadSignature => "bad_signature",
            RejectReason::WrongGateway { .. } => "wrong_gateway",
            RejectReason::Expired { .. } => "expired",
            RejectReason::NotYetValid { .. } => "not_yet_valid",
            RejectReason::ValidTooLong { .. } => "valid_too_long",
            RejectReason::NotAddressed { .. } => "not_addressed",
            RejectReason::Duplicate => "duplicate",
            RejectReason::ConflictingDuplicate => "conflicting_duplicate",
            RejectReason::StatusBadSignature => "status_bad_signature",
            RejectReason::StatusDigestMismatch => "status_digest_mismatch",
            RejectReason::Malformed { .. } => "malformed",
            RejectReason::LogHistoryChanged { .. } => "log_history_changed",
        }
    }

    /// A phrase completing "The request was rejected: ...".
    pub fn message(&self) -> String {
        match self {
            RejectReason::BadSignature => {
                "signed by a key other than the pinned gateway key, or changed after signing".into()
            }
            RejectReason::WrongGateway { named, pinned } => {
                format!("names gateway {named}, not the pinned gateway {pinned}")
            }
            RejectReason::Expired { expires_at } => {
                format!("expired at {}", format_time(*expires_at))
            }
            RejectReason::NotYetValid { not_before } => {
                format!("not valid until {}", format_time(*not_before))
            }
            RejectReason::ValidTooLong { seconds, limit } => format!(
                "valid for {} hours, longer than this approver accepts ({} hours)",
                seconds / 3600,
                limit / 3600
            ),
            RejectReason::NotAddressed { approver } => {
                format!("addressed to other approvers, not to {approver}")
            }
            RejectReason::Duplicate => "already in the inbox (duplicate delivery)".into(),
            RejectReason::ConflictingDuplicate => {
                "a different request with the same id is already in the inbox".into()
            }
            RejectReason::StatusBadSignature => {
                "status update signed by a key other than the pinned gateway key".into()
            }
            RejectReason::StatusDigestMismatch => {
                "status update names a different version of the request than the one stored".into()
            }
            RejectReason::Malformed { error } => format!("the event could not be decoded: {error}"),
            RejectReason::LogHistoryChanged { damage } => {
                format!("the gateway's log checkpoint does not extend the one witnessed ({damage})")
            }
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}
