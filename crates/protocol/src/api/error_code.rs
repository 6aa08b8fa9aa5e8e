//! [`ErrorCode`]: the stable code of every error the gateway answers (`docs/protocol.md`,
//! section 6.2), as a type. The wire form is the snake_case string; a code this build does not
//! know decodes as [`ErrorCode::Unknown`], never as an error, so a newer gateway's refusal is
//! still a refusal with its sentence.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Defines [`ErrorCode`] with one variant per documented code, its string, and the list.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $variant:ident = $code:literal,)+) => {
        /// The stable, machine-readable code of an [`ErrorBody`](super::ErrorBody): one variant
        /// per code the reference gateway answers (section 6.2 of `docs/protocol.md`, in its
        /// order), and [`ErrorCode::Unknown`] for any other.
        ///
        /// Serialises as the snake_case string (`"wrong_match_code"`); deserialising never
        /// fails. Equality is by that string, so `Unknown("x")` equals a future variant `X`.
        #[derive(Debug, Clone)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant,)+
            /// A code this build does not know (a newer gateway's), exactly as sent. A client
            /// treats it as a refusal with the given sentence.
            Unknown(String),
        }

        impl ErrorCode {
            /// Every code this build knows, in the order of `docs/protocol.md` section 6.2.
            pub const KNOWN: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The code as it is on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                    ErrorCode::Unknown(s) => s,
                }
            }

            /// The known code spelled `s`, or `Unknown(s)`.
            pub fn parse(s: &str) -> ErrorCode {
                match s {
                    $($code => ErrorCode::$variant,)+
                    other => ErrorCode::Unknown(other.to_owned()),
                }
            }
        }
    };
}

