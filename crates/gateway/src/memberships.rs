//! The gateway's signed membership statements (protocol.md 3.23): whenever an approver's
//! person or groups change in the directory, the approver's devices get a new
//! `Signed<Membership>` with the next `seq`, as a `membership` event. `sync` compares the
//! directory with the statement last sent to each approver (table `memberships`) and sends
//! the changed ones, in one write. It runs when the gateway opens, after each change of the
//! directory made in this process (pairing, `approver …`), and when the reload watcher sees the
//! directory changed by another process, before the next request is routed.

use std::collections::BTreeMap;

use countersign_protocol::{Membership, Signed, StreamEvent, PROTOCOL_VERSION};

use crate::directory::IdentityKind;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::hub::Pushed;
use crate::store::memberships::MembershipRow;

/// Sends a new membership statement to every approver whose person or groups changed; returns
/// how many were sent.
pub fn sync(gw: &Gateway) -> Result<usize, ApiError> {
    let now = gw.now();
    gw.store
        .write_publish(|tx| -> Result<(usize, Vec<Pushed>), ApiError> {
            // Who every approver is now: listed people's approver names. One removed from the
            // directory, or never in it, is nobody, in no group.
            let mut now_is: BTreeMap<String, Who> = BTreeMap::new();
            for p in tx.directory()? {
                if p.removed_at.is_some() {
                    continue;
                }
                for (kind, name) in &p.identities {
                    if kind == IdentityKind::Approver.as_str() {
                        now_is.insert(name.clone(), (Some(p.person.clone()), p.groups.clone()));
                    }
                }
            }
            let last: BTreeMap<String, MembershipRow> = tx
                .memberships()?
                .into_iter()
                .map(|m| (m.approver.clone(), m))
                .collect();
            for approver in last.keys() {
                now_is.entry(approver.clone()).or_insert((None, Vec::new()));
            }
            let mut pushed = Vec::new();
            for (approver, who) in now_is {
                pushed.extend(state(gw, tx, &approver, last.get(&approver), who, now)?);
            }
            Ok((pushed.len(), pushed))
        })
}

/// [`sync`] for the one approver `approver` (just paired): what it costs does not grow with
/// the directory.
pub fn sync_one(gw: &Gateway, approver: &str) -> Result<usize, ApiError> {
    let now = gw.now();
    gw.store
        .write_publish(|tx| -> Result<(usize, Vec<Pushed>), ApiError> {
            let person = crate::directory::person_of(tx, IdentityKind::Approver, approver)?;
            let groups = match &person {
                Some(p) => tx.groups_of(p)?,
                None => Vec::new(),
            };
            let before = tx.membership_of(approver)?;
            let pushed = state(gw, tx, approver, before.as_ref(), (person, groups), now)?;
            Ok((pushed.len(), pushed))
        })
}

/// An approver's person and groups.
type Who = (Option<String>, Vec<String>);

/// Records and signs the statement that `approver` is `who`, as the next `seq`, unless the
/// last one sent (`before`) said the same; returns its event, if any.
fn state(
    gw: &Gateway,
    tx: &dyn crate::store::Tx,
    approver: &str,
    before: Option<&MembershipRow>,
    (person, groups): Who,
    now: i64,
) -> Result<Vec<Pushed>, ApiError> {
    if before.is_some_and(|b| b.person == person && b.groups == groups) {
        return Ok(Vec::new());
    }
    let row = MembershipRow {
        approver: approver.to_string(),
        seq: before.map_or(1, |b| b.seq + 1),
        person,
        groups,
    };
    tx.put_membership(&row, now)?;
    let membership = Signed::sign(
        &gw.key,
        Membership {
            v: PROTOCOL_VERSION,
            gateway: gw.fingerprint.clone(),
            approver: row.approver,
            person: row.person,
            groups: row.groups,
            seq: row.seq,
            issued_at: now,
        },
    )?;
    crate::envelope::enqueue(
        gw,
        tx,
        &[approver.to_string()],
        &StreamEvent::Membership {
            membership: Box::new(membership),
        },
    )
}
