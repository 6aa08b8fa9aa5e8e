//! Native desktop notifications for Countersign.
//!
//! [`DesktopNotifier`] shows the requests its host hands it ([`RequestFacts`]) over the
//! freedesktop `org.freedesktop.Notifications` D-Bus interface. It depends on no engine crate:
//! the desktop shell adapts the engine's `Notifier` hook to it, and passes its clock in
//! ([`NotifierOptions::clock`]). notify-rust's `Notification`
//! builds each notification (urgency, hints, actions) and zbus carries it, on one long-lived
//! session-bus connection owned by a thread of the notifier's own.
//!
//! # Behaviour
//!
//! - **One notification per new request.** Summary `Approve sql.exec on prod-db? (high risk)`,
//!   body `ci-bot asks: <summary>\nExpires in 5 min`, urgency from risk (low: Low, medium:
//!   Normal, high and critical: Critical), actions `default` and `review` (both labelled
//!   "Review"). Exact texts: [`text`].
//! - **Display safety.** Every field from a request is shown with control, bidi and invisible
//!   characters escaped (`countersign_display::visible`), cut with `…` past a limit,
//!   and markup-escaped (`&`, `<`, `>`). Only requester, action, resource, risk, the one-line
//!   summary and the expiry are shown: never the detail, the reason, the challenge, digests,
//!   keys or match codes.
//! - **Actions only open the app.** `default` and `review` call the shell's
//!   [`ReviewCallback`] with the request id. Nothing here approves or denies: D-Bus signals are
//!   unauthenticated. A signal not sent by the current owner of `org.freedesktop.Notifications`,
//!   for a notification id this process did not show, or with another action key, is ignored
//!   (logged at debug).
//! - **Listener first.** [`DesktopNotifier::start`] subscribes to `ActionInvoked` and
//!   `NotificationClosed` before it returns, on the same connection that later sends `Notify`
//!   (dunst, for one, addresses those signals only to the connection that showed the
//!   notification; notify-rust's own `show()` opens a new connection each time, which would
//!   miss them).
//! - **Bursts collapse.** A request from a requester (same gateway and name) whose
//!   notification received its last new request less than
//!   [`NotifierOptions::collapse_window`] ago (60 s) updates that notification in place
//!   (`replaces_id`): `ci-bot: 3 requests waiting`, body about the newest, urgency of the
//!   riskiest. Review on it opens the newest request still waiting.
//! - **Resolved requests.** When a request is decided (here or elsewhere), expires or is
//!   withdrawn, it leaves its notification. If others are still waiting there, the
//!   notification is updated to them. If it was the last, the notification is updated in place
//!   to `Approved: sql.exec on prod-db` (or Denied / Expired / Withdrawn; low urgency,
//!   transient, only a `default` "Open" action) and closed with `CloseNotification`
//!   [`NotifierOptions::close_delay`] (4 s) later, unless a new request from the same requester
//!   reused it meanwhile. A notification the user dismissed (`NotificationClosed`) is forgotten.
//! - **Pause and off.** [`DesktopNotifier::set_paused_until`] and
//!   [`DesktopNotifier::set_enabled`] suppress new notifications (requests arriving meanwhile
//!   are not notified later); notifications already shown still follow their requests.
//! - **Never in the way.** The engine's calls only queue work; bus errors are logged
//!   (`tracing`) and swallowed; nothing here panics.
//!
//! Feature `test-server`: [`test_server::TestServer`], a recording notification server for
//! tests under `dbus-run-session`.

#![forbid(unsafe_code)]

pub mod notifier;
pub mod options;
#[cfg(feature = "test-server")]
pub mod test_server;
pub mod text;
mod worker;

pub use notifier::DesktopNotifier;
pub use options::{
    NotifierOptions, NotifyError, Now, ReviewCallback, ACTION_DEFAULT, ACTION_REVIEW,
};
pub use text::RequestFacts;
