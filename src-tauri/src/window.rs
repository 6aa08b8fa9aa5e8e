//! The main window: showing it, bringing it up on a request, and the events the page hears.
//! Everything that wants the window (the tray, a notification click, a deep link, a second
//! launch) goes through here; none of it decides a request.

use countersign_ipc::{UiEvent, EVENT_NAME};
use tauri::{AppHandle, Emitter, Manager, Runtime, WebviewWindowBuilder};

use crate::state::Desktop;

/// The main window's label (also the capability's window).
pub const MAIN_WINDOW: &str = "main";

/// Sends `event` to the page.
pub fn emit<R: Runtime>(app: &AppHandle<R>, event: UiEvent) {
    if let Err(e) = app.emit(EVENT_NAME, &event) {
        tracing::warn!(error = %e, "cannot emit a UI event");
    }
}

/// Shows, unminimizes and focuses the main window, creating it if there is none.
pub fn show_main<R: Runtime>(app: &AppHandle<R>) {
    if let Some(w) = app.get_webview_window(MAIN_WINDOW) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
        return;
    }
    if let Err(e) = open_main(app) {
        tracing::warn!(error = %e, "cannot open the window");
    }
}

/// Creates the main window from its configuration (`create: false` in `tauri.conf.json`: the
/// shell decides when there is a window). The page reads `pending_navigation` when it loads,
/// so a request asked for before the window existed is shown.
pub fn open_main<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    let config = app
        .config()
        .app
        .windows
        .iter()
        .find(|w| w.label == MAIN_WINDOW)
        .cloned()
        .ok_or_else(|| tauri::Error::WindowNotFound)?;
    let window = WebviewWindowBuilder::from_config(app, &config)?.build()?;
    let _ = window.set_focus();
    Ok(())
}

/// Brings the window up on `request_id` (a notification click or a deep link). Only
/// navigates: the person still reads the request and decides in the window.
pub fn focus_request<R: Runtime>(app: &AppHandle<R>, request_id: String) {
    show_main(app);
    if let Some(state) = app.try_state::<Desktop>() {
        state.set_pending_navigation(Some(request_id.clone()));
    }
    emit(app, UiEvent::Navigate { request_id });
}
