//! Native notifications: the `countersign-notifications` [`DesktopNotifier`], whose review
//! action (a click on the notification or its "Review" button) only brings the window up on
//! the request. A notification never approves or denies: D-Bus action signals are
//! unauthenticated, so anyone on the session bus could fake one.

use std::sync::{Arc, Weak};

use countersign_approver::hoop::inbox::HoopItem;
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

/// Pushes a new inbox row to the windows and asks the tray to count again.
fn push_row(agent: &Agent, row: RequestSummary) {
    agent
        .clients
        .push(&AgentMessage::Event(UiEvent::RequestReceived {
            request_id: row.id.clone(),
            summary: Some(Box::new(row)),
        }));
    agent.tray_changed();
}

impl AppNotifier {
    fn hoop_arrived(&self, agent: &Agent, item: &HoopItem) {
        push_row(agent, RequestSummary::from_hoop(item, None));
        if let Some(d) = &self.desktop {
            d.request_arrived(RequestFacts {
                id: item.id().to_owned(),
                gateway: item.connection.clone(),
                requester: item.requester().to_owned(),
                action: item.action().to_owned(),
                resource: item.resource(),
                risk: item.risk(),
                summary: item.summary().to_owned(),
                expires_at: None,
                broke_glass: false,
                unsigned_from: Some(format!("hoop at {}", item.gateway_name())),
            });
        }
    }
}

impl Notifier for AppNotifier {
    fn request_arrived(&self, item: &InboxItem) {
        if let Some(agent) = self.agent.upgrade() {
            push_row(&agent, RequestSummary::from_item(item, self.clock.now()));
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

    /// A hoop review: its row pushed as for a request, and a notification that names it
    /// unsigned, from its hoop gateway. The engine calls this only for a review new to the
    /// inbox, which is pending and undecided here.
    fn hoop_review_arrived(&self, connection: &str, review_id: &str) {
        let Some(agent) = self.agent.upgrade() else {
            return;
        };
        let item = match agent.state.engine.hoop_item_in(connection, review_id) {
            Ok(Some(item)) => item,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(review = %review_id, error = %e, "a hoop review that arrived cannot be read");
                return;
            }
        };
        self.hoop_arrived(&agent, &item);
    }

    /// A notification follows its review: hoop's revoked (a jit access ended) and a review
    /// gone from hoop both read as withdrawn, as nothing is left to decide.
    fn hoop_review_resolved(&self, review_id: &str, status: &str) {
        let state = match status {
            "APPROVED" | "PROCESSING" | "EXECUTED" => RequestState::Approved,
            "REJECTED" => RequestState::Denied,
            _ => RequestState::Withdrawn,
        };
        if let Some(d) = &self.desktop {
            d.request_resolved(review_id, state);
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
