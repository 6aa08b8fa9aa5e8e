//! `countersign-gateway approver add|link|set-groups|remove|list`: the administrator's changes
//! to the directory the gateway keeps (`directory`), each audited, each refused when the
//! directory is read from a file.

use std::collections::BTreeSet;

use serde_json::json;

use crate::directory::{
    check_name, link_all, listing_of, person_of_approver, sorted_unique, DirectoryError, Entry,
    IdentityKind,
};
use crate::gateway::Gateway;

fn refuse_if_file(gw: &Gateway) -> Result<(), DirectoryError> {
    match &gw.config.directory_file {
        Some(path) => Err(DirectoryError::ManagedByFile(path.clone())),
        None => Ok(()),
    }
}

/// `approver add`: a person with the approver name `approver` (the person's id is `person`, or
/// the approver name), their groups and other identities in `links`.
pub fn add_approver(
    gw: &Gateway,
    approver: &str,
    person: Option<&str>,
    links: &Entry,
) -> Result<Entry, DirectoryError> {
    refuse_if_file(gw)?;
    let mut entry = Entry {
        id: person.unwrap_or(approver).to_owned(),
        approvers: vec![approver.to_owned()],
        groups: sorted_unique(&links.groups),
        ..links.clone()
    };
    for kind in IdentityKind::ALL {
        let names = sorted_unique(entry.names(kind));
        *entry.names_mut(kind) = names;
    }
    entry.check()?;
    let now = gw.now();
    gw.store.write(|tx| -> Result<Entry, DirectoryError> {
        let mut entry = entry.clone();
        if let Some(owner) = tx.owner_of(IdentityKind::Approver.as_str(), approver)? {
            if tx
                .person_of(IdentityKind::Approver.as_str(), approver)?
                .is_some()
            {
                return Err(DirectoryError::AlreadyListed {
                    approver: approver.to_owned(),
                    person: owner,
                });
            }
            // A removed person added again comes back as who they were.
            if person.is_none() {
                entry.id = owner;
            }
        }
        tx.put_person(&entry.id, now)?;
        link_all(tx, &entry)?;
        let mut groups: BTreeSet<String> = tx
            .directory()?
            .into_iter()
            .find(|p| p.person == entry.id)
            .map(|p| p.groups.into_iter().collect())
            .unwrap_or_default();
        groups.extend(entry.groups.iter().cloned());
        let groups: Vec<String> = groups.into_iter().collect();
        tx.set_groups(&entry.id, &groups)?;
        let listed = listing_of(tx, &entry.id)?;
        tx.audit_append(
            now,
            "directory.person_added",
            None,
            json!({"person": listed.id, "entry": listed, "by": "approver add"}),
        )?;
        Ok(listed)
    })
}

/// `approver link`: more identities (tokens, Kubernetes, GitHub, hoop) for the person whose
/// approver name is `approver`.
pub fn link(gw: &Gateway, approver: &str, links: &Entry) -> Result<Entry, DirectoryError> {
    refuse_if_file(gw)?;
    let now = gw.now();
    gw.store.write(|tx| -> Result<Entry, DirectoryError> {
        let person = person_of_approver(tx, approver)?;
        let entry = Entry {
            id: person.clone(),
            groups: Vec::new(),
            ..links.clone()
        };
        entry.check()?;
        link_all(tx, &entry)?;
        let listed = listing_of(tx, &person)?;
        tx.audit_append(
            now,
            "directory.person_changed",
            None,
            json!({"person": person, "entry": listed, "by": "approver link"}),
        )?;
        Ok(listed)
    })
}

/// `approver set-groups`: the groups of the person whose approver name is `approver`.
pub fn set_groups(
    gw: &Gateway,
    approver: &str,
    groups: &[String],
) -> Result<Entry, DirectoryError> {
    refuse_if_file(gw)?;
    for g in groups {
        check_name("group", g)?;
    }
    let groups = sorted_unique(groups);
    let now = gw.now();
    gw.store.write(|tx| -> Result<Entry, DirectoryError> {
        let person = person_of_approver(tx, approver)?;
        let before = listing_of(tx, &person)?.groups;
        tx.set_groups(&person, &groups)?;
        let listed = listing_of(tx, &person)?;
        tx.audit_append(
            now,
            "directory.person_changed",
            None,
            json!({"person": person, "groups_before": before, "entry": listed, "by": "approver set-groups"}),
        )?;
        Ok(listed)
    })
}

/// `approver remove`: the person whose approver name is `approver` leaves the directory. Their
/// devices' votes are refused from now on (`not_eligible`); their rows stay, marked removed.
pub fn remove(gw: &Gateway, approver: &str) -> Result<String, DirectoryError> {
    refuse_if_file(gw)?;
    let now = gw.now();
    gw.store.write(|tx| -> Result<String, DirectoryError> {
        let person = person_of_approver(tx, approver)?;
        tx.remove_person(&person, now)?;
        tx.audit_append(
            now,
            "directory.person_removed",
            None,
            json!({"person": person, "approver": approver, "by": "approver remove"}),
        )?;
        Ok(person)
    })
}

/// Every listed person's entry, by id.
pub fn list(gw: &Gateway) -> Result<Vec<Entry>, DirectoryError> {
    Ok(gw.store.read(crate::directory::listed)?)
}
