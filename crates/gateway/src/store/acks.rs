//! The acknowledgements of requests approved without asking (table `acks`): each one as its
//! device signed it, once per `ack_id`.

use rusqlite::params;

use super::sqlite::SqliteTx;
use crate::error::StoreError;

/// An acknowledgement as stored.
pub struct NewAck<'a> {
    pub ack_id: &'a str,
    pub request_id: &'a str,
    pub approver: &'a str,
    pub device_id: &'a str,
    /// The signed acknowledgement, as JSON.
    pub signed: &'a str,
    pub at: i64,
}

/// The rows of acknowledgements.
pub trait AckRows {
    /// The request that the acknowledgement `ack_id` was stored for, if it was.
    fn ack_request(&self, ack_id: &str) -> Result<Option<String>, StoreError>;

    /// Stores an acknowledgement.
    fn insert_ack(&self, a: &NewAck<'_>) -> Result<(), StoreError>;
}

impl AckRows for SqliteTx<'_> {
    fn ack_request(&self, ack_id: &str) -> Result<Option<String>, StoreError> {
        self.row(
            "SELECT request_id FROM acks WHERE ack_id = ?1",
            params![ack_id],
            |r| r.get(0),
        )
    }

    fn insert_ack(&self, a: &NewAck<'_>) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO acks(ack_id, request_id, approver, device_id, signed, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                a.ack_id,
                a.request_id,
                a.approver,
                a.device_id,
                a.signed,
                a.at
            ],
        )?;
        Ok(())
    }
}
