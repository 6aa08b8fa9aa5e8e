//! [`ErrorCode`] and [`IpcError`]: every failure the UI can be told of, as a closed set of
//! codes that ts-rs exports to TypeScript (`ui/src/bindings/ErrorCode.ts`), so the UI's hints
//! are a `Record<ErrorCode, …>` and the compiler catches a missing or stale one.
//!
//! The set is the engine's codes ([`EngineError::code`]), the gateway's
//! ([`api::ErrorCode`](countersign_protocol::api::ErrorCode), which a refusal passes on as it
//! is), the shell's own, `ipc` for a call the shell never answered, and `unknown` for a
//! gateway code this build does not know (a newer gateway's): the message then still carries
//! the gateway's sentence, so an unknown code is shown as the refusal it is.

use countersign_approver::{display, EngineError};
use countersign_protocol::api;
use serde::{Deserialize, Deserializer, Serialize};
use ts_rs::TS;

/// Defines [`ErrorCode`] with its wire strings and the list of every code.
macro_rules! ipc_codes {
    ($($(#[doc = $doc:literal])+ $variant:ident = $code:literal,)+) => {
        /// The stable code of an [`IpcError`]; on the wire (and in TypeScript) the snake_case
        /// string. Deserialising never fails: a string outside the set is [`ErrorCode::Unknown`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, TS)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ #[serde(rename = $code)] $variant,)+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// The code spelled `s`, or [`ErrorCode::Unknown`].
            pub fn parse(s: &str) -> ErrorCode {
                match s {
                    $($code => ErrorCode::$variant,)+
                    _ => ErrorCode::Unknown,
                }
            }
        }
    };
}

ipc_codes! {
    // ---- the engine's (EngineError::code), in its order
    /// A file in the data directory could not be read or written.
    Io = "io",
    /// The local database failed.
    Database = "database",
    /// The disk is full (the engine's, or the gateway's 507): nothing was stored.
    StorageFull = "storage_full",
    /// The data directory is read-only or not writable by this user.
    StorageReadOnly = "storage_read_only",
    /// The local store is damaged.
    CorruptStore = "corrupt_store",
    /// The local store was written by a newer version.
    SchemaTooNew = "schema_too_new",
    /// Another instance uses the data directory.
    DataDirInUse = "data_dir_in_use",
    /// The device key file is readable by others.
    KeyPermissions = "key_permissions",
    /// The Secret Service could not keep or give back the device key.
    KeyStoreUnavailable = "key_store_unavailable",
    /// A message could not be encoded, decoded or verified.
    Protocol = "protocol",
    /// The pairing link expired.
    LinkExpired = "link_expired",
    /// The gateway's key differs from the one the pairing link pins.
    GatewayKeyMismatch = "gateway_key_mismatch",
    /// No paired gateway matches.
    UnknownGateway = "unknown_gateway",
    /// More than one paired gateway matches.
    AmbiguousGateway = "ambiguous_gateway",
    /// No request matches (in the inbox, or at the gateway).
    UnknownRequest = "unknown_request",
    /// More than one request matches.
    AmbiguousRequest = "ambiguous_request",
    /// The request is no longer pending.
    RequestNotPending = "request_not_pending",
    /// The request expired (by the local clock, or the gateway's).
    RequestExpired = "request_expired",
    /// This device (or, at the gateway, this approver) already decided.
    AlreadyDecided = "already_decided",
    /// Gateway: Every stage this approval could count toward already has its approvals, and no other assignment would let it count: it is not recorded (409).
    ApprovalNotNeeded = "approval_not_needed",
    /// The request needs the match code the requester sees.
    MatchCodeRequired = "match_code_required",
    /// No passkey authenticator is chosen.
    NoAuthenticator = "no_authenticator",
    /// The authenticator named is not one this build has.
    UnknownAuthenticator = "unknown_authenticator",
    /// Security keys are not supported by this build.
    SecurityKeyUnsupported = "security_key_unsupported",
    /// The passkey ceremony did not complete.
    PasskeyFailed = "passkey_failed",
    // ---- the security key's (KeyError::code)
    /// The key needs its PIN and there is no way to ask for it.
    PinRequired = "pin_required",
    /// The PIN was wrong; the message says how many tries are left.
    PinInvalid = "pin_invalid",
    /// The key's PIN is blocked (for good, or until the key is plugged in again).
    PinBlocked = "pin_blocked",
    /// The key can verify nobody: no PIN set and no built-in verification.
    UvUnavailable = "uv_unavailable",
    /// The key holds no passkey for this approver at this gateway.
    NoMatchingCredential = "no_matching_credential",
    /// The key was not touched in time.
    CeremonyTimeout = "ceremony_timeout",
    /// The ceremony was cancelled (by the person, or on the key).
    CeremonyCancelled = "ceremony_cancelled",
    /// The key was removed during the ceremony.
    KeyRemoved = "key_removed",
    /// The key speaks only U2F.
    U2fOnly = "u2f_only",
    /// The key is registered already (a backup must be another key).
    KeyAlreadyRegistered = "key_already_registered",
    /// The new PIN breaks the key's rules, or its two entries differ.
    PinPolicy = "pin_policy",
    /// The key has a PIN already.
    PinAlreadySet = "pin_already_set",
    /// The gateway could not be reached.
    GatewayUnreachable = "gateway_unreachable",
    /// The gateway's answer does not hold up.
    BadGatewayResponse = "bad_gateway_response",
    /// The local audit chain is broken.
    AuditChainBroken = "audit_chain_broken",
    /// A value the UI sent is not valid.
    InvalidInput = "invalid_input",
    // ---- a hoop.dev gateway's (HoopError::code)
    /// hoop refused the connection's token.
    HoopUnauthorized = "hoop_unauthorized",
    /// hoop refused: the approver asked for the review.
    HoopSelfApproval = "hoop_self_approval",
    /// hoop refused: the approver is in none of the review's groups.
    HoopNotEligible = "hoop_not_eligible",
    /// hoop refused: the review was already decided.
    HoopAlreadyDecided = "hoop_already_decided",
    /// hoop has no such review (its 500 for an unknown id).
    HoopUnknownReview = "hoop_unknown_review",
    /// hoop refused for another reason; the sentence is hoop's.
    HoopRefused = "hoop_refused",
    /// hoop could not be reached.
    HoopUnreachable = "hoop_unreachable",
    /// hoop's answer could not be read.
    HoopBadAnswer = "hoop_bad_answer",
    // ---- the shell's and the page's own
    /// An internal failure of the shell (or the gateway's 500).
    Internal = "internal",
    /// Starting at login could not be turned on.
    AutostartFailed = "autostart_failed",
    /// The window could not reach the background agent (`countersign-agent`), nor start it.
    AgentUnavailable = "agent_unavailable",
    /// The call never reached a command, or the shell gave no typed answer (set by the page).
    Ipc = "ipc",
    /// A gateway code this build does not know; the message carries the gateway's sentence.
    Unknown = "unknown",
    // ---- the gateway's (docs/protocol.md section 6.2), less those above
    /// Gateway: A path of an older protocol version: this gateway speaks version 2, so the device must be paired again (410).
    ProtocolUpgraded = "protocol_upgraded",
    /// Gateway: No endpoint at this path (404).
    NoSuchEndpoint = "no_such_endpoint",
    /// Gateway: The endpoint does not accept this HTTP method (405).
    MethodNotAllowed = "method_not_allowed",
    /// Gateway: The request body is larger than `MAX_MESSAGE_BYTES` (413).
    BodyTooLarge = "body_too_large",
    /// Gateway: The request body could not be read (400).
    UnreadableBody = "unreadable_body",
    /// Gateway: No `Authorization: Bearer ...` header (401).
    TokenRequired = "token_required",
    /// Gateway: The requester token is not known to the gateway (401).
    UnknownToken = "unknown_token",
    /// Gateway: The requester token was revoked (401).
    TokenRevoked = "token_revoked",
    /// Gateway: An auditor token was used where a requester token is needed (403).
    ReadOnlyToken = "read_only_token",
    /// Gateway: The endpoint needs an auditor token, or the request's own requester token (403).
    AuditorTokenRequired = "auditor_token_required",
    /// Gateway: A log range, index or tree size outside the log (400).
    BadLogRange = "bad_log_range",
    /// Gateway: A cosignature names a tree size the gateway signed no checkpoint of (404).
    UnknownCheckpoint = "unknown_checkpoint",
    /// Gateway: A cosignature does not verify under the device key, or names another root (400).
    BadCosignature = "bad_cosignature",
    /// Gateway: The body is not a valid NewRequest, or the ApprovalRequest breaks a rule (400).
    InvalidRequest = "invalid_request",
    /// Gateway: `ttl_seconds` is above the gateway's maximum (400).
    TtlTooLong = "ttl_too_long",
    /// Gateway: An approver is listed more than once (400).
    DuplicateApprover = "duplicate_approver",
    /// Gateway: The requester created too many requests in the last 60 seconds (429).
    RateLimited = "rate_limited",
    /// Gateway: A listed approver has no registered passkey on this gateway (400).
    UnknownApprover = "unknown_approver",
    /// Gateway: The gateway's policy refused the request; the message carries its rule and sentence (403).
    PolicyRefused = "policy_refused",
    /// Gateway: The policy failed to evaluate or gave no result; nothing was created (503).
    PolicyError = "policy_error",
    /// Gateway: The requester named an approver or a quorum outside what the policy allows (403).
    WideningRefused = "widening_refused",
    /// Gateway: The requester asked to break glass without a reason (400).
    ReasonRequired = "reason_required",
    /// Gateway: A listed approver blocked this requester with a report (403).
    RequesterBlocked = "requester_blocked",
    /// Gateway: The request id in the path is not valid (400).
    BadPath = "bad_path",
    /// Gateway: The query string is not valid: `wait` is not a whole number of seconds (400).
    BadQuery = "bad_query",
    /// Gateway: No pending request with this id from this requester to withdraw (409).
    NotWithdrawable = "not_withdrawable",
    /// Gateway: The approval cannot be revoked: the request is not approved, or its grant was already used, revoked or is past its window (409).
    NotRevocable = "not_revocable",
    /// Gateway: No break-glass or auto-approved request with this id addressed to this approver (404).
    UnknownAckRequest = "unknown_ack_request",
    /// Gateway: No device Authorization header, or one that is not visible ASCII (401).
    DeviceAuthRequired = "device_auth_required",
    /// Gateway: The header is not a well-formed `Countersign-Device` header (401).
    BadDeviceAuth = "bad_device_auth",
    /// Gateway: No paired device has this id (401; 403 for a decision).
    UnknownDevice = "unknown_device",
    /// Gateway: The device's pairing was revoked (401; 403 for a decision).
    DeviceRevoked = "device_revoked",
    /// Gateway: The device authorization's signature does not verify with the device key (401).
    BadDeviceSignature = "bad_device_signature",
    /// Gateway: The device authorization's `ts` is more than 300 s from the gateway's clock (401).
    StaleDeviceAuth = "stale_device_auth",
    /// Gateway: This device authorization was already used; each header is single-use (401).
    ReplayedDeviceAuth = "replayed_device_auth",
    /// Gateway: `Last-Event-ID` is not a non-negative decimal integer (400).
    BadLastEventId = "bad_last_event_id",
    /// Gateway: The body is not a valid message for this endpoint (400).
    InvalidMessage = "invalid_message",
    /// Gateway: The one-time pairing code is not known (404).
    UnknownPairingCode = "unknown_pairing_code",
    /// Gateway: The one-time pairing code was already redeemed (409).
    PairingCodeUsed = "pairing_code_used",
    /// Gateway: The one-time pairing code's invite expired (410).
    PairingCodeExpired = "pairing_code_expired",
    /// Gateway: No pairing with this `pairing_id` (404).
    UnknownPairing = "unknown_pairing",
    /// Gateway: The pairing was already completed (409).
    PairingUsed = "pairing_used",
    /// Gateway: More than 300 seconds passed since PairStart (410).
    PairingExpired = "pairing_expired",
    /// Gateway: `device_key` differs from the one in PairStart (403).
    DeviceKeyMismatch = "device_key_mismatch",
    /// Gateway: The PairFinish signature does not verify with `device_key` (401).
    BadPairingSignature = "bad_pairing_signature",
    /// Gateway: `credential` is not a WebAuthn registration response (400).
    BadCredential = "bad_credential",
    /// Gateway: The WebAuthn registration does not verify (403).
    PasskeyRegistrationRejected = "passkey_registration_rejected",
    /// Gateway: This passkey credential is already registered (409).
    PasskeyExists = "passkey_exists",
    /// Gateway: The authenticator's attestation does not meet the gateway's policy (403).
    AttestationRejected = "attestation_rejected",
    /// Gateway: No passkey enrolment by this id for this device (404).
    UnknownEnrolment = "unknown_enrolment",
    /// Gateway: The passkey enrolment was already completed (409).
    EnrolmentUsed = "enrolment_used",
    /// Gateway: The passkey enrolment expired (410).
    EnrolmentExpired = "enrolment_expired",
    /// Gateway: The approver has no active passkey by this credential id (404).
    UnknownPasskey = "unknown_passkey",
    /// Gateway: The approver's last passkey is never removed (409).
    LastPasskey = "last_passkey",
    /// Gateway: The body is not a valid Signed<Decision> (400).
    InvalidDecision = "invalid_decision",
    /// Gateway: This `decision_id` was already used for a different decision (409).
    DecisionIdReused = "decision_id_reused",
    /// Gateway: The device is paired to another approver than the decision's (403).
    DeviceNotForApprover = "device_not_for_approver",
    /// Gateway: The device's pairing changed while the decision was being verified (409).
    DeviceChanged = "device_changed",
    /// Gateway: The decision's signature does not verify with the device key (401).
    BadDecisionSignature = "bad_decision_signature",
    /// Gateway: `gateway` is not this gateway's fingerprint (400).
    WrongGateway = "wrong_gateway",
    /// Gateway: `request_digest` is not the digest of the stored request (409).
    RequestDigestMismatch = "request_digest_mismatch",
    /// Gateway: The approver is not among the request's approvers (403).
    NotEligible = "not_eligible",
    /// Gateway: The approver and the requester are the same person in the gateway's directory (403).
    OwnRequest = "own_request",
    /// Gateway: The request is no longer pending (409).
    RequestClosed = "request_closed",
    /// Gateway: The gateway's clock is before the request's `not_before` (409).
    RequestNotYetValid = "request_not_yet_valid",
    /// Gateway: The typed match code differs from the requester's; counted against the request (403).
    WrongMatchCode = "wrong_match_code",
    /// Gateway: A deny without assertion where the gateway requires a passkey for denials too (400).
    PasskeyRequired = "passkey_required",
    /// Gateway: `assertion` is not a WebAuthn `PublicKeyCredential` (400).
    BadAssertion = "bad_assertion",
    /// Gateway: `clientDataJSON` is not a valid WebAuthn client data object (400).
    BadClientData = "bad_client_data",
    /// Gateway: No WebAuthn challenge exists for this request and approver (409).
    NoChallenge = "no_challenge",
    /// Gateway: The challenge for this request and approver was already used (409).
    AssertionReplayed = "assertion_replayed",
    /// Gateway: The assertion lacks user verification (403).
    UserNotVerified = "user_not_verified",
    /// Gateway: The assertion answers a different challenge (403).
    AssertionNotForThisRequest = "assertion_not_for_this_request",
    /// Gateway: The authenticator's signature counter went backwards (possible clone) (403).
    PasskeyCounterRegressed = "passkey_counter_regressed",
    /// Gateway: The assertion names another WebAuthn origin (403).
    WrongWebauthnOrigin = "wrong_webauthn_origin",
    /// Gateway: Any other WebAuthn verification failure; the message names it (403).
    PasskeyRejected = "passkey_rejected",
    /// Gateway: The body is not a `Signed<Checkpoint>` (400).
    InvalidCheckpoint = "invalid_checkpoint",
    /// Gateway: The checkpoint is not signed by the calling device's key (400).
    CheckpointNotSignedByDevice = "checkpoint_not_signed_by_device",
    /// Gateway: The gateway holds a checkpoint of this device at a higher `seq` (409).
    CheckpointRollback = "checkpoint_rollback",
    /// Gateway: The gateway holds a checkpoint of this device at the same `seq` with another head (409).
    CheckpointFork = "checkpoint_fork",
    /// Gateway: The report's signature does not verify with the device key (401).
    BadReportSignature = "bad_report_signature",
    /// Gateway: The body is not an `admission.k8s.io/v1` AdmissionReview with a request (400).
    InvalidAdmissionReview = "invalid_admission_review",
    /// Gateway: The AdmissionReview is larger than the webhook's `max_review_bytes` (413).
    AdmissionReviewTooLarge = "admission_review_too_large",
    /// Gateway: The webhook's `X-Hub-Signature-256` does not verify with the App's webhook secret (401).
    BadWebhookSignature = "bad_webhook_signature",
    /// Gateway: The event is not a readable `deployment_protection_rule`, or its callback is not the configured API's (400).
    InvalidGithubEvent = "invalid_github_event",
    /// Gateway: An approver or requester name is not 1 to 128 printable ASCII characters (400).
    InvalidName = "invalid_name",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(ErrorCode::parse(&s))
    }
}

