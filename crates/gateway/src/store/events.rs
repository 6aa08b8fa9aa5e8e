//! The stored push events (table `events`, one row per approver): storing an event inside the
//! write that causes it, and an approver's backlog after a sequence number, which a connecting
//! or lagging stream reads (see `stream`). The committer publishes what a write stored once its
//! batch committed (see `hub`).

use std::sync::Arc;

use rusqlite::params;

use super::sqlite::SqliteTx;
use crate::error::StoreError;
use crate::hub::Pushed;

/// An approver's (`?1`) stored events after a sequence number (`?2`), in order.
pub(super) const BACKLOG_SQL: &str =
    "SELECT seq, kind, data FROM events WHERE approver = ?1 AND seq > ?2 ORDER BY seq";

/// The rows of the push events.
pub trait EventRows {
    /// Stores one event for `approver` and returns its sequence number.
    fn insert_event(&self, approver: &str, kind: &str, data: &str) -> Result<u64, StoreError>;

    /// The events stored for `approver` after sequence number `after`, in order.
    fn events_after(&self, approver: &str, after: u64) -> Result<Vec<Pushed>, StoreError>;

    /// Stores the event `kind` with `data` for every approver and returns what to publish
    /// after commit.
    fn enqueue(
        &self,
        approvers: &[String],
        kind: &str,
        data: &str,
    ) -> Result<Vec<Pushed>, StoreError> {
        let mut out = Vec::with_capacity(approvers.len());
        for a in approvers {
            let seq = self.insert_event(a, kind, data)?;
            out.push(Pushed {
                seq,
                approver: a.clone(),
                kind: kind.to_string(),
                data: Arc::from(data),
                published: None,
            });
        }
        Ok(out)
    }
}

impl EventRows for SqliteTx<'_> {
    fn insert_event(&self, approver: &str, kind: &str, data: &str) -> Result<u64, StoreError> {
        self.exec(
            "INSERT INTO events(approver, kind, data) VALUES (?1, ?2, ?3)",
            params![approver, kind, data],
        )?;
        Ok(self.last_insert_rowid() as u64)
    }

    fn events_after(&self, approver: &str, after: u64) -> Result<Vec<Pushed>, StoreError> {
        self.rows(BACKLOG_SQL, params![approver, after as i64], |r| {
            Ok(Pushed {
                seq: r.get::<_, i64>(0)? as u64,
                approver: approver.to_string(),
                kind: r.get(1)?,
                data: r.get::<_, String>(2)?.into(),
                published: None,
            })
        })
    }
}
