//! Pairing from the desktop: the engine's pairing with the person's authenticator on a blocking
//! thread. The engine's run loop then connects the new gateway's stream by itself, and its
//! `GatewayPaired` event tells the page.

use countersign_approver::{EngineError, GatewayRecord};
use countersign_ipc::IpcError;
use countersign_protocol::PairingLink;
use tauri::{AppHandle, Runtime};

use crate::state::AppState;

/// Pairs with `link` (blocking ceremony on a blocking thread). The engine's run loop connects
/// the new gateway's stream by itself, and the engine tells the page (`GatewayPaired`).
pub async fn pair_with<R: Runtime>(
    app: &AppHandle<R>,
    state: &AppState,
    link: &str,
) -> Result<GatewayRecord, IpcError> {
    let link = PairingLink::parse(link).map_err(EngineError::from)?;
    let engine = state.engine.clone();
    let slot = state.authenticator_slot();
    let name = countersign_approver::device_name(countersign_approver::Host::Desktop);
    let record = crate::state::spawn_blocking(move || {
        slot.with(|a| tauri::async_runtime::block_on(engine.pair(&link, &name, a)))
    })
    .await?;
    crate::tray::changed(app);
    Ok(record)
}
