//! The desktop IPC surface: every value the UI receives from or sends to the Tauri shell.
//!
//! These are wire types at the edge (the rust-analyzer rule: a serializable type is a
//! boundary). They are built from the engine's domain types here, so the shell's commands stay
//! a few lines each, and their TypeScript mirrors in `ui/src/bindings/` are generated from them
//! by ts-rs (see the `bindings` test), so the two sides cannot drift.
//!
//! Display safety lives here too: every free-text field the UI shows is sent twice, raw (for
//! copying) and `*_visible` with control, bidirectional and invisible characters escaped, plus
//! the warnings the engine's display rules raise. The UI renders only the visible form.
#![forbid(unsafe_code)]

/// The `countersign://` deep-link parser (in the protocol crate, where the fuzzer reaches it).
pub use countersign_protocol::deeplink;

pub mod agent;
mod error;
mod event;
mod key;
pub use error::{ErrorCode, IpcError};
pub use key::{KeyAnswer, KeyAsk, PasskeyView, Secret};

use countersign_approver::display;
use countersign_approver::{DeliveryState, GatewayRecord, InboxItem, LocalDecision};
use countersign_protocol::audit::AuditEntry;
use countersign_protocol::{Digest, RequestState, Verdict};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// A text field ready to display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Text {
    /// Exactly as signed.
    pub raw: String,
    /// With control, bidi and invisible characters shown as `\u{...}`; newlines kept.
    pub visible: String,
    /// Display warnings (hidden characters, mixed scripts).
    pub warnings: Vec<String>,
}

impl Text {
    pub fn new(raw: &str) -> Text {
        Text {
            raw: raw.to_string(),
            visible: display::visible_text(raw, true),
            warnings: display::warnings(raw),
        }
    }
}

pub(crate) fn state_str(s: RequestState) -> String {
    s.as_str().to_string()
}

fn delivery_str(d: DeliveryState) -> String {
    match d {
        DeliveryState::Queued => "queued",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Refused => "refused",
    }
    .to_string()
}

/// A row of the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RequestSummary {
    pub id: String,
    pub gateway: String,
    pub gateway_name: String,
    pub action: Text,
    pub resource: Text,
    /// low | medium | high | critical
    pub risk: String,
    pub summary: Text,
    pub requester: Text,
    /// The gateway's last reported state, or `expired` once past expiry by the local clock.
    pub state: String,
    #[ts(type = "number")]
    pub created_at: i64,
    #[ts(type = "number")]
    pub expires_at: i64,
    #[ts(type = "number")]
    pub received_at: i64,
    pub approvals: u32,
    pub min_approvals: u32,
    /// Each stage of approval with its progress, in the request's order (one stage, named
    /// `approvers`, for a request in the list form).
    pub stages: Vec<StageView>,
    pub match_required: bool,
    pub decision: Option<DecisionView>,
}

/// A stage of approval and its progress: "dba 1/1 ✓".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct StageView {
    pub name: Text,
    /// The directory group the stage takes approvals from, if it is a group stage.
    pub group: Option<Text>,
    /// The approvers a list stage names (empty for a group stage).
    pub approvers: Vec<String>,
    pub approvals: u32,
    pub min: u32,
    pub satisfied: bool,
}

/// A stage's progress as a status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct StageProgressView {
    pub name: String,
    pub approvals: u32,
    pub min: u32,
    pub satisfied: bool,
}

impl From<&countersign_protocol::StageProgress> for StageProgressView {
    fn from(p: &countersign_protocol::StageProgress) -> Self {
        StageProgressView {
            name: p.name.clone(),
            approvals: p.approvals.min(p.min),
            min: p.min,
            satisfied: p.satisfied,
        }
    }
}

/// Everything the decision screen shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RequestDetail {
    pub summary: RequestSummary,
    pub detail: Text,
    /// The requester's reason: untrusted text.
    pub reason: Text,
    pub approvers: Vec<String>,
    pub votes: Vec<VoteView>,
    /// Why this approver was asked: one sentence per stage they may approve for.
    pub why_asked: Vec<Text>,
    /// The policy rule that set the stages, if a policy did.
    pub policy_rule: Option<Text>,
    /// True when one person's approval counts toward at most one stage.
    pub distinct_people: bool,
    /// How long an approval stays valid for the action to start, from approval.
    pub grant_seconds: Option<u32>,
    /// The time windows the gateway's policy allows, as it wrote them.
    pub windows: Vec<Text>,
    #[ts(type = "number")]
    pub not_before: i64,
    /// The request digest the decision will be bound to.
    pub digest: String,
    /// True when the requester is this approver (flag "this is your own request").
    pub own_request: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct VoteView {
    pub approver: String,
    /// approve | deny
    pub verdict: String,
    #[ts(type = "number")]
    pub at: i64,
    /// The names of the stages the gateway credits this approval to.
    pub stages: Vec<String>,
}

