//! The Tauri commands: one per name in `countersign_ipc::COMMANDS`, each a few lines over the
//! engine and the IPC conversions. Nothing here decides policy; the engine does.
//!
//! All commands are `async` so they run on the async runtime, never on the UI thread. The
//! passkey ceremony blocks (a real key waits for a touch), so it runs on a blocking thread.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;

use countersign_approver::{Delivery, EngineError, ListFilter};
use countersign_ipc::{
    AuditEntryView, AuditVerifyView, AuthenticatorView, DecisionView, ErrorCode, GatewayView,
    IpcError, ListKind, RequestDetail, RequestSummary, Settings,
};
use tauri::{AppHandle, State};
use tauri_plugin_autostart::ManagerExt;

use crate::state::{lock, AppState};

type Res<T> = Result<T, IpcError>;

/// The reason recorded when the approver says they did not expect a request.
pub use countersign_approver::UNEXPECTED_REASON;
/// The most audit entries one call returns.
const AUDIT_LIMIT_MAX: usize = 10_000;
const AUDIT_LIMIT_DEFAULT: usize = 500;

#[tauri::command]
pub async fn list_requests(state: State<'_, AppState>, kind: ListKind) -> Res<Vec<RequestSummary>> {
    let filter = match kind {
        ListKind::Pending => ListFilter::Pending,
        ListKind::All => ListFilter::All,
    };
    let now = state.engine.now();
    let items = state.engine.list(filter)?;
    Ok(items
        .iter()
        .map(|i| RequestSummary::from_item(i, now))
        .collect())
}

#[tauri::command]
pub async fn get_request(state: State<'_, AppState>, id: String) -> Res<RequestDetail> {
    let item = state.engine.show(&id)?;
    let me = state.engine.gateway(&item.gateway).ok().map(|g| g.approver);
    Ok(RequestDetail::from_item(
        &item,
        state.engine.now(),
        me.as_deref(),
    ))
}

#[tauri::command]
pub async fn approve(
    state: State<'_, AppState>,
    id: String,
    match_code: Option<String>,
) -> Res<DecisionView> {
    let engine = state.engine.clone();
    let slot = state.authenticator_slot();
    let run = id.clone();
    // The ceremony blocks its thread and holds the authenticator's lock, so it runs on a
    // blocking thread that drives the engine's future to completion itself.
    let e2 = engine.clone();
    let outcome = crate::state::spawn_blocking(move || {
        slot.with(|a| tauri::async_runtime::block_on(e2.approve(&run, match_code, a)))
    })
    .await?;
    decided(&engine, &id, &outcome.delivery)
}

#[tauri::command]
pub async fn deny(state: State<'_, AppState>, id: String, reason: String) -> Res<DecisionView> {
    let outcome = state.engine.deny(&id, &reason).await?;
    decided(&state.engine, &id, &outcome.delivery)
}

/// "I did not expect this": denies with a fixed reason and reports the request to its gateway,
/// which blocks the requester from this approver (see `Engine::report_unexpected`). Both are
/// device-signed and audited here and at the gateway.
#[tauri::command]
pub async fn report_unexpected(state: State<'_, AppState>, id: String) -> Res<DecisionView> {
    state.engine.report_unexpected(&id).await?;
    decision_of(&state.engine, &id)
}

#[tauri::command]
pub async fn pair(app: AppHandle, state: State<'_, AppState>, link: String) -> Res<GatewayView> {
    let record = crate::pairing::pair_with(&app, &state, &link).await?;
    Ok(GatewayView::from(&record))
}

#[tauri::command]
pub async fn list_gateways(state: State<'_, AppState>) -> Res<Vec<GatewayView>> {
    Ok(state
        .engine
        .gateways()?
        .iter()
        .map(GatewayView::from)
        .collect())
}

#[tauri::command]
pub async fn authenticator_info(state: State<'_, AppState>) -> Res<AuthenticatorView> {
    Ok(state.authenticator_view())
}

