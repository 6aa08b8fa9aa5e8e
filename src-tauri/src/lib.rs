//! The Countersign desktop shell: Tauri commands and events over the approver engine, native
//! notifications, the tray, a single instance and `countersign://` deep links.
//!
//! **Architecture Invariant:** this crate is the only one that knows Tauri, and it knows no
//! SQL, HTTP or cryptography: every operation is an engine call, every value the UI sees is a
//! `countersign_ipc` type. Engine events arrive on the engine's broadcast channel (new
//! requests through the engine's `Notifier` hook, with their inbox row) and are emitted here
//! as `UiEvent`s under `countersign_ipc::EVENT_NAME`.
//!
//! **Architecture Invariant:** nothing that arrives from outside the window (a notification
//! action, a deep link, a second launch) decides a request. Those can only show the window,
//! navigate to a request, or offer a pairing the person must confirm.
#![forbid(unsafe_code)]

pub mod commands;
pub use countersign_ipc::deeplink;
mod notify;
mod pairing;
pub mod settings;
pub mod state;
mod tray;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use countersign_approver::{Engine, EngineEvent};
use countersign_ipc::UiEvent;
use countersign_protocol::PairingLink;
use tauri::webview::PageLoadEvent;
use tauri::{AppHandle, Manager, Runtime};
use tokio::sync::broadcast::error::RecvError;

use crate::pairing::pair_with;
use crate::state::{lock, AppState};
pub use crate::window::MAIN_WINDOW;
use crate::window::{emit, focus_request, show_main};
use countersign_ipc::deeplink::LinkAction;

/// Passed by the autostart entry: start in the tray without showing the window.
pub const HIDDEN_FLAG: &str = "--hidden";

/// Builds and runs the app until it quits.
pub fn run() -> anyhow::Result<()> {
    tauri::Builder::default()
        // First, so a second launch hands its argv over and exits before anything else starts
        // (in particular before it opens the data directory).
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            show_main(app);
            handle_args(app, argv.iter().skip(1).map(String::as_str), false);
        }))
        .plugin(tauri_plugin_deep_link::init())
        .plugin(
            tauri_plugin_autostart::Builder::new()
                .args([HIDDEN_FLAG])
                .build(),
        )
        .invoke_handler(tauri::generate_handler![
            commands::list_requests,
            commands::get_request,
            commands::approve,
            commands::deny,
            commands::report_unexpected,
            commands::pair,
            commands::list_gateways,
            commands::authenticator_info,
            commands::audit_list,
            commands::audit_verify,
            commands::audit_export,
            commands::get_settings,
            commands::set_settings,
            commands::pending_navigation,
        ])
        .on_page_load(|webview, payload| {
            if webview.label() == MAIN_WINDOW && payload.event() == PageLoadEvent::Finished {
                flush_startup_events(webview.app_handle().clone());
            }
        })
        .setup(|app| setup(app.handle()).map_err(|e| -> Box<dyn std::error::Error> { e.into() }))
        .build(tauri::generate_context!())?
        .run(|app, event| match event {
            // Closing the window destroys it; the approver keeps running in the tray, so
            // requests still arrive. Only Quit (the tray menu, an explicit exit code) ends it.
            tauri::RunEvent::ExitRequested {
                code: None, api, ..
            } if app.tray_by_id(tray::TRAY_ID).is_some() => api.prevent_exit(),
            tauri::RunEvent::Exit => {
                if let Some(state) = app.try_state::<AppState>() {
                    state.runner.stop();
                }
            }
            _ => {}
        });
    Ok(())
}

fn setup(app: &AppHandle) -> anyhow::Result<()> {
    let data_dir = state::data_dir()?;
    let choice = state::authenticator_choice()?;
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
    let engine = Engine::open_with(&data_dir, options).map_err(|e| {
        anyhow::anyhow!("Cannot open the data directory {}: {e}", data_dir.display())
    })?;
    tracing::info!(
        data_dir = %data_dir.display(),
        authenticator = ?choice,
        device_key = %engine.key_location().describe(),
        "starting"
    );
    let state = AppState::new(engine.clone(), choice);
    let saved = lock(&state.settings).clone();
    let desktop = notify::start(app, &saved, engine.clock());
    engine.set_notifier(Arc::new(notify::AppNotifier::new(
        app.clone(),
        desktop.clone(),
        engine.clock(),
    )));
    state.set_notifier(desktop);
    app.manage(state);
    app.manage(tray::Refresher::default());

    // Linux: the .deb's desktop entry registers the scheme; a development build registers
    // itself so links can be tried without installing.
    #[cfg(all(debug_assertions, target_os = "linux"))]
    {
        use tauri_plugin_deep_link::DeepLinkExt;
        if let Err(e) = app.deep_link().register_all() {
            tracing::warn!(error = %e, "cannot register the countersign:// scheme");
        }
    }

    forward_engine_events(app.clone(), &engine);
    if let Err(e) = tray::build(app) {
        tracing::warn!(error = %e, "no tray icon");
    }
    let state = app.state::<AppState>();
    state.runner.start(&engine);
    bootstrap_pairing(app.clone());

    let args: Vec<String> = std::env::args().skip(1).collect();
    // Started by the autostart entry: in the tray, no window (and no WebKit) until asked.
    if !args.iter().any(|a| a == HIDDEN_FLAG) {
        window::open_main(app)?;
    }
    handle_args(app, args.iter().map(String::as_str), true);
    Ok(())
}

