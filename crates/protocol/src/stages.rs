//! The parts of an approval request that a gateway's policy decides (protocol.md 3.1a): how the
//! request is decided ([`Mode`]), the stages of approval it needs ([`Stage`]), which rule of
//! which policy said so ([`PolicyRef`]), and the progress of each stage in a status
//! ([`StageProgress`]).

use serde::{Deserialize, Serialize};

use crate::crypto::Digest;
use crate::error::ProtocolError;
use crate::fields::{check_ident, check_nonempty, limits};

/// Stages in one request.
pub const MAX_STAGES: usize = 8;
/// Approvers named by one list stage.
pub const MAX_STAGE_APPROVERS: usize = 64;
/// The sum of `min` over a request's stages.
pub const MAX_QUORUM_TOTAL: u32 = 64;
/// Time-window descriptions in one request.
pub const MAX_WINDOWS: usize = 8;
/// Length of one time-window description.
pub const WINDOW_TEXT: usize = 256;
/// The stage name a gateway gives the approvers a requester named.
pub const NAMED_STAGE: &str = "approvers";

/// How a request is decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Approvers decide, stage by stage.
    #[default]
    Ask,
    /// The policy approved it; its status is final at `seq` 1.
    Auto,
    /// Approved at once with a reason; approvers are told after the fact.
    BreakGlass,
}

impl Mode {
    pub fn is_ask(&self) -> bool {
        *self == Mode::Ask
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ask => "ask",
            Mode::Auto => "auto",
            Mode::BreakGlass => "break_glass",
        }
    }
}

/// `min` approvals from a directory group, or from a list of approvers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Shown with the progress ("dba", "managers", or `approvers` for a named list).
    pub name: String,
    /// An explicit list of approver names, sorted by byte value, without duplicates.
    pub approvers: Option<Vec<String>>,
    /// A directory group. Exactly one of `approvers` and `group` is non-null.
    pub group: Option<String>,
    pub min: u32,
}

impl Stage {
    /// Whether `approver`, whose person is in `groups`, may approve for this stage.
    pub fn admits(&self, approver: &str, groups: &[String]) -> bool {
        match (&self.approvers, &self.group) {
            (Some(list), _) => list.iter().any(|a| a == approver),
            (None, Some(g)) => groups.iter().any(|x| x == g),
            (None, None) => false,
        }
    }
}

/// Checks a request's stages: count, names, one of list or group, sorted unique lists and the
/// `min` of each, and the total (protocol.md 3.1a).
pub fn check_stages(stages: &[Stage]) -> Result<(), ProtocolError> {
    let bad = |reason: String| {
        Err(ProtocolError::InvalidField {
            field: "stages",
            reason,
        })
    };
    if stages.len() > MAX_STAGES {
        return bad(format!("at most {MAX_STAGES} stages"));
    }
    let mut total = 0u32;
    for (i, s) in stages.iter().enumerate() {
        check_ident("stages.name", &s.name, 64)?;
        if stages[..i].iter().any(|t| t.name == s.name) {
            return bad(format!("the stage name {:?} is used twice", s.name));
        }
        match (&s.approvers, &s.group) {
            (Some(list), None) => {
                if list.is_empty() || list.len() > MAX_STAGE_APPROVERS {
                    return bad(format!(
                        "stage {:?} must list 1 to {MAX_STAGE_APPROVERS} approvers",
                        s.name
                    ));
                }
                for a in list {
                    check_ident("stages.approvers", a, limits::NAME)?;
                }
                if list.windows(2).any(|w| w[0] >= w[1]) {
                    return bad(format!(
                        "stage {:?} must list its approvers sorted, each once",
                        s.name
                    ));
                }
                if s.min as usize > list.len() {
                    return bad(format!(
                        "stage {:?} needs {} approvals of {} approvers",
                        s.name,
                        s.min,
                        list.len()
                    ));
                }
            }
            (None, Some(g)) => check_ident("stages.group", g, limits::NAME)?,
            _ => {
                return bad(format!(
                    "stage {:?} must name exactly one of `approvers` and `group`",
                    s.name
                ))
            }
        }
        if s.min == 0 {
            return bad(format!("stage {:?} needs at least one approval", s.name));
        }
        total = total.saturating_add(s.min);
    }
    if total > MAX_QUORUM_TOTAL {
        return bad(format!(
            "the stages need {total} approvals in all; at most {MAX_QUORUM_TOTAL}"
        ));
    }
    Ok(())
}

/// Which rule of which policy, over which directory, produced a request's stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    pub rule: String,
    /// SHA-256 of the policy's text as the gateway loaded it.
    pub policy_hash: Digest,
    /// The directory's hash (protocol.md 8.10) the policy was evaluated with.
    pub directory_hash: Digest,
}

impl PolicyRef {
    pub fn validate(&self) -> Result<(), ProtocolError> {
        check_rule(&self.rule)
    }
}

/// Checks the name of a policy rule (`PolicyRef.rule`).
pub fn check_rule(rule: &str) -> Result<(), ProtocolError> {
    check_ident("policy.rule", rule, limits::NAME)
}