/// Newest first, filtered by `query` (kind, request id, detail), at most `limit` entries.
#[tauri::command]
pub async fn audit_list(
    state: State<'_, AppState>,
    query: Option<String>,
    limit: Option<u32>,
) -> Res<Vec<AuditEntryView>> {
    let limit = limit.map_or(AUDIT_LIMIT_DEFAULT, |l| (l as usize).min(AUDIT_LIMIT_MAX));
    let query = query.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
    let entries = state.engine.audit_entries()?;
    Ok(entries
        .iter()
        .rev()
        .map(|(e, h)| AuditEntryView::new(e, h))
        .filter(|v| query.as_deref().is_none_or(|q| v.matches(q)))
        .take(limit)
        .collect())
}

#[tauri::command]
pub async fn audit_verify(state: State<'_, AppState>) -> Res<AuditVerifyView> {
    match state.engine.audit_verify() {
        Ok(s) => Ok(AuditVerifyView {
            ok: true,
            entries: s.entries,
            head: (s.entries > 0).then(|| s.head.to_hex()),
            problem: None,
        }),
        Err(EngineError::AuditBroken(b)) => Ok(AuditVerifyView {
            ok: false,
            entries: 0,
            head: None,
            problem: Some(countersign_approver::display::visible(&b.to_string())),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Writes the audit log as JSON Lines (with a signed checkpoint) to
/// `<data dir>/exports/audit-<UTC time>.jsonl` and returns the path.
#[tauri::command]
pub async fn audit_export(state: State<'_, AppState>) -> Res<String> {
    let dir = state.data_dir().join("exports");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(EngineError::from)?;
    let stamp = time::OffsetDateTime::from_unix_timestamp(state.engine.now())
        .map_err(|e| {
            IpcError::new(
                ErrorCode::Io,
                format!("The export time is out of range: {e}."),
            )
        })?
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .map_err(|e| {
            IpcError::new(
                ErrorCode::Io,
                format!("The export time cannot be formatted: {e}."),
            )
        })?;
    let path = dir.join(format!("audit-{stamp}.jsonl"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(EngineError::from)?;
    let mut out = std::io::BufWriter::new(file);
    state.engine.audit_export(&mut out)?;
    out.flush().map_err(EngineError::from)?;
    out.get_ref().sync_all().map_err(EngineError::from)?;
    Ok(path.display().to_string())
}

#[tauri::command]
pub async fn get_settings(state: State<'_, AppState>) -> Res<Settings> {
    Ok(lock(&state.settings).clone())
}

/// Saves the settings and applies them: autostart through the autostart plugin, the
/// notification switch and pause to the desktop notifier.
#[tauri::command]
pub async fn set_settings(
    app: AppHandle,
    state: State<'_, AppState>,
    settings: Settings,
) -> Res<Settings> {
    crate::settings::validate(&settings)?;
    let autostart = app.autolaunch();
    let applied = if settings.autostart {
        autostart.enable()
    } else {
        autostart.disable()
    };
    if let Err(e) = applied {
        // Disabling an autostart entry that does not exist is not an error worth showing.
        if settings.autostart {
            return Err(IpcError::new(
                ErrorCode::AutostartFailed,
                format!("Starting at login could not be turned on: {e}."),
            ));
        }
        tracing::debug!(error = %e, "autostart disable");
    }
    state.store_settings(settings.clone())?;
    crate::tray::changed(&app);
    Ok(settings)
}

/// The request a notification or deep link asked to show before the UI was listening; taken
/// once.
#[tauri::command]
pub async fn pending_navigation(state: State<'_, AppState>) -> Res<Option<String>> {
    Ok(state.take_pending_navigation())
}

/// The decision just made, or, when the gateway refused it for good, that refusal as the
/// error it is (a mistyped match code is `wrong_match_code`, and the request can be decided
/// again). A decision that is only queued is a success: it is kept and sent later.
fn decided(
    engine: &countersign_approver::Engine,
    id: &str,
    delivery: &Delivery,
) -> Res<DecisionView> {
    if let Delivery::Refused { code, message } = delivery {
        return Err(IpcError::refused(code, message));
    }
    decision_of(engine, id)
}

fn decision_of(engine: &countersign_approver::Engine, id: &str) -> Res<DecisionView> {
    let item = engine.show(id)?;
    item.decision
        .as_ref()
        .map(DecisionView::from_local)
        .ok_or_else(|| IpcError::new(ErrorCode::Internal, "The decision was not recorded."))
}