impl From<&api::ErrorCode> for ErrorCode {
    /// The gateway's code as the UI sees it: the same code, or `Unknown` for one this build
    /// does not know.
    fn from(c: &api::ErrorCode) -> Self {
        ErrorCode::parse(c.as_str())
    }
}

impl From<&EngineError> for ErrorCode {
    /// The engine's code; a refusal by the gateway is the gateway's own code, so that the UI
    /// can say what to do about it (`wrong_match_code`: check the code and try again).
    fn from(e: &EngineError) -> Self {
        use EngineError as E;
        match e {
            E::Io(_) => ErrorCode::Io,
            E::Database(_) => ErrorCode::Database,
            E::StorageFull(_) => ErrorCode::StorageFull,
            E::StorageReadOnly(_) => ErrorCode::StorageReadOnly,
            E::Corrupt(_) => ErrorCode::CorruptStore,
            E::SchemaTooNew { .. } => ErrorCode::SchemaTooNew,
            E::InUse { .. } => ErrorCode::DataDirInUse,
            E::KeyPermissions { .. } => ErrorCode::KeyPermissions,
            E::KeyStore(_) => ErrorCode::KeyStoreUnavailable,
            E::Protocol(_) => ErrorCode::Protocol,
            E::LinkExpired { .. } => ErrorCode::LinkExpired,
            E::GatewayKeyMismatch { .. } => ErrorCode::GatewayKeyMismatch,
            E::UnknownGateway(_) => ErrorCode::UnknownGateway,
            E::AmbiguousGateway(_) => ErrorCode::AmbiguousGateway,
            E::UnknownRequest(_) => ErrorCode::UnknownRequest,
            E::AmbiguousRequest(_) => ErrorCode::AmbiguousRequest,
            E::RequestNotPending { .. } => ErrorCode::RequestNotPending,
            E::RequestExpired { .. } => ErrorCode::RequestExpired,
            E::AlreadyDecided { .. } => ErrorCode::AlreadyDecided,
            E::MatchCodeRequired(_) => ErrorCode::MatchCodeRequired,
            E::DenyNeedsPasskey(_) => ErrorCode::PasskeyRequired,
            E::NoAuthenticator => ErrorCode::NoAuthenticator,
            E::UnknownAuthenticator(_) => ErrorCode::UnknownAuthenticator,
            E::SecurityKeyUnsupported => ErrorCode::SecurityKeyUnsupported,
            E::Ceremony(_) => ErrorCode::PasskeyFailed,
            E::SecurityKey(k) => ErrorCode::parse(k.code()),
            E::GatewayUnreachable { .. } => ErrorCode::GatewayUnreachable,
            E::GatewayRefused { code, .. } => ErrorCode::from(code),
            E::BadGatewayResponse(_) => ErrorCode::BadGatewayResponse,
            E::AuditBroken(_) => ErrorCode::AuditChainBroken,
            E::InvalidInput(_) => ErrorCode::InvalidInput,
            E::Hoop(h) => ErrorCode::parse(h.code()),
        }
    }
}

