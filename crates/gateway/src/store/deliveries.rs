//! Outgoing webhooks (table `deliveries`, one row per destination and event, with its body and
//! its attempts) and the position in the audit log up to which entries were turned into
//! deliveries (table `notify_cursor`).

use rusqlite::params;

use super::sqlite::SqliteTx;
use crate::error::StoreError;

/// A delivery to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery<'a> {
    pub id: &'a str,
    pub destination: &'a str,
    pub event: &'a str,
    pub request_id: &'a str,
    pub body: &'a str,
    pub at: i64,
}

/// A delivery not yet delivered nor given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub id: String,
    pub destination: String,
    pub event: String,
    pub request_id: String,
    pub body: String,
    pub created_at: i64,
    pub attempts: u32,
}

/// The rows of outgoing webhooks.
pub trait DeliveryRows {
    /// The `seq` of the first audit entry not yet looked at; `None` before the first look.
    fn notify_cursor(&self) -> Result<Option<u64>, StoreError>;

    /// Moves the cursor to `next_seq`.
    fn notify_cursor_set(&self, next_seq: u64) -> Result<(), StoreError>;

    /// Stores a delivery, due at once.
    fn delivery_put(&self, d: &NewDelivery<'_>) -> Result<(), StoreError>;

    /// Up to `limit` deliveries due at `now`, oldest first.
    fn deliveries_due(&self, now: i64, limit: u32) -> Result<Vec<DueDelivery>, StoreError>;

    /// Records that delivery `id` was accepted at `now`.
    fn delivery_done(&self, id: &str, now: i64) -> Result<(), StoreError>;

    /// Records a failed attempt: the attempts made, when the next is due, and why.
    fn delivery_retry(
        &self,
        id: &str,
        attempts: u32,
        next_at: i64,
        error: &str,
    ) -> Result<(), StoreError>;

    /// Gives delivery `id` up at `now`, after `attempts`.
    fn delivery_give_up(
        &self,
        id: &str,
        attempts: u32,
        now: i64,
        error: &str,
    ) -> Result<(), StoreError>;

    /// How many deliveries wait (not delivered, not given up).
    fn deliveries_waiting(&self) -> Result<u64, StoreError>;
}

impl DeliveryRows for SqliteTx<'_> {
    fn notify_cursor(&self) -> Result<Option<u64>, StoreError> {
        self.row(
            "SELECT next_seq FROM notify_cursor WHERE id = 1",
            params![],
            |r| Ok(r.get::<_, i64>(0)? as u64),
        )
    }

    fn notify_cursor_set(&self, next_seq: u64) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO notify_cursor(id, next_seq) VALUES (1, ?1) \
             ON CONFLICT(id) DO UPDATE SET next_seq = excluded.next_seq",
            params![next_seq as i64],
        )?;
        Ok(())
    }

    fn delivery_put(&self, d: &NewDelivery<'_>) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO deliveries(id, destination, event, request_id, body, created_at, next_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![d.id, d.destination, d.event, d.request_id, d.body, d.at],
        )?;
        Ok(())
    }

    fn deliveries_due(&self, now: i64, limit: u32) -> Result<Vec<DueDelivery>, StoreError> {
        self.rows(
            "SELECT id, destination, event, body, created_at, attempts, request_id FROM deliveries \
             WHERE delivered_at IS NULL AND failed_at IS NULL AND next_at <= ?1 \
             ORDER BY next_at, rowid LIMIT ?2",
            params![now, limit],
            |r| {
                Ok(DueDelivery {
                    id: r.get(0)?,
                    destination: r.get(1)?,
                    event: r.get(2)?,
                    body: r.get(3)?,
                    created_at: r.get(4)?,
                    attempts: r.get(5)?,
                    request_id: r.get(6)?,
                })
            },
        )
    }

    fn delivery_done(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE deliveries SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL \
             WHERE id = ?1",
            params![id, now],
        )?;
        Ok(())
    }

    fn delivery_retry(
        &self,
        id: &str,
        attempts: u32,
        next_at: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.exec(
            "UPDATE deliveries SET attempts = ?2, next_at = ?3, last_error = ?4 WHERE id = ?1",
            params![id, attempts, next_at, error],
        )?;
        Ok(())
    }

    fn delivery_give_up(
        &self,
        id: &str,
        attempts: u32,
        now: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.exec(
            "UPDATE deliveries SET attempts = ?2, failed_at = ?3, last_error = ?4 WHERE id = ?1",
            params![id, attempts, now, error],
        )?;
        Ok(())
    }

    fn deliveries_waiting(&self) -> Result<u64, StoreError> {
        self.one(
            "SELECT count(*) FROM deliveries WHERE delivered_at IS NULL AND failed_at IS NULL",
            params![],
            |r| Ok(r.get::<_, i64>(0)? as u64),
        )
    }
}