/// Checks the time-window descriptions of a request.
pub fn check_windows(windows: &[String]) -> Result<(), ProtocolError> {
    if windows.len() > MAX_WINDOWS {
        return Err(ProtocolError::InvalidField {
            field: "windows",
            reason: format!("at most {MAX_WINDOWS} windows"),
        });
    }
    for w in windows {
        check_nonempty("windows", w, WINDOW_TEXT)?;
    }
    Ok(())
}

/// The progress of one stage in a status or a receipt: the approvals credited to it under the
/// gateway's assignment (protocol.md 8.3a).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageProgress {
    pub name: String,
    pub approvals: u32,
    pub min: u32,
    pub satisfied: bool,
}

/// Stage progress as one line, as people read it: "dba 1/1 ✓ · managers 0/1".
pub fn progress_line(stages: &[StageProgress]) -> String {
    stages
        .iter()
        .map(|s| {
            let mark = if s.satisfied { " ✓" } else { "" };
            format!("{} {}/{}{mark}", s.name, s.approvals.min(s.min), s.min)
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// One accepted vote as the stage credit counts it (protocol.md 8.3a).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ballot<'a> {
    /// Who voted: the approver's person, or the approver's name when it has none.
    pub person: &'a str,
    pub approve: bool,
    /// The stages (0-based indices, ascending) the approver was eligible for when the vote was
    /// accepted.
    pub eligible: &'a [u32],
}

/// The stage credit of a request's votes: each stage's progress, and for each ballot, in the
/// same order, the stages it is credited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credit {
    pub stages: Vec<StageProgress>,
    pub credited: Vec<Vec<u32>>,
}

impl Credit {
    /// Whether every stage is satisfied.
    pub fn satisfied(&self) -> bool {
        self.stages.iter().all(|s| s.satisfied)
    }

    /// Approvals credited, summed over the stages.
    pub fn approvals(&self) -> u32 {
        self.stages.iter().map(|s| s.approvals).sum()
    }
}

/// Credits `ballots`, in the order the gateway accepted them, to `stages` (protocol.md 8.3a).
///
/// A person's approvals count as one, at the first of them, eligible for every stage any of them
/// was eligible for. With `distinct_people`, each stage has `min` slots
/// and a person fills at most one slot in all: ballots are taken in order, and each is placed
/// by the first augmenting path found trying its eligible stages in ascending order, and within
/// a full stage its occupants in the order they were accepted (Kuhn's algorithm with stage
/// capacities). This is a maximum assignment, and a deterministic function of the ballots.
/// Without `distinct_people`, an approval is credited to every stage it is eligible for.
pub fn credit(stages: &[Stage], distinct_people: bool, ballots: &[Ballot<'_>]) -> Credit {
    let mut credited: Vec<Vec<u32>> = vec![Vec::new(); ballots.len()];
    let counted: Vec<usize> = (0..ballots.len())
        .filter(|&i| {
            ballots[i].approve
                && !ballots[..i]
                    .iter()
                    .any(|b| b.approve && b.person == ballots[i].person)
        })
        .collect();
    // A person's approvals count as one, placed at the first of them, eligible for every
    // stage any of them was eligible for (one person may approve under two approver names).
    let mut merged: Vec<Vec<u32>> = vec![Vec::new(); ballots.len()];
    for &b in &counted {
        let mut u: Vec<u32> = ballots
            .iter()
            .filter(|x| x.approve && x.person == ballots[b].person)
            .flat_map(|x| x.eligible.iter().copied())
            .filter(|&s| (s as usize) < stages.len())
            .collect();
        u.sort_unstable();
        u.dedup();
        merged[b] = u;
    }
    let eligible = |i: usize| merged[i].iter().copied();
    if distinct_people {
        // occupants[s]: the ballots placed in stage s, in acceptance order.
        let mut occupants: Vec<Vec<usize>> = vec![Vec::new(); stages.len()];
        for &b in &counted {
            let mut visited = vec![false; stages.len()];
            place(b, stages, &eligible, &mut occupants, &mut visited);
        }
        for (s, occ) in occupants.iter().enumerate() {
            for &b in occ {
                credited[b].push(s as u32);
            }
        }
    } else {
        for &b in &counted {
            credited[b] = eligible(b).collect();
        }
    }
    let progress = stages
        .iter()
        .enumerate()
        .map(|(s, stage)| {
            let approvals = credited.iter().filter(|c| c.contains(&(s as u32))).count() as u32;
            StageProgress {
                name: stage.name.clone(),
                approvals,
                min: stage.min,
                satisfied: approvals >= stage.min,
            }
        })
        .collect();
    Credit {
        stages: progress,
        credited,
    }
}

/// Places ballot `b` along an augmenting path; returns whether it found one.
fn place<I: Iterator<Item = u32>>(
    b: usize,
    stages: &[Stage],
    eligible: &impl Fn(usize) -> I,
    occupants: &mut [Vec<usize>],
    visited: &mut [bool],
) -> bool {
    for s in eligible(b) {
        let s = s as usize;
        if visited[s] {
            continue;
        }
        visited[s] = true;
        if occupants[s].len() < stages[s].min as usize {
            insert_in_order(&mut occupants[s], b);
            return true;
        }
        let current = occupants[s].clone();
        for u in current {
            // `s` is visited, so `u` can only move to another stage.
            if place(u, stages, eligible, occupants, visited) {
                occupants[s].retain(|&x| x != u);
                insert_in_order(&mut occupants[s], b);
                return true;
            }
        }
    }
    false
}

fn insert_in_order(v: &mut Vec<usize>, b: usize) {
    let at = v.partition_point(|&x| x < b);
    v.insert(at, b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, min: u32) -> Stage {
        Stage {
            name: name.into(),
            approvers: None,
            group: Some(name.into()),
            min,
        }
    }

    fn approve<'a>(person: &'a str, eligible: &'a [u32]) -> Ballot<'a> {
        Ballot {
            person,
            approve: true,
            eligible,
        }
    }

    #[test]
    fn a_person_in_both_groups_satisfies_one_stage_alone() {
        let stages = [group("dba", 1), group("managers", 1)];
        let c = credit(&stages, true, &[approve("ann", &[0, 1])]);
        assert_eq!(c.credited, vec![vec![0]]);
        assert!(!c.satisfied());
        assert_eq!(
            (c.stages[0].approvals, c.stages[1].approvals),
            (1, 0),
            "{c:?}"
        );
        // Without distinct people the one approval counts twice.
        let c = credit(&stages, false, &[approve("ann", &[0, 1])]);
        assert_eq!(c.credited, vec![vec![0, 1]]);
        assert!(c.satisfied());
    }

    #[test]
    fn a_later_approval_moves_an_earlier_one_to_the_other_stage() {
        // Ann is a DBA and a manager, Bob only a DBA: Ann first fills "dba", then Bob's
        // approval can only fill "dba", so Ann moves to "managers".
        let stages = [group("dba", 1), group("managers", 1)];
        let c = credit(
            &stages,
            true,
            &[approve("ann", &[0, 1]), approve("bob", &[0])],
        );
        assert_eq!(c.credited, vec![vec![1], vec![0]]);
        assert!(c.satisfied());
        assert_eq!(c.approvals(), 2);
    }

    #[test]
    fn a_person_counts_once_and_denials_count_nothing() {
        let stages = [group("dba", 2)];
        let c = credit(
            &stages,
            true,
            &[
                approve("ann", &[0]),
                approve("ann", &[0]),
                Ballot {
                    person: "bob",
                    approve: false,
                    eligible: &[0],
                },
            ],
        );
        assert_eq!(c.credited, vec![vec![0], vec![], vec![]]);
        assert_eq!(c.stages[0].approvals, 1);
        assert!(!c.satisfied());
    }

    #[test]
    fn a_person_voting_under_two_names_counts_once_for_any_of_their_stages() {
        // P approves as p1 (listed in stage 0), then Q (stage 0 only), then P again as p2
        // (listed in stage 1): P fills stage 1, Q stage 0.
        let stages = [group("a", 1), group("b", 1)];
        let c = credit(
            &stages,
            true,
            &[approve("P", &[0]), approve("Q", &[0]), approve("P", &[1])],
        );
        assert!(c.satisfied(), "{c:?}");
        assert_eq!(c.credited, vec![vec![1], vec![0], vec![]]);
    }

    #[test]
    fn extra_approvals_beyond_a_stage_are_not_credited() {
        let stages = [group("dba", 1), group("managers", 1)];
        let c = credit(&stages, true, &[approve("ann", &[0]), approve("bob", &[0])]);
        assert_eq!(c.credited, vec![vec![0], vec![]]);
        assert_eq!(
            c.stages,
            vec![
                StageProgress {
                    name: "dba".into(),
                    approvals: 1,
                    min: 1,
                    satisfied: true
                },
                StageProgress {
                    name: "managers".into(),
                    approvals: 0,
                    min: 1,
                    satisfied: false
                },
            ]
        );
    }

    #[test]
    fn stages_are_checked() {
        let list = |names: &[&str], min| Stage {
            name: "approvers".into(),
            approvers: Some(names.iter().map(|s| s.to_string()).collect()),
            group: None,
            min,
        };
        assert!(check_stages(&[list(&["a", "b"], 2)]).is_ok());
        assert!(check_stages(&[list(&["b", "a"], 1)]).is_err(), "unsorted");
        assert!(check_stages(&[list(&["a", "a"], 1)]).is_err(), "duplicate");
        assert!(
            check_stages(&[list(&["a"], 2)]).is_err(),
            "min above the list"
        );
        assert!(check_stages(&[group("dba", 0)]).is_err(), "min zero");
        assert!(check_stages(&[group("dba", 1), group("dba", 1)]).is_err());
        let both = Stage {
            group: Some("dba".into()),
            ..list(&["a"], 1)
        };
        assert!(check_stages(&[both]).is_err());
        assert!(check_stages(&[group("dba", 40), group("ops", 25)]).is_err());
    }
}
