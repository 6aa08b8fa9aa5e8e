//! The push hub: the in-memory fan-out of committed events to connected devices.
//!
//! An event is first stored (table `events`, one row per approver, by `EventRows::enqueue` in
//! `store::events`) in the write that causes it, then handed to the hub by the store's
//! committer once that write's batch committed, so devices see events in commit order and
//! never one that was rolled back. The hub keeps no history: a device that connects later, or
//! falls behind the hub's buffer, reads the stored events instead (see `stream`). This module
//! imports no other module of the crate, so the store can publish to it.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

/// One stored event on its way to the devices of `approver`.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub seq: u64,
    pub approver: String,
    pub kind: String,
    pub data: Arc<str>,
    /// When the hub published it, right after the commit that stored it (None for events read
    /// back from the store). Streams use it to report how far behind they run.
    pub published: Option<std::time::Instant>,
}

pub struct Hub {
    tx: broadcast::Sender<Arc<Pushed>>,
    closed: watch::Sender<bool>,
    /// Ids of devices whose pairing was revoked: their streams end.
    revoked: broadcast::Sender<Arc<str>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        let (closed, _) = watch::channel(false);
        let (revoked, _) = broadcast::channel(256);
        Hub {
            tx,
            closed,
            revoked,
        }
    }

    pub fn publish(&self, events: &[Pushed]) {
        let now = std::time::Instant::now();
        for e in events {
            // No receivers is fine: nobody is connected.
            let _ = self.tx.send(Arc::new(Pushed {
                published: Some(now),
                ..e.clone()
            }));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Pushed>> {
        self.tx.subscribe()
    }

    /// A receiver that sees the hub close (at shutdown), so that open streams end.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// Ends every open stream (at shutdown).
    pub fn close(&self) {
        let _ = self.closed.send(true);
    }

    /// Ends the open streams of the device `id` (its pairing was revoked).
    pub fn revoke(&self, id: &str) {
        let _ = self.revoked.send(Arc::from(id));
    }

    /// A receiver of revoked device ids, for a stream to end when its device is one.
    pub fn revocations(&self) -> broadcast::Receiver<Arc<str>> {
        self.revoked.subscribe()
    }

    /// Number of connected streams, for figures.
    pub fn receivers(&self) -> usize {
        self.tx.receiver_count()
    }
}
