//! The HTTP API under `/v2`: paths, request and response bodies, and error codes.
//!
//! Every error response is `{"error": {"code": "<stable code>", "message": "<sentence>"}}`
//! with an HTTP status that fits the code; [`ErrorCode`] is the list of codes.

use serde::{Deserialize, Serialize};

use crate::audit::Checkpoint;
use crate::canonical::domain;
use crate::crypto::Digest;
use crate::error::ProtocolError;
use crate::request::{ApprovalRequest, Risk};
use crate::types::{
    check_ident, check_u53, check_version, limits, Decode, Signed, SignedBody, StatusUpdate,
};

mod error_code;
pub use error_code::ErrorCode;

pub mod paths {
    pub const INFO: &str = "/v2/info";
    pub const PAIR_START: &str = "/v2/pair/start";
    pub const PAIR_FINISH: &str = "/v2/pair/finish";
    pub const STREAM: &str = "/v2/stream";
    pub const REQUESTS: &str = "/v2/requests";
    pub const DECISIONS: &str = "/v2/decisions";
    pub const OPENAPI: &str = "/v2/openapi.json";
    /// `POST` a device's latest audit checkpoint; `GET .../latest` reads the one held.
    pub const CHECKPOINTS: &str = "/v2/checkpoints";
    pub const CHECKPOINT_LATEST: &str = "/v2/checkpoints/latest";
    /// `POST` a device-signed [`crate::Report`] ("I did not expect this").
    pub const REPORTS: &str = "/v2/reports";
    /// `POST` a device-signed [`crate::Acknowledgement`] of a break-glass or auto-approval.
    pub const ACKS: &str = "/v2/acks";
    /// `POST` a [`super::ChallengeRequest`] (device authorization): a WebAuthn challenge now.
    pub const CHALLENGES: &str = "/v2/challenges";
    pub const PASSKEYS: &str = "/v2/passkeys";
    pub const PASSKEYS_ENROL: &str = "/v2/passkeys/enrol";
    pub const PASSKEYS_REMOVE: &str = "/v2/passkeys/remove";
    /// `GET` the newest log checkpoint (a C2SP signed note, `text/plain`).
    pub const LOG_CHECKPOINT: &str = "/v2/log/checkpoint";
    /// `GET ?start=A&end=B` (auditor): the log's entries `A <= index < B`, as JSON Lines.
    pub const LOG_ENTRIES: &str = "/v2/log/entries";
    /// `GET ?index=I&size=N` (auditor or device): an inclusion proof.
    pub const LOG_INCLUSION: &str = "/v2/log/proof/inclusion";
    /// `GET ?old=M&size=N` (auditor or device): a consistency proof.
    pub const LOG_CONSISTENCY: &str = "/v2/log/proof/consistency";
    /// `POST` a device's [`crate::log::Cosignature`] of a log checkpoint it witnessed.
    pub const LOG_COSIGNATURES: &str = "/v2/log/cosignatures";
}

/// `POST /v2/requests` (bearer token). The requester's identity comes from the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub action: String,
    pub resource: String,
    #[serde(default)]
    pub risk: Option<Risk>,
    pub summary: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub reason: String,
    /// Seconds until the request expires.
    pub ttl_seconds: u32,
    /// The approvers the requester names: with the default policy, who approves; with
    /// another policy, a narrowing of the approvers it makes eligible.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// How many approvals the requester asks for at least (per stage); 0 leaves the policy's.
    #[serde(default)]
    pub min_approvals: u32,
    #[serde(default)]
    pub require_match: bool,
    /// The requester asks to break glass: approved at once if the policy allows it for this
    /// requester, with a reason; the eligible approvers are told after the fact.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub break_glass: bool,
}

/// `POST /v2/challenges` (device authorization): a new WebAuthn challenge for this approver and
/// request, to decide a pending request or to revoke the approver's live approval. The answer
/// is webauthn-rs's `RequestChallengeResponse` JSON; it replaces any unused challenge the
/// approver held for the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    pub v: u32,
    pub request_id: String,
    pub request_digest: Digest,
}

