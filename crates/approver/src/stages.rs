//! Stages of approval as this approver sees a request: why it was asked (the stages it may
//! approve for), each stage's progress, and the one-line progress text the CLI and the app
//! show ("dba 1/1 ✓ · managers 0/1").

use countersign_protocol::StageProgress;

use crate::inbox::InboxItem;

impl InboxItem {
    /// Why this approver was asked: each stage they may approve for, as a sentence ("named in
    /// stage approvers", "stage dba: you are in group dba, as the gateway's membership
    /// statement 3 says"). Without a statement, the gateway's envelope that addressed the
    /// request here is the only word for it; a statement that does not list the group is said.
    pub fn why_asked(&self) -> Vec<String> {
        let stages = self.request.body.effective_stages();
        let mut why: Vec<String> = stages
            .iter()
            .filter_map(|s| match (&s.approvers, &s.group) {
                (Some(list), _) if list.contains(&self.approver) => {
                    Some(format!("named in stage {}", s.name))
                }
                (None, Some(g)) => match &self.membership {
                    Some(m) if m.groups.contains(g) => Some(format!(
                        "stage {}: you are in group {g}, as the gateway's membership statement {} says",
                        s.name, m.seq
                    )),
                    // Another group's stage: not why this approver was asked.
                    Some(_) => None,
                    None => Some(format!(
                        "stage {}: the gateway sent it to you as a member of group {g}",
                        s.name
                    )),
                },
                _ => None,
            })
            .collect();
        // Sent here for a group stage, yet the statement lists none of its groups: say so.
        if let (true, Some(m)) = (why.is_empty(), &self.membership) {
            let groups: Vec<&str> = stages.iter().filter_map(|s| s.group.as_deref()).collect();
            if !groups.is_empty() {
                why.push(format!(
                    "sent to you for group {}, which the gateway's membership statement {} does not list",
                    groups.join(", "),
                    m.seq
                ));
            }
        }
        why
    }

    /// The progress of each of the request's stages: as the gateway last signed it, or for a
    /// request in the list form its one stage with the approvals held.
    pub fn progress(&self) -> Vec<StageProgress> {
        if !self.stages.is_empty() {
            return self.stages.clone();
        }
        self.request
            .body
            .effective_stages()
            .iter()
            .map(|s| {
                let approvals = if self.request.body.stages.is_empty() {
                    self.approvals
                } else {
                    0
                };
                StageProgress {
                    name: s.name.clone(),
                    approvals,
                    min: s.min,
                    satisfied: approvals >= s.min,
                }
            })
            .collect()
    }
}

/// Stage progress as one line: "dba 1/1 ✓ · managers 0/1".
pub use countersign_protocol::stages::progress_line as progress_text;
