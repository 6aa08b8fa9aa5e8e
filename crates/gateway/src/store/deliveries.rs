//! Outgoing notifications (table `deliveries`, one row per destination and event, with its
//! body and its attempts: webhooks, GitHub callbacks and mail), the position in the audit log
//! up to which entries were turned into deliveries (table `notify_cursor`), and when the last
//! mail digest was made (table `email_digest`).

use crate::args;

use super::sql::Db;
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
    /// When it is first due (`at`, or later for a mail that waits for a grace period).
    pub due_at: i64,
}

/// What became of an attempt that did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Accepted by the destination.
    Delivered,
    /// Not sent, and never to be: why (a mail no longer wanted, a GitHub run no longer
    /// waiting).
    Skipped(String),
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Another attempt at this time.
    RetryAt(i64),
    /// None: the delivery is given up at this time.
    GiveUp(i64),
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

    /// Forgets the cursor: the next look starts at the log's head again.
    fn notify_cursor_forget(&self) -> Result<(), StoreError>;

    /// Stores a delivery, due at once.
    fn delivery_put(&self, d: &NewDelivery<'_>) -> Result<(), StoreError>;

    /// Up to `limit` deliveries due at `now`, oldest first.
    fn deliveries_due(&self, now: i64, limit: u32) -> Result<Vec<DueDelivery>, StoreError>;

    /// Records that delivery `id` was accepted at `now`.
    fn delivery_done(&self, id: &str, now: i64) -> Result<(), StoreError>;

    /// Records that delivery `id` was not sent, and need not be, at `now`, and why.
    fn delivery_skip(&self, id: &str, now: i64, why: &str) -> Result<(), StoreError>;

    /// Records a failed attempt: the attempts made, why, and what follows.
    fn delivery_failed(
        &self,
        id: &str,
        attempts: u32,
        error: &str,
        then: AfterFailure,
    ) -> Result<(), StoreError>;

    /// When the last mail digest was made; `None` before the first.
    fn digest_last(&self) -> Result<Option<i64>, StoreError>;

    /// Records that a digest was made at `at`.
    fn digest_last_set(&self, at: i64) -> Result<(), StoreError>;

    /// A digest's requests: those created at or after `since` and those still pending, oldest
    /// first, at most `limit`: `(signed request, state)`.
    fn digest_requests(&self, since: i64, limit: u32) -> Result<Vec<(String, String)>, StoreError>;

    /// How many deliveries wait (not delivered, not given up).
    fn deliveries_waiting(&self) -> Result<u64, StoreError>;
}

impl DeliveryRows for Db<'_> {
    fn notify_cursor(&self) -> Result<Option<u64>, StoreError> {
        self.row(
            "SELECT next_seq FROM notify_cursor WHERE id = 1",
            args![],
            |r| Ok(r.get::<i64>(0)? as u64),
        )
    }

    fn notify_cursor_set(&self, next_seq: u64) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO notify_cursor(id, next_seq) VALUES (1, ?1) \
             ON CONFLICT(id) DO UPDATE SET next_seq = excluded.next_seq",
            args![next_seq as i64],
        )?;
        Ok(())
    }

    fn notify_cursor_forget(&self) -> Result<(), StoreError> {
        self.exec("DELETE FROM notify_cursor", args![])?;
        Ok(())
    }

    fn delivery_put(&self, d: &NewDelivery<'_>) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO deliveries(id, destination, event, request_id, body, created_at, next_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            args![d.id, d.destination, d.event, d.request_id, d.body, d.at, d.due_at],
        )?;
        Ok(())
    }

    fn deliveries_due(&self, now: i64, limit: u32) -> Result<Vec<DueDelivery>, StoreError> {
        self.rows(
            "SELECT id, destination, event, body, created_at, attempts, request_id FROM deliveries \
             WHERE delivered_at IS NULL AND failed_at IS NULL AND next_at <= ?1 \
             ORDER BY next_at, rowid LIMIT ?2",
            args![now, limit],
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
            args![id, now],
        )?;
        Ok(())
    }

    fn delivery_skip(&self, id: &str, now: i64, why: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE deliveries SET delivered_at = ?2, skipped = ?3 WHERE id = ?1",
            args![id, now, why],
        )?;
        Ok(())
    }

    fn delivery_failed(
        &self,
        id: &str,
        attempts: u32,
        error: &str,
        then: AfterFailure,
    ) -> Result<(), StoreError> {
        let sql = match then {
            AfterFailure::RetryAt(_) => {
                "UPDATE deliveries SET attempts = ?2, last_error = ?3, next_at = ?4 WHERE id = ?1"
            }
            AfterFailure::GiveUp(_) => {
                "UPDATE deliveries SET attempts = ?2, last_error = ?3, failed_at = ?4 WHERE id = ?1"
            }
        };
        let (AfterFailure::RetryAt(at) | AfterFailure::GiveUp(at)) = then;
        self.exec(sql, args![id, attempts, error, at])?;
        Ok(())
    }

    fn digest_last(&self) -> Result<Option<i64>, StoreError> {
        self.row(
            "SELECT last_at FROM email_digest WHERE id = 1",
            args![],
            |r| r.get(0),
        )
    }

    fn digest_last_set(&self, at: i64) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO email_digest(id, last_at) VALUES (1, ?1) \
             ON CONFLICT(id) DO UPDATE SET last_at = excluded.last_at",
            args![at],
        )?;
        Ok(())
    }

    fn digest_requests(&self, since: i64, limit: u32) -> Result<Vec<(String, String)>, StoreError> {
        self.rows(
            "SELECT signed, state FROM requests WHERE created_at >= ?1 OR state = 'pending' \
             ORDER BY created_at, id LIMIT ?2",
            args![since, limit],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    fn deliveries_waiting(&self) -> Result<u64, StoreError> {
        self.one(
            "SELECT count(*) FROM deliveries WHERE delivered_at IS NULL AND failed_at IS NULL",
            args![],
            |r| Ok(r.get::<i64>(0)? as u64),
        )
    }
}