error_codes! {
    // ---- any endpoint
    /// No endpoint at this path (404).
    NoSuchEndpoint = "no_such_endpoint",
    /// The endpoint does not accept this HTTP method (405).
    MethodNotAllowed = "method_not_allowed",
    /// The request body is larger than `MAX_MESSAGE_BYTES` (413).
    BodyTooLarge = "body_too_large",
    /// The request body could not be read (400).
    UnreadableBody = "unreadable_body",
    /// An internal failure; the details are in the gateway's log (500).
    Internal = "internal",
    /// The gateway's disk is full, so nothing was stored; retry once space is freed (507).
    StorageFull = "storage_full",
    /// A path of an older protocol version: this gateway speaks version 2, so the device must
    /// be paired again (410).
    ProtocolUpgraded = "protocol_upgraded",
    // ---- requester token
    /// No `Authorization: Bearer ...` header (401).
    TokenRequired = "token_required",
    /// The requester token is not known to the gateway (401).
    UnknownToken = "unknown_token",
    /// The requester token was revoked (401).
    TokenRevoked = "token_revoked",
    /// An auditor token was used where a requester token is needed: auditor tokens only read
    /// (403).
    ReadOnlyToken = "read_only_token",
    /// The endpoint needs an auditor token (or, for a request's evidence, the request's own
    /// requester token) (403).
    AuditorTokenRequired = "auditor_token_required",
    // ---- the gateway log
    /// A log range, index or tree size outside the log, or a range of more than 1000
    /// entries (400).
    BadLogRange = "bad_log_range",
    /// A cosignature names a tree size the gateway signed no checkpoint of (404).
    UnknownCheckpoint = "unknown_checkpoint",
    /// A cosignature does not verify under the device key, or names another root (400).
    BadCosignature = "bad_cosignature",
    // ---- POST /v2/requests
    /// The body is not a valid NewRequest, or the ApprovalRequest breaks a rule (400).
    InvalidRequest = "invalid_request",
    /// `ttl_seconds` is above the gateway's maximum (400).
    TtlTooLong = "ttl_too_long",
    /// An approver is listed more than once (400).
    DuplicateApprover = "duplicate_approver",
    /// The requester created too many requests in the last 60 seconds (429).
    RateLimited = "rate_limited",
    /// A listed approver has no registered passkey on this gateway (400).
    UnknownApprover = "unknown_approver",
    /// A listed approver blocked this requester with a report (403).
    RequesterBlocked = "requester_blocked",
    /// The gateway's policy refused the request; the message carries its rule and sentence (403).
    PolicyRefused = "policy_refused",
    /// The policy failed to evaluate or gave no result; nothing was created (503).
    PolicyError = "policy_error",
    /// The requester named an approver or a quorum outside what the policy allows (403).
    WideningRefused = "widening_refused",
    /// The requester asked to break glass without a reason (400).
    ReasonRequired = "reason_required",
    // ---- GET /v2/requests/{id} and withdraw
    /// No request with this id (for this requester, or at all) (404).
    UnknownRequest = "unknown_request",
    /// The request id in the path is not valid (400).
    BadPath = "bad_path",
    /// The query string is not valid: `wait` is not a whole number of seconds (400).
    BadQuery = "bad_query",
    /// No pending request with this id from this requester to withdraw (409).
    NotWithdrawable = "not_withdrawable",
    /// The approval cannot be revoked: the request is not approved, or its grant was already
    /// used, revoked or is past its window (409).
    NotRevocable = "not_revocable",
    // ---- POST /v2/acks
    /// No break-glass or auto-approved request with this id addressed to this approver (404).
    UnknownAckRequest = "unknown_ack_request",
    // ---- device authentication (GET /v2/stream, checkpoints, reports)
    /// No device Authorization header, or one that is not visible ASCII (401).
    DeviceAuthRequired = "device_auth_required",
    /// The header is not a well-formed `Countersign-Device` header (401).
    BadDeviceAuth = "bad_device_auth",
    /// No paired device has this id (401; 403 for a decision).
    UnknownDevice = "unknown_device",
    /// The device's pairing was revoked (401; 403 for a decision).
    DeviceRevoked = "device_revoked",
    /// The device authorization's signature does not verify with the device key (401).
    BadDeviceSignature = "bad_device_signature",
    /// The device authorization's `ts` is more than 300 s from the gateway's clock (401).
    StaleDeviceAuth = "stale_device_auth",
    /// This device authorization was already used; each header is single-use (401).
    ReplayedDeviceAuth = "replayed_device_auth",
    /// `Last-Event-ID` is not a non-negative decimal integer (400).
    BadLastEventId = "bad_last_event_id",
    // ---- pairing
    /// The body is not a valid message for this endpoint (400).
    InvalidMessage = "invalid_message",
    /// The one-time pairing code is not known (404).
    UnknownPairingCode = "unknown_pairing_code",
    /// The one-time pairing code was already redeemed (409).
    PairingCodeUsed = "pairing_code_used",
    /// The one-time pairing code's invite expired (410).
    PairingCodeExpired = "pairing_code_expired",
    /// No pairing with this `pairing_id` (404).
    UnknownPairing = "unknown_pairing",
    /// The pairing was already completed (409).
    PairingUsed = "pairing_used",
    /// More than 300 seconds passed since PairStart (410).
    PairingExpired = "pairing_expired",
    /// `device_key` differs from the one in PairStart (403).
    DeviceKeyMismatch = "device_key_mismatch",
    /// The PairFinish signature does not verify with `device_key` (401).
    BadPairingSignature = "bad_pairing_signature",
    /// `credential` is not a WebAuthn registration response (400).
    BadCredential = "bad_credential",
    /// The WebAuthn registration does not verify (403).
    PasskeyRegistrationRejected = "passkey_registration_rejected",
    /// This passkey credential is already registered (409).
    PasskeyExists = "passkey_exists",
    /// The authenticator's attestation does not meet the gateway's attestation policy (403).
    AttestationRejected = "attestation_rejected",
    // ---- the passkey endpoints (/v2/passkeys...)
    /// No passkey enrolment by this id, for this device (404).
    UnknownEnrolment = "unknown_enrolment",
    /// This enrolment was already completed (409).
    EnrolmentUsed = "enrolment_used",
    /// This enrolment expired (410).
    EnrolmentExpired = "enrolment_expired",
    /// The approver has no active passkey by this credential id (404).
    UnknownPasskey = "unknown_passkey",
    /// The approver's last passkey is never removed (409).
    LastPasskey = "last_passkey",
    // ---- POST /v2/decisions, in the order of the checks
    /// The body is not a valid Signed<Decision> (400).
    InvalidDecision = "invalid_decision",
    /// This `decision_id` was already used for a different decision (409).
    DecisionIdReused = "decision_id_reused",
    /// The device is paired to another approver than the decision's (403).
    DeviceNotForApprover = "device_not_for_approver",
    /// The device's pairing changed while the decision was being verified (409).
    DeviceChanged = "device_changed",
    /// The decision's signature does not verify with the device key (401).
    BadDecisionSignature = "bad_decision_signature",
    /// `gateway` is not this gateway's fingerprint (400).
    WrongGateway = "wrong_gateway",
    /// `request_digest` is not the digest of the stored request (409).
    RequestDigestMismatch = "request_digest_mismatch",
    /// The approver is not among the request's approvers (403).
    NotEligible = "not_eligible",
    /// The approver is, in the gateway's directory, the same person as the request's
    /// requester: nobody approves their own request (403; also when creating a request).
    OwnRequest = "own_request",
    /// The request is no longer pending (409).
    RequestClosed = "request_closed",
    /// The gateway's clock is at or past the request's `expires_at` (410).
    RequestExpired = "request_expired",
    /// The gateway's clock is before the request's `not_before` (409).
    RequestNotYetValid = "request_not_yet_valid",
    /// This approver already has an accepted decision on this request (409).
    AlreadyDecided = "already_decided",
    /// Every stage this approval could count toward already has its approvals, and no other
    /// assignment would let it count: it is not recorded (409).
    ApprovalNotNeeded = "approval_not_needed",
    /// An approval of a request with a match code carries none (400).
    MatchCodeRequired = "match_code_required",
    /// The typed match code differs from the requester's; counted against the request (403).
    WrongMatchCode = "wrong_match_code",
    /// A deny without assertion where the gateway requires a passkey for denials too (400).
    PasskeyRequired = "passkey_required",
    /// `assertion` is not a WebAuthn `PublicKeyCredential` (400).
    BadAssertion = "bad_assertion",
    /// `clientDataJSON` is not a valid WebAuthn client data object (400).
    BadClientData = "bad_client_data",
    /// No WebAuthn challenge exists for this request and approver (409).
    NoChallenge = "no_challenge",
    /// The challenge for this request and approver was already used (409).
    AssertionReplayed = "assertion_replayed",
    /// The assertion lacks user verification (403).
    UserNotVerified = "user_not_verified",
    /// The assertion answers a different challenge (403).
    AssertionNotForThisRequest = "assertion_not_for_this_request",
    /// The authenticator's signature counter went backwards (possible clone) (403).
    PasskeyCounterRegressed = "passkey_counter_regressed",
    /// The assertion names another WebAuthn origin (403).
    WrongWebauthnOrigin = "wrong_webauthn_origin",
    /// Any other WebAuthn verification failure; the message names it (403).
    PasskeyRejected = "passkey_rejected",
    // ---- POST /v2/checkpoints
    /// The body is not a `Signed<Checkpoint>` (400).
    InvalidCheckpoint = "invalid_checkpoint",
    /// The checkpoint is not signed by the calling device's key (400).
    CheckpointNotSignedByDevice = "checkpoint_not_signed_by_device",
    /// The gateway holds a checkpoint of this device at a higher `seq` (409).
    CheckpointRollback = "checkpoint_rollback",
    /// The gateway holds a checkpoint of this device at the same `seq` with another head (409).
    CheckpointFork = "checkpoint_fork",
    // ---- POST /v2/reports
    /// The report's signature does not verify with the device key (401).
    BadReportSignature = "bad_report_signature",
    // ---- the Kubernetes admission webhook (docs/kubernetes.md)
    /// The body is not an `admission.k8s.io/v1` AdmissionReview with a request (400).
    InvalidAdmissionReview = "invalid_admission_review",
    /// The AdmissionReview is larger than the webhook's `max_review_bytes` (413).
    AdmissionReviewTooLarge = "admission_review_too_large",
    // ---- POST /github/webhook (docs/github.md)
    /// The webhook's `X-Hub-Signature-256` does not verify with the App's webhook secret (401).
    BadWebhookSignature = "bad_webhook_signature",
    /// The event is not a readable `deployment_protection_rule`, or its callback is not the
    /// configured API's (400).
    InvalidGithubEvent = "invalid_github_event",
    // ---- the gateway's command line only
    /// An approver or requester name is not 1 to 128 printable ASCII characters (400).
    InvalidName = "invalid_name",
}

