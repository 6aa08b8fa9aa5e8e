//! The paired devices (table `devices`): a device's row, its public key alone (read before a
//! decision's write lock), and storing a newly paired device.

use rusqlite::params;

use super::sqlite::SqliteTx;
use crate::error::StoreError;

/// A paired device as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub approver: String,
    /// The device's Ed25519 public key, as stored (base64).
    pub public_key: String,
    pub revoked_at: Option<i64>,
}

/// The rows of the paired devices.
pub trait DeviceRows {
    /// The device `id`, revoked or not.
    fn device(&self, id: &str) -> Result<Option<DeviceRow>, StoreError>;

    /// The stored public key of the device `id`, revoked or not.
    fn device_key(&self, id: &str) -> Result<Option<String>, StoreError>;

    /// Stores a newly paired device.
    fn insert_device(
        &self,
        id: &str,
        approver: &str,
        public_key: &str,
        name: &str,
        paired_at: i64,
    ) -> Result<(), StoreError>;
}

impl DeviceRows for SqliteTx<'_> {
    fn device(&self, id: &str) -> Result<Option<DeviceRow>, StoreError> {
        self.row(
            "SELECT approver, public_key, revoked_at FROM devices WHERE id = ?1",
            params![id],
            |r| {
                Ok(DeviceRow {
                    approver: r.get(0)?,
                    public_key: r.get(1)?,
                    revoked_at: r.get(2)?,
                })
            },
        )
    }

    fn device_key(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.row(
            "SELECT public_key FROM devices WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )
    }

    fn insert_device(
        &self,
        id: &str,
        approver: &str,
        public_key: &str,
        name: &str,
        paired_at: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO devices(id, approver, public_key, name, paired_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, approver, public_key, name, paired_at],
        )?;
        Ok(())
    }
}
