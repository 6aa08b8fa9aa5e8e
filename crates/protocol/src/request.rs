//! The approval request as the gateway signs it (protocol.md 3.1): its risk, its list form
//! or stages, and the rules checked when it is decoded.

use serde::{Deserialize, Serialize};

use crate::canonical::domain;
use crate::error::ProtocolError;
use crate::fields::{check_ident, check_len, check_nonempty, check_version, limits};
use crate::stages::{check_stages, check_windows, Mode, PolicyRef, Stage, NAMED_STAGE};
use crate::types::{Decode, SignedBody};

/// How risky the gateway judges an action. It drives notification urgency and display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
}

/// An approval request as the gateway signs it. The requester identity is the one the gateway
/// authenticated (a token's name), never a value the requester typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    pub v: u32,
    pub id: String,
    /// Fingerprint of the gateway key that signs this request.
    pub gateway: String,
    pub action: String,
    pub resource: String,
    pub risk: Risk,
    pub summary: String,
    pub detail: String,
    pub requester: String,
    pub reason: String,
    /// Unix seconds.
    pub created_at: i64,
    pub not_before: i64,
    pub expires_at: i64,
    /// The approvers of a request in the list form (protocol.md 3.1): requests signed before
    /// stages existed. A gateway now writes `stages` and leaves this empty, and then omitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// With `approvers`: how many of them must approve. Omitted when zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_approvals: u32,
    /// When true the approver must type the code the requester was shown.
    pub match_required: bool,
    /// When true a denial must carry a passkey assertion too. Omitted when false, so requests
    /// signed before it existed keep their canonical form.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deny_needs_passkey: bool,
    /// The stages of approval, combined with AND (protocol.md 3.1a). Every member omitted
    /// when it has its default value, so that a request in the list form keeps its canonical
    /// form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
    #[serde(default, skip_serializing_if = "Mode::is_ask")]
    pub mode: Mode,
    /// One person's approval counts toward at most one stage. Omitted when true.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub distinct_people: bool,
    /// The directory entry of the requester, when its token belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester_person: Option<String>,
    /// The policy rule that produced `stages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    /// How long an approval stays valid for the action to start, from approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_seconds: Option<u32>,
    /// The time windows the policy allows, for people to read; the gateway enforces them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl ApprovalRequest {
    /// Whether the request is in the list form that gateways signed before stages (`approvers`
    /// and `min_approvals`, no `stages`).
    pub fn is_list_form(&self) -> bool {
        self.stages.is_empty() && !self.approvers.is_empty()
    }

    /// The request's stages: `stages`, or for a request in the list form its one stage
    /// [`NAMED_STAGE`] of `min_approvals` of `approvers`.
    pub fn effective_stages(&self) -> std::borrow::Cow<'_, [Stage]> {
        if self.stages.is_empty() && !self.approvers.is_empty() {
            std::borrow::Cow::Owned(vec![Stage {
                name: NAMED_STAGE.to_string(),
                approvers: Some(self.approvers.clone()),
                group: None,
                min: self.min_approvals,
            }])
        } else {
            std::borrow::Cow::Borrowed(&self.stages)
        }
    }

    /// The approvers named by the request's list stages, sorted, each once.
    pub fn named_approvers(&self) -> Vec<String> {
        let mut named: Vec<String> = self
            .effective_stages()
            .iter()
            .flat_map(|s| s.approvers.iter().flatten().cloned())
            .collect();
        named.sort();
        named.dedup();
        named
    }

    /// Whether an approver whose person is in `groups` is eligible for some stage.
    pub fn admits(&self, approver: &str, groups: &[String]) -> bool {
        self.effective_stages()
            .iter()
            .any(|s| s.admits(approver, groups))
    }

    /// The approvals needed in all: the sum of the stages' `min`.
    pub fn quorum_total(&self) -> u32 {
        self.effective_stages().iter().map(|s| s.min).sum()
    }
}

impl SignedBody for ApprovalRequest {
    const DOMAIN: &'static str = domain::REQUEST;
}

impl Decode for ApprovalRequest {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("id", &self.id, limits::ID)?;
        check_ident("gateway", &self.gateway, limits::ID)?;
        check_ident("action", &self.action, limits::ACTION)?;
        check_nonempty("resource", &self.resource, limits::RESOURCE)?;
        check_nonempty("summary", &self.summary, limits::SUMMARY)?;
        check_len("detail", &self.detail, limits::DETAIL)?;
        check_ident("requester", &self.requester, limits::NAME)?;
        check_len("reason", &self.reason, limits::REASON)?;
        match (self.approvers.is_empty(), self.stages.is_empty()) {
            (false, true) => {
                if self.approvers.len() > limits::APPROVERS {
                    return Err(ProtocolError::InvalidField {
                        field: "approvers",
                        reason: format!("must list 1 to {} approvers", limits::APPROVERS),
                    });
                }
                for a in &self.approvers {
                    check_ident("approvers", a, limits::NAME)?;
                }
                if self.min_approvals == 0 || self.min_approvals as usize > self.approvers.len() {
                    return Err(ProtocolError::InvalidField {
                        field: "min_approvals",
                        reason: "must be between 1 and the number of approvers".into(),
                    });
                }
                if !self.mode.is_ask() || self.policy.is_some() {
                    return Err(ProtocolError::InvalidField {
                        field: "approvers",
                        reason: "the list form has no mode or policy; use stages".into(),
                    });
                }
            }
            (true, false) => {
                if self.min_approvals != 0 {
                    return Err(ProtocolError::InvalidField {
                        field: "min_approvals",
                        reason: "a request with stages has no min_approvals".into(),
                    });
                }
                check_stages(&self.stages)?;
            }
            (true, true) if !self.mode.is_ask() => {}
            (true, true) => {
                return Err(ProtocolError::InvalidField {
                    field: "stages",
                    reason: "a request that approvers decide needs at least one stage".into(),
                })
            }
            (false, false) => {
                return Err(ProtocolError::InvalidField {
                    field: "approvers",
                    reason: "a request has either approvers (the list form) or stages, not both"
                        .into(),
                })
            }
        }
        if let Some(p) = &self.requester_person {
            check_ident("requester_person", p, limits::NAME)?;
        }
        if let Some(p) = &self.policy {
            p.validate()?;
        }
        check_windows(&self.windows)?;
        if self.not_before > self.expires_at || self.created_at > self.expires_at {
            return Err(ProtocolError::InvalidField {
                field: "expires_at",
                reason: "expires before it becomes valid".into(),
            });
        }
        Ok(())
    }
}