/// This device's decision on a request and where its delivery stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct DecisionView {
    pub decision_id: String,
    /// approve | deny
    pub verdict: String,
    #[ts(type = "number")]
    pub decided_at: i64,
    /// queued | delivered | refused
    pub delivery: String,
    pub last_error: Option<String>,
    pub receipt: Option<ReceiptView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ReceiptView {
    /// The request's state after this decision, as the gateway signed it.
    pub request_state: String,
    pub approvals: u32,
    pub min_approvals: u32,
    /// Each stage's progress after this decision; empty for a request in the list form.
    pub stages: Vec<StageProgressView>,
    #[ts(type = "number")]
    pub accepted_at: i64,
    /// Digest of the signed receipt body.
    pub digest: String,
}

impl DecisionView {
    pub fn from_local(d: &LocalDecision) -> DecisionView {
        DecisionView {
            decision_id: d.decision_id.clone(),
            verdict: verdict_str(d.verdict),
            decided_at: d.decided_at,
            delivery: delivery_str(d.delivery),
            // The gateway's words (a refusal) or a transport error: shown, never interpreted.
            last_error: d.last_error.as_deref().map(display::visible),
            receipt: d.receipt.as_ref().map(|r| ReceiptView {
                request_state: state_str(r.body.request_state),
                approvals: r.body.approvals,
                min_approvals: r.body.min_approvals,
                stages: r.body.stages.iter().map(Into::into).collect(),
                accepted_at: r.body.accepted_at,
                digest: r.digest().map(|d| d.to_hex()).unwrap_or_default(),
            }),
        }
    }
}

fn verdict_str(v: Verdict) -> String {
    v.as_str().to_string()
}

impl RequestSummary {
    pub fn from_item(item: &InboxItem, now: i64) -> RequestSummary {
        let b = &item.request.body;
        RequestSummary {
            id: b.id.clone(),
            gateway: item.gateway.clone(),
            gateway_name: item.gateway_name.clone(),
            action: Text::new(&b.action),
            resource: Text::new(&b.resource),
            risk: b.risk.as_str().to_string(),
            summary: Text::new(&b.summary),
            requester: Text::new(&b.requester),
            state: state_str(item.effective_state(now)),
            created_at: b.created_at,
            expires_at: b.expires_at,
            received_at: item.received_at,
            approvals: item.approvals,
            min_approvals: item.min_approvals,
            stages: b
                .effective_stages()
                .iter()
                .zip(item.progress())
                .map(|(s, p)| StageView {
                    name: Text::new(&s.name),
                    group: s.group.as_deref().map(Text::new),
                    approvers: s.approvers.clone().unwrap_or_default(),
                    approvals: p.approvals.min(p.min),
                    min: p.min,
                    satisfied: p.satisfied,
                })
                .collect(),
            match_required: b.match_required,
            decision: item.decision.as_ref().map(DecisionView::from_local),
        }
    }
}

impl RequestDetail {
    /// `me`: the approver identity this device acts as at the request's gateway.
    pub fn from_item(item: &InboxItem, now: i64, me: Option<&str>) -> RequestDetail {
        let b = &item.request.body;
        let stages = b.effective_stages();
        RequestDetail {
            summary: RequestSummary::from_item(item, now),
            detail: Text::new(&b.detail),
            reason: Text::new(&b.reason),
            approvers: b.named_approvers(),
            votes: item
                .votes
                .iter()
                .map(|v| VoteView {
                    approver: v.approver.clone(),
                    verdict: verdict_str(v.verdict),
                    at: v.at,
                    stages: v
                        .stages
                        .iter()
                        .filter_map(|&i| stages.get(i as usize).map(|s| s.name.clone()))
                        .collect(),
                })
                .collect(),
            why_asked: item.why_asked().iter().map(|w| Text::new(w)).collect(),
            policy_rule: b.policy.as_ref().map(|p| Text::new(&p.rule)),
            distinct_people: b.distinct_people,
            grant_seconds: b.grant_seconds,
            windows: b.windows.iter().map(|w| Text::new(w)).collect(),
            not_before: b.not_before,
            digest: item.digest.to_hex(),
            own_request: me.is_some_and(|m| m == b.requester),
        }
    }
}