impl Decode for ChallengeRequest {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("request_id", &self.request_id, limits::ID)?;
        Ok(())
    }
}

/// The answer to a [`ChallengeRequest`]: the WebAuthn `RequestChallengeResponse` (webauthn-rs
/// JSON) for the request and the device's approver, as a `request` event carries one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedChallenge {
    pub v: u32,
    pub request_id: String,
    pub request_digest: Digest,
    pub challenge: serde_json::Value,
    /// The gateway-signed Challenge whose digest is `challenge`'s WebAuthn challenge.
    pub signed_challenge: Signed<crate::challenge::Challenge>,
}

impl Decode for IssuedChallenge {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("request_id", &self.request_id, limits::ID)?;
        self.signed_challenge.body.validate()
    }
}

/// An approver's acknowledgement of a request approved without asking them (break-glass, or
/// auto-approved), signed by its device key and sent to `POST /v2/acks`. The gateway is
/// idempotent on `ack_id`, and the first acknowledgement of a request sets its grant's
/// `acknowledged_at` and `acknowledged_by`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acknowledgement {
    pub v: u32,
    /// Random, chosen by the device.
    pub ack_id: String,
    pub request_id: String,
    pub request_digest: Digest,
    /// Fingerprint of the gateway key the request was signed with.
    pub gateway: String,
    pub approver: String,
    pub device_id: String,
    /// The device's clock.
    pub acked_at: i64,
}

impl SignedBody for Acknowledgement {
    const DOMAIN: &'static str = domain::ACK;
}

impl Decode for Acknowledgement {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("ack_id", &self.ack_id, limits::ID)?;
        check_ident("request_id", &self.request_id, limits::ID)?;
        check_ident("gateway", &self.gateway, limits::ID)?;
        check_ident("approver", &self.approver, limits::NAME)?;
        check_ident("device_id", &self.device_id, limits::ID)?;
        Ok(())
    }
}

/// The answer to [`NewRequest`]. `match_code` is shown to the requester only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatedRequest {
    pub request: Signed<ApprovalRequest>,
    pub digest: Digest,
    pub match_code: Option<String>,
    /// True when an identical pending request from the same requester already existed and
    /// this answer is that request (duplicates collapse).
    pub duplicate: bool,
}

/// `GET /v2/requests/{id}[?wait=SECONDS]` (bearer token): the request and its current state.
/// With `wait` the answer is held until the state is final or the time is up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestView {
    pub request: Signed<ApprovalRequest>,
    pub status: Signed<StatusUpdate>,
}

/// `POST /v2/checkpoints` and `GET /v2/checkpoints/latest` (device authorization): the latest
/// audit checkpoint the gateway holds for the calling device, if any. The gateway keeps one per
/// device and refuses one that goes backwards (`checkpoint_rollback`) or forks at the same
/// entry (`checkpoint_fork`), so a wiped or rolled-back local log is detectable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointState {
    pub v: u32,
    pub checkpoint: Option<Signed<Checkpoint>>,
    /// The gateway's signed statement that it holds `checkpoint` (null when it holds none).
    #[serde(default)]
    pub ack: Option<Signed<CheckpointAck>>,
}

/// The gateway's statement that it holds a device's audit checkpoint: the device (and its key's
/// fingerprint, the checkpoint's `signer`), the entry and the head it covers. An approver's
/// export carries the newest one, so an export cut back below it fails (docs/protocol.md 9.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointAck {
    pub v: u32,
    /// The gateway's fingerprint.
    pub gateway: String,
    pub device_id: String,
    /// The fingerprint of the device key that signed the checkpoint.
    pub signer: String,
    pub seq: u64,
    pub head: Digest,
    pub acked_at: i64,
}

impl SignedBody for CheckpointAck {
    const DOMAIN: &'static str = domain::CHECKPOINT_ACK;
}

