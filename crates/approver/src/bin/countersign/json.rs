//! The wire shapes of `--json`: one DTO for each kind of line the CLI prints, built from engine
//! values, so the CLI's JSON is decided here and not by how the engine's types derive
//! `Serialize`. Values of `countersign_protocol` (signed requests and receipts, digests, keys,
//! votes, states, the report acknowledgement) are embedded as they are: they are the protocol's
//! boundary types, and their shape is the protocol's.
//!
//! Key order is part of the shape. Most lines have always been printed through a
//! `serde_json::Value`, whose objects sort their keys at every level, nested protocol values
//! included (this workspace does not enable serde_json's `preserve_order`); a few in field
//! order. [`Line::SORTED_KEYS`] says which for each DTO and [`Line::line`] prints accordingly.
//! The fields of the sorted DTOs are declared in alphabetical order, so they read as they print.

use crate::out::outln;
use countersign_approver as engine;
use countersign_protocol::api::ReportAck;
use countersign_protocol::audit::Damage;
use countersign_protocol::{
    ApprovalRequest, Digest, PublicKey, Receipt, RequestState, Signed, StageProgress, Verdict, Vote,
};
use serde::Serialize;

mod hoop;
pub use hoop::{HoopGateway, HoopRequest};

/// A value printed as one line of `--json` output.
pub trait Line: Serialize {
    /// True: keys sorted at every level (printed through `serde_json::Value`). False: in field
    /// order, a tagged enum's tag first.
    const SORTED_KEYS: bool;

    fn line(&self) -> serde_json::Result<String> {
        if Self::SORTED_KEYS {
            serde_json::to_value(self).map(|v| v.to_string())
        } else {
            serde_json::to_string(self)
        }
    }
}

/// Prints `value` as one line on stdout.
pub fn print(value: &impl Line) -> anyhow::Result<()> {
    outln!("{}", value.line()?);
    Ok(())
}

// ------------------------------------------------------------------------------- gateways

/// `pair`: the gateway this device has just paired with.
#[derive(Debug, Serialize)]
pub struct Paired<'a> {
    approver: &'a str,
    authenticator: &'a str,
    device_id: &'a str,
    fingerprint: &'a str,
    gateway: &'a str,
    url: &'a str,
}

impl<'a> Paired<'a> {
    pub fn new(g: &'a engine::GatewayRecord, authenticator: &'a str) -> Self {
        Paired {
            approver: &g.approver,
            authenticator,
            device_id: &g.device_id,
            fingerprint: &g.fingerprint,
            gateway: &g.name,
            url: g.url.as_str(),
        }
    }
}

impl Line for Paired<'_> {
    const SORTED_KEYS: bool = true;
}

/// `gateways`: one paired gateway, everything pinned at pairing.
#[derive(Debug, Serialize)]
pub struct Gateway<'a> {
    /// `countersign` (a hoop gateway's line is a [`HoopGateway`]).
    kind: &'static str,
    fingerprint: &'a str,
    url: &'a str,
    gateway_key: &'a PublicKey,
    name: &'a str,
    approver: &'a str,
    device_id: &'a str,
    webauthn_origin: &'a str,
    tls_pin: Option<&'a str>,
    paired_at: i64,
    last_event_id: u64,
    /// What this device witnessed of the gateway's log (`gateways` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<&'a engine::witness::LogWitness>,
}

impl<'a> Gateway<'a> {
    /// With what this device witnessed of the gateway's log.
    pub fn with_log(mut self, log: &'a engine::witness::LogWitness) -> Self {
        self.log = Some(log);
        self
    }
}

impl<'a> From<&'a engine::GatewayRecord> for Gateway<'a> {
    fn from(g: &'a engine::GatewayRecord) -> Self {
        Gateway {
            kind: "countersign",
            fingerprint: &g.fingerprint,
            url: g.url.as_str(),
            gateway_key: &g.gateway_key,
            name: &g.name,
            approver: &g.approver,
            device_id: &g.device_id,
            webauthn_origin: g.webauthn_origin.as_str(),
            tls_pin: g.tls_pin.as_deref(),
            paired_at: g.paired_at,
            last_event_id: g.last_event_id,
            log: None,
        }
    }
}

