//! The directory of people: who each person is in every system the gateway hears from, and
//! their groups. Separation of duties is decided on the person (`person_of`), never by
//! comparing names across namespaces: the requester token `alice-ci` and the approver
//! `alice@example.com` are the same person only when one directory entry links both.
//!
//! The directory is kept in the store and changed with `countersign-gateway approver …`
//! (`directory_admin`), or, when `directory_file` is set, read from that file (TOML, or JSON by
//! its `.json` extension) when the gateway opens (`load`): the file is then the only source,
//! and the commands that change the directory are refused. Every change is audited.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest as _;

use crate::error::StoreError;
use crate::store::{PersonListing, Store, Tx};

/// The systems a person has an identity in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdentityKind {
    /// An approver name (what devices pair as).
    Approver,
    /// A requester token's name.
    Token,
    /// A Kubernetes username (`userInfo.username`).
    Kubernetes,
    /// A GitHub login.
    Github,
    /// A hoop.dev user's email.
    Hoop,
    /// A mail address the gateway writes to (`[email]`).
    Email,
}

impl IdentityKind {
    pub const ALL: [IdentityKind; 6] = [
        IdentityKind::Approver,
        IdentityKind::Token,
        IdentityKind::Kubernetes,
        IdentityKind::Github,
        IdentityKind::Hoop,
        IdentityKind::Email,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Approver => "approver",
            IdentityKind::Token => "token",
            IdentityKind::Kubernetes => "kubernetes",
            IdentityKind::Github => "github",
            IdentityKind::Hoop => "hoop",
            IdentityKind::Email => "email",
        }
    }
}

/// Why a directory change was refused.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{what} {name:?} is not a valid name: 1 to 128 printable ASCII characters, no spaces")]
    InvalidName { what: &'static str, name: String },
    #[error("{kind} {name} already belongs to {person} in the directory")]
    IdentityTaken {
        kind: &'static str,
        name: String,
        person: String,
    },
    #[error("{0} is not in the directory (countersign-gateway approver add {0})")]
    UnknownApprover(String),
    #[error("{approver} is already in the directory, as {person}; change it with approver set-groups or approver link")]
    AlreadyListed { approver: String, person: String },
    #[error("the directory is kept in {}: change that file instead", .0.display())]
    ManagedByFile(PathBuf),
    #[error("the directory file {}: {why}", path.display())]
    File { path: PathBuf, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<DirectoryError> for crate::error::ApiError {
    fn from(e: DirectoryError) -> Self {
        use countersign_protocol::api::ErrorCode;
        match e {
            DirectoryError::Store(s) => s.into(),
            DirectoryError::InvalidName { .. } => {
                crate::error::ApiError::bad_request(ErrorCode::InvalidName, e.to_string())
            }
            other => {
                crate::error::ApiError::bad_request(ErrorCode::UnknownApprover, other.to_string())
            }
        }
    }
}

/// One person's entry, as a directory file writes it and `approver list --json` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The person's id, unique in the directory (for example a login, or an employee number).
    pub id: String,
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub tokens: Vec<String>,
    #[serde(default)]
    pub kubernetes: Vec<String>,
    #[serde(default)]
    pub github: Vec<String>,
    #[serde(default)]
    pub hoop: Vec<String>,
    /// Where the gateway's mail to this person goes (`[email]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email: Vec<String>,
}

impl Entry {
    pub(crate) fn names(&self, kind: IdentityKind) -> &[String] {
        match kind {
            IdentityKind::Approver => &self.approvers,
            IdentityKind::Token => &self.tokens,
            IdentityKind::Kubernetes => &self.kubernetes,
            IdentityKind::Github => &self.github,
            IdentityKind::Hoop => &self.hoop,
            IdentityKind::Email => &self.email,
        }
    }

    pub(crate) fn names_mut(&mut self, kind: IdentityKind) -> &mut Vec<String> {
        match kind {
            IdentityKind::Approver => &mut self.approvers,
            IdentityKind::Token => &mut self.tokens,
            IdentityKind::Kubernetes => &mut self.kubernetes,
            IdentityKind::Github => &mut self.github,
            IdentityKind::Hoop => &mut self.hoop,
            IdentityKind::Email => &mut self.email,
        }
    }

    /// The entry of a listed person.
    pub fn from_listing(p: &PersonListing) -> Entry {
        let mut e = Entry {
            id: p.person.clone(),
            groups: p.groups.clone(),
            ..Entry::default()
        };
        for (kind, name) in &p.identities {
            if let Some(k) = IdentityKind::ALL.iter().find(|k| k.as_str() == kind) {
                e.names_mut(*k).push(name.clone());
            }
        }
        e
    }

    /// Every name is valid, and none twice.
    pub(crate) fn check(&self) -> Result<(), DirectoryError> {
        check_name("person id", &self.id)?;
        for g in &self.groups {
            check_name("group", g)?;
        }
        for kind in IdentityKind::ALL {
            for n in self.names(kind) {
                check_name(kind.as_str(), n)?;
            }
        }
        Ok(())
    }
}

/// A directory file: `[[people]]` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryFile {
    #[serde(default)]
    pub people: Vec<Entry>,
}

