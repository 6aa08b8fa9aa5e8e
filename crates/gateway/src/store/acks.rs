//! What happens to an approval after it is made: the acknowledgements of requests approved
//! without asking (table `acks`, each as its device signed it, once per `ack_id`), and the
//! revocations approvers signed (table `revocations`, with their receipts, once per
//! `decision_id`).

use crate::args;

use super::sql::Db;
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

/// A revocation as stored.
pub struct NewRevocation<'a> {
    pub decision_id: &'a str,
    pub request_id: &'a str,
    pub approver: &'a str,
    /// The signed decision's digest (hex).
    pub digest: &'a str,
    /// The signed decision and its signed receipt, as JSON.
    pub signed: &'a str,
    pub receipt: &'a str,
    pub at: i64,
}

/// The rows of acknowledgements and revocations.
pub trait AckRows {
    /// The digest (hex) and receipt (JSON) of the revocation `decision_id`, if stored.
    fn revocation_receipt(&self, decision_id: &str)
        -> Result<Option<(String, String)>, StoreError>;

    /// Stores a revocation with its receipt.
    fn insert_revocation(&self, r: &NewRevocation<'_>) -> Result<(), StoreError>;

    /// The request that the acknowledgement `ack_id` was stored for, if it was.
    fn ack_request(&self, ack_id: &str) -> Result<Option<String>, StoreError>;

    /// Stores an acknowledgement.
    fn insert_ack(&self, a: &NewAck<'_>) -> Result<(), StoreError>;
}

impl AckRows for Db<'_> {
    fn revocation_receipt(
        &self,
        decision_id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        self.row(
            "SELECT digest, receipt FROM revocations WHERE decision_id = ?1",
            args![decision_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    fn insert_revocation(&self, r: &NewRevocation<'_>) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO revocations(decision_id, request_id, approver, digest, signed, receipt, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            args![r.decision_id, r.request_id, r.approver, r.digest, r.signed, r.receipt, r.at],
        )?;
        Ok(())
    }

    fn ack_request(&self, ack_id: &str) -> Result<Option<String>, StoreError> {
        self.row(
            "SELECT request_id FROM acks WHERE ack_id = ?1",
            args![ack_id],
            |r| r.get(0),
        )
    }

    fn insert_ack(&self, a: &NewAck<'_>) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO acks(ack_id, request_id, approver, device_id, signed, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![
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