/// A paired gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct GatewayView {
    pub fingerprint: String,
    pub name: String,
    pub url: String,
    pub approver: String,
    pub device_id: String,
    #[ts(type = "number")]
    pub paired_at: i64,
}

impl From<&GatewayRecord> for GatewayView {
    fn from(g: &GatewayRecord) -> Self {
        GatewayView {
            fingerprint: g.fingerprint.clone(),
            name: g.name.clone(),
            url: g.url.to_string(),
            approver: g.approver.clone(),
            device_id: g.device_id.clone(),
            paired_at: g.paired_at,
        }
    }
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct AuditEntryView {
    #[ts(type = "number")]
    pub seq: u64,
    #[ts(type = "number")]
    pub at: i64,
    pub kind: String,
    pub request_id: Option<String>,
    /// The entry's detail as pretty JSON, escaped for display.
    pub detail: String,
    pub hash: String,
}

impl AuditEntryView {
    pub fn new(e: &AuditEntry, hash: &Digest) -> AuditEntryView {
        AuditEntryView {
            seq: e.seq,
            at: e.at,
            kind: e.kind.clone(),
            request_id: e.request_id.clone(),
            detail: display::visible_text(
                &serde_json::to_string_pretty(&e.detail).unwrap_or_default(),
                true,
            ),
            hash: hash.to_hex(),
        }
    }

    /// Case-insensitive search over kind, request id and detail.
    pub fn matches(&self, query: &str) -> bool {
        let q = query.to_lowercase();
        self.kind.to_lowercase().contains(&q)
            || self
                .request_id
                .as_deref()
                .is_some_and(|r| r.to_lowercase().contains(&q))
            || self.detail.to_lowercase().contains(&q)
    }
}

/// The result of verifying the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct AuditVerifyView {
    pub ok: bool,
    #[ts(type = "number")]
    pub entries: u64,
    pub head: Option<String>,
    /// The first bad entry and what is wrong with it, when not ok.
    pub problem: Option<String>,
}

/// Which passkey authenticator approvals use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct AuthenticatorView {
    /// software | security-key | none
    pub kind: String,
    pub label: String,
    /// True for the software authenticator and the development key socket: the UI labels it
    /// visibly everywhere.
    pub development_mode: bool,
}

/// User settings kept by the desktop shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Settings {
    /// Unix seconds until which notifications are paused.
    #[ts(type = "number | null")]
    pub notifications_paused_until: Option<i64>,
    pub notifications_enabled: bool,
    pub autostart: bool,
    /// system | light | dark
    pub theme: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            notifications_paused_until: None,
            notifications_enabled: true,
            autostart: false,
            theme: "system".into(),
        }
    }
}

/// Which inbox rows to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    Pending,
    All,
}

/// Events the shell pushes to the UI (Tauri event name `countersign://event`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UiEvent {
    /// A verified request was stored. `summary` is its inbox row, so the UI adds it without
    /// re-reading the inbox; without one (`null`) the UI re-reads the pending list.
    RequestReceived {
        request_id: String,
        summary: Option<Box<RequestSummary>>,
    },
    RequestRejected {
        reason: String,
    },
    /// The gateway reported a new state or vote count for a request.
    StatusChanged {
        request_id: String,
        state: String,
        approvals: u32,
        min_approvals: u32,
        /// Each stage's progress; empty for a request in the list form.
        stages: Vec<StageProgressView>,
    },
    DecisionQueued {
        request_id: String,
    },
    DecisionDelivered {
        request_id: String,
        request_state: String,
    },
    DecisionRefused {
        request_id: String,
        code: ErrorCode,
        message: String,
    },
    /// A gateway was paired (from the form, a link or at start-up): the inbox now has a
    /// source, so a first-run welcome gives way to it.
    GatewayPaired {
        gateway: String,
        name: String,
        approver: String,
    },
    Connection {
        gateway: String,
        up: bool,
        error: Option<String>,
    },
    /// The local audit log disagrees with the checkpoint a gateway holds for this device.
    AuditRolledBack {
        gateway: String,
        damage: String,
        problem: String,
    },
    /// Open the detail view of this request (a notification click or a deep link).
    Navigate {
        request_id: String,
    },
    /// Start pairing with this link (a deep link); the UI asks before doing anything.
    PairingLink {
        link: String,
    },
    /// A deep link was refused.
    LinkRefused {
        message: String,
    },
    /// The shell could not pass on every engine event (its receiver lagged behind): the UI
    /// re-reads what it holds instead of applying changes one by one.
    Resync,
    /// The security key of the ceremony running now needs the person (a PIN, a touch, the
    /// next key); answered with the `key_answer` command.
    SecurityKey {
        ask: KeyAsk,
    },
}