impl Line for Gateway<'_> {
    const SORTED_KEYS: bool = false;
}

impl Line for HoopGateway<'_> {
    const SORTED_KEYS: bool = false;
}
impl Line for HoopRequest<'_> {
    const SORTED_KEYS: bool = false;
}

// ---------------------------------------------------------------------------------- inbox

/// `list`, `show` and a `watch` arrival: one request in the inbox, with the state to show by
/// this device's clock (`effective_state`) next to the one the gateway last reported.
#[derive(Debug, Serialize)]
pub struct Request<'a> {
    approvals: u32,
    /// The gateway's WebAuthn challenge for this request and approver, as it sent it.
    challenge: &'a serde_json::Value,
    decision: Option<LocalDecision<'a>>,
    digest: Digest,
    effective_state: RequestState,
    gateway: &'a str,
    gateway_name: &'a str,
    /// What the approval grants (window, revocation, acknowledgement); null until approved.
    grant: Option<&'a countersign_protocol::Grant>,
    min_approvals: u32,
    /// Approved without asking (break-glass) and acknowledged by nobody yet.
    needs_acknowledgement: bool,
    received_at: i64,
    request: &'a Signed<ApprovalRequest>,
    stages: Vec<StageProgress>,
    state: RequestState,
    votes: &'a [Vote],
    why_asked: Vec<String>,
}

impl<'a> Request<'a> {
    pub fn new(item: &'a engine::InboxItem, now: i64) -> Self {
        Request {
            approvals: item.approvals,
            challenge: &item.challenge,
            decision: item.decision.as_ref().map(LocalDecision::from),
            digest: item.digest,
            effective_state: item.effective_state(now),
            gateway: &item.gateway,
            gateway_name: &item.gateway_name,
            grant: item.grant.as_ref(),
            min_approvals: item.min_approvals,
            needs_acknowledgement: item.needs_acknowledgement(),
            received_at: item.received_at,
            request: &item.request,
            stages: item.progress(),
            state: item.state,
            votes: &item.votes,
            why_asked: item.why_asked(),
        }
    }
}

impl Line for Request<'_> {
    const SORTED_KEYS: bool = true;
}

/// This device's decision on a request and where its delivery is.
#[derive(Debug, Serialize)]
pub struct LocalDecision<'a> {
    decided_at: i64,
    decision_id: &'a str,
    delivery: DeliveryState,
    last_error: Option<&'a str>,
    receipt: Option<&'a Signed<Receipt>>,
    verdict: Verdict,
}

impl<'a> From<&'a engine::LocalDecision> for LocalDecision<'a> {
    fn from(d: &'a engine::LocalDecision) -> Self {
        LocalDecision {
            decided_at: d.decided_at,
            decision_id: &d.decision_id,
            delivery: d.delivery.into(),
            last_error: d.last_error.as_deref(),
            receipt: d.receipt.as_ref(),
            verdict: d.verdict,
        }
    }
}

/// Where a decision's delivery is: `queued`, `delivered` or `refused`.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Queued,
    Delivered,
    Refused,
}

impl From<engine::DeliveryState> for DeliveryState {
    fn from(s: engine::DeliveryState) -> Self {
        match s {
            engine::DeliveryState::Queued => DeliveryState::Queued,
            engine::DeliveryState::Delivered => DeliveryState::Delivered,
            engine::DeliveryState::Refused => DeliveryState::Refused,
        }
    }
}

// ------------------------------------------------------------------------------ decisions

/// `approve` and `deny`: the decision made and what its delivery achieved.
#[derive(Debug, Serialize)]
pub struct Decided<'a> {
    /// The authenticator of the passkey ceremony (approvals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    authenticator: Option<&'a str>,
    decision_id: &'a str,
    delivery: Delivery<'a>,
    request_id: &'a str,
    verdict: Verdict,
}

