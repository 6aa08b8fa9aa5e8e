//! The notification thread: one long-lived session-bus connection that shows, updates and
//! closes notifications, listens for their action and close signals, and keeps the state
//! behind collapsing and resolving (which notification shows which requests). The public face
//! is [`crate::DesktopNotifier`], which only queues [`Command`]s for it.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use countersign_protocol::RequestState;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::StreamExt;
use notify_rust::{Hint, Notification, Timeout};
use tracing::{debug, info, warn};
use zbus::message::Type as MessageType;
use zbus::names::BusName;
use zbus::Variant;
use zbus::{Connection, MatchRule, Message, MessageStream};

use crate::options::{
    NotifierOptions, NotifyError, ReviewCallback, ACTION_DEFAULT, ACTION_REVIEW, CALL_TIMEOUT,
    NOTIFICATIONS_INTERFACE, NOTIFICATIONS_NAME, NOTIFICATIONS_PATH,
};
use crate::text::{self, RequestFacts, Text};

pub(crate) enum Command {
    Arrived(Box<RequestFacts>),
    Resolved(String, RequestState),
    /// Sent by the delay thread `close_delay` after a notification showed its final state.
    CloseDue {
        notification: u32,
        generation: u64,
    },
    Flush(std_mpsc::Sender<()>),
    Shutdown,
}

/// Sends each command back to the worker at its time. All delays are the same
/// (`close_delay`), so commands come due in the order they were queued.
pub(crate) fn delay_loop(
    rx: std_mpsc::Receiver<(Instant, Command)>,
    wake: UnboundedSender<Command>,
) {
    while let Ok((due, cmd)) = rx.recv() {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if wake.unbounded_send(cmd).is_err() {
            return;
        }
    }
}

enum Event {
    Command(Command),
    Signal(zbus::Result<Message>),
}

async fn subscribe(conn: &Connection, member: &'static str) -> zbus::Result<MessageStream> {
    let rule = MatchRule::builder()
        .msg_type(MessageType::Signal)
        .interface(NOTIFICATIONS_INTERFACE)
        .member(member)
        .path(NOTIFICATIONS_PATH)
        .build()?;
    MessageStream::for_match_rule(rule, conn, NonZeroUsize::new(1024)).await
}

pub(crate) async fn worker(
    options: NotifierOptions,
    on_review: ReviewCallback,
    rx: UnboundedReceiver<Command>,
    delay: std_mpsc::Sender<(Instant, Command)>,
    ready: std_mpsc::Sender<Result<(), NotifyError>>,
) {
    let conn = match zbus::connection::Builder::session()
        .method_timeout(CALL_TIMEOUT)
        .build()
        .await
    {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(NotifyError::NoSessionBus(e)));
            return;
        }
    };
    // The subscription exists on the bus once `for_match_rule` returns (AddMatch is a method
    // call), so it is in place before the first Notify.
    let (actions, closes, dbus) = match (
        subscribe(&conn, "ActionInvoked").await,
        subscribe(&conn, "NotificationClosed").await,
        zbus::fdo::DBusProxy::new(&conn).await,
    ) {
        (Ok(a), Ok(c), Ok(d)) => (a, c, d),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            let _ = ready.send(Err(NotifyError::Subscribe(e)));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    info!(
        bus_name = ?conn.unique_name().map(|n| n.to_string()),
        "desktop notifications ready"
    );

    let mut state = State {
        options,
        on_review,
        conn,
        dbus,
        delay,
        shown: HashMap::new(),
        generation: 0,
    };
    let signals = futures::stream::select(actions, closes).map(Event::Signal);
    let mut events = futures::stream::select(rx.map(Event::Command), signals);
    while let Some(event) = events.next().await {
        match event {
            Event::Command(Command::Shutdown) => break,
            Event::Command(Command::Flush(done)) => {
                let _ = done.send(());
            }
            Event::Command(Command::Arrived(facts)) => state.arrived(*facts).await,
            Event::Command(Command::Resolved(id, s)) => state.resolved(&id, s).await,
            Event::Command(Command::CloseDue {
                notification,
                generation,
            }) => state.close_due(notification, generation).await,
            Event::Signal(Ok(msg)) => state.signal(&msg).await,
            Event::Signal(Err(e)) => debug!("unreadable signal: {e}"),
        }
    }
    debug!("notification thread stopping");
}

