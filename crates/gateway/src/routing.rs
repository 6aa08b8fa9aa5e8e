//! Who may approve a request. At creation, the policy in force routes a new request: the stages
//! it needs, narrowed by what the requester named, and the approvers it is addressed to. At a
//! decision, the deciding approver's eligibility: their person, and the stages they may approve
//! for. The hard rules hold here whatever the policy says: the requester's person is never
//! eligible, and nobody outside the stages is.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use countersign_protocol::api::{ErrorCode, NewRequest};
use countersign_protocol::stages::{check_stages, credit, Ballot};
use countersign_protocol::{ApprovalRequest, Digest, Mode, PolicyRef, Stage};

use crate::directory::{person_of, IdentityKind};
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::passkeys::passkeys_of;
use crate::policy::{Outcome, Requester};
use crate::store::Tx;

/// Who the deciding approver is at the moment of the decision: their person and the stages
/// (indices, ascending) they are eligible for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Eligibility {
    pub(crate) person: Option<String>,
    pub(crate) stages: Vec<u32>,
}

/// The eligibility of `approver` for `request` in the directory as `tx` sees it: listed, not
/// the requester's person, and in a stage's list or group (`not_eligible`, `own_request`).
pub(crate) fn eligibility(
    tx: &dyn Tx,
    approver: &str,
    request: &ApprovalRequest,
) -> Result<Eligibility, ApiError> {
    let Some(person) = person_of(tx, IdentityKind::Approver, approver)? else {
        return Err(ApiError::forbidden(
            ErrorCode::NotEligible,
            format!("{approver} is no longer in the gateway's directory."),
        ));
    };
    let asking = crate::directory::requester_person(tx, &request.requester)?;
    if asking.as_deref() == Some(&person) || request.requester_person.as_deref() == Some(&person) {
        return Err(ApiError::forbidden(
            ErrorCode::OwnRequest,
            format!(
                "{approver} and the requester {} are the same person ({person}) in the gateway's directory: nobody decides their own request.",
                request.requester
            ),
        ));
    }
    let groups = tx.groups_of(&person)?;
    let stages: Vec<u32> = request
        .effective_stages()
        .iter()
        .enumerate()
        .filter(|(_, s)| s.admits(approver, &groups))
        .map(|(i, _)| i as u32)
        .collect();
    if stages.is_empty() {
        return Err(ApiError::forbidden(
            ErrorCode::NotEligible,
            format!("{approver} is not eligible for any stage of this request."),
        ));
    }
    Ok(Eligibility {
        person: Some(person),
        stages,
    })
}

/// The most approvers one request is addressed to: each costs one row in the request's write
/// (its ceremony state, or the mark that it asks on demand). Up to the gateway's
/// `prechallenge_max` each gets its own signed `request` event and challenge; above it they ask
/// for their challenges on demand and the request's events go once to its audience
/// (protocol.md 3.12), so a group of thousands costs one event.
pub(crate) const MAX_ADDRESSEES: usize = 16_384;

/// The request's risk as signed: the higher of the requester's claim (default medium) and the
/// policy's judgement.
pub(crate) fn effective_risk(new: &NewRequest, outcome: &Outcome) -> countersign_protocol::Risk {
    let claimed = new.risk.unwrap_or_default();
    outcome.risk.map_or(claimed, |r| r.max(claimed))
}

/// A new request as the policy routed it.
#[derive(Debug)]
pub(crate) struct Routed {
    /// What the policy answered.
    pub(crate) outcome: Outcome,
    pub(crate) policy: PolicyRef,
    /// The stages, narrowed by the requester.
    pub(crate) stages: Vec<Stage>,
    /// Every approver eligible for a stage, with a passkey, never the requester's person.
    pub(crate) addressees: Vec<String>,
    pub(crate) requester: Requester,
}

/// A refusal of the policy, or of the hard rules, at creation: the error answered, and the
/// policy rule that refused if one did (for the audit log).
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) error: ApiError,
    pub(crate) rule: Option<String>,
}

impl Refused {
    /// `error`, answered for the policy's rule `rule`.
    fn by(rule: &str, error: ApiError) -> Refused {
        Refused {
            error,
            rule: Some(rule.to_owned()),
        }
    }
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Refused { error, rule: None }
    }
}

