//! A recording `org.freedesktop.Notifications` server for tests (feature `test-server`).
//!
//! It owns the well-known name on the session bus it finds in `DBUS_SESSION_BUS_ADDRESS` (run
//! tests under `dbus-run-session -- cargo test ...` so that is a private bus), implements
//! `Notify`, `CloseNotification`, `GetCapabilities` and `GetServerInformation` as the
//! [Desktop Notifications spec](https://specifications.freedesktop.org/notification-spec/latest/)
//! describes them, records every call, and emits `ActionInvoked` and `NotificationClosed` on
//! demand.
//!
//! Like dunst, it addresses its signals to the connection that sent the `Notify` (a client
//! listening on another connection would miss them, as it would with dunst), and it answers
//! `CloseNotification` for an open notification with `NotificationClosed(id, 3)`.
//!
//! The blocking methods run a future with `zbus::block_on`: do not call them from inside a
//! Tokio task in a build where zbus has its `tokio` feature; use the `_async` forms there.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use zbus::message::Header;
use zbus::names::BusName;
use zbus::object_server::SignalEmitter;
use zbus::Connection;
use zbus::{OwnedVariant, Variant};

use crate::options::{NOTIFICATIONS_NAME, NOTIFICATIONS_PATH};

/// What `GetCapabilities` answers.
pub const CAPABILITIES: &[&str] = &["actions", "body", "body-markup"];

/// `NotificationClosed` reasons (spec).
pub const CLOSED_EXPIRED: u32 = 1;
pub const CLOSED_DISMISSED: u32 = 2;
pub const CLOSED_BY_CALL: u32 = 3;

/// One `Notify` call as received.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyCall {
    /// The id the server answered with.
    pub id: u32,
    /// Unique bus name of the caller.
    pub sender: String,
    pub app_name: String,
    pub replaces_id: u32,
    pub app_icon: String,
    pub summary: String,
    pub body: String,
    /// Flat list as sent: key, label, key, label, ...
    pub actions: Vec<String>,
    /// Every hint, its value in GVariant text form (`byte 0x02`, `true`, `'name'`).
    pub hints: BTreeMap<String, String>,
    /// The `urgency` hint: 0 low, 1 normal, 2 critical.
    pub urgency: Option<u8>,
    pub expire_timeout: i32,
    pub received_at: Instant,
}

impl NotifyCall {
    /// The action keys (even positions of `actions`).
    pub fn action_keys(&self) -> Vec<&str> {
        self.actions.iter().step_by(2).map(String::as_str).collect()
    }

    /// `(key, label)` pairs.
    pub fn action_pairs(&self) -> Vec<(&str, &str)> {
        self.actions
            .chunks(2)
            .map(|c| {
                (
                    c.first().map(String::as_str).unwrap_or(""),
                    c.get(1).map(String::as_str).unwrap_or(""),
                )
            })
            .collect()
    }
}

/// Everything the server was asked, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Notify(NotifyCall),
    Close { id: u32, sender: String },
}

#[derive(Default)]
struct State {
    next_id: u32,
    log: Vec<Record>,
    /// Open notification id -> the unique name of the client that showed it.
    open: HashMap<u32, String>,
    /// Answer `Notify` and `CloseNotification` with an error (a broken server).
    failing: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Server {
    shared: Arc<Shared>,
}

fn sender_of(header: &Header<'_>) -> String {
    header.sender().map(|s| s.to_string()).unwrap_or_default()
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Server {
    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        #[zbus(header)] header: Header<'_>,
        app_name: String,
        replaces_id: u32,
        app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        hints: HashMap<String, OwnedVariant>,
        expire_timeout: i32,
    ) -> zbus::fdo::Result<u32> {
        if self.shared.lock().failing {
            return Err(zbus::fdo::Error::Failed(
                "the test server is failing".into(),
            ));
        }
        let sender = sender_of(&header);
        let urgency = hints.get("urgency").and_then(|v| match &**v {
            Variant::U8(u) => Some(*u),
            _ => None,
        });
        let hints = hints
            .iter()
            .map(|(k, v)| (k.clone(), format!("{}", &**v)))
            .collect();
        let mut state = self.shared.lock();
        // Spec: a non-zero replaces_id of an open notification keeps that id; otherwise a new
        // notification gets a new id.
        let id = if replaces_id != 0 && state.open.contains_key(&replaces_id) {
            replaces_id
        } else {
            state.next_id += 1;
            state.next_id
        };
        state.open.insert(id, sender.clone());
        state.log.push(Record::Notify(NotifyCall {
            id,
            sender,
            app_name,
            replaces_id,
            app_icon,
            summary,
            body,
            actions,
            hints,
            urgency,
            expire_timeout,
            received_at: Instant::now(),
        }));
        drop(state);
        self.shared.changed.notify_all();
        Ok(id)
    }

    async fn close_notification(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        id: u32,
    ) -> zbus::fdo::Result<()> {
        let sender = sender_of(&header);
        let was_open = {
            let mut state = self.shared.lock();
            if state.failing {
                return Err(zbus::fdo::Error::Failed(
                    "the test server is failing".into(),
                ));
            }
            state.log.push(Record::Close {
                id,
                sender: sender.clone(),
            });
            state.open.remove(&id)
        };
        self.shared.changed.notify_all();
        if let Some(client) = was_open {
            if let Ok(e) = emitter(conn, Some(&client)) {
                let _ = Server::notification_closed(&e, id, CLOSED_BY_CALL).await;
            }
        }
        Ok(())
    }

    fn get_capabilities(&self) -> Vec<String> {
        CAPABILITIES.iter().map(|s| s.to_string()).collect()
    }

    #[zbus(out_args("name", "vendor", "version", "spec_version"))]
    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "countersign-test-server".into(),
            "Countersign".into(),
            env!("CARGO_PKG_VERSION").into(),
            "1.2".into(),
        )
    }

    #[zbus(signal)]
    async fn action_invoked(
        emitter: &SignalEmitter<'_>,
        id: u32,
        action_key: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn notification_closed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        reason: u32,
    ) -> zbus::Result<()>;
}

