//! The windows connected to the agent, and what is pushed to them: the page's events, "show
//! the window" and "quit". Each message is encoded once and queued to every window.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use countersign_ipc::agent::AgentMessage;
use tokio::sync::mpsc;

use crate::locks::lock;

/// Pushed messages queued per window before it counts as behind: it is then sent a `resync`
/// instead of the messages it missed (the page re-reads what it shows).
pub const QUEUE: usize = 4096;

/// One connected window's queue.
pub struct Subscription {
    pub id: u64,
    pub messages: mpsc::Receiver<Arc<str>>,
    /// Set when a message could not be queued.
    pub lagged: Arc<AtomicBool>,
}

struct Entry {
    tx: mpsc::Sender<Arc<str>>,
    lagged: Arc<AtomicBool>,
}

#[derive(Default)]
pub struct Clients {
    next: AtomicU64,
    windows: Mutex<HashMap<u64, Entry>>,
}

impl Clients {
    pub fn subscribe(&self) -> Subscription {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, messages) = mpsc::channel(QUEUE);
        let lagged = Arc::new(AtomicBool::new(false));
        lock(&self.windows).insert(
            id,
            Entry {
                tx,
                lagged: lagged.clone(),
            },
        );
        Subscription {
            id,
            messages,
            lagged,
        }
    }

    pub fn unsubscribe(&self, id: u64) {
        lock(&self.windows).remove(&id);
    }

    /// How many windows are connected.
    pub fn count(&self) -> usize {
        lock(&self.windows).len()
    }

    /// Queues `message` to every window. Returns how many it was queued to.
    pub fn push(&self, message: &AgentMessage) -> usize {
        let line: Arc<str> = match serde_json::to_string(message) {
            Ok(l) => l.into(),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a message for the window");
                return 0;
            }
        };
        let windows = lock(&self.windows);
        let mut sent = 0;
        for w in windows.values() {
            match w.tx.try_send(line.clone()) {
                Ok(()) => sent += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    w.lagged.store(true, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_ipc::UiEvent;

    #[tokio::test]
    async fn every_window_gets_each_message_and_a_full_queue_marks_it_lagged() {
        let clients = Clients::default();
        let mut a = clients.subscribe();
        let mut b = clients.subscribe();
        assert_eq!(clients.count(), 2);
        let n = clients.push(&AgentMessage::Event(UiEvent::Resync));
        assert_eq!(n, 2);
        assert_eq!(
            &*a.messages.recv().await.unwrap(),
            r#"{"event":{"type":"resync"}}"#
        );
        assert_eq!(
            &*b.messages.recv().await.unwrap(),
            r#"{"event":{"type":"resync"}}"#
        );

        for _ in 0..QUEUE {
            clients.push(&AgentMessage::Quit {});
        }
        // `a` drains nothing more, so its queue is full now: one more marks it behind.
        a.messages.recv().await.unwrap();
        b.messages.close();
        clients.push(&AgentMessage::Quit {});
        assert!(!a.lagged.load(Ordering::Relaxed));
        clients.push(&AgentMessage::Quit {});
        assert!(a.lagged.load(Ordering::Relaxed));
        clients.unsubscribe(a.id);
        clients.unsubscribe(b.id);
        assert_eq!(clients.count(), 0);
    }
}
