//! Native notifications: the `countersign-notifications` [`DesktopNotifier`], whose review
//! action (a click on the notification or its "Review" button) only brings the window up on
//! the request. A notification never approves or denies: D-Bus action signals are
//! unauthenticated, so anyone on the session bus could fake one.

use std::sync::{Arc, Weak};

use countersign_approver::{Clock, InboxItem, Notifier};
use countersign_ipc::agent::AgentMessage;
use countersign_ipc::{RequestSummary, Settings, UiEvent};
use countersign_notifications::{DesktopNotifier, NotifierOptions, RequestFacts, ReviewCallback};
use countersign_protocol::RequestState;

use crate::context::Agent;

/// The engine's [`Notifier`] in the agent: a new request becomes the page's
/// `request_received` event carrying its inbox row (the engine hands the stored item to this
/// hook, so the row costs no inbox read and the page never re-reads thousands of rows for
/// one arrival), a tray update, and the desktop notification when there is a session bus.
/// The broadcast's own `RequestReceived` is therefore not forwarded (`service`).
pub struct AppNotifier {
    /// Weak: the engine holds this notifier, and the agent holds the engine.
    agent: Weak<Agent>,
    desktop: Option<Arc<DesktopNotifier>>,
    /// The engine's clock, for the row's countdown.
    clock: Clock,
}

impl AppNotifier {
    pub fn new(
        agent: &Arc<Agent>,
        desktop: Option<Arc<DesktopNotifier>>,
        clock: Clock,
    ) -> AppNotifier {
        AppNotifier {
            agent: Arc::downgrade(agent),
            desktop,
            clock,
        }
    }
}

impl Notifier for AppNotifier {
    fn request_arrived(&self, item: &InboxItem) {
        if let Some(agent) = self.agent.upgrade() {
            let now = self.clock.now();
            agent
                .clients
                .push(&AgentMessage::Event(UiEvent::RequestReceived {
                    request_id: item.id().to_owned(),
                    summary: Some(Box::new(RequestSummary::from_item(item, now))),
                }));
            agent.tray_changed();
        }
        // Only a request there is something to decide on raises a notification.
        if item.state != RequestState::Pending || item.decision.is_some() {
            tracing::debug!(request = %item.id(), "no notification: nothing to decide");
            return;
        }
        if let Some(d) = &self.desktop {
            d.request_arrived(RequestFacts::from_request(
                &item.gateway,
                &item.request.body,
            ));
        }
    }

    fn request_resolved(&self, request_id: &str, state: RequestState) {
        if let Some(d) = &self.desktop {
            d.request_resolved(request_id, state);
        }
    }
}

/// Starts the desktop notifier with the saved settings applied. `None` when there is no
/// session bus (logged): the window and the tray still show every request.
pub fn start(
    agent: &Arc<Agent>,
    settings: &Settings,
    clock: Clock,
) -> Option<Arc<DesktopNotifier>> {
    let handle = Arc::downgrade(agent);
    // Runs on the notifier's thread: it only queues a message to the window or starts it.
    let on_review: ReviewCallback = Arc::new(move |request_id: String| {
        tracing::info!(request = %request_id, "notification review");
        if let Some(agent) = handle.upgrade() {
            agent.show(Some(request_id));
        }
    });
    let options = NotifierOptions {
        desktop_entry: Some(crate::paths::DESKTOP_PROGRAM.into()),
        ..NotifierOptions::with_clock(Arc::new(move || clock.now()))
    };
    match DesktopNotifier::start(options, on_review) {
        Ok(n) => {
            crate::state::apply_settings(&n, settings);
            Some(Arc::new(n))
        }
        Err(e) => {
            tracing::warn!(error = %e, "no desktop notifications");
            None
        }
    }
}
