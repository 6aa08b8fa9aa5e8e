//! The inbox: verified requests as stored in the `inbox` table, the rules a request must pass
//! before it is stored, and the outcome of ingesting one stream event.

use countersign_protocol::{
    ApprovalRequest, Digest, PublicKey, Receipt, RequestState, Signed, Verdict, Vote,
};
use serde::Serialize;

use crate::clock::format_time;
use crate::gateway::GatewayRecord;

/// How far ahead of our clock a gateway's `not_before` may be, for clock skew between hosts.
/// Only `not_before` gets this allowance: accepting a request after it expired never helps.
pub const NOT_BEFORE_SKEW_SECONDS: i64 = 60;

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
}

impl RejectReason {
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::BadSignature => "bad_signature",
            RejectReason::WrongGateway { .. } => "wrong_gateway",
            RejectReason::Expired { .. } => "expired",
            RejectReason::NotYetValid { .. } => "not_yet_valid",
            RejectReason::NotAddressed { .. } => "not_addressed",
            RejectReason::Duplicate => "duplicate",
            RejectReason::ConflictingDuplicate => "conflicting_duplicate",
            RejectReason::StatusBadSignature => "status_bad_signature",
            RejectReason::StatusDigestMismatch => "status_digest_mismatch",
            RejectReason::Malformed { .. } => "malformed",
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
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

/// What [`crate::Engine::ingest`] did with one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum IngestOutcome {
    Accepted,
    /// Already seen: the event id was not newer than the last one stored, or the request is
    /// already in the inbox.
    Duplicate,
    Rejected {
        reason: RejectReason,
    },
}

/// The checks a request must pass before it is stored, in the order they are made: nothing in
/// the body is trusted before its signature verifies.
pub(crate) fn check_request(
    request: &Signed<ApprovalRequest>,
    gateway: &GatewayRecord,
    now: i64,
) -> Result<(), RejectReason> {
    check_signature(request, &gateway.gateway_key)?;
    let body = &request.body;
    if body.gateway != gateway.fingerprint {
        return Err(RejectReason::WrongGateway {
            named: body.gateway.clone(),
            pinned: gateway.fingerprint.clone(),
        });
    }
    if now >= body.expires_at {
        return Err(RejectReason::Expired {
            expires_at: body.expires_at,
        });
    }
    if body.not_before > now + NOT_BEFORE_SKEW_SECONDS {
        return Err(RejectReason::NotYetValid {
            not_before: body.not_before,
        });
    }
    if !body.approvers.iter().any(|a| a == &gateway.approver) {
        return Err(RejectReason::NotAddressed {
            approver: gateway.approver.clone(),
        });
    }
    Ok(())
}

fn check_signature(request: &Signed<ApprovalRequest>, key: &PublicKey) -> Result<(), RejectReason> {
    request.verify(key).map_err(|_| RejectReason::BadSignature)
}

/// Which requests `list` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListFilter {
    /// Pending at the gateway and not yet expired by our clock.
    #[default]
    Pending,
    All,
}

/// Where this device's decision on a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Queued,
    Delivered,
    Refused,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(DeliveryState::Queued),
            "delivered" => Some(DeliveryState::Delivered),
            "refused" => Some(DeliveryState::Refused),
            _ => None,
        }
    }
}

/// This device's decision on an inbox item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalDecision {
    pub decision_id: String,
    pub verdict: Verdict,
    pub decided_at: i64,
    pub delivery: DeliveryState,
    pub last_error: Option<String>,
    pub receipt: Option<Signed<Receipt>>,
}

/// One verified request in the inbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxItem {
    /// Fingerprint of the gateway that sent it.
    pub gateway: String,
    pub gateway_name: String,
    /// The request exactly as signed by the gateway.
    pub request: Signed<ApprovalRequest>,
    pub digest: Digest,
    /// WebAuthn `RequestChallengeResponse` JSON for this request and approver.
    pub challenge: serde_json::Value,
    /// The last state the gateway reported.
    pub state: RequestState,
    pub approvals: u32,
    pub min_approvals: u32,
    pub votes: Vec<Vote>,
    pub received_at: i64,
    pub decision: Option<LocalDecision>,
}

impl InboxItem {
    pub fn id(&self) -> &str {
        &self.request.body.id
    }

    /// The state to show: a request still pending at the gateway but past its expiry by our
    /// clock is expired (the gateway will say so when we next hear from it).
    pub fn effective_state(&self, now: i64) -> RequestState {
        if self.state == RequestState::Pending && now >= self.request.body.expires_at {
            RequestState::Expired
        } else {
            self.state
        }
    }
}