/// The Tauri event name every [`UiEvent`] is emitted under.
pub const EVENT_NAME: &str = "countersign://event";

/// The Tauri commands the UI may invoke, with their argument names, for the typed wrappers
/// (`ui/src/ipc.ts`) and the capability test. Keep in step with `src-tauri`.
pub const COMMANDS: &[&str] = &[
    "list_requests",
    "get_request",
    "approve",
    "deny",
    "report_unexpected",
    "pair",
    "list_gateways",
    "authenticator_info",
    "audit_list",
    "audit_verify",
    "audit_export",
    "get_settings",
    "set_settings",
    "pending_navigation",
    "quit",
    "key_answer",
    "key_set_pin",
    "passkey_list",
    "passkey_add",
    "passkey_remove",
];

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_approver::EngineEvent;

    /// Writes every TypeScript binding into `dir`.
    fn export_to(dir: &std::path::Path) {
        let cfg = ts_rs::Config::new().with_out_dir(dir);
        IpcError::export_all(&cfg).unwrap();
        ErrorCode::export_all(&cfg).unwrap();
        Text::export_all(&cfg).unwrap();
        RequestSummary::export_all(&cfg).unwrap();
        RequestDetail::export_all(&cfg).unwrap();
        VoteView::export_all(&cfg).unwrap();
        DecisionView::export_all(&cfg).unwrap();
        ReceiptView::export_all(&cfg).unwrap();
        GatewayView::export_all(&cfg).unwrap();
        AuditEntryView::export_all(&cfg).unwrap();
        AuditVerifyView::export_all(&cfg).unwrap();
        AuthenticatorView::export_all(&cfg).unwrap();
        Settings::export_all(&cfg).unwrap();
        ListKind::export_all(&cfg).unwrap();
        UiEvent::export_all(&cfg).unwrap();
        KeyAnswer::export_all(&cfg).unwrap();
        PasskeyView::export_all(&cfg).unwrap();
    }

    /// The committed bindings equal what the Rust types generate. Run with
    /// `UPDATE_BINDINGS=1` to rewrite them after changing a type.
    #[test]
    fn bindings_are_up_to_date() {
        let committed =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/bindings");
        if std::env::var_os("UPDATE_BINDINGS").is_some() {
            std::fs::create_dir_all(&committed).unwrap();
            export_to(&committed);
        }
        let fresh = tempfile::tempdir().unwrap();
        export_to(fresh.path());
        let mut names: Vec<_> = std::fs::read_dir(fresh.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert!(!names.is_empty());
        for name in names {
            let want = std::fs::read_to_string(fresh.path().join(&name)).unwrap();
            let have = std::fs::read_to_string(committed.join(&name)).unwrap_or_default();
            assert_eq!(
                have, want,
                "ui/src/bindings/{name:?} is stale: run UPDATE_BINDINGS=1 cargo test -p countersign-ipc"
            );
        }
    }

    /// The page keeps its pending list from events alone, so a status change carries the
    /// vote count and a lagging shell can tell it to re-read.
    #[test]
    fn events_carry_what_the_pending_list_needs() {
        let e = UiEvent::from(&EngineEvent::StatusChanged {
            gateway: "fp".into(),
            request_id: "r1".into(),
            state: RequestState::Pending,
            approvals: 1,
            min_approvals: 2,
            stages: vec![countersign_protocol::StageProgress {
                name: "dba".into(),
                approvals: 1,
                min: 1,
                satisfied: true,
            }],
        });
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"type": "status_changed", "request_id": "r1", "state": "pending",
                "approvals": 1, "min_approvals": 2,
                "stages": [{"name": "dba", "approvals": 1, "min": 1, "satisfied": true}]})
        );
        let e = UiEvent::from(&EngineEvent::RequestReceived {
            gateway: "fp".into(),
            request_id: "r1".into(),
        });
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"type": "request_received", "request_id": "r1", "summary": null})
        );
        assert_eq!(
            serde_json::to_value(UiEvent::Resync).unwrap(),
            serde_json::json!({"type": "resync"})
        );
    }

    #[test]
    fn hidden_characters_are_made_visible() {
        let t = Text::new("rm -rf /tmp/x\u{202E}gpj.exe\nnext");
        assert!(t.visible.contains("\\u{202E}"), "{}", t.visible);
        assert!(t.visible.contains('\n'));
        assert!(!t.warnings.is_empty());
        let plain = Text::new("SELECT 1;");
        assert_eq!(plain.visible, "SELECT 1;");
        assert!(plain.warnings.is_empty());
    }
}
