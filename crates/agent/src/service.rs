//! The agent's life: open the engine, start the notifier, the tray, the socket and the run
//! loop, pass the engine's events on, and end on Quit or a signal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use countersign_approver::{Engine, EngineError, EngineEvent};
use countersign_ipc::agent::AgentMessage;
use countersign_ipc::UiEvent;
use countersign_protocol::PairingLink;
use tokio::sync::broadcast::error::RecvError;

use crate::context::Agent;
use crate::state::{lock, AppState};
use crate::window::Launcher;

/// Runs the agent until Quit (the tray, a window) or SIGTERM/SIGINT.
pub async fn run() -> anyhow::Result<()> {
    let data_dir = crate::paths::data_dir()?;
    let choice = crate::state::authenticator_choice()?;
    // Where a new device key goes: the Secret Service when one answers, else an owner-only
    // file (COUNTERSIGN_KEY_STORE=secret-service|file to insist on one).
    let key_store = match std::env::var("COUNTERSIGN_KEY_STORE") {
        Ok(v) if !v.is_empty() => v.parse()?,
        _ => countersign_approver::KeyStore::Auto,
    };
    let options = countersign_approver::EngineOptions {
        key_store,
        ..Default::default()
    };
    let engine = match Engine::open_with(&data_dir, options) {
        Ok(e) => e,
        Err(e @ EngineError::InUse { .. }) => anyhow::bail!("{e}"),
        Err(e) => anyhow::bail!("Cannot open the data directory {}: {e}", data_dir.display()),
    };
    tracing::info!(
        data_dir = %data_dir.display(),
        authenticator = ?choice,
        device_key = %engine.key_location().describe(),
        "starting"
    );
    let socket = crate::paths::socket(&data_dir);
    let (listener, uid) = crate::server::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;

    let clients = Arc::new(crate::clients::Clients::default());
    let state = AppState::new(engine.clone(), choice, clients.clone());
    let saved = lock(&state.settings).clone();
    let agent = Agent::new(
        state,
        clients,
        Launcher::new(crate::paths::desktop_program()),
    );
    let desktop = crate::notify::start(&agent, &saved, engine.clock());
    engine.set_notifier(Arc::new(crate::notify::AppNotifier::new(
        &agent,
        desktop.clone(),
        engine.clock(),
    )));
    agent.state.set_notifier(desktop);

    forward_engine_events(agent.clone(), &engine);
    tokio::spawn(crate::tray::run(agent.clone()));
    tokio::spawn(crate::server::serve(agent.clone(), listener, uid));
    agent.state.runner.start(&engine);
    bootstrap_pairing(agent.clone());

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = agent.quit.notified() => tracing::info!("quit"),
        _ = terminate.recv() => tracing::info!("terminated"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
    }
    // Windows close first (each connection writes `quit` past its queue), then the stream
    // stops; the socket goes with the agent.
    agent.quitting.send_replace(true);
    agent.state.runner.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while agent.clients.count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Err(e) = std::fs::remove_file(&socket) {
        tracing::debug!(error = %e, "socket not removed");
    }
    Ok(())
}

/// Every engine event becomes a `UiEvent` for the windows and a tray refresh (connection
/// events are also remembered, for a window that opens later). A timer refreshes the tray too,
/// as requests also stop being pending by expiring. Arrivals are the exception: the engine's
/// notifier hook ([`crate::notify::AppNotifier`]) pushes them with their inbox row, so the
/// broadcast's `RequestReceived` and `HoopReviewReceived` are not passed on. Nothing here reads the inbox, so this loop
/// keeps up with a backlog of thousands; if it still falls behind, the windows re-read.
fn forward_engine_events(agent: Arc<Agent>, engine: &Engine) {
    let mut rx = engine.subscribe();
    let events = agent.clone();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(
                    EngineEvent::RequestReceived { .. } | EngineEvent::HoopReviewReceived { .. },
                ) => {}
                Ok(event) => {
                    let event = UiEvent::from(&event);
                    events.state.note_connection(&event);
                    events.clients.push(&AgentMessage::Event(event));
                    events.tray_changed();
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "UI event forwarding lagged behind the engine");
                    events.clients.push(&AgentMessage::Event(UiEvent::Resync));
                    events.tray_changed();
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            agent.tray_changed();
        }
    });
}

/// Development mode: with `COUNTERSIGN_PAIR_LINK` set and the software authenticator chosen,
/// pairs at start-up unless that gateway is already paired, so a demo comes up ready.
fn bootstrap_pairing(agent: Arc<Agent>) {
    let Some(link) = std::env::var("COUNTERSIGN_PAIR_LINK")
        .ok()
        .filter(|l| !l.is_empty())
    else {
        return;
    };
    tokio::spawn(async move {
        if !agent.state.authenticator_slot().is_soft() {
            tracing::warn!(
                "COUNTERSIGN_PAIR_LINK is ignored: it only works with COUNTERSIGN_AUTHENTICATOR=soft"
            );
            return;
        }
        let fingerprint = match PairingLink::parse(&link) {
            Ok(l) => l.fingerprint,
            Err(e) => {
                tracing::warn!(error = %e, "COUNTERSIGN_PAIR_LINK is not a pairing link");
                return;
            }
        };
        match agent.state.engine.gateways() {
            Ok(gws) if gws.iter().any(|g| g.fingerprint == fingerprint) => {
                tracing::info!("development pairing: gateway already paired");
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the paired gateways");
                return;
            }
        }
        match crate::pairing::pair_with(&agent, &link).await {
            Ok(g) => {
                tracing::info!(gateway = %g.fingerprint, approver = %g.approver, "development pairing done")
            }
            Err(e) => {
                tracing::warn!(code = %e.code, error = %e.message, "development pairing failed")
            }
        }
    });
}
