//! Pairing from the desktop: the engine's pairing with the person's authenticator on a blocking
//! thread. The engine's run loop then connects the new gateway's stream by itself, and its
//! `GatewayPaired` event tells the page.

use countersign_approver::{EngineError, GatewayRecord};
use countersign_ipc::IpcError;
use countersign_protocol::PairingLink;

use crate::context::Agent;

/// Pairs with `link` (blocking ceremony on a blocking thread). The engine's run loop connects
/// the new gateway's stream by itself, and the engine tells the page (`GatewayPaired`).
pub async fn pair_with(agent: &Agent, link: &str) -> Result<GatewayRecord, IpcError> {
    let link = PairingLink::parse(link).map_err(EngineError::from)?;
    let engine = agent.state.engine.clone();
    let slot = agent.state.authenticator_slot();
    let name = countersign_approver::device_name(countersign_approver::Host::Desktop);
    let runtime = tokio::runtime::Handle::current();
    let record = crate::state::spawn_blocking(move || {
        slot.with(|a| runtime.block_on(engine.pair(&link, &name, a)))
    })
    .await?;
    agent.tray_changed();
    Ok(record)
}
