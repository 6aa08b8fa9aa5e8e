//! What the engine tells its host about: the [`EngineEvent`] broadcast (for a UI that keeps
//! its own view up to date) and the [`Notifier`] hook (for native notifications).

use countersign_protocol::api::ErrorCode;
use countersign_protocol::RequestState;
use serde::Serialize;

use crate::inbox::InboxItem;

/// Something that changed in the engine. Sent on a broadcast channel; a slow receiver may miss
/// events (it sees `Lagged`) and should then re-read the inbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EngineEvent {
    RequestReceived {
        gateway: String,
        request_id: String,
    },
    RequestRejected {
        gateway: String,
        request_id: Option<String>,
        reason: String,
    },
    StatusChanged {
        gateway: String,
        request_id: String,
        state: RequestState,
        approvals: u32,
        min_approvals: u32,
        /// Each stage's progress; empty for a request in the list form.
        stages: Vec<countersign_protocol::StageProgress>,
    },
    DecisionQueued {
        decision_id: String,
        request_id: String,
    },
    DecisionDelivered {
        decision_id: String,
        request_id: String,
        request_state: RequestState,
    },
    DecisionRefused {
        decision_id: String,
        request_id: String,
        /// The gateway's refusal code.
        code: ErrorCode,
        message: String,
    },
    /// A gateway was paired (or paired again): its stream connects next.
    GatewayPaired {
        gateway: String,
        name: String,
        approver: String,
    },
    ConnectionUp {
        gateway: String,
    },
    ConnectionDown {
        gateway: String,
        error: String,
    },
    /// The local audit log disagrees with the checkpoint a gateway holds for this device: it
    /// was wiped, restored from an older copy, or rewritten.
    AuditRolledBack {
        gateway: String,
        damage: String,
        problem: String,
    },
    /// A gateway's log checkpoint does not extend the one this device witnessed: the gateway
    /// rewrote or forked its log.
    LogHistoryChanged {
        gateway: String,
        damage: String,
        problem: String,
    },
    /// A hoop review arrived through hoop connection `connection`.
    HoopReviewReceived {
        connection: String,
        review_id: String,
    },
    /// A hoop review left the pending state (decided here, in hoop's UI, or gone).
    HoopReviewChanged {
        connection: String,
        review_id: String,
        status: String,
    },
}

/// Called by the engine when a person should be told something. Implementations must not block
/// for long (they run on the engine's tasks) and must never decide anything themselves.
pub trait Notifier: Send + Sync {
    /// A verified request was stored in the inbox.
    fn request_arrived(&self, _item: &InboxItem) {}
    /// A request reached a final state (or was decided here).
    fn request_resolved(&self, _request_id: &str, _state: RequestState) {}
    /// A hoop review arrived through hoop connection `connection` (unsigned: hoop signs
    /// nothing); it is in the inbox already, for `Engine::hoop_item_in(connection, review_id)`.
    fn hoop_review_arrived(&self, _connection: &str, _review_id: &str) {}
    /// A hoop review left the pending state; `status` is hoop's (`APPROVED`, `REJECTED`, ...).
    fn hoop_review_resolved(&self, _review_id: &str, _status: &str) {}
}

/// The default notifier: tells nobody.
#[derive(Debug, Default, Clone, Copy)]
pub struct SilentNotifier;

impl Notifier for SilentNotifier {}
