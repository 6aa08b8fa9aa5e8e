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
mod hoop;
mod key;
mod request;
pub use error::{ErrorCode, IpcError};
pub use hoop::HoopConnectionView;
pub use key::{KeyAnswer, KeyAsk, PasskeyView, Secret};
pub use request::{
    DecisionView, HoopAnalysisView, HoopFacts, HoopGroupView, ReceiptView, RequestDetail,
    RequestSummary, StageProgressView, StageView, VoteView,
};

use countersign_approver::display;
use countersign_approver::GatewayRecord;
use countersign_protocol::audit::AuditEntry;
use countersign_protocol::{Digest, RequestState};
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
    /// Why this gateway's log changed history ("This device witnessed ..."), once this device
    /// refused one of its log checkpoints; null while its log is consistent with what this
    /// device witnessed.
    pub log_history_changed: Option<String>,
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
            log_history_changed: None,
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
    /// A connection was removed (a hoop gateway disconnected): it no longer counts as up or
    /// down.
    ConnectionRemoved {
        gateway: String,
    },
    /// The local audit log disagrees with the checkpoint a gateway holds for this device.
    AuditRolledBack {
        gateway: String,
        damage: String,
        problem: String,
    },
    /// A gateway's log checkpoint does not extend the one this device witnessed: it rewrote
    /// or forked its log (`problem` says what was seen).
    LogHistoryChanged {
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
    "acknowledge",
    "revoke",
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
    "hoop_list",
    "hoop_connect",
    "hoop_disconnect",
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
        HoopConnectionView::export_all(&cfg).unwrap();
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
