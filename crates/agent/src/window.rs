//! Bringing up the window: a window that is open is told to show itself (on a request, when
//! one is named); when none is open, the window program is started, with the request as a
//! `countersign://request/<id>` link. Nothing here decides a request.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use countersign_ipc::agent::AgentMessage;

use crate::clients::Clients;
use crate::state::lock;

/// How long a window just started has to connect before another "show" starts one again.
const STARTING: Duration = Duration::from_secs(10);

pub struct Launcher {
    program: PathBuf,
    /// When a window was last started and had not connected yet.
    started: Mutex<Option<Instant>>,
}

impl Launcher {
    pub fn new(program: PathBuf) -> Launcher {
        Launcher {
            program,
            started: Mutex::new(None),
        }
    }

    /// A window connected: the next "show" with none open starts one again.
    pub fn connected(&self) {
        *lock(&self.started) = None;
    }

    /// Shows the window on `request_id` (or as it was), starting it if none is open. A window
    /// that is still starting receives a request by its own single-instance handover: the
    /// program started a second time passes its link to the first and exits.
    pub fn show(&self, clients: &Clients, request_id: Option<String>) {
        if clients.count() > 0 {
            clients.push(&AgentMessage::Show { request_id });
            return;
        }
        {
            let mut started = lock(&self.started);
            if request_id.is_none() && started.is_some_and(|t| t.elapsed() < STARTING) {
                tracing::debug!("the window is starting already");
                return;
            }
            *started = Some(Instant::now());
        }
        let mut command = std::process::Command::new(&self.program);
        if let Some(id) = &request_id {
            command.arg(format!("countersign://request/{id}"));
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        match command.spawn() {
            Ok(mut child) => {
                tracing::info!(program = %self.program.display(), request = ?request_id, "window started");
                // Reaped when it exits, so no zombie is left behind. A plain thread: this runs
                // on the notifier's thread too, outside the async runtime.
                let reaper = std::thread::Builder::new()
                    .name("window-reaper".into())
                    .spawn(move || {
                        if let Err(e) = child.wait() {
                            tracing::debug!(error = %e, "waiting for the window");
                        }
                    });
                if let Err(e) = reaper {
                    tracing::debug!(error = %e, "no thread to reap the window");
                }
            }
            Err(e) => {
                *lock(&self.started) = None;
                tracing::error!(program = %self.program.display(), error = %e, "cannot start the window");
            }
        }
    }
}