impl From<crate::error::StoreError> for Refused {
    fn from(e: crate::error::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

/// Routes `new` from `requester` (its token name, or an integration's requester) in `groups`
/// at `now` through the policy in force, with `named` the approvers the requester named
/// (trimmed, sorted, unique).
pub(crate) fn route(
    gw: &Gateway,
    tx: &dyn Tx,
    requester: &str,
    groups: &[String],
    new: &NewRequest,
    named: &[String],
    now: i64,
) -> Result<Routed, Refused> {
    let mut requester = crate::tokens::requester(tx, requester)?;
    requester.groups = groups.to_vec();
    let policy = gw.policy();
    let input = crate::policy::input(new, &requester, now);
    let outcome = policy.evaluate(&input).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::PolicyError,
            format!("The gateway's policy gave no answer, so nothing was created: {e}."),
        )
    })?;
    let refused = |code: ErrorCode, message: String| {
        Refused::by(&outcome.rule, ApiError::forbidden(code, message))
    };
    if !outcome.allow {
        return Err(refused(
            ErrorCode::PolicyRefused,
            format!(
                "The gateway's policy refused this request (rule {}): {}",
                outcome.rule, outcome.message
            ),
        ));
    }
    match outcome.mode {
        Mode::Ask => {}
        Mode::Auto => {
            let risk = effective_risk(new, &outcome);
            if !gw.config.auto_approve_max_risk.admits(risk) {
                return Err(refused(
                    ErrorCode::PolicyRefused,
                    format!(
                        "The policy's rule {} approves this {} risk request by itself, above this gateway's ceiling for auto-approval ({}); nothing was created.",
                        outcome.rule,
                        risk.as_str(),
                        gw.config.auto_approve_max_risk.as_str()
                    ),
                ));
            }
        }
        Mode::BreakGlass => {
            // Only when the requester asked to, and with a reason the approvers will read.
            if !new.break_glass {
                return Err(refused(
                    ErrorCode::PolicyRefused,
                    format!(
                        "The policy's rule {} breaks glass, but the requester did not ask to break glass; nothing was created.",
                        outcome.rule
                    ),
                ));
            }
            if new.reason.trim().is_empty() {
                return Err(Refused::by(
                    &outcome.rule,
                    ApiError::bad_request(
                        ErrorCode::ReasonRequired,
                        "Breaking glass needs a reason, which every eligible approver reads; nothing was created.",
                    ),
                ));
            }
        }
    }
    let policy_ref = PolicyRef {
        rule: outcome.rule.clone(),
        policy_hash: Digest::parse("policy.hash", &policy.hash)
            .map_err(|e| ApiError::internal("policy hash", e))?,
        directory_hash: Digest::parse("directory.hash", &policy.directory_hash)
            .map_err(|e| ApiError::internal("directory hash", e))?,
    };
    if outcome.mode == Mode::Auto {
        // Never on a directory older than the store's (a reload refused, or a change since).
        if tx.directory_version()? != policy.directory_version {
            return Err(Refused::by(&outcome.rule, ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::PolicyError,
                    "The gateway's policy was loaded with an older directory than the one it keeps, so it approves nothing by itself until it loads again; nothing was created.",
                )));
        }
        // Approved by the policy: nobody is asked, so nothing is routed and no stage signed.
        return Ok(Routed {
            outcome,
            policy: policy_ref,
            stages: Vec::new(),
            addressees: Vec::new(),
            requester,
        });
    }
    let mut stages = outcome.request_stages();
    let mut members = members_of(tx, &stages, requester.person.as_deref(), &outcome.rule)?;
    if !named.is_empty() {
        narrow(&mut stages, &mut members, named, &outcome.rule)?;
    }
    if new.min_approvals > 0 {
        for s in &mut stages {
            s.min = s.min.max(new.min_approvals);
        }
    }
    check_stages(&stages).map_err(|e| {
        refused(
            ErrorCode::WideningRefused,
            format!("The approvers asked for do not fit the policy's stages: {e}."),
        )
    })?;
    // Breaking glass asks nobody first: its stages say who is told afterwards, and someone must
    // be, but no stage needs to be satisfiable.
    let asking = outcome.mode == Mode::Ask;
    let mut addressees = BTreeSet::new();
    // Each able person (with a passkey) and the stages they may approve for.
    let mut able: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for (i, (stage, people)) in stages.iter().zip(&members).enumerate() {
        let mut here = BTreeSet::new();
        for (approver, person) in people {
            // A group stage's members all have a passkey (`group_approvers`); a list stage's
            // approvers are checked here, one by one.
            if stage.group.is_some() || !passkeys_of(tx, approver)?.is_empty() {
                here.insert(person.as_str());
                addressees.insert(approver.clone());
                able.entry(person.clone()).or_default().push(i as u32);
            } else if stage.approvers.is_some() {
                return Err(refused(
                    ErrorCode::UnknownApprover,
                    format!("{approver} has no paired device with a passkey on this gateway."),
                ));
            }
        }
        if asking && (here.len() as u32) < stage.min {
            return Err(refused(
                ErrorCode::PolicyRefused,
                format!(
                    "Stage {} needs {} approvals, but only {} eligible people have a paired device (rule {}).",
                    stage.name,
                    stage.min,
                    here.len(),
                    outcome.rule
                ),
            ));
        }
    }
    // All the stages at once: with distinct people, one person fills one stage only.
    let ballots: Vec<Ballot<'_>> = able
        .iter_mut()
        .map(|(person, eligible)| {
            eligible.dedup();
            Ballot {
                person,
                approve: true,
                eligible,
            }
        })
        .collect();
    if asking && !credit(&stages, outcome.distinct_people, &ballots).satisfied() {
        return Err(refused(
            ErrorCode::PolicyRefused,
            format!(
                "The stages cannot all be met: one person counts for one stage only, and too few distinct people with a paired device are eligible (rule {}).",
                outcome.rule
            ),
        ));
    }
    if addressees.is_empty() {
        return Err(refused(
            ErrorCode::PolicyRefused,
            format!(
                "Nobody with a paired device is eligible to be told that glass was broken (rule {}); nothing was created.",
                outcome.rule
            ),
        ));
    }
    if addressees.len() > MAX_ADDRESSEES {
        return Err(refused(
            ErrorCode::PolicyRefused,
            format!(
                "The stages reach {} approvers; this gateway asks at most {MAX_ADDRESSEES} approvers per request (rule {}).",
                addressees.len(),
                outcome.rule
            ),
        ));
    }
    Ok(Routed {
        outcome,
        policy: policy_ref,
        stages,
        addressees: addressees.into_iter().collect(),
        requester,
    })
}

