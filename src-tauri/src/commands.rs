//! The Tauri commands: one per name in `countersign_ipc::COMMANDS`. Each passes its arguments
//! to the agent (`countersign_ipc::agent::Command`) and the agent's answer back to the page;
//! only `pending_navigation` is the window's own. Nothing here decides anything.

use countersign_ipc::agent::Command;
use countersign_ipc::{IpcError, KeyAnswer, ListKind, Secret, Settings};
use tauri::ipc::Response;
use tauri::{AppHandle, State};

use crate::bridge::call;
use crate::state::Desktop;

type Res = Result<Response, IpcError>;

#[tauri::command]
pub async fn list_requests(app: AppHandle, kind: ListKind) -> Res {
    call(&app, Command::ListRequests { kind }).await
}

#[tauri::command]
pub async fn get_request(app: AppHandle, id: String) -> Res {
    call(&app, Command::GetRequest { id }).await
}

#[tauri::command]
pub async fn approve(app: AppHandle, id: String, match_code: Option<String>) -> Res {
    call(&app, Command::Approve { id, match_code }).await
}

#[tauri::command]
pub async fn deny(app: AppHandle, id: String, reason: String) -> Res {
    call(&app, Command::Deny { id, reason }).await
}

/// "I did not expect this": denies with a fixed reason and reports the request to its gateway.
#[tauri::command]
pub async fn report_unexpected(app: AppHandle, id: String) -> Res {
    call(&app, Command::ReportUnexpected { id }).await
}

/// Acknowledges a request approved without asking (break-glass).
#[tauri::command]
pub async fn acknowledge(app: AppHandle, id: String) -> Res {
    call(&app, Command::Acknowledge { id }).await
}

/// Revokes this approver's live approval of a request, with the passkey.
#[tauri::command]
pub async fn revoke(app: AppHandle, id: String, reason: String) -> Res {
    call(&app, Command::Revoke { id, reason }).await
}

#[tauri::command]
pub async fn pair(app: AppHandle, link: String) -> Res {
    call(&app, Command::Pair { link }).await
}

#[tauri::command]
pub async fn list_gateways(app: AppHandle) -> Res {
    call(&app, Command::ListGateways).await
}

#[tauri::command]
pub async fn authenticator_info(app: AppHandle) -> Res {
    call(&app, Command::AuthenticatorInfo).await
}

#[tauri::command]
pub async fn audit_list(app: AppHandle, query: Option<String>, limit: Option<u32>) -> Res {
    call(&app, Command::AuditList { query, limit }).await
}

#[tauri::command]
pub async fn audit_verify(app: AppHandle) -> Res {
    call(&app, Command::AuditVerify).await
}

#[tauri::command]
pub async fn audit_export(app: AppHandle) -> Res {
    call(&app, Command::AuditExport).await
}

#[tauri::command]
pub async fn get_settings(app: AppHandle) -> Res {
    call(&app, Command::GetSettings).await
}

#[tauri::command]
pub async fn set_settings(app: AppHandle, settings: Settings) -> Res {
    call(&app, Command::SetSettings { settings }).await
}

/// Quits Countersign: the agent ends (no more requests or notifications until it starts again)
/// and tells every window to close. Settings offers it for desktops with no tray to quit from.
#[tauri::command]
pub async fn quit(app: AppHandle) -> Res {
    call(&app, Command::Quit).await
}

/// The person's answer to the security key (a PIN, the next key, Cancel). The PIN is a
/// `Secret`: never logged, wiped when dropped.
#[tauri::command]
pub async fn key_answer(app: AppHandle, answer: KeyAnswer) -> Res {
    call(&app, Command::KeyAnswer { answer }).await
}

/// Sets a first PIN on a security key that has none.
#[tauri::command]
pub async fn key_set_pin(app: AppHandle) -> Res {
    call(&app, Command::KeySetPin).await
}

#[tauri::command]
pub async fn passkey_list(app: AppHandle, gateway: String) -> Res {
    call(&app, Command::PasskeyList { gateway }).await
}

/// Registers a backup key (two ceremonies: a registered key, then the new one).
#[tauri::command]
pub async fn passkey_add(app: AppHandle, gateway: String) -> Res {
    call(&app, Command::PasskeyAdd { gateway }).await
}

#[tauri::command]
pub async fn passkey_remove(app: AppHandle, gateway: String, cred_id: String) -> Res {
    call(&app, Command::PasskeyRemove { gateway, cred_id }).await
}

/// The connected hoop.dev gateways, with their health.
#[tauri::command]
pub async fn hoop_list(app: AppHandle) -> Res {
    call(&app, Command::HoopList).await
}

/// Connects a hoop gateway: hoop checks the token, then a passkey is registered for it. The
/// token is a `Secret`: never logged, wiped when dropped.
#[tauri::command]
pub async fn hoop_connect(app: AppHandle, url: String, token: Secret) -> Res {
    call(&app, Command::HoopConnect { url, token }).await
}

#[tauri::command]
pub async fn hoop_disconnect(app: AppHandle, id: String) -> Res {
    call(&app, Command::HoopDisconnect { id }).await
}

/// The request a notification or deep link asked to show before the page was listening; taken
/// once.
#[tauri::command]
pub async fn pending_navigation(state: State<'_, Desktop>) -> Result<Option<String>, IpcError> {
    Ok(state.take_pending_navigation())
}
