//! The operations the Kubernetes admission webhook holds (table `admission_holds`): each
//! request created for an operation, under the key of that exact operation, so that its retry
//! finds the request and, once it is approved, uses its grant.

use crate::args;

use super::sql::Db;
use crate::error::StoreError;

/// The rows of held admission operations.
pub trait AdmissionRows {
    /// Records that request `request_id` was created at `at` for the operation `op_key`.
    fn admission_hold_put(&self, op_key: &str, request_id: &str, at: i64)
        -> Result<(), StoreError>;

    /// The request created last for the operation `op_key`.
    fn admission_hold_newest(&self, op_key: &str) -> Result<Option<String>, StoreError>;
}

impl AdmissionRows for Db<'_> {
    fn admission_hold_put(
        &self,
        op_key: &str,
        request_id: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO admission_holds(op_key, request_id, created_at) \
             VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            args![op_key, request_id, at],
        )?;
        Ok(())
    }

    fn admission_hold_newest(&self, op_key: &str) -> Result<Option<String>, StoreError> {
        self.row(
            "SELECT request_id FROM admission_holds WHERE op_key = ?1 \
             ORDER BY created_at DESC, rowid DESC LIMIT 1",
            args![op_key],
            |r| r.get(0),
        )
    }
}
