//! Native notifications: the `countersign-notifications` [`DesktopNotifier`], whose review
//! action (a click on the notification or its "Review" button) only brings the window up on
//! the request. A notification never approves or denies: D-Bus action signals are
//! unauthenticated, so anyone on the session bus could fake one.

use std::sync::Arc;

use countersign_ipc::Settings;
use countersign_notifications::{DesktopNotifier, NotifierOptions, ReviewCallback};
use tauri::{AppHandle, Runtime};

/// Starts the desktop notifier with the saved settings applied. `None` when there is no
/// session bus (logged): the window and the tray still show every request.
pub fn start<R: Runtime>(app: &AppHandle<R>, settings: &Settings) -> Option<Arc<DesktopNotifier>> {
    let handle = app.clone();
    // Runs on the notifier's thread: showing a window and emitting are thread-safe in Tauri
    // and return at once.
    let on_review: ReviewCallback = Arc::new(move |request_id: String| {
        tracing::info!(request = %request_id, "notification review");
        crate::focus_request(&handle, request_id);
    });
    let options = NotifierOptions {
        desktop_entry: Some("countersign-desktop".into()),
        ..NotifierOptions::default()
    };
    match DesktopNotifier::start(options, on_review) {
        Ok(n) => {
            apply(&n, settings);
            Some(Arc::new(n))
        }
        Err(e) => {
            tracing::warn!(error = %e, "no desktop notifications");
            None
        }
    }
}

/// Applies the notification settings (on/off and the pause) to the notifier.
pub fn apply(n: &DesktopNotifier, settings: &Settings) {
    n.set_enabled(settings.notifications_enabled);
    n.set_paused_until(settings.notifications_paused_until);
}
