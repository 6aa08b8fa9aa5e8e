//! An approver engine in its own temporary data directory, with the software authenticator as
//! its passkey: paired, started and stopped in the background, closed and opened again, and its
//! events awaited.

use std::path::{Path, PathBuf};
use std::time::Duration;

use countersign_approver::{Engine, EngineEvent, SoftAuthenticator};
use countersign_protocol::PairingLink;
use tokio::sync::{broadcast, watch};

/// An approver engine in its own data directory, with the software authenticator.
pub struct Approver {
    pub engine: Engine,
    pub auth: SoftAuthenticator,
    pub events: broadcast::Receiver<EngineEvent>,
    pub dir: tempfile::TempDir,
    stop: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Approver {
    pub fn new() -> Approver {
        Self::open_in(tempfile::tempdir().unwrap())
    }

    /// Opens the engine and the software authenticator in `<dir>/approver`.
    pub fn open_in(dir: tempfile::TempDir) -> Approver {
        let data = dir.path().join("approver");
        let engine = Engine::open(&data).unwrap();
        let auth = SoftAuthenticator::open(&data.join("soft-authenticator.cbor")).unwrap();
        let events = engine.subscribe();
        Approver {
            engine,
            auth,
            events,
            dir,
            stop: None,
        }
    }

    pub async fn pair(&mut self, link: &PairingLink) {
        self.engine
            .pair(link, "e2e test device", &mut self.auth)
            .await
            .unwrap();
    }

    /// The engine's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("approver")
    }

    /// Closes the engine (it must not be running), lets `between` change the closed data
    /// directory, and opens it again.
    pub fn reopen(self, between: impl FnOnce(&Path)) -> Approver {
        assert!(self.stop.is_none(), "stop the engine before reopening it");
        let data = self.data_dir();
        let Approver { engine, dir, .. } = self;
        drop(engine);
        between(&data);
        Self::open_in(dir)
    }

    /// Starts the engine's connectors and outbox in the background.
    pub fn start(&mut self) {
        let (tx, rx) = watch::channel(false);
        let engine = self.engine.clone();
        let task = tokio::spawn(async move {
            // A test sees the consequences through its events; the reason goes to its output.
            if let Err(e) = engine.run(rx).await {
                eprintln!("the engine's run loop ended: {e}");
            }
        });
        self.stop = Some((tx, task));
    }

    /// Stops the connectors and waits for them to end.
    pub async fn stop(&mut self) {
        if let Some((tx, task)) = self.stop.take() {
            let _ = tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Waits (up to 20 s) for an event matching `pred`, returning it.
    pub async fn wait_for(&mut self, mut pred: impl FnMut(&EngineEvent) -> bool) -> EngineEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("timed out waiting for an engine event")
                .expect("event channel closed");
            if pred(&ev) {
                return ev;
            }
        }
    }

    pub async fn wait_received(&mut self, request_id: &str) {
        let id = request_id.to_string();
        self.wait_for(
            move |e| matches!(e, EngineEvent::RequestReceived { request_id, .. } if *request_id == id),
        )
        .await;
    }
}

impl Default for Approver {
    fn default() -> Self {
        Self::new()
    }
}
