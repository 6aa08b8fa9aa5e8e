//! The stored push events (table `events`, one row per approver, or one row for a wide
//! audience): storing an event inside the
//! write that causes it, and an approver's backlog after a sequence number, which a connecting
//! or lagging stream reads (see `stream`). The committer publishes what a write stored once its
//! batch committed (see `hub`).

use crate::args;

use super::sql::{Db, Dialect};
use crate::error::StoreError;
use crate::hub::{Member, Pushed, Wide};

/// The `approver` of an event addressed to every device (audience `all`): not an approver
/// name, which is an identifier.
pub const EVERYONE: &str = "*";

/// The `approver` of an event sent once to a wide audience (column `audience`: a [`Wide`]).
pub const WIDE: &str = "+";

/// An approver's (`?1`) stored events, those to every device and those to a wide audience,
/// after a sequence number (`?2`), in order. The wide ones are then kept only if they include
/// the approver.
pub(super) const BACKLOG_SQL: &str = "SELECT seq, kind, data, audience FROM events \
     WHERE (approver = ?1 OR approver = '*' OR approver = '+') AND seq > ?2 ORDER BY seq";

/// The `audience` column of a wide event.
pub(crate) fn wide_of(text: Option<String>) -> Result<Option<std::sync::Arc<Wide>>, StoreError> {
    text.map(|t| {
        serde_json::from_str::<Wide>(&t)
            .map(std::sync::Arc::new)
            .map_err(|e| StoreError::Corrupt(format!("events.audience: {e}")))
    })
    .transpose()
}

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
    /// this same transaction (the `data` is a signed envelope that names the id); `wide` is
    /// the audience of an event whose `approver` is [`WIDE`].
    fn insert_event(
        &self,
        id: u64,
        approver: &str,
        kind: &str,
        data: &str,
        wide: Option<&Wide>,
    ) -> Result<(), StoreError>;

    /// Removes the stored events of `kind` to every device below `id`: a newer one (a log
    /// checkpoint) makes them redundant, so a device's backlog holds only the newest.
    fn drop_older_to_everyone(&self, kind: &str, id: u64) -> Result<(), StoreError>;

    /// The signed status updates pushed for request `id` (the `status` events' payloads, one
    /// per status `seq`: every approver got the same body), in `seq` order.
    fn statuses_pushed(&self, id: &str) -> Result<Vec<String>, StoreError>;

    /// The events stored for `approver` (to it, to every device, and to a wide audience that
    /// includes it as `member`) after sequence number `after`, in order.
    fn events_after(
        &self,
        approver: &str,
        member: &Member,
        after: u64,
    ) -> Result<Vec<Pushed>, StoreError>;
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
        wide: Option<&Wide>,
    ) -> Result<(), StoreError> {
        let audience = wide
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("events.audience: {e}")))?;
        self.exec(
            "INSERT INTO events(seq, approver, kind, data, audience) VALUES (?1, ?2, ?3, ?4, ?5)",
            args![id as i64, approver, kind, data, audience],
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

    fn events_after(
        &self,
        approver: &str,
        member: &Member,
        after: u64,
    ) -> Result<Vec<Pushed>, StoreError> {
        let rows: Vec<(i64, String, String, Option<String>)> =
            self.rows(BACKLOG_SQL, args![approver, after as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
        let mut out = Vec::with_capacity(rows.len());
        for (seq, kind, data, audience) in rows {
            let wide = wide_of(audience)?;
            if wide.as_ref().is_some_and(|w| !w.includes(approver, member)) {
                continue;
            }
            out.push(Pushed {
                seq: seq as u64,
                // Read back as the stream's approver: the stream sends what it reads.
                approver: approver.to_string(),
                wide,
                kind,
                data: data.into(),
                published: None,
            });
        }
        Ok(out)
    }
}