impl crate::types::Decode for CheckpointAck {
    fn validate(&self) -> Result<(), ProtocolError> {
        crate::fields::check_version(self.v)?;
        crate::fields::check_ident("gateway", &self.gateway, crate::fields::limits::ID)?;
        crate::fields::check_ident("device_id", &self.device_id, crate::fields::limits::ID)?;
        crate::fields::check_ident("signer", &self.signer, crate::fields::limits::ID)?;
        crate::fields::check_u53("seq", self.seq, 1)
    }
}

impl crate::types::Decode for CheckpointState {
    fn validate(&self) -> Result<(), crate::error::ProtocolError> {
        if self.v != crate::PROTOCOL_VERSION {
            return Err(crate::error::ProtocolError::UnsupportedVersion {
                found: self.v,
                supported: crate::PROTOCOL_VERSION,
            });
        }
        if let Some(a) = &self.ack {
            a.body.validate()?;
        }
        match &self.checkpoint {
            Some(c) => c.body.validate(),
            None => Ok(()),
        }
    }
}

/// The answer to `POST /v2/reports`: the requester now blocked from this approver and the
/// pending requests that were denied because of the report (none when they were already
/// closed). Repeating the same report answers the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportAck {
    pub v: u32,
    pub report_id: String,
    pub request_id: String,
    pub requester: String,
    pub denied: Vec<String>,
}

impl crate::types::Decode for ReportAck {
    fn validate(&self) -> Result<(), crate::error::ProtocolError> {
        if self.v != crate::PROTOCOL_VERSION {
            return Err(crate::error::ProtocolError::UnsupportedVersion {
                found: self.v,
                supported: crate::PROTOCOL_VERSION,
            });
        }
        Ok(())
    }
}

/// The gateway's signed answer to a decision it refuses for good, carried beside the error in
/// the answer to `POST /v2/decisions`. It names the refused decision, so it cannot be replayed
/// for another one, and carries no text: an approver shows its own sentence for `code`. An
/// unsigned error answer is never final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    pub v: u32,
    /// Fingerprint of the gateway key that signs the refusal.
    pub gateway: String,
    pub decision_id: String,
    /// Digest of the refused decision (domain `countersign/v2/decision`).
    pub decision_digest: Digest,
    pub request_id: String,
    /// The request digest the decision named.
    pub request_digest: Digest,
    pub approver: String,
    /// Why: one of [`ErrorCode::is_final_refusal`]'s codes.
    pub code: ErrorCode,
    pub refused_at: i64,
    /// The request's status `seq` when the decision was refused; null when the request is
    /// unknown, or not addressed to the decision's approver.
    pub status_seq: Option<u64>,
}

impl SignedBody for Refusal {
    const DOMAIN: &'static str = domain::REFUSAL;
}

impl Decode for Refusal {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("gateway", &self.gateway, limits::ID)?;
        check_ident("decision_id", &self.decision_id, limits::ID)?;
        check_ident("request_id", &self.request_id, limits::ID)?;
        check_ident("approver", &self.approver, limits::NAME)?;
        if !self.code.is_final_refusal() {
            return Err(ProtocolError::InvalidField {
                field: "code",
                reason: format!("`{}` is not a final refusal code", self.code.as_str()),
            });
        }
        if let Some(seq) = self.status_seq {
            check_u53("status_seq", seq, 1)?;
        }
        Ok(())
    }
}

/// The body of every error response. The answer to `POST /v2/decisions` may carry, beside
/// `error`, the gateway's signed [`Refusal`] and the request's signed status at the refusal;
/// no other error answer is signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Signed<Refusal>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Signed<StatusUpdate>>,
}

impl ErrorBody {
    /// An unsigned error answer.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
            refusal: None,
            status: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The stable code; one this build does not know decodes as [`ErrorCode::Unknown`].
    pub code: ErrorCode,
    pub message: String,
}