impl ErrorCode {
    /// The codes of `POST /v2/decisions` that refuse a decision for good. The gateway signs a
    /// [`Refusal`](crate::Refusal) for these and only these; every other error answer, and any
    /// answer without a valid signed refusal, is "try again later" to an approver.
    pub fn is_final_refusal(&self) -> bool {
        matches!(
            self,
            ErrorCode::DecisionIdReused
                | ErrorCode::UnknownDevice
                | ErrorCode::DeviceRevoked
                | ErrorCode::DeviceNotForApprover
                | ErrorCode::BadDecisionSignature
                | ErrorCode::UnknownRequest
                | ErrorCode::WrongGateway
                | ErrorCode::RequestDigestMismatch
                | ErrorCode::NotEligible
                | ErrorCode::OwnRequest
                | ErrorCode::RequestClosed
                | ErrorCode::RequestExpired
                | ErrorCode::RequestNotYetValid
                | ErrorCode::AlreadyDecided
                | ErrorCode::NotRevocable
                | ErrorCode::ApprovalNotNeeded
                | ErrorCode::MatchCodeRequired
                | ErrorCode::WrongMatchCode
                | ErrorCode::PasskeyRequired
                | ErrorCode::BadAssertion
                | ErrorCode::BadClientData
                | ErrorCode::NoChallenge
                | ErrorCode::AssertionReplayed
                | ErrorCode::UserNotVerified
                | ErrorCode::AssertionNotForThisRequest
                | ErrorCode::PasskeyCounterRegressed
                | ErrorCode::WrongWebauthnOrigin
                | ErrorCode::PasskeyRejected
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ErrorCode {
    fn from(s: &str) -> Self {
        ErrorCode::parse(s)
    }
}

impl From<String> for ErrorCode {
    fn from(s: String) -> Self {
        match ErrorCode::parse(&s) {
            ErrorCode::Unknown(_) => ErrorCode::Unknown(s),
            known => known,
        }
    }
}

impl PartialEq for ErrorCode {
    fn eq(&self, other: &ErrorCode) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ErrorCode {}

impl std::hash::Hash for ErrorCode {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for ErrorCode {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<ErrorCode> for str {
    fn eq(&self, other: &ErrorCode) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<ErrorCode> for &str {
    fn eq(&self, other: &ErrorCode) -> bool {
        *self == other.as_str()
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    /// Any string: a known code becomes its variant, any other `Unknown`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(ErrorCode::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ErrorBody, ErrorDetail};

    #[test]
    fn every_code_round_trips_through_its_string() {
        for code in ErrorCode::KNOWN {
            let s = code.as_str();
            assert!(
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s:?} is not snake_case"
            );
            let parsed = ErrorCode::parse(s);
            assert!(
                !matches!(parsed, ErrorCode::Unknown(_)),
                "{s} parses as Unknown"
            );
            assert_eq!(parsed.as_str(), s);
            assert_eq!(code.to_string(), s);
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back.as_str(), s);
            assert!(
                !matches!(back, ErrorCode::Unknown(_)),
                "{s} decodes as Unknown"
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::KNOWN {
            assert!(seen.insert(code.as_str()), "{code} is listed twice");
        }
    }

    #[test]
    fn an_unknown_code_decodes_as_unknown_with_its_sentence() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"error": {"code": "quantum_flux", "message": "The flux is not aligned."}}"#,
        )
        .unwrap();
        assert!(
            matches!(&body.error.code, ErrorCode::Unknown(s) if s == "quantum_flux"),
            "{:?}",
            body.error.code
        );
        assert_eq!(body.error.message, "The flux is not aligned.");
        // Re-encoded, not one byte differs.
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"code":"quantum_flux","message":"The flux is not aligned."}}"#
        );
        // A code that is not a string is still a malformed body.
        assert!(
            serde_json::from_str::<ErrorBody>(r#"{"error":{"code":7,"message":"x"}}"#).is_err()
        );
    }

    #[test]
    fn the_wire_form_is_the_plain_string() {
        let body = ErrorBody {
            error: ErrorDetail {
                code: ErrorCode::WrongMatchCode,
                message: "The match code is wrong.".into(),
            },
            refusal: None,
            status: None,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"code":"wrong_match_code","message":"The match code is wrong."}}"#
        );
        assert_eq!(body.error.code, "wrong_match_code");
        assert_eq!(body.error.code, *"wrong_match_code");
        assert_eq!("wrong_match_code", body.error.code);
        assert_ne!(body.error.code, "match_code_required");
        // Equality is by the string: a code spelled out by hand equals its variant.
        assert_eq!(
            ErrorCode::Unknown("wrong_match_code".into()),
            ErrorCode::WrongMatchCode
        );
        assert_eq!(
            ErrorCode::from("wrong_match_code".to_owned()),
            ErrorCode::WrongMatchCode
        );
        assert!(matches!(
            ErrorCode::from("checkpoint_fork"),
            ErrorCode::CheckpointFork
        ));
    }
}