/// A person id, group or identity: 1 to 128 printable ASCII characters without spaces, as
/// approver names are.
pub fn check_name(what: &'static str, name: &str) -> Result<(), DirectoryError> {
    if name.is_empty() || name.len() > 128 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(DirectoryError::InvalidName {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

pub(crate) fn sorted_unique(names: &[String]) -> Vec<String> {
    names
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The listed person an identity is, in the transaction's view.
/// The prefixes of requesters an integration vouches for, and the identity kind of the name
/// after it: `k8s:<username>` (the admission webhook) and `github:<login>` (deployment
/// protection rules). Requester tokens may not start with them.
pub const INTEGRATION_REQUESTERS: [(&str, IdentityKind); 2] = [
    ("k8s:", IdentityKind::Kubernetes),
    ("github:", IdentityKind::Github),
];

/// The person of `requester`: a Kubernetes user or GitHub login by its prefix
/// ([`INTEGRATION_REQUESTERS`]), otherwise a requester token's name.
pub fn requester_person(tx: &dyn Tx, requester: &str) -> Result<Option<String>, StoreError> {
    for (prefix, kind) in INTEGRATION_REQUESTERS {
        if let Some(name) = requester.strip_prefix(prefix) {
            return person_of(tx, kind, name);
        }
    }
    person_of(tx, IdentityKind::Token, requester)
}

pub fn person_of(
    tx: &dyn Tx,
    kind: IdentityKind,
    name: &str,
) -> Result<Option<String>, StoreError> {
    tx.person_of(kind.as_str(), name)
}

/// Links every identity of `entry` to `entry.id` (already put), refusing one that is someone
/// else's, and makes each approver known for WebAuthn.
pub(crate) fn link_all(tx: &dyn Tx, entry: &Entry) -> Result<(), DirectoryError> {
    for kind in IdentityKind::ALL {
        for name in entry.names(kind) {
            if let Some(person) = tx.link_identity(&entry.id, kind.as_str(), name)? {
                return Err(DirectoryError::IdentityTaken {
                    kind: kind.as_str(),
                    name: name.clone(),
                    person,
                });
            }
            if kind == IdentityKind::Approver {
                tx.ensure_approver(name, &uuid::Uuid::new_v4().to_string())?;
            }
        }
    }
    Ok(())
}

/// The listed entries (`listed`) and the directory's version they are, read together.
pub fn listed_at_version(tx: &dyn Tx) -> Result<(Vec<Entry>, i64), StoreError> {
    Ok((listed(tx)?, tx.directory_version()?))
}

/// Every listed (not removed) person's entry, by id.
pub fn listed(tx: &dyn Tx) -> Result<Vec<Entry>, StoreError> {
    Ok(tx
        .directory()?
        .iter()
        .filter(|p| p.removed_at.is_none())
        .map(Entry::from_listing)
        .collect())
}

pub(crate) fn listing_of(tx: &dyn Tx, person: &str) -> Result<Entry, DirectoryError> {
    tx.person_listing(person)?
        .filter(|p| p.removed_at.is_none())
        .map(|p| Entry::from_listing(&p))
        .ok_or_else(|| DirectoryError::UnknownApprover(person.to_owned()))
}

/// The person an invite for `approver` binds the device to. An approver not yet in a directory
/// the gateway keeps becomes a person of the same id (audited); one removed from it, or absent
/// from a directory file, is refused.
pub fn person_for_invite(
    tx: &dyn Tx,
    approver: &str,
    from_file: bool,
    now: i64,
) -> Result<String, DirectoryError> {
    if let Some(person) = tx.person_of(IdentityKind::Approver.as_str(), approver)? {
        return Ok(person);
    }
    if from_file
        || tx
            .owner_of(IdentityKind::Approver.as_str(), approver)?
            .is_some()
    {
        return Err(DirectoryError::UnknownApprover(approver.to_owned()));
    }
    let entry = Entry {
        id: approver.to_owned(),
        approvers: vec![approver.to_owned()],
        ..Entry::default()
    };
    entry.check()?;
    tx.put_person(&entry.id, now)?;
    link_all(tx, &entry)?;
    tx.audit_append(
        now,
        "directory.person_added",
        None,
        json!({"person": entry.id, "entry": entry, "by": "invite"}),
    )?;
    Ok(entry.id)
}

/// The listed person whose approver name is `approver`.
pub(crate) fn person_of_approver(tx: &dyn Tx, approver: &str) -> Result<String, DirectoryError> {
    tx.person_of(IdentityKind::Approver.as_str(), approver)?
        .ok_or_else(|| DirectoryError::UnknownApprover(approver.to_owned()))
}

/// The directory as a policy reads it, `data.directory` (docs/policy.md): `approvers` maps each
/// approver name to its person, `people` each person to their entry, `groups` each group to
/// its people.
pub fn policy_data(entries: &[Entry]) -> serde_json::Value {
    let mut approvers = serde_json::Map::new();
    let mut people = serde_json::Map::new();
    let mut groups: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for e in entries {
        for a in &e.approvers {
            approvers.insert(a.clone(), json!(e.id));
        }
        for g in &e.groups {
            groups.entry(g).or_default().push(&e.id);
        }
        people.insert(e.id.clone(), json!(e));
    }
    json!({"approvers": approvers, "people": people, "groups": groups})
}

/// SHA-256 (hex) of the listed entries as `approver list --json` prints them, one JSON line
/// each in id order: what a policy's result names as the directory it was evaluated with.
pub fn hash(entries: &[Entry]) -> Result<String, serde_json::Error> {
    let mut h = sha2::Sha256::new();
    for e in entries {
        h.update(serde_json::to_vec(e)?);
        h.update(b"\n");
    }
    Ok(hex::encode(h.finalize()))
}

/// Reads a directory file (TOML, or JSON for a `.json` name) and checks it: valid names, each
/// person id and each identity once.
pub fn read_file(path: &Path) -> Result<DirectoryFile, DirectoryError> {
    let bad = |why: String| DirectoryError::File {
        path: path.to_owned(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let mut file: DirectoryFile = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?
    } else {
        toml::from_str(&text).map_err(|e| bad(e.to_string()))?
    };
    let mut ids = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for e in &mut file.people {
        e.check().map_err(|x| bad(x.to_string()))?;
        if !ids.insert(e.id.clone()) {
            return Err(bad(format!("the person {} is listed twice", e.id)));
        }
        e.groups = sorted_unique(&e.groups);
        for kind in IdentityKind::ALL {
            let names = sorted_unique(e.names(kind));
            for n in &names {
                if !seen.insert((kind, n.clone())) {
                    return Err(bad(format!(
                        "{} {n} is given to more than one person",
                        kind.as_str()
                    )));
                }
            }
            *e.names_mut(kind) = names;
        }
    }
    file.people.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(file)
}

/// Makes the store's directory what `file` says: its people listed with exactly its
/// identities and groups, everyone else removed. Audited (`directory.loaded`, with the file's
/// hash) when anything changed; returns whether it did.
pub fn load(store: &Store, path: &Path, now: i64) -> Result<bool, DirectoryError> {
    let file = read_file(path)?;
    let file_hash = hash(&file.people).map_err(|e| DirectoryError::File {
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    store.write(|tx| -> Result<bool, DirectoryError> {
        let before = listed(tx)?;
        if before == file.people {
            return Ok(false);
        }
        for p in tx.directory()? {
            tx.unlink_identities(&p.person)?;
            if !file.people.iter().any(|e| e.id == p.person) {
                tx.remove_person(&p.person, now)?;
            }
        }
        for e in &file.people {
            tx.put_person(&e.id, now)?;
            link_all(tx, e)?;
            tx.set_groups(&e.id, &e.groups)?;
        }
        tx.audit_append(
            now,
            "directory.loaded",
            None,
            json!({
                "file": path.display().to_string(),
                "directory_hash": file_hash,
                "people": file.people.len(),
                "before": before.len(),
            }),
        )?;
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(text: &str) -> String {
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    }

    #[test]
    fn the_hash_names_email_last_and_only_when_there_is_one() {
        let mut e = Entry {
            id: "alice".into(),
            approvers: vec!["alice@example.com".into()],
            ..Entry::default()
        };
        let before = r#"{"id":"alice","approvers":["alice@example.com"],"groups":[],"tokens":[],"kubernetes":[],"github":[],"hoop":[]}"#;
        assert_eq!(
            hash(std::slice::from_ref(&e)).unwrap(),
            sha(&format!("{before}\n"))
        );
        e.email = vec!["alice@example.org".into()];
        let with = r#"{"id":"alice","approvers":["alice@example.com"],"groups":[],"tokens":[],"kubernetes":[],"github":[],"hoop":[],"email":["alice@example.org"]}"#;
        assert_eq!(hash(&[e]).unwrap(), sha(&format!("{with}\n")));
    }
}
