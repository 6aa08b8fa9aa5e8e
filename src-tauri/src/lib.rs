//! Countersign's window: the Tauri shell over the background agent (`countersign-agent`), with a
//! single instance and `countersign://` deep links. The agent runs the engine, the streams, the
//! notifications and the tray; this process exists only while the window is open, and ends
//! when it closes, taking WebKit with it.
//!
//! **Architecture Invariant:** this crate is the only one that knows Tauri, and it knows no
//! engine: every command is passed to the agent over its socket (`countersign_ipc::agent`) and
//! its answer back to the page unchanged, and the agent's events are emitted here under
//! `countersign_ipc::EVENT_NAME`.
//!
//! **Architecture Invariant:** nothing that arrives from outside the window (a notification
//! action, a deep link, a second launch) decides a request. Those can only show the window,
//! navigate to a request, or offer a pairing the person must confirm.
#![forbid(unsafe_code)]

mod bridge;
pub mod commands;
pub use countersign_ipc::deeplink;
pub mod state;
pub mod window;

use std::time::Duration;

use countersign_ipc::UiEvent;
use tauri::webview::PageLoadEvent;
use tauri::{AppHandle, Manager, Runtime};

use crate::state::Desktop;
pub use crate::window::MAIN_WINDOW;
use crate::window::{emit, focus_request, show_main};
use countersign_ipc::deeplink::LinkAction;

/// Passed by autostart entries of earlier versions: start the agent, show no window.
pub const HIDDEN_FLAG: &str = "--hidden";

/// Starts the agent if it is not running, and returns once it answers (`--hidden`).
pub fn start_agent_only() -> anyhow::Result<()> {
    let data_dir = countersign_agent::paths::data_dir()?;
    let program = countersign_agent::paths::agent_program();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(countersign_agent::client::connect(&data_dir, &program))?;
    Ok(())
}

/// Builds and runs the window until it closes.
pub fn run() -> anyhow::Result<()> {
    let data_dir = countersign_agent::paths::data_dir()?;
    let desktop = Desktop::new(data_dir, countersign_agent::paths::agent_program());
    tauri::Builder::default()
        // First, so a second launch hands its argv over and exits before anything else starts.
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            show_main(app);
            handle_args(app, argv.iter().skip(1).map(String::as_str), false);
        }))
        .plugin(tauri_plugin_deep_link::init())
        .manage(desktop)
        .invoke_handler(tauri::generate_handler![
            commands::list_requests,
            commands::get_request,
            commands::approve,
            commands::deny,
            commands::report_unexpected,
            commands::acknowledge,
            commands::revoke,
            commands::pair,
            commands::list_gateways,
            commands::authenticator_info,
            commands::audit_list,
            commands::audit_verify,
            commands::audit_export,
            commands::get_settings,
            commands::set_settings,
            commands::pending_navigation,
            commands::quit,
            commands::key_answer,
            commands::key_set_pin,
            commands::passkey_list,
            commands::passkey_add,
            commands::passkey_remove,
            commands::hoop_list,
            commands::hoop_connect,
            commands::hoop_disconnect,
        ])
        .on_page_load(|webview, payload| {
            if webview.label() == MAIN_WINDOW && payload.event() == PageLoadEvent::Finished {
                tracing::info!("page loaded");
                flush_startup_events(webview.app_handle().clone());
            }
        })
        .setup(|app| setup(app.handle()).map_err(|e| -> Box<dyn std::error::Error> { e.into() }))
        .run(tauri::generate_context!())?;
    Ok(())
}

fn setup(app: &AppHandle) -> anyhow::Result<()> {
    // Linux: the .deb's desktop entry registers the scheme; a development build registers
    // itself so links can be tried without installing.
    #[cfg(all(debug_assertions, target_os = "linux"))]
    {
        use tauri_plugin_deep_link::DeepLinkExt;
        if let Err(e) = app.deep_link().register_all() {
            tracing::warn!(error = %e, "cannot register the countersign:// scheme");
        }
    }
    // The window first, the agent beside it: the page's first calls wait for the connection.
    window::open_main(app)?;
    let handle = app.clone();
    tauri::async_runtime::spawn(async move {
        if let Err(e) = bridge::client(&handle).await {
            tracing::error!(code = %e.code, error = %e.message, "no background service");
        }
    });
    let args: Vec<String> = std::env::args().skip(1).collect();
    handle_args(app, args.iter().map(String::as_str), true);
    Ok(())
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
                // The page collects the request with `pending_navigation` (and the queued
                // event) once it is listening.
                if let Some(state) = app.try_state::<Desktop>() {
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
            if let Some(state) = app.try_state::<Desktop>() {
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
        let Some(state) = app.try_state::<Desktop>() else {
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
