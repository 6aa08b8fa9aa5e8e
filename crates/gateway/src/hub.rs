//! The push hub: the in-memory fan-out of committed events to connected devices.
//!
//! An event is first stored (table `events`, one row per approver, by `EventRows::enqueue` in
//! `store::events`) in the write that causes it, then handed to the hub by the store's
//! committer once that write's batch committed, so devices see events in commit order and
//! never one that was rolled back. The hub keeps no history: a device that connects later, or
//! falls behind the hub's buffer, reads the stored events instead (see `stream`). This module
//! imports no other module of the crate, so the store can publish to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, watch};

/// One stored event on its way to the devices of `approver`, or to a wider audience.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub seq: u64,
    /// The approver it is for; `*` (every device) or `+` (the audience in `wide`) otherwise.
    pub approver: String,
    /// A request's audience of named approvers and groups, when it is not one approver.
    pub wide: Option<Arc<Wide>>,
    pub kind: String,
    pub data: Arc<str>,
    /// When the hub published it, right after the commit that stored it (None for events read
    /// back from the store). Streams use it to report how far behind they run.
    pub published: Option<std::time::Instant>,
}

/// A request's audience when it is sent once to many (docs/protocol.md 3.12): the approvers of
/// its list stages and the members of the groups of its group stages, except the devices of the
/// requester's own person.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Wide {
    pub approvers: Vec<String>,
    pub groups: Vec<String>,
    pub except: Option<String>,
}

/// Who a stream's approver is in the directory, as its last membership statement said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    pub person: Option<String>,
    pub groups: Vec<String>,
}

impl Wide {
    /// Whether `approver`, who is `member`, is in this audience.
    pub fn includes(&self, approver: &str, member: &Member) -> bool {
        let own = self.except.is_some() && member.person == self.except;
        !own && (self.approvers.iter().any(|a| a == approver)
            || self.groups.iter().any(|g| member.groups.contains(g)))
    }
}

pub struct Hub {
    tx: broadcast::Sender<Arc<Pushed>>,
    closed: watch::Sender<bool>,
    /// Ids of devices whose pairing was revoked: their streams end.
    revoked: broadcast::Sender<Arc<str>>,
    /// How many streams each approver has open (see [`Hub::stream_opened`]).
    connected: Arc<Mutex<HashMap<String, usize>>>,
}

/// Counts one open stream of an approver for as long as it lives.
pub struct OpenStream {
    connected: Arc<Mutex<HashMap<String, usize>>>,
    approver: String,
}

fn counts(m: &Mutex<HashMap<String, usize>>) -> MutexGuard<'_, HashMap<String, usize>> {
    // A counter map is whole after any panic of a holder: take it back.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let mut c = counts(&self.connected);
        if let Some(n) = c.get_mut(&self.approver) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.remove(&self.approver);
            }
        }
    }
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
            connected: Arc::default(),
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

    /// Counts a stream of `approver` open until the value is dropped: mail goes only to an
    /// approver with none (`email`).
    pub fn stream_opened(&self, approver: &str) -> OpenStream {
        *counts(&self.connected)
            .entry(approver.to_owned())
            .or_insert(0) += 1;
        OpenStream {
            connected: self.connected.clone(),
            approver: approver.to_owned(),
        }
    }

    /// How many streams `approver`'s devices have open on this gateway.
    pub fn streams_of(&self, approver: &str) -> usize {
        counts(&self.connected).get(approver).copied().unwrap_or(0)
    }

    /// How many device streams are open on this gateway (every approver's), for `/metrics`.
    pub fn streams_open(&self) -> usize {
        counts(&self.connected).values().sum()
    }

    /// Number of connected streams, for figures.
    pub fn receivers(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approver_counts_their_open_streams_until_each_is_dropped() {
        let hub = Hub::new();
        assert_eq!(hub.streams_of("alice"), 0);
        let one = hub.stream_opened("alice");
        let two = hub.stream_opened("alice");
        let _bob = hub.stream_opened("bob");
        assert_eq!(hub.streams_of("alice"), 2);
        drop(one);
        assert_eq!(hub.streams_of("alice"), 1);
        drop(two);
        assert_eq!(hub.streams_of("alice"), 0);
        assert_eq!(hub.streams_of("bob"), 1);
    }
}
