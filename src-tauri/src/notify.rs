//! Native notifications. Until the `countersign-notifications` crate is wired in, the engine's
//! silent notifier is used (the window and tray still show every request).

use std::sync::Arc;

use countersign_approver::{Notifier, SilentNotifier};
use tauri::{AppHandle, Runtime};

/// The notifier for this app. A notification's review action only calls
/// [`crate::focus_request`]: it shows the request, never decides it.
pub fn desktop_notifier<R: Runtime>(_app: &AppHandle<R>) -> Arc<dyn Notifier> {
    Arc::new(SilentNotifier)
}
