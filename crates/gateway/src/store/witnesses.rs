//! The devices' cosignatures of the log's checkpoints (table `log_cosignatures`, one per
//! checkpoint and device), and the lookups of stored checkpoints that witnessing needs.

use crate::args;

use super::sql::Db;
use crate::error::StoreError;

/// The rows of the log's witnesses.
pub trait WitnessRows {
    /// The stored checkpoint of exactly `size` leaves: its note.
    fn log_checkpoint_of(&self, size: u64) -> Result<Option<String>, StoreError>;

    /// Keeps the cosignature line of `device` on the checkpoint of `size` leaves (the first one
    /// the device sent is kept).
    fn cosignature_put(
        &self,
        size: u64,
        device: &str,
        line: &str,
        at: i64,
    ) -> Result<(), StoreError>;

    /// The cosignatures of the checkpoint of `size` leaves, by device id: (device, line).
    fn cosignatures_of(&self, size: u64) -> Result<Vec<(String, String)>, StoreError>;

    /// The smallest checkpoint of at least `size` leaves that a device cosigned: its size and
    /// note.
    fn log_checkpoint_witnessed(&self, size: u64) -> Result<Option<(u64, String)>, StoreError>;
}

impl WitnessRows for Db<'_> {
    fn log_checkpoint_of(&self, size: u64) -> Result<Option<String>, StoreError> {
        self.row(
            "SELECT note FROM log_checkpoints WHERE size = ?1",
            args![size as i64],
            |r| r.get(0),
        )
    }

    fn cosignature_put(
        &self,
        size: u64,
        device: &str,
        line: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO log_cosignatures(size, device, line, received_at) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            args![size as i64, device, line, at],
        )?;
        Ok(())
    }

    fn cosignatures_of(&self, size: u64) -> Result<Vec<(String, String)>, StoreError> {
        self.rows(
            "SELECT device, line FROM log_cosignatures WHERE size = ?1 ORDER BY device",
            args![size as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    fn log_checkpoint_witnessed(&self, size: u64) -> Result<Option<(u64, String)>, StoreError> {
        self.row(
            "SELECT c.size, c.note FROM log_checkpoints c WHERE c.size >= ?1 \
             AND EXISTS (SELECT 1 FROM log_cosignatures w WHERE w.size = c.size) \
             ORDER BY c.size LIMIT 1",
            args![size as i64],
            |r| Ok((r.get::<i64>(0)? as u64, r.get(1)?)),
        )
    }
}