impl<'a> Decided<'a> {
    pub fn new(out: &'a engine::DecisionOutcome, authenticator: Option<&'a str>) -> Self {
        let d = &out.decision.body;
        Decided {
            authenticator,
            decision_id: &d.decision_id,
            delivery: Delivery::from(&out.delivery),
            request_id: &d.request_id,
            verdict: d.verdict,
        }
    }
}

impl Line for Decided<'_> {
    const SORTED_KEYS: bool = true;
}

/// What one delivery attempt achieved, tagged by `delivery`.
#[derive(Debug, Serialize)]
#[serde(tag = "delivery", rename_all = "snake_case")]
pub enum Delivery<'a> {
    /// The gateway's verified receipt.
    Delivered {
        receipt: &'a Signed<Receipt>,
    },
    Refused {
        code: &'a str,
        message: &'a str,
    },
    Queued {
        error: &'a str,
    },
    InFlight,
    Settled {
        state: DeliveryState,
    },
}

impl<'a> From<&'a engine::Delivery> for Delivery<'a> {
    fn from(d: &'a engine::Delivery) -> Self {
        match d {
            engine::Delivery::Delivered { receipt } => Delivery::Delivered { receipt },
            engine::Delivery::Refused { code, message } => Delivery::Refused {
                code: code.as_str(),
                message,
            },
            engine::Delivery::Queued { error } => Delivery::Queued { error },
            engine::Delivery::InFlight => Delivery::InFlight,
            engine::Delivery::Settled { state } => Delivery::Settled {
                state: (*state).into(),
            },
        }
    }
}

/// `report`: the gateway's acknowledgement, as the protocol defines it.
impl Line for ReportAck {
    const SORTED_KEYS: bool = false;
}

// ----------------------------------------------------------------------------------- sync

/// `sync`: what syncing with one gateway did.
#[derive(Debug, Serialize)]
pub struct Synced<'a> {
    gateway: &'a str,
    name: &'a str,
    /// Events stored during the sync.
    events: u32,
    error: Option<&'a str>,
    error_code: Option<&'a str>,
    log_history_changed: Option<&'a str>,
}

impl<'a> From<&'a engine::SyncReport> for Synced<'a> {
    fn from(r: &'a engine::SyncReport) -> Self {
        Synced {
            gateway: &r.gateway,
            name: &r.name,
            events: r.events,
            error: r.error.as_deref(),
            error_code: r.error_code.as_deref(),
            log_history_changed: r.log_history_changed.as_deref(),
        }
    }
}

impl Line for Synced<'_> {
    const SORTED_KEYS: bool = false;
}

/// `sync`'s last line: `{"outbox": {...}}`, the totals of sending queued decisions.
#[derive(Debug, Serialize)]
pub struct Outbox {
    outbox: Flushed,
}

#[derive(Debug, Serialize)]
struct Flushed {
    delivered: u32,
    queued: u32,
    refused: u32,
}

impl From<engine::FlushReport> for Outbox {
    fn from(f: engine::FlushReport) -> Self {
        Outbox {
            outbox: Flushed {
                delivered: f.delivered,
                queued: f.queued,
                refused: f.refused,
            },
        }
    }
}

impl Line for Outbox {
    const SORTED_KEYS: bool = true;
}

// ---------------------------------------------------------------------------------- audit

/// `audit verify`: the verified chain and what each gateway's checkpoint showed.
#[derive(Debug, Serialize)]
pub struct AuditVerified<'a> {
    checkpointed_through: Option<u64>,
    checkpoints: u64,
    entries: u64,
    gateways: Vec<Anchor<'a>>,
    head: Digest,
    /// Always true: a broken chain is an error line instead.
    ok: bool,
}

