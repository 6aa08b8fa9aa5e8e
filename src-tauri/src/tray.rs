//! The tray icon: the pending count in its tooltip (and title where the platform shows one),
//! and a menu with Open, Pause notifications for 1 hour, and Quit.

use std::time::Duration;

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager, Runtime};
use tokio::sync::Notify;

use crate::state::{lock, AppState};
use crate::window::show_main;

pub const TRAY_ID: &str = "main";
const OPEN: &str = "open";
const PAUSE: &str = "pause-1h";
const QUIT: &str = "quit";

/// Builds the tray. Failing to build it (no tray host, say) is not fatal: the window remains.
pub fn build<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    let open = MenuItem::with_id(app, OPEN, "Open Countersign", true, None::<&str>)?;
    let pause = MenuItem::with_id(
        app,
        PAUSE,
        "Pause notifications for 1 hour",
        true,
        None::<&str>,
    )?;
    let quit = MenuItem::with_id(app, QUIT, "Quit", true, None::<&str>)?;
    let sep = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&open, &pause, &sep, &quit])?;
    let mut builder = TrayIconBuilder::with_id(TRAY_ID)
        .menu(&menu)
        .tooltip("Countersign")
        .show_menu_on_left_click(false)
        .on_menu_event(|app, event| match event.id().as_ref() {
            OPEN => show_main(app),
            PAUSE => pause_notifications(app, 3600),
            QUIT => quit_app(app),
            _ => {}
        })
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                show_main(tray.app_handle());
            }
        });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    builder.build(app)?;
    changed(app);
    Ok(())
}

/// The tray's refresher: [`changed`] asks for a refresh, [`run_refresher`] does it off the
/// async runtime, at most once per [`MIN_INTERVAL`], always once more after the last request.
#[derive(Default)]
pub struct Refresher {
    wanted: Notify,
}

/// Counting takes the engine's database lock for a scan of the inbox table (a count, no rows
/// decoded), so a burst of events (a backlog of thousands) must not count once per event.
const MIN_INTERVAL: Duration = Duration::from_secs(2);

/// Asks for the pending count to be shown again soon. Returns at once.
pub fn changed<R: Runtime>(app: &AppHandle<R>) {
    if let Some(r) = app.try_state::<Refresher>() {
        r.wanted.notify_one();
    }
}

/// Refreshes the tray whenever [`changed`] was called, at most once per [`MIN_INTERVAL`]; a
/// request made during a refresh or the pause after it is served by the next one.
pub async fn run_refresher<R: Runtime>(app: AppHandle<R>) {
    loop {
        match app.try_state::<Refresher>() {
            Some(r) => r.wanted.notified().await,
            None => return,
        }
        let a = app.clone();
        if let Err(e) = tauri::async_runtime::spawn_blocking(move || refresh(&a)).await {
            tracing::warn!(error = %e, "tray refresh failed");
        }
        tokio::time::sleep(MIN_INTERVAL).await;
    }
}

/// Recomputes the pending count and shows it. The count blocks on the database, so it runs
/// only from [`run_refresher`]; everything else calls [`changed`].
fn refresh<R: Runtime>(app: &AppHandle<R>) {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return;
    };
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    let pending = match state.engine.pending_count() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot count pending requests");
            return;
        }
    };
    let paused = lock(&state.settings)
        .notifications_paused_until
        .is_some_and(|t| t > state.engine.now());
    let mut tooltip = match pending {
        0 => "Countersign: no pending requests".to_owned(),
        1 => "Countersign: 1 pending request".to_owned(),
        n => format!("Countersign: {n} pending requests"),
    };
    if paused {
        tooltip.push_str(" (notifications paused)");
    }
    if let Err(e) = tray.set_tooltip(Some(&tooltip)) {
        tracing::debug!(error = %e, "tray tooltip not updated");
    }
    let title = (pending > 0).then(|| pending.to_string());
    if let Err(e) = tray.set_title(title.as_deref()) {
        tracing::debug!(error = %e, "tray title not updated");
    }
}

/// Pauses new notifications for `seconds` (the menu's "Pause notifications for 1 hour").
fn pause_notifications<R: Runtime>(app: &AppHandle<R>, seconds: i64) {
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    let mut snapshot = lock(&state.settings).clone();
    snapshot.notifications_paused_until = Some(state.engine.now() + seconds);
    if let Err(e) = state.store_settings(snapshot) {
        tracing::warn!(error = %e.message, "cannot save the notification pause");
    }
    changed(app);
}

/// Quits the app: the run loop stops, then the process exits.
fn quit_app<R: Runtime>(app: &AppHandle<R>) {
    if let Some(state) = app.try_state::<AppState>() {
        state.runner.stop();
    }
    app.exit(0);
}