/// An error as the UI sees it: a stable code to switch on and a sentence to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct IpcError {
    pub code: ErrorCode,
    pub message: String,
}

impl From<EngineError> for IpcError {
    fn from(e: EngineError) -> Self {
        IpcError {
            code: ErrorCode::from(&e),
            message: display::visible(&e.to_string()),
        }
    }
}

impl IpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        IpcError {
            code,
            message: message.into(),
        }
    }

    /// The gateway refused a decision: its code, and its sentence made safe to show (it is
    /// the gateway's text, not ours). A code this build does not know keeps its spelling in
    /// the sentence.
    pub fn refused(code: &api::ErrorCode, message: &str) -> Self {
        let ipc = ErrorCode::from(code);
        let message = display::visible(message);
        let message = if ipc == ErrorCode::Unknown {
            format!(
                "The gateway refused with {}: {message}",
                display::visible(code.as_str())
            )
        } else {
            message
        };
        IpcError { code: ipc, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_approver::hoop::api::HoopError;
    use countersign_protocol::audit::ChainBreak;

    /// One of each engine error (but `Database`, whose rusqlite error this crate cannot
    /// make): the UI's code is the engine's, except a refusal, which is the gateway's.
    #[test]
    fn engine_codes_are_the_ui_codes() {
        let io = || std::io::Error::other("x");
        let samples = vec![
            EngineError::Io(io()),
            EngineError::StorageFull("x".into()),
            EngineError::StorageReadOnly("x".into()),
            EngineError::Corrupt("x".into()),
            EngineError::SchemaTooNew {
                found: 9,
                supported: 1,
            },
            EngineError::InUse {
                dir: "d".into(),
                pid: None,
            },
            EngineError::KeyPermissions { path: "p".into() },
            EngineError::KeyStore("x".into()),
            EngineError::Protocol(countersign_protocol::ProtocolError::UnsupportedVersion {
                found: 9,
                supported: 1,
            }),
            EngineError::LinkExpired {
                expires_at: "t".into(),
            },
            EngineError::GatewayKeyMismatch {
                pinned: "a".into(),
                presented: "b".into(),
            },
            EngineError::UnknownGateway("g".into()),
            EngineError::AmbiguousGateway("g".into()),
            EngineError::UnknownRequest("r".into()),
            EngineError::AmbiguousRequest("r".into()),
            EngineError::RequestNotPending {
                request_id: "r".into(),
                state: "denied".into(),
            },
            EngineError::RequestExpired {
                request_id: "r".into(),
                expires_at: "t".into(),
            },
            EngineError::AlreadyDecided {
                request_id: "r".into(),
                decision_id: "d".into(),
            },
            EngineError::MatchCodeRequired("r".into()),
            EngineError::DenyNeedsPasskey("r".into()),
            EngineError::NoAuthenticator,
            EngineError::UnknownAuthenticator("x".into()),
            EngineError::SecurityKeyUnsupported,
            EngineError::Ceremony("x".into()),
            EngineError::SecurityKey(countersign_approver::KeyError::PinInvalid {
                retries: Some(2),
            }),
            EngineError::SecurityKey(countersign_approver::KeyError::KeyRemoved),
            EngineError::SecurityKey(countersign_approver::KeyError::U2fOnly),
            EngineError::SecurityKey(countersign_approver::KeyError::PinRequired),
            EngineError::SecurityKey(countersign_approver::KeyError::PinBlocked { replug: false }),
            EngineError::SecurityKey(countersign_approver::KeyError::UvUnavailable {
                can_set_pin: true,
            }),
            EngineError::SecurityKey(countersign_approver::KeyError::NoMatchingCredential {
                whom: None,
            }),
            EngineError::SecurityKey(countersign_approver::KeyError::CeremonyTimeout),
            EngineError::SecurityKey(countersign_approver::KeyError::CeremonyCancelled),
            EngineError::SecurityKey(countersign_approver::KeyError::AlreadyRegistered),
            EngineError::SecurityKey(countersign_approver::KeyError::PinPolicy("x".into())),
            EngineError::SecurityKey(countersign_approver::KeyError::PinAlreadySet),
            EngineError::GatewayUnreachable {
                url: "u".into(),
                detail: "d".into(),
            },
            EngineError::BadGatewayResponse("x".into()),
            EngineError::AuditBroken(ChainBreak {
                position: 2,
                damage: countersign_protocol::audit::Damage::Edit,
                problem: "x".into(),
            }),
            EngineError::InvalidInput("x".into()),
            EngineError::Hoop(HoopError::Unauthorized {
                url: "u".into(),
                status: 401,
                message: "access denied".into(),
            }),
            EngineError::Hoop(HoopError::SelfApproval),
            EngineError::Hoop(HoopError::NotEligible),
            EngineError::Hoop(HoopError::AlreadyDecided {
                status: "REJECTED".into(),
            }),
            EngineError::Hoop(HoopError::UnknownReview("r".into())),
            EngineError::Hoop(HoopError::Refused {
                status: 400,
                message: "m".into(),
            }),
            EngineError::Hoop(HoopError::Unreachable {
                url: "u".into(),
                detail: "d".into(),
            }),
            EngineError::Hoop(HoopError::BadAnswer("x".into())),
        ];
        for e in &samples {
            assert_eq!(ErrorCode::from(e).as_str(), e.code(), "{e}");
        }
        let refused = EngineError::GatewayRefused {
            status: 403,
            code: api::ErrorCode::WrongMatchCode,
            message: "The match code is wrong.".into(),
        };
        assert_eq!(ErrorCode::from(&refused), ErrorCode::WrongMatchCode);
    }

    /// Every code the gateway documents reaches the UI as itself; a newer one as `unknown`.
    #[test]
    fn every_gateway_code_is_a_ui_code() {
        for c in api::ErrorCode::KNOWN {
            let ipc = ErrorCode::from(c);
            assert_ne!(ipc, ErrorCode::Unknown, "{c}");
            assert_eq!(ipc.as_str(), c.as_str());
        }
        let newer = api::ErrorCode::parse("quorum_policy_changed");
        let e = IpcError::refused(&newer, "The policy changed.");
        assert_eq!(e.code, ErrorCode::Unknown);
        assert!(e.message.contains("quorum_policy_changed"), "{}", e.message);
        assert!(e.message.contains("The policy changed."), "{}", e.message);
    }

    #[test]
    fn codes_round_trip_and_strangers_decode_as_unknown() {
        for c in ErrorCode::ALL {
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), *c);
        }
        let e: IpcError =
            serde_json::from_str(r#"{"code":"from_the_future","message":"Later."}"#).unwrap();
        assert_eq!(e.code, ErrorCode::Unknown);
        let mut seen = std::collections::HashSet::new();
        assert!(
            ErrorCode::ALL.iter().all(|c| seen.insert(c.as_str())),
            "codes are unique"
        );
    }

    /// A gateway's sentence is its text, not ours: hidden characters are shown, not passed.
    #[test]
    fn a_refusal_sentence_is_made_visible() {
        let e = IpcError::refused(&api::ErrorCode::RequestClosed, "closed\u{202E}txt");
        assert_eq!(e.code, ErrorCode::RequestClosed);
        assert!(e.message.contains("\\u{202E}"), "{}", e.message);
    }
}
