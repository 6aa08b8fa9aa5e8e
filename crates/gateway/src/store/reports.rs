//! The rows of push-bombing containment (tables `reports` and `blocks`): a report with the
//! acknowledgement answered for it, and the blocks of a requester for an approver.

use crate::args;

use super::sql::Db;
use crate::error::StoreError;

/// A report as stored.
pub struct NewReport<'a> {
    pub report_id: &'a str,
    pub request_id: &'a str,
    pub approver: &'a str,
    pub device_id: &'a str,
    pub requester: &'a str,
    /// The signed report, as JSON.
    pub signed: &'a str,
    /// The acknowledgement answered for it, as JSON.
    pub ack: &'a str,
    pub at: i64,
}

/// The rows of reports and blocks.
pub trait ReportRows {
    /// The acknowledgement (JSON) stored for the report `report_id`, if it was applied before.
    fn report_ack(&self, report_id: &str) -> Result<Option<String>, StoreError>;

    /// Stores a report with its acknowledgement.
    fn insert_report(&self, r: &NewReport<'_>) -> Result<(), StoreError>;

    /// Blocks `requester` for `approver` because of `report_id`, unless already blocked.
    fn insert_block(
        &self,
        requester: &str,
        approver: &str,
        report_id: &str,
        created_at: i64,
    ) -> Result<(), StoreError>;

    /// Whether `approver` blocked `requester`.
    fn is_blocked(&self, requester: &str, approver: &str) -> Result<bool, StoreError>;

    /// The approvers who blocked `requester`, by name.
    fn blocked_for(&self, requester: &str) -> Result<Vec<String>, StoreError>;

    /// Lifts the block of `requester` for `approver`; returns whether there was one.
    fn delete_block(&self, requester: &str, approver: &str) -> Result<bool, StoreError>;
}

impl ReportRows for Db<'_> {
    fn report_ack(&self, report_id: &str) -> Result<Option<String>, StoreError> {
        self.row(
            "SELECT ack FROM reports WHERE report_id = ?1",
            args![report_id],
            |row| row.get(0),
        )
    }

    fn insert_report(&self, r: &NewReport<'_>) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO reports(report_id, request_id, approver, device_id, requester, signed, ack, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            args![
                r.report_id,
                r.request_id,
                r.approver,
                r.device_id,
                r.requester,
                r.signed,
                r.ack,
                r.at
            ],
        )?;
        Ok(())
    }

    fn insert_block(
        &self,
        requester: &str,
        approver: &str,
        report_id: &str,
        created_at: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO blocks(requester, approver, report_id, created_at)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            args![requester, approver, report_id, created_at],
        )?;
        Ok(())
    }

    fn is_blocked(&self, requester: &str, approver: &str) -> Result<bool, StoreError> {
        Ok(self
            .row(
                "SELECT 1 FROM blocks WHERE requester = ?1 AND approver = ?2",
                args![requester, approver],
                |row| row.get::<i64>(0),
            )?
            .is_some())
    }

    fn blocked_for(&self, requester: &str) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT approver FROM blocks WHERE requester = ?1 ORDER BY approver",
            args![requester],
            |row| row.get(0),
        )
    }

    fn delete_block(&self, requester: &str, approver: &str) -> Result<bool, StoreError> {
        let n = self.exec(
            "DELETE FROM blocks WHERE requester = ?1 AND approver = ?2",
            args![requester, approver],
        )?;
        Ok(n > 0)
    }
}
