//! The devices' audit checkpoints (table `device_checkpoints`, the highest one per device).

use crate::args;

use super::sql::Db;
use crate::error::StoreError;

/// The rows of the devices' checkpoints.
pub trait CheckpointRows {
    /// The signed checkpoint held for `device`, as stored.
    fn device_checkpoint(&self, device: &str) -> Result<Option<String>, StoreError>;

    /// Holds the signed checkpoint at `seq` with `head` (hex) for `device`, replacing the one
    /// held before.
    fn put_device_checkpoint(
        &self,
        device: &str,
        seq: u64,
        head: &str,
        signed: &str,
        received_at: i64,
    ) -> Result<(), StoreError>;
}

impl CheckpointRows for Db<'_> {
    fn device_checkpoint(&self, device: &str) -> Result<Option<String>, StoreError> {
        self.row(
            "SELECT signed FROM device_checkpoints WHERE device = ?1",
            args![device],
            |r| r.get(0),
        )
    }

    fn put_device_checkpoint(
        &self,
        device: &str,
        seq: u64,
        head: &str,
        signed: &str,
        received_at: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO device_checkpoints (device, seq, head, signed, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(device) DO UPDATE SET seq = ?2, head = ?3, signed = ?4, received_at = ?5",
            args![device, seq as i64, head, signed, received_at],
        )?;
        Ok(())
    }
}
