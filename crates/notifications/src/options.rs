//! How a [`crate::DesktopNotifier`] is set up: its options, the shell's review callback, its
//! errors and the names of the freedesktop notification interface.

use std::sync::Arc;
use std::time::Duration;

/// Unix seconds now, as the host's clock says.
pub type Now = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The well-known name, object path and interface of the desktop notification server.
pub const NOTIFICATIONS_NAME: &str = "org.freedesktop.Notifications";
pub const NOTIFICATIONS_PATH: &str = "/org/freedesktop/Notifications";
pub const NOTIFICATIONS_INTERFACE: &str = "org.freedesktop.Notifications";

/// The action a click on the notification body invokes (spec name).
pub const ACTION_DEFAULT: &str = "default";
/// The "Review" button.
pub const ACTION_REVIEW: &str = "review";

/// Called with a request id when the person asks to see that request (a click on the
/// notification or its "Review" button): the shell opens and focuses its window on it. Runs on
/// the notification thread, so it must return quickly (send on a channel, emit an event).
/// It must never decide anything: anyone on the session bus can fake the signal behind it.
pub type ReviewCallback = Arc<dyn Fn(String) + Send + Sync>;

/// How long [`DesktopNotifier::start`] waits for the session bus and the signal subscription.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one call to the notification server may take before it counts as failed.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct NotifierOptions {
    /// `app_name` of every notification.
    pub app_name: String,
    /// `app_icon`: an icon theme name or a `file://` URI; empty for none.
    pub icon: String,
    /// The `desktop-entry` hint (the .desktop file name without `.desktop`), if any.
    pub desktop_entry: Option<String>,
    /// A new request from a requester (same gateway, same requester name) whose notification
    /// got its last new request less than this long ago is folded into that notification instead
    /// of raising another one. Zero turns collapsing off.
    pub collapse_window: Duration,
    /// How long the "Approved: ..." (etc.) update stays before the notification is closed.
    /// Zero closes right after the update.
    pub close_delay: Duration,
    /// Unix seconds, for the pause and the "Expires in" line: the host passes its own clock
    /// (the engine's), so tests can move time.
    pub clock: Now,
}

impl std::fmt::Debug for NotifierOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifierOptions")
            .field("app_name", &self.app_name)
            .field("icon", &self.icon)
            .field("desktop_entry", &self.desktop_entry)
            .field("collapse_window", &self.collapse_window)
            .field("close_delay", &self.close_delay)
            .field("now", &(self.clock)())
            .finish()
    }
}

impl NotifierOptions {
    /// The defaults (app name "Countersign", no icon, 60 s collapse window, 4 s close delay)
    /// with the host's clock.
    pub fn with_clock(clock: Now) -> Self {
        NotifierOptions {
            app_name: "Countersign".into(),
            icon: String::new(),
            desktop_entry: None,
            collapse_window: Duration::from_secs(60),
            close_delay: Duration::from_secs(4),
            clock,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot connect to the D-Bus session bus: {0}")]
    NoSessionBus(#[source] zbus::Error),
    #[error("cannot subscribe to notification signals: {0}")]
    Subscribe(#[source] zbus::Error),
    #[error("the notification thread did not start: {0}")]
    Thread(String),
}
