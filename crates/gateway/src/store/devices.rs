//! The paired devices (table `devices`): a device's row, its public key alone (read before a
//! decision's write lock), and storing a newly paired device.

use crate::args;

use super::sql::{Db, Dialect};
use crate::error::StoreError;

/// A paired device as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub approver: String,
    /// The device's Ed25519 public key, as stored (base64).
    pub public_key: String,
    pub revoked_at: Option<i64>,
    pub paired_at: i64,
}

/// A device as an administrator lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceListing {
    pub id: String,
    pub approver: String,
    pub name: String,
    pub paired_at: i64,
    pub revoked_at: Option<i64>,
    /// Its latest decision, report or audit checkpoint.
    pub last_seen_at: Option<i64>,
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

    /// Every device, or `approver`'s, in pairing order.
    fn device_listing(&self, approver: Option<&str>) -> Result<Vec<DeviceListing>, StoreError>;

    /// Revokes the device `id`; false if it is unknown or revoked already.
    fn revoke_device(&self, id: &str, at: i64) -> Result<bool, StoreError>;

    /// The devices revoked at or after `since` (by any process on the database).
    fn revoked_since(&self, since: i64) -> Result<Vec<String>, StoreError>;
}

/// The devices (of one approver, `?1`, or all), each with when it was last seen: its last
/// decision, report or checkpoint. SQLite's scalar `max` is PostgreSQL's `greatest`, and the
/// JSON paths differ.
const DEVICE_LISTING_SQLITE: &str = "SELECT d.id, d.approver, d.name, d.paired_at, d.revoked_at,
        max(coalesce((SELECT max(at) FROM decisions
                      WHERE json_extract(signed, '$.body.device_id') = d.id), 0),
            coalesce((SELECT max(at) FROM reports WHERE device_id = d.id), 0),
            coalesce((SELECT received_at FROM device_checkpoints WHERE device = d.id), 0))
     FROM devices d WHERE CAST(?1 AS TEXT) IS NULL OR d.approver = ?1 ORDER BY d.paired_at, d.id";
const DEVICE_LISTING_POSTGRES: &str = "SELECT d.id, d.approver, d.name, d.paired_at, d.revoked_at,
        greatest(coalesce((SELECT max(at) FROM decisions
                           WHERE signed::json #>> '{body,device_id}' = d.id), 0),
            coalesce((SELECT max(at) FROM reports WHERE device_id = d.id), 0),
            coalesce((SELECT received_at FROM device_checkpoints WHERE device = d.id), 0))
     FROM devices d WHERE CAST(?1 AS TEXT) IS NULL OR d.approver = ?1 ORDER BY d.paired_at, d.id";

impl DeviceRows for Db<'_> {
    fn device(&self, id: &str) -> Result<Option<DeviceRow>, StoreError> {
        self.row(
            "SELECT approver, public_key, revoked_at, paired_at FROM devices WHERE id = ?1",
            args![id],
            |r| {
                Ok(DeviceRow {
                    approver: r.get(0)?,
                    public_key: r.get(1)?,
                    revoked_at: r.get(2)?,
                    paired_at: r.get(3)?,
                })
            },
        )
    }

    fn device_key(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.row(
            "SELECT public_key FROM devices WHERE id = ?1",
            args![id],
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
            args![id, approver, public_key, name, paired_at],
        )?;
        Ok(())
    }

    fn device_listing(&self, approver: Option<&str>) -> Result<Vec<DeviceListing>, StoreError> {
        let sql = match self.dialect() {
            Dialect::Sqlite => DEVICE_LISTING_SQLITE,
            Dialect::Postgres => DEVICE_LISTING_POSTGRES,
        };
        self.rows(sql, args![approver], |r| {
            let seen: i64 = r.get(5)?;
            Ok(DeviceListing {
                id: r.get(0)?,
                approver: r.get(1)?,
                name: r.get(2)?,
                paired_at: r.get(3)?,
                revoked_at: r.get(4)?,
                last_seen_at: (seen > 0).then_some(seen),
            })
        })
    }

    fn revoke_device(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let n = self.exec(
            "UPDATE devices SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            args![id, at],
        )?;
        Ok(n == 1)
    }

    fn revoked_since(&self, since: i64) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT id FROM devices WHERE revoked_at >= ?1",
            args![since],
            |r| r.get(0),
        )
    }
}
