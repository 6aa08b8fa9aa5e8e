//! The stored push events (table `events`, one row per approver): storing an event inside the
//! write that causes it, and an approver's backlog after a sequence number, which a connecting
//! or lagging stream reads (see `stream`). The committer publishes what a write stored once its
//! batch committed (see `hub`).

use crate::args;

use super::sql::{Db, Dialect};
use crate::error::StoreError;
use crate::hub::Pushed;

/// The `approver` of an event addressed to every device (audience `all`): not an approver
/// name, which is an identifier.
pub const EVERYONE: &str = "*";

/// An approver's (`?1`) stored events, and those to every device, after a sequence number
/// (`?2`), in order.
pub(super) const BACKLOG_SQL: &str = "SELECT seq, kind, data FROM events \
     WHERE (approver = ?1 OR approver = '*') AND seq > ?2 ORDER BY seq";

/// The rows of the push events.
pub trait EventRows {
    /// The id the next stored event gets: one above every id ever stored, so ids are never
    /// reused, not even after events were deleted.
    fn next_event_id(&self) -> Result<u64, StoreError>;

    /// The highest event id stored so far (0 before the first).
    fn head_event_id(&self) -> Result<u64, StoreError> {
        Ok(self.next_event_id()? - 1)
    }

    /// Stores one event for `approver` under `id`, which [`EventRows::next_event_id`] gave in
    /// this same transaction (the `data` is a signed envelope that names the id).
    fn insert_event(
        &self,
        id: u64,
        approver: &str,
        kind: &str,
        data: &str,
    ) -> Result<(), StoreError>;

    /// Removes the stored events of `kind` to every device below `id`: a newer one (a log
    /// checkpoint) makes them redundant, so a device's backlog holds only the newest.
    fn drop_older_to_everyone(&self, kind: &str, id: u64) -> Result<(), StoreError>;

    /// The signed status updates pushed for request `id` (the `status` events' payloads, one
    /// per status `seq`: every approver got the same body), in `seq` order.
    fn statuses_pushed(&self, id: &str) -> Result<Vec<String>, StoreError>;

    /// The events stored for `approver` (and to every device) after sequence number `after`,
    /// in order.
    fn events_after(&self, approver: &str, after: u64) -> Result<Vec<Pushed>, StoreError>;
}

impl EventRows for Db<'_> {
    fn next_event_id(&self) -> Result<u64, StoreError> {
        // The highest id ever used: SQLite keeps it for `events.seq`, an AUTOINCREMENT, in
        // sqlite_sequence; PostgreSQL in the `events` row of `counters`.
        let sql = match self.dialect() {
            Dialect::Sqlite => {
                "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
            }
            Dialect::Postgres => "SELECT value FROM counters WHERE name = 'events'",
        };
        let last: i64 = self.one(sql, args![], |r| r.get(0))?;
        Ok(u64::try_from(last).unwrap_or(0) + 1)
    }

    fn insert_event(
        &self,
        id: u64,
        approver: &str,
        kind: &str,
        data: &str,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO events(seq, approver, kind, data) VALUES (?1, ?2, ?3, ?4)",
            args![id as i64, approver, kind, data],
        )?;
        if self.dialect() == Dialect::Postgres {
            self.exec(
                "UPDATE counters SET value = greatest(value, ?1) WHERE name = 'events'",
                args![id as i64],
            )?;
        }
        Ok(())
    }

    fn statuses_pushed(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let sql = match self.dialect() {
            Dialect::Sqlite => {
                "SELECT json_extract(data, '$.body.payload.status') FROM events \
                 WHERE kind = 'status' \
                 AND json_extract(data, '$.body.payload.status.body.request_id') = ?1 \
                 GROUP BY json_extract(data, '$.body.payload.status.body.seq') \
                 ORDER BY json_extract(data, '$.body.payload.status.body.seq')"
            }
            // One per status `seq` (every approver got the same body); `json` keeps the text.
            Dialect::Postgres => {
                "SELECT DISTINCT ON (s) j FROM (SELECT \
                     (data::json #>> '{body,payload,status,body,seq}')::bigint AS s, \
                     (data::json #> '{body,payload,status}')::text AS j FROM events \
                     WHERE kind = 'status' \
                     AND data::json #>> '{body,payload,status,body,request_id}' = ?1) x \
                 ORDER BY s"
            }
        };
        self.rows(sql, args![id], |r| r.get(0))
    }

    fn drop_older_to_everyone(&self, kind: &str, id: u64) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM events WHERE approver = ?1 AND kind = ?2 AND seq < ?3",
            args![EVERYONE, kind, id as i64],
        )?;
        Ok(())
    }

    fn events_after(&self, approver: &str, after: u64) -> Result<Vec<Pushed>, StoreError> {
        self.rows(BACKLOG_SQL, args![approver, after as i64], |r| {
            Ok(Pushed {
                seq: r.get::<i64>(0)? as u64,
                // Read back as the stream's approver: the stream sends what it reads.
                approver: approver.to_string(),
                kind: r.get(1)?,
                data: r.get::<String>(2)?.into(),
                published: None,
            })
        })
    }
}