/// One notification on screen: one request, or a burst from one requester.
struct Shown {
    gateway: String,
    requester: String,
    /// Requests still waiting, in arrival order (newest last).
    waiting: Vec<RequestFacts>,
    /// Set once nothing is waiting any more: the last request and how it ended. The
    /// notification shows that until `close_delay` has passed, then is closed.
    ended: Option<(RequestFacts, RequestState)>,
    last_arrival: Instant,
    /// Changes with every new text, so a close scheduled for an older text is ignored.
    generation: u64,
}

impl Shown {
    /// The request a click opens: the newest waiting one, else the one that just ended.
    fn target(&self) -> Option<&str> {
        self.waiting
            .last()
            .or(self.ended.as_ref().map(|(r, _)| r))
            .map(|r| r.id.as_str())
    }
}

struct State {
    options: NotifierOptions,
    on_review: ReviewCallback,
    conn: Connection,
    dbus: zbus::fdo::DBusProxy<'static>,
    delay: std_mpsc::Sender<(Instant, Command)>,
    /// By notification id, as the server returned it.
    shown: HashMap<u32, Shown>,
    generation: u64,
}

impl State {
    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    async fn arrived(&mut self, facts: RequestFacts) {
        let now = Instant::now();
        if self
            .shown
            .values()
            .any(|s| s.waiting.iter().any(|r| r.id == facts.id))
        {
            debug!(request = %facts.id, "already notified");
            return;
        }
        let window = self.options.collapse_window;
        let burst = self
            .shown
            .iter()
            .filter(|(_, s)| {
                s.gateway == facts.gateway
                    && s.requester == facts.requester
                    && now.duration_since(s.last_arrival) < window
            })
            .max_by_key(|(_, s)| s.last_arrival)
            .map(|(id, _)| *id);
        let generation = self.next_generation();
        match burst.and_then(|id| self.shown.remove(&id).map(|s| (id, s))) {
            Some((id, mut shown)) => {
                shown.waiting.push(facts);
                shown.ended = None;
                shown.last_arrival = now;
                shown.generation = generation;
                let waiting: Vec<&RequestFacts> = shown.waiting.iter().collect();
                let Some(text) = text::collapsed(&waiting, (self.options.clock)()) else {
                    return;
                };
                let new_id = self.notify(id, &text).await.unwrap_or(id);
                self.shown.insert(new_id, shown);
            }
            None => {
                let text = text::single(&facts, (self.options.clock)());
                if let Some(id) = self.notify(0, &text).await {
                    self.shown.insert(
                        id,
                        Shown {
                            gateway: facts.gateway.clone(),
                            requester: facts.requester.clone(),
                            waiting: vec![facts],
                            ended: None,
                            last_arrival: now,
                            generation,
                        },
                    );
                }
            }
        }
    }

    async fn resolved(&mut self, request_id: &str, state: RequestState) {
        if state == RequestState::Pending {
            return;
        }
        let Some(id) = self
            .shown
            .iter()
            .find(|(_, s)| s.waiting.iter().any(|r| r.id == request_id))
            .map(|(id, _)| *id)
        else {
            debug!(request = %request_id, "resolved, but no notification shows it");
            return;
        };
        let generation = self.next_generation();
        let Some(mut shown) = self.shown.remove(&id) else {
            return;
        };
        let Some(pos) = shown.waiting.iter().position(|r| r.id == request_id) else {
            return;
        };
        let done = shown.waiting.remove(pos);
        shown.generation = generation;
        let text = if shown.waiting.is_empty() {
            let text = text::resolved(&done, state);
            shown.ended = Some((done, state));
            text
        } else {
            let waiting: Vec<&RequestFacts> = shown.waiting.iter().collect();
            text::collapsed(&waiting, (self.options.clock)())
        };
        let Some(text) = text else {
            return;
        };
        let new_id = self.notify(id, &text).await.unwrap_or(id);
        let closing = shown.ended.is_some();
        self.shown.insert(new_id, shown);
        if closing {
            let cmd = Command::CloseDue {
                notification: new_id,
                generation,
            };
            let due = Instant::now() + self.options.close_delay;
            if self.options.close_delay.is_zero() || self.delay.send((due, cmd)).is_err() {
                self.close_due(new_id, generation).await;
            }
        }
    }

    async fn close_due(&mut self, id: u32, generation: u64) {
        let current = self
            .shown
            .get(&id)
            .is_some_and(|s| s.generation == generation && s.ended.is_some());
        if !current {
            return;
        }
        self.shown.remove(&id);
        if let Err(e) = self
            .conn
            .call_method(
                Some(NOTIFICATIONS_NAME),
                NOTIFICATIONS_PATH,
                Some(NOTIFICATIONS_INTERFACE),
                "CloseNotification",
                &(id,),
            )
            .await
        {
            warn!(notification = id, "closing a notification failed: {e}");
        }
    }

