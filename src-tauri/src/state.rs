//! What the window process keeps: its connection to the agent (made on first use, and again
//! after the agent went away), the navigation a link asked for before the page listened, and
//! the agent's connection events for a page that loads after them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use countersign_agent::client::{self, AgentClient, Pushed};
use countersign_ipc::{IpcError, UiEvent};
use tokio::sync::mpsc;

pub(crate) use countersign_agent::lock;

pub struct Desktop {
    data_dir: PathBuf,
    agent_program: PathBuf,
    client: tokio::sync::Mutex<Option<Arc<AgentClient>>>,
    /// A request a notification or deep link asked to show, kept until the page collects it.
    pending_navigation: Mutex<Option<String>>,
    /// The last connection event per gateway, replayed to a page that (re)loads after it.
    connections: Mutex<std::collections::BTreeMap<String, UiEvent>>,
    /// Events raised before the page could listen (a deep link on the command line at start).
    startup_events: Mutex<Vec<UiEvent>>,
}

impl Desktop {
    pub fn new(data_dir: PathBuf, agent_program: PathBuf) -> Desktop {
        Desktop {
            data_dir,
            agent_program,
            client: tokio::sync::Mutex::new(None),
            pending_navigation: Mutex::new(None),
            connections: Mutex::new(std::collections::BTreeMap::new()),
            startup_events: Mutex::new(Vec::new()),
        }
    }

    /// The connection to the agent, connecting (and starting the agent) when there is none.
    /// A new connection's pushes are handed to `on_connect`, to be read until it closes.
    pub async fn client(
        &self,
        on_connect: impl FnOnce(mpsc::UnboundedReceiver<Pushed>),
    ) -> Result<Arc<AgentClient>, IpcError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let (c, pushed) = client::connect(&self.data_dir, &self.agent_program)
            .await
            .map_err(client::unavailable)?;
        tracing::info!(
            agent_pid = c.hello().pid,
            "connected to the background service"
        );
        for event in &c.hello().connections {
            self.note_connection(event);
        }
        let c = Arc::new(c);
        *slot = Some(c.clone());
        on_connect(pushed);
        Ok(c)
    }

    /// Forgets the connection (the agent went away); the next call connects again.
    pub async fn disconnected(&self) {
        *self.client.lock().await = None;
    }

    /// Whether a connection is held now.
    pub async fn is_connected(&self) -> bool {
        self.client.lock().await.is_some()
    }

    pub fn set_pending_navigation(&self, request_id: Option<String>) {
        *lock(&self.pending_navigation) = request_id;
    }

    pub fn take_pending_navigation(&self) -> Option<String> {
        lock(&self.pending_navigation).take()
    }

    /// Remembers a connection event (other events are ignored).
    pub fn note_connection(&self, e: &UiEvent) {
        if let UiEvent::Connection { gateway, .. } = e {
            lock(&self.connections).insert(gateway.clone(), e.clone());
        }
    }

    pub fn connections(&self) -> Vec<UiEvent> {
        lock(&self.connections).values().cloned().collect()
    }

    pub fn queue_startup_event(&self, e: UiEvent) {
        lock(&self.startup_events).push(e);
    }

    pub fn take_startup_events(&self) -> Vec<UiEvent> {
        std::mem::take(&mut *lock(&self.startup_events))
    }
}
