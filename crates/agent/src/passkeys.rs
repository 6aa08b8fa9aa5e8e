//! The window's calls about the security key and the approver's passkeys: answering the key
//! (`key_answer`), setting a first PIN, and listing, adding (a backup key) and removing
//! passkeys at a gateway. Ceremonies block, so they run on a blocking thread, as approving does.

use countersign_ipc::{IpcError, KeyAnswer, PasskeyView};

use crate::context::Agent;

type Res<T> = Result<T, IpcError>;

pub fn key_answer(agent: &Agent, answer: KeyAnswer) -> Res<()> {
    agent.state.prompt.answer(answer)
}

pub async fn key_set_pin(agent: &Agent) -> Res<()> {
    let slot = agent.state.authenticator_slot();
    crate::state::spawn_blocking(move || slot.with(|a| a.set_pin())).await
}

pub async fn passkey_list(agent: &Agent, gateway: &str) -> Res<Vec<PasskeyView>> {
    let engine = &agent.state.engine;
    let device = engine.gateway(gateway)?.device_id;
    let list = engine.passkeys(gateway).await?;
    Ok(PasskeyView::list(&list, &device))
}

/// A backup key: the registered key proves the approver, the window then asks for the new key
/// ("next key"), and the new key is registered.
pub async fn passkey_add(agent: &Agent, gateway: String) -> Res<Vec<PasskeyView>> {
    let engine = agent.state.engine.clone();
    let device = engine.gateway(&gateway)?.device_id;
    let slot = agent.state.authenticator_slot();
    let prompt = agent.state.prompt.clone();
    let runtime = tokio::runtime::Handle::current();
    let e2 = engine.clone();
    let list = crate::state::spawn_blocking(move || {
        slot.with(|a| {
            let mut between = || prompt.next_key().map_err(Into::into);
            runtime.block_on(e2.add_passkey(&gateway, a, &mut between))
        })
    })
    .await?;
    Ok(PasskeyView::list(&list, &device))
}

pub async fn passkey_remove(agent: &Agent, gateway: &str, cred_id: &str) -> Res<Vec<PasskeyView>> {
    let engine = &agent.state.engine;
    let device = engine.gateway(gateway)?.device_id;
    let list = engine.remove_passkey(gateway, cred_id).await?;
    Ok(PasskeyView::list(&list, &device))
}