    /// Sends `Notify` (a new notification when `replaces` is 0, else an update in place) and
    /// returns the id the server gave it. The text is built with notify-rust's `Notification`
    /// (hints, urgency, actions, timeout) but sent over this thread's own connection: servers
    /// such as dunst address `ActionInvoked` and `NotificationClosed` to the connection that
    /// called `Notify`, so the listener must be that connection.
    async fn notify(&self, replaces: u32, text: &Text) -> Option<u32> {
        let mut n = Notification::new();
        n.appname(&self.options.app_name)
            .icon(&self.options.icon)
            .summary(&text.summary)
            .body(&text.body)
            .urgency(text.urgency)
            .timeout(Timeout::Default);
        if text.resolved {
            n.action(ACTION_DEFAULT, "Open").hint(Hint::Transient(true));
        } else {
            n.action(ACTION_DEFAULT, "Review")
                .action(ACTION_REVIEW, "Review");
        }
        if let Some(entry) = &self.options.desktop_entry {
            n.hint(Hint::DesktopEntry(entry.clone()));
        }
        let hints: HashMap<&str, Variant<'_>> = n.hints.iter().map(Into::into).collect();
        let reply = self
            .conn
            .call_method(
                Some(NOTIFICATIONS_NAME),
                NOTIFICATIONS_PATH,
                Some(NOTIFICATIONS_INTERFACE),
                "Notify",
                &(
                    &n.appname,
                    replaces,
                    &n.icon,
                    &n.summary,
                    &n.body,
                    &n.actions,
                    hints,
                    i32::from(n.timeout),
                ),
            )
            .await;
        match reply.and_then(|m| m.body().deserialize::<u32>()) {
            Ok(id) => Some(id),
            Err(e) => {
                warn!(replaces, "showing a notification failed: {e}");
                None
            }
        }
    }

    async fn signal(&mut self, msg: &Message) {
        let header = msg.header();
        let member = header.member().map(|m| m.to_string()).unwrap_or_default();
        let sender = header.sender().map(|s| s.to_string());
        if !self.sent_by_server(sender.as_deref()).await {
            debug!(
                ?sender,
                member, "ignoring a signal not sent by the notification server"
            );
            return;
        }
        match member.as_str() {
            "ActionInvoked" => match msg.body().deserialize::<(u32, String)>() {
                Ok((id, key)) => self.action(id, &key),
                Err(e) => debug!("malformed ActionInvoked: {e}"),
            },
            "NotificationClosed" => match msg.body().deserialize::<(u32, u32)>() {
                Ok((id, reason)) => {
                    if self.shown.remove(&id).is_some() {
                        debug!(notification = id, reason, "notification closed");
                    } else {
                        debug!(notification = id, reason, "closed: not one of ours");
                    }
                }
                Err(e) => debug!("malformed NotificationClosed: {e}"),
            },
            other => debug!(member = other, "unexpected signal"),
        }
    }

    /// True when `sender` is the current owner of `org.freedesktop.Notifications`. Anyone on
    /// the bus can emit these signals; only the server's own are acted on (and even those only
    /// ever open the window).
    async fn sent_by_server(&self, sender: Option<&str>) -> bool {
        let Some(sender) = sender else {
            return false;
        };
        let owner = match BusName::try_from(NOTIFICATIONS_NAME) {
            Ok(name) => self.dbus.get_name_owner(name).await,
            Err(e) => Err(e.into()),
        };
        match owner {
            Ok(owner) => owner.as_str() == sender,
            Err(e) => {
                debug!("cannot look up the notification server: {e}");
                false
            }
        }
    }

    fn action(&self, id: u32, key: &str) {
        let Some(shown) = self.shown.get(&id) else {
            debug!(
                notification = id,
                key, "action for a notification this process did not show; ignored"
            );
            return;
        };
        if key != ACTION_DEFAULT && key != ACTION_REVIEW {
            debug!(
                notification = id,
                key, "unknown notification action; ignored"
            );
            return;
        }
        let Some(request) = shown.target().map(str::to_owned) else {
            return;
        };
        debug!(notification = id, key, request = %request, "review requested");
        let callback = self.on_review.clone();
        if catch_unwind(AssertUnwindSafe(|| callback(request))).is_err() {
            warn!("the review callback panicked");
        }
    }
}
