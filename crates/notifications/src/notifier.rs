//! [`DesktopNotifier`]: native desktop notifications for the requests a host hands it. It
//! knows no engine: the host passes [`RequestFacts`] and final states, and its clock.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use countersign_protocol::RequestState;
use futures::channel::mpsc::{unbounded, UnboundedSender};
use tracing::debug;

use crate::options::{NotifierOptions, NotifyError, Now, ReviewCallback, START_TIMEOUT};
use crate::text::RequestFacts;
use crate::worker::{delay_loop, worker, Command};

/// Native desktop notifications for the engine, over the `org.freedesktop.Notifications` D-Bus
/// interface (see the crate documentation for the exact behaviour).
///
/// Calls from the engine only queue work: one thread of its own talks to the bus, so a slow or
/// missing notification server never holds up the engine, and every bus error is logged and
/// swallowed.
pub struct DesktopNotifier {
    tx: UnboundedSender<Command>,
    clock: Now,
    enabled: AtomicBool,
    /// Unix seconds; `i64::MIN` when not paused.
    paused_until: AtomicI64,
}

impl std::fmt::Debug for DesktopNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesktopNotifier")
            .field("enabled", &self.is_enabled())
            .field("paused_until", &self.paused_until())
            .finish_non_exhaustive()
    }
}

impl DesktopNotifier {
    /// Connects to the session bus and subscribes to `ActionInvoked` and `NotificationClosed`
    /// before returning, so no click on a notification shown later can be missed. Blocks for
    /// that handshake (milliseconds; at most 10 s), on a thread of its own: it may be called
    /// from async code. Fails when there is no session bus; a missing notification *server* is
    /// not an error (each notification then fails and is logged).
    pub fn start(
        options: NotifierOptions,
        on_review: ReviewCallback,
    ) -> Result<DesktopNotifier, NotifyError> {
        let (tx, rx) = unbounded();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let (delay_tx, delay_rx) = std_mpsc::channel::<(Instant, Command)>();
        let wake = tx.clone();
        let clock = options.clock.clone();
        std::thread::Builder::new()
            .name("countersign-notify-delay".into())
            .spawn(move || delay_loop(delay_rx, wake))
            .map_err(|e| NotifyError::Thread(e.to_string()))?;
        std::thread::Builder::new()
            .name("countersign-notify".into())
            .spawn(move || {
                zbus::block_on(worker(options, on_review, rx, delay_tx, ready_tx));
            })
            .map_err(|e| NotifyError::Thread(e.to_string()))?;
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => Ok(DesktopNotifier {
                tx,
                clock,
                enabled: AtomicBool::new(true),
                paused_until: AtomicI64::new(i64::MIN),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                let _ = tx.unbounded_send(Command::Shutdown);
                Err(NotifyError::Thread(
                    "no answer from the session bus in time".into(),
                ))
            }
        }
    }

    /// Turns new notifications on or off. Notifications already shown still follow their
    /// requests (updated and closed when resolved).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::SeqCst);
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// No new notification while the clock is before `until` (unix seconds); `None` resumes.
    /// Requests that arrive while paused are not notified later (the inbox has them);
    /// notifications already shown still follow their requests.
    pub fn set_paused_until(&self, until: Option<i64>) {
        self.paused_until
            .store(until.unwrap_or(i64::MIN), Ordering::SeqCst);
    }

    pub fn paused_until(&self) -> Option<i64> {
        match self.paused_until.load(Ordering::SeqCst) {
            i64::MIN => None,
            t => Some(t),
        }
    }

    fn suppressed(&self, now: i64) -> Option<&'static str> {
        if !self.is_enabled() {
            Some("notifications are off")
        } else if self.paused_until().is_some_and(|until| now < until) {
            Some("notifications are paused")
        } else {
            None
        }
    }

    /// Waits until everything queued before this call has been sent to the bus (or `timeout`
    /// passes; then false). For tests and measurements; blocks the calling thread.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = std_mpsc::channel();
        if self.tx.unbounded_send(Command::Flush(tx)).is_err() {
            return false;
        }
        rx.recv_timeout(timeout).is_ok()
    }

    /// A request to decide arrived: shows (or folds into a burst) its notification, unless
    /// notifications are off or paused. The host decides what counts as "to decide" (pending,
    /// not decided here) and passes only the facts a notification may show.
    pub fn request_arrived(&self, facts: RequestFacts) {
        if let Some(why) = self.suppressed((self.clock)()) {
            debug!(request = %facts.id, "no notification: {why}");
            return;
        }
        self.send(Command::Arrived(Box::new(facts)));
    }

    /// A request reached a final state (or was decided here): its notification follows.
    pub fn request_resolved(&self, request_id: &str, state: RequestState) {
        self.send(Command::Resolved(request_id.to_owned(), state));
    }

    fn send(&self, cmd: Command) {
        if self.tx.unbounded_send(cmd).is_err() {
            debug!("notification thread has stopped; dropping notification work");
        }
    }
}

impl Drop for DesktopNotifier {
    fn drop(&mut self) {
        let _ = self.tx.unbounded_send(Command::Shutdown);
    }
}