/// Each stage's eligible members as `(approver, person)`: a list stage's approvers, each of
/// whom must be in the directory and none the requester (`unknown_approver`, `own_request`);
/// a group stage's listed members, less the requester's person.
fn members_of(
    tx: &dyn Tx,
    stages: &[Stage],
    asking: Option<&str>,
    rule: &str,
) -> Result<Vec<Vec<(String, String)>>, Refused> {
    let mut out = Vec::with_capacity(stages.len());
    for s in stages {
        let members = match (&s.approvers, &s.group) {
            (Some(list), _) => {
                let mut members = Vec::with_capacity(list.len());
                for a in list {
                    let Some(p) = person_of(tx, IdentityKind::Approver, a)? else {
                        return Err(Refused::by(
                            rule,
                            ApiError::bad_request(
                                ErrorCode::UnknownApprover,
                                format!("{a} is not in the gateway's directory."),
                            ),
                        ));
                    };
                    if asking == Some(p.as_str()) {
                        return Err(Refused::by(rule, ApiError::forbidden(
                                ErrorCode::OwnRequest,
                                format!("{a} is {p}, who asks for this request: nobody approves their own request."),
                            )));
                    }
                    members.push((a.clone(), p));
                }
                members
            }
            (None, Some(g)) => tx
                .group_approvers(g)?
                .into_iter()
                .filter(|(_, p)| asking != Some(p.as_str()))
                .collect(),
            (None, None) => Vec::new(),
        };
        out.push(members);
    }
    Ok(out)
}

/// Narrows each stage to the approvers the requester named: every one of them must be eligible
/// for some stage (`widening_refused`), and a group stage becomes the list of its named
/// members.
fn narrow(
    stages: &mut [Stage],
    members: &mut [Vec<(String, String)>],
    named: &[String],
    rule: &str,
) -> Result<(), Refused> {
    for a in named {
        if !members.iter().flatten().any(|(m, _)| m == a) {
            return Err(Refused::by(rule, ApiError::forbidden(
                    ErrorCode::WideningRefused,
                    format!("{a} is not eligible to approve this request under the policy's rule {rule}; a requester may only narrow who approves."),
                )));
        }
    }
    // A stage with none of the named among its members stays as the policy made it.
    for (s, m) in stages.iter_mut().zip(members.iter_mut()) {
        if !m.iter().any(|(a, _)| named.contains(a)) {
            continue;
        }
        m.retain(|(a, _)| named.contains(a));
        let list: Vec<String> = m.iter().map(|(a, _)| a.clone()).collect();
        s.group = None;
        s.approvers = Some(crate::directory::sorted_unique(&list));
        if (list.len() as u32) < s.min {
            return Err(Refused::by(rule, ApiError::forbidden(
                    ErrorCode::WideningRefused,
                    format!(
                        "Stage {} needs {} approvals, but the approvers named include {} of its members (rule {rule}).",
                        s.name,
                        s.min,
                        list.len()
                    ),
                )));
        }
    }
    Ok(())
}