/// A signal emitter for the notifications object, addressed to `destination` (None: broadcast).
fn emitter(conn: &Connection, destination: Option<&str>) -> zbus::Result<SignalEmitter<'static>> {
    let e = SignalEmitter::new(conn, NOTIFICATIONS_PATH)?;
    Ok(match destination {
        Some(d) => e.set_destination(BusName::try_from(d.to_owned())?),
        None => e,
    })
}

/// The running server. Clone it freely; [`TestServer::stop`] releases the name.
#[derive(Clone)]
pub struct TestServer {
    conn: Connection,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("unique_name", &self.unique_name())
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// Connects to the session bus, serves the interface and takes
    /// `org.freedesktop.Notifications` (fails if another server has it).
    pub async fn start_async() -> zbus::Result<TestServer> {
        let shared = Arc::new(Shared::default());
        let conn = zbus::connection::Builder::session()
            .serve_at(
                NOTIFICATIONS_PATH,
                Server {
                    shared: shared.clone(),
                },
            )
            .name(NOTIFICATIONS_NAME)
            .build()
            .await?;
        Ok(TestServer { conn, shared })
    }

    /// Blocking [`TestServer::start_async`].
    pub fn start() -> zbus::Result<TestServer> {
        zbus::block_on(Self::start_async())
    }

    /// Releases the well-known name (the connection closes when the last clone is dropped).
    pub async fn stop_async(&self) -> zbus::Result<()> {
        self.conn.release_name(NOTIFICATIONS_NAME).await.map(|_| ())
    }

    pub fn stop(&self) -> zbus::Result<()> {
        zbus::block_on(self.stop_async())
    }

    pub fn unique_name(&self) -> Option<String> {
        self.conn.unique_name().map(|n| n.to_string())
    }

    /// The server's connection (to emit other signals, or to forge some from it).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Forgets every record and open notification and stops failing; ids keep counting up.
    pub fn reset(&self) {
        let mut state = self.shared.lock();
        state.log.clear();
        state.open.clear();
        state.failing = false;
    }

    /// While set, `Notify` and `CloseNotification` answer `org.freedesktop.DBus.Error.Failed`
    /// and record nothing.
    pub fn set_failing(&self, failing: bool) {
        self.shared.lock().failing = failing;
    }

    pub fn log(&self) -> Vec<Record> {
        self.shared.lock().log.clone()
    }

    pub fn calls(&self) -> Vec<NotifyCall> {
        self.log()
            .into_iter()
            .filter_map(|r| match r {
                Record::Notify(c) => Some(c),
                Record::Close { .. } => None,
            })
            .collect()
    }

    /// Ids passed to `CloseNotification`, in order.
    pub fn closes(&self) -> Vec<u32> {
        self.log()
            .into_iter()
            .filter_map(|r| match r {
                Record::Close { id, .. } => Some(id),
                Record::Notify(_) => None,
            })
            .collect()
    }

    /// Ids of notifications shown and not closed.
    pub fn open_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.shared.lock().open.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Waits until `done(log)` holds, or `timeout` passes (then false).
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&[Record]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if done(&state.log) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = match self.shared.changed.wait_timeout(state, deadline - now) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Waits for at least `n` `Notify` calls in all; returns the calls seen.
    pub fn wait_for_calls(&self, n: usize, timeout: Duration) -> Vec<NotifyCall> {
        self.wait_until(timeout, |log| {
            log.iter()
                .filter(|r| matches!(r, Record::Notify(_)))
                .count()
                >= n
        });
        self.calls()
    }

    /// What a click does: `ActionInvoked(id, key)`, addressed to the client that showed `id`
    /// (broadcast when `id` is not open, as a forged signal would be).
    pub async fn invoke_action_async(&self, id: u32, key: &str) -> zbus::Result<()> {
        let client = self.shared.lock().open.get(&id).cloned();
        Server::action_invoked(&emitter(&self.conn, client.as_deref())?, id, key).await
    }

    pub fn invoke_action(&self, id: u32, key: &str) -> zbus::Result<()> {
        zbus::block_on(self.invoke_action_async(id, key))
    }

    /// `ActionInvoked(id, key)` to `destination` (None: broadcast), whatever is open.
    pub async fn emit_action_invoked_async(
        &self,
        destination: Option<&str>,
        id: u32,
        key: &str,
    ) -> zbus::Result<()> {
        Server::action_invoked(&emitter(&self.conn, destination)?, id, key).await
    }

    pub fn emit_action_invoked(
        &self,
        destination: Option<&str>,
        id: u32,
        key: &str,
    ) -> zbus::Result<()> {
        zbus::block_on(self.emit_action_invoked_async(destination, id, key))
    }

    /// The notification went away on the server's side (`reason`: [`CLOSED_EXPIRED`],
    /// [`CLOSED_DISMISSED`], ...): forgets it and emits `NotificationClosed` to its client.
    pub async fn close_async(&self, id: u32, reason: u32) -> zbus::Result<()> {
        let client = self.shared.lock().open.remove(&id);
        Server::notification_closed(&emitter(&self.conn, client.as_deref())?, id, reason).await
    }

    pub fn close(&self, id: u32, reason: u32) -> zbus::Result<()> {
        zbus::block_on(self.close_async(id, reason))
    }
}
