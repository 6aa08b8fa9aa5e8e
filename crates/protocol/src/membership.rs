//! The gateway's signed statement of who an approver is and which groups they are in
//! ([`Membership`], protocol.md 3.23): sent to the approver's devices when it changes, so a
//! device knows which group stages it is eligible for from signed data rather than from
//! having been sent a request.

use serde::{Deserialize, Serialize};

use crate::canonical::domain;
use crate::error::ProtocolError;
use crate::fields::{check_ident, check_u53, check_version, limits};
use crate::types::{Decode, SignedBody};

/// The most groups one membership lists.
pub const MAX_GROUPS: usize = 256;

/// Who an approver is in the gateway's directory, and their groups, as of `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub v: u32,
    /// Fingerprint of the gateway key that signs it.
    pub gateway: String,
    pub approver: String,
    /// The approver's directory person; `null` when the approver is in no entry (removed).
    pub person: Option<String>,
    /// The person's groups: sorted by byte value, without duplicates.
    pub groups: Vec<String>,
    /// Per approver, 1 for the first statement and +1 for every change; a device applies only
    /// a higher one.
    pub seq: u64,
    /// When the gateway saw the change.
    pub issued_at: i64,
}

impl SignedBody for Membership {
    const DOMAIN: &'static str = domain::MEMBERSHIP;
}

impl Decode for Membership {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("gateway", &self.gateway, limits::ID)?;
        check_ident("approver", &self.approver, limits::NAME)?;
        if let Some(p) = &self.person {
            check_ident("person", p, limits::NAME)?;
        }
        if self.groups.len() > MAX_GROUPS {
            return Err(ProtocolError::InvalidField {
                field: "groups",
                reason: format!("more than {MAX_GROUPS} groups"),
            });
        }
        for g in &self.groups {
            check_ident("groups", g, limits::NAME)?;
        }
        if self.groups.windows(2).any(|w| w[0] >= w[1]) {
            return Err(ProtocolError::InvalidField {
                field: "groups",
                reason: "groups must be sorted by byte value, without duplicates".into(),
            });
        }
        check_u53("seq", self.seq, 1)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(groups: &[&str]) -> Membership {
        Membership {
            v: crate::PROTOCOL_VERSION,
            gateway: "f".repeat(64),
            approver: "ann@example.com".into(),
            person: Some("ann".into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            seq: 1,
            issued_at: 0,
        }
    }

    #[test]
    fn groups_are_sorted_and_unique() {
        m(&["dba", "managers"]).validate().unwrap();
        assert!(m(&["managers", "dba"]).validate().is_err());
        assert!(m(&["dba", "dba"]).validate().is_err());
        assert!(m(&["has space"]).validate().is_err());
        let zero = Membership { seq: 0, ..m(&[]) };
        assert!(zero.validate().is_err());
    }
}
