//! The membership statement last sent to each approver (table `memberships`): its `seq`, and
//! the person and groups it named.

use crate::args;

use super::sql::Db;
use crate::error::StoreError;

/// The membership last sent to an approver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRow {
    pub approver: String,
    pub seq: u64,
    pub person: Option<String>,
    /// Sorted.
    pub groups: Vec<String>,
}

impl From<MembershipRow> for crate::hub::Member {
    fn from(m: MembershipRow) -> Self {
        crate::hub::Member {
            person: m.person,
            groups: m.groups,
        }
    }
}

/// The rows of memberships.
pub trait MembershipRows {
    /// Every approver's last membership.
    fn memberships(&self) -> Result<Vec<MembershipRow>, StoreError>;

    /// The last membership sent to `approver`, if any.
    fn membership_of(&self, approver: &str) -> Result<Option<MembershipRow>, StoreError>;

    /// Records the membership sent to `row.approver` at `now`.
    fn put_membership(&self, row: &MembershipRow, now: i64) -> Result<(), StoreError>;
}

impl MembershipRows for Db<'_> {
    fn memberships(&self) -> Result<Vec<MembershipRow>, StoreError> {
        let rows: Vec<Raw> = self.rows(
            "SELECT approver, seq, person, groups FROM memberships ORDER BY approver",
            args![],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        decode(rows)
    }

    fn membership_of(&self, approver: &str) -> Result<Option<MembershipRow>, StoreError> {
        let rows: Vec<Raw> = self.rows(
            "SELECT approver, seq, person, groups FROM memberships WHERE approver = ?1",
            args![approver],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        Ok(decode(rows)?.pop())
    }

    fn put_membership(&self, row: &MembershipRow, now: i64) -> Result<(), StoreError> {
        let groups = serde_json::to_string(&row.groups)
            .map_err(|e| StoreError::Corrupt(format!("memberships.groups: {e}")))?;
        self.exec(
            "INSERT INTO memberships(approver, seq, person, groups, issued_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(approver) DO UPDATE SET seq = ?2, person = ?3, groups = ?4, issued_at = ?5",
            args![row.approver, row.seq as i64, row.person, groups, now],
        )?;
        Ok(())
    }
}

type Raw = (String, i64, Option<String>, String);

fn decode(rows: Vec<Raw>) -> Result<Vec<MembershipRow>, StoreError> {
    rows.into_iter()
        .map(|(approver, seq, person, groups)| {
            Ok(MembershipRow {
                approver,
                seq: u64::try_from(seq).unwrap_or(0),
                person,
                groups: serde_json::from_str(&groups)
                    .map_err(|e| StoreError::Corrupt(format!("memberships.groups: {e}")))?,
            })
        })
        .collect()
}