/// Every engine event becomes a `UiEvent` for the page and a tray refresh (connection events
/// are also remembered, for a page that loads later). A timer refreshes the tray too, as
/// requests also stop being pending by expiring. Arrivals are the exception: the engine's
/// notifier hook ([`notify::AppNotifier`]) emits them with their inbox row, so the broadcast's
/// `RequestReceived` is not passed on. Nothing here reads the inbox, so this loop keeps up
/// with a backlog of thousands; if it still falls behind, the page is told to re-read.
fn forward_engine_events<R: Runtime>(app: AppHandle<R>, engine: &Engine) {
    let mut rx = engine.subscribe();
    let events_app = app.clone();
    tauri::async_runtime::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(EngineEvent::RequestReceived { .. }) => {}
                Ok(event) => {
                    let event = UiEvent::from(&event);
                    if let Some(state) = events_app.try_state::<AppState>() {
                        state.note_connection(&event);
                    }
                    emit(&events_app, event);
                    tray::changed(&events_app);
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "UI event forwarding lagged behind the engine");
                    emit(&events_app, UiEvent::Resync);
                    tray::changed(&events_app);
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
    tauri::async_runtime::spawn(tray::run_refresher(app.clone()));
    tauri::async_runtime::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            tray::changed(&app);
        }
    });
}

/// Handles command-line arguments (this launch's, or a second launch's handed over by the
/// single-instance plugin). Only arguments that look like links are considered; flags pass.
fn handle_args<'a, R: Runtime>(
    app: &AppHandle<R>,
    args: impl Iterator<Item = &'a str>,
    at_startup: bool,
) {
    for arg in args.filter(|a| deeplink::looks_like_link(a)) {
        let event = match deeplink::parse(arg) {
            Ok(LinkAction::Pair { link }) => UiEvent::PairingLink { link },
            Ok(LinkAction::OpenRequest { request_id }) if !at_startup => {
                focus_request(app, request_id);
                continue;
            }
            Ok(LinkAction::OpenRequest { request_id }) => {
                // At start-up the window is shown anyway; the page collects the request with
                // `pending_navigation` (and the queued event) once it is listening.
                if let Some(state) = app.try_state::<AppState>() {
                    state.set_pending_navigation(Some(request_id.clone()));
                }
                UiEvent::Navigate { request_id }
            }
            Err(refused) => {
                tracing::warn!(reason = refused.0, "deep link refused");
                UiEvent::LinkRefused {
                    message: refused.0.to_owned(),
                }
            }
        };
        if at_startup {
            // The page is not listening yet; sent once it has loaded.
            if let Some(state) = app.try_state::<AppState>() {
                state.queue_startup_event(event);
            }
        } else {
            emit(app, event);
        }
    }
}

fn flush_startup_events<R: Runtime>(app: AppHandle<R>) {
    tauri::async_runtime::spawn(async move {
        // The page registers its listener right after load; give that a moment.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let Some(state) = app.try_state::<AppState>() else {
            return;
        };
        // The connections came up before the page listened (or before a reload).
        for event in state.connections() {
            emit(&app, event);
        }
        for event in state.take_startup_events() {
            emit(&app, event);
        }
    });
}

/// Development mode: with `COUNTERSIGN_PAIR_LINK` set and the software authenticator chosen,
/// pairs at start-up unless that gateway is already paired, so a demo comes up ready.
fn bootstrap_pairing<R: Runtime>(app: AppHandle<R>) {
    let Some(link) = std::env::var("COUNTERSIGN_PAIR_LINK")
        .ok()
        .filter(|l| !l.is_empty())
    else {
        return;
    };
    tauri::async_runtime::spawn(async move {
        let Some(state) = app.try_state::<AppState>() else {
            return;
        };
        if !state.authenticator_slot().is_soft() {
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
        match state.engine.gateways() {
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
        match pair_with(&app, &state, &link).await {
            Ok(g) => {
                tracing::info!(gateway = %g.fingerprint, approver = %g.approver, "development pairing done")
            }
            Err(e) => {
                tracing::warn!(code = %e.code, error = %e.message, "development pairing failed")
            }
        }
    });
}
