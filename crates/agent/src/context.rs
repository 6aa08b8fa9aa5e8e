//! [`Agent`]: what every part of the agent shares (the engine's state, the connected windows,
//! the window launcher, the tray's refresh request and quit).

use std::sync::Arc;

use tokio::sync::{watch, Notify};

use crate::clients::Clients;
use crate::state::AppState;
use crate::window::Launcher;

pub struct Agent {
    pub state: AppState,
    pub clients: Arc<Clients>,
    pub launcher: Launcher,
    /// Asks the tray to count the pending requests again (see `tray`).
    pub tray_wanted: Notify,
    /// Ends the agent (the tray's Quit, a window's `quit`, a signal).
    pub quit: Notify,
    /// Set once the agent is ending: every window connection then writes `quit` itself, past
    /// its queue, and closes.
    pub quitting: watch::Sender<bool>,
}

impl Agent {
    /// `clients` are the windows, as `state` was given them.
    pub fn new(state: AppState, clients: Arc<Clients>, launcher: Launcher) -> Arc<Agent> {
        Arc::new(Agent {
            state,
            clients,
            launcher,
            tray_wanted: Notify::new(),
            quit: Notify::new(),
            quitting: watch::Sender::new(false),
        })
    }

    /// Shows the window, on `request_id` if one is named.
    pub fn show(&self, request_id: Option<String>) {
        self.launcher.show(&self.clients, request_id);
    }

    /// Asks for the tray's pending count to be shown again soon. Returns at once.
    pub fn tray_changed(&self) {
        self.tray_wanted.notify_one();
    }

    /// Ends the agent.
    pub fn quit(&self) {
        self.quit.notify_one();
    }
}