impl<'a> AuditVerified<'a> {
    pub fn new(s: &engine::AuditSummary, anchors: &'a [engine::AnchorReport]) -> Self {
        AuditVerified {
            checkpointed_through: s.checkpointed_through,
            checkpoints: s.checkpoints,
            entries: s.entries,
            gateways: anchors.iter().map(Anchor::from).collect(),
            head: s.head,
            ok: true,
        }
    }
}

impl Line for AuditVerified<'_> {
    const SORTED_KEYS: bool = true;
}

/// The local log compared with the checkpoint one gateway holds.
#[derive(Debug, Serialize)]
struct Anchor<'a> {
    damage: Option<Damage>,
    gateway: &'a str,
    /// The entry the gateway's checkpoint covered before any upload.
    held: Option<u64>,
    name: &'a str,
    problem: Option<&'a str>,
    /// The entry of the checkpoint uploaded now.
    uploaded: Option<u64>,
}

impl<'a> From<&'a engine::AnchorReport> for Anchor<'a> {
    fn from(a: &'a engine::AnchorReport) -> Self {
        Anchor {
            damage: a.damage,
            gateway: &a.gateway,
            held: a.held,
            name: &a.name,
            problem: a.problem.as_deref(),
            uploaded: a.uploaded,
        }
    }
}

// ---------------------------------------------------------------------------------- watch

/// `watch`: a request that arrived or was resolved, tagged by `type`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notice<'a> {
    Request {
        request: Box<Request<'a>>,
    },
    Resolved {
        request_id: &'a str,
        state: RequestState,
    },
}

impl Line for Notice<'_> {
    const SORTED_KEYS: bool = true;
}

/// `watch`: the engine events it reports, tagged by `type` (the tag comes first).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event<'a> {
    RequestRejected {
        gateway: &'a str,
        /// None when the event could not be read far enough to know.
        request_id: Option<&'a str>,
        reason: &'a str,
    },
    ConnectionUp {
        gateway: &'a str,
    },
    ConnectionDown {
        gateway: &'a str,
        error: &'a str,
    },
    DecisionDelivered {
        decision_id: &'a str,
        request_id: &'a str,
        request_state: RequestState,
    },
    DecisionRefused {
        decision_id: &'a str,
        request_id: &'a str,
        code: &'a str,
        message: &'a str,
    },
}

impl<'a> Event<'a> {
    /// The events `watch` reports; None for the others (arrivals and resolutions come through
    /// the notifier as a [`Notice`]).
    pub fn from_engine(e: &'a engine::EngineEvent) -> Option<Self> {
        use engine::EngineEvent as E;
        Some(match e {
            E::RequestRejected {
                gateway,
                request_id,
                reason,
            } => Event::RequestRejected {
                gateway,
                request_id: request_id.as_deref(),
                reason,
            },
            E::ConnectionUp { gateway } => Event::ConnectionUp { gateway },
            E::ConnectionDown { gateway, error } => Event::ConnectionDown { gateway, error },
            E::DecisionDelivered {
                decision_id,
                request_id,
                request_state,
            } => Event::DecisionDelivered {
                decision_id,
                request_id,
                request_state: *request_state,
            },
            E::DecisionRefused {
                decision_id,
                request_id,
                code,
                message,
            } => Event::DecisionRefused {
                decision_id,
                request_id,
                code: code.as_str(),
                message,
            },
            _ => return None,
        })
    }
}

impl Line for Event<'_> {
    const SORTED_KEYS: bool = false;
}

// --------------------------------------------------------------------------------- errors

/// Any command that fails: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize)]
pub struct Failed<'a> {
    error: ErrorBody<'a>,
}

#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    /// The engine's error code, or `error`.
    code: &'a str,
    /// The error and its causes, joined with ": ".
    message: &'a str,
}

impl<'a> Failed<'a> {
    pub fn new(code: &'a str, message: &'a str) -> Self {
        Failed {
            error: ErrorBody { code, message },
        }
    }
}

impl Line for Failed<'_> {
    const SORTED_KEYS: bool = true;
}

#[cfg(test)]
mod tests;
