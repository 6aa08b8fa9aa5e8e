//! What an approval grants after it is made: the [`Grant`] carried by an approved request's
//! status (how long the approval stays valid for the action to start, its revocation, and the
//! first acknowledgement of a break-glass or auto-approved request, which the device-signed
//! [`crate::api::Acknowledgement`] sets).

use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;
use crate::fields::{check_ident, limits};

/// The grant of an approved request, in its status (protocol.md 3.3). Every member is `null`
/// until it happens; a member never goes back to `null`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// When the approval stops being valid for the action to start: the time of approval plus
    /// the request's `grant_seconds`; `null` when the request has none.
    pub expires_at: Option<i64>,
    /// When an integration used the grant to start the action; `null` until then.
    pub used_at: Option<i64>,
    /// When the approval was revoked, and by whom (an approver name, or `admin`).
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    /// The first acknowledgement of a break-glass or auto-approved request, and its approver.
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<String>,
}

impl Grant {
    /// Whether the approval still lets the action start at `now`: not revoked, not used, and
    /// inside its window.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none()
            && self.used_at.is_none()
            && self.expires_at.is_none_or(|e| now < e)
    }

    pub(crate) fn validate(&self) -> Result<(), ProtocolError> {
        if let Some(by) = &self.revoked_by {
            check_ident("grant.revoked_by", by, limits::NAME)?;
        }
        if let Some(by) = &self.acknowledged_by {
            check_ident("grant.acknowledged_by", by, limits::NAME)?;
        }
        if self.revoked_at.is_some() != self.revoked_by.is_some()
            || self.acknowledged_at.is_some() != self.acknowledged_by.is_some()
        {
            return Err(ProtocolError::InvalidField {
                field: "grant",
                reason: "a time and its approver come together".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_is_live_until_revoked_used_or_past_its_window() {
        let g = Grant {
            expires_at: Some(100),
            ..Grant::default()
        };
        assert!(g.is_live(99));
        assert!(!g.is_live(100));
        assert!(Grant::default().is_live(i64::MAX));
        let revoked = Grant {
            revoked_at: Some(5),
            revoked_by: Some("admin".into()),
            ..Grant::default()
        };
        assert!(!revoked.is_live(0));
        revoked.validate().unwrap();
    }

    #[test]
    fn a_time_without_its_approver_is_refused() {
        let g = Grant {
            acknowledged_at: Some(5),
            ..Grant::default()
        };
        assert!(g.validate().is_err());
        let g = Grant {
            revoked_by: Some("admin".into()),
            ..Grant::default()
        };
        assert!(g.validate().is_err());
    }
}
