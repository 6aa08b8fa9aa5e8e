//! The directory of people (tables `people`, `person_identities`, `person_groups`): one entry
//! per person, the identities that are theirs in each system (approver names, requester token
//! names, Kubernetes usernames, GitHub logins, hoop emails) and their groups. An identity
//! belongs to at most one person. A removed person keeps their rows, marked removed, so that
//! old decisions still name whose they were; nothing of theirs is eligible any more.

use crate::args;

use super::sql::{Db, Dialect};
use crate::error::StoreError;

/// One person as the directory lists them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PersonListing {
    pub person: String,
    pub created_at: i64,
    pub removed_at: Option<i64>,
    /// `(kind, name)`, sorted.
    pub identities: Vec<(String, String)>,
    /// Sorted.
    pub groups: Vec<String>,
}

/// The rows of the directory.
pub trait DirectoryRows {
    /// Adds `person` (or brings a removed one back); whether it was absent or removed.
    fn put_person(&self, person: &str, now: i64) -> Result<bool, StoreError>;

    /// Marks `person` removed at `now`; whether they were listed until then.
    fn remove_person(&self, person: &str, now: i64) -> Result<bool, StoreError>;

    /// The listed (not removed) person whose identity `(kind, name)` is.
    fn person_of(&self, kind: &str, name: &str) -> Result<Option<String>, StoreError>;

    /// The names of the listed `person`'s identities of `kind`, sorted.
    fn identities_of(&self, person: &str, kind: &str) -> Result<Vec<String>, StoreError>;

    /// The person, removed or not, an identity was linked to.
    fn owner_of(&self, kind: &str, name: &str) -> Result<Option<String>, StoreError>;

    /// Links `(kind, name)` to `person`. An identity already linked to someone else is left as
    /// it is: returns that person. `None` when linked (or already linked to `person`).
    fn link_identity(
        &self,
        person: &str,
        kind: &str,
        name: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Replaces `person`'s groups with `groups`.
    fn set_groups(&self, person: &str, groups: &[String]) -> Result<(), StoreError>;

    /// Every person, listed and removed, by id, with identities and groups.
    fn directory(&self) -> Result<Vec<PersonListing>, StoreError>;

    /// One person's listing (removed or not), if the person was ever in the directory.
    fn person_listing(&self, person: &str) -> Result<Option<PersonListing>, StoreError>;

    /// Unlinks every identity of `person` (before a data file's entry replaces them).
    fn unlink_identities(&self, person: &str) -> Result<(), StoreError>;

    /// The directory's version: raised by every change to its rows.
    fn directory_version(&self) -> Result<i64, StoreError>;

    /// The groups of the listed `person`, sorted; none for a removed one.
    fn groups_of(&self, person: &str) -> Result<Vec<String>, StoreError>;

    /// The approver names of the listed people in `group` that have a registered passkey (not
    /// retired), with their person, by name: those a group stage can ask.
    fn group_approvers(&self, group: &str) -> Result<Vec<(String, String)>, StoreError>;
}

impl DirectoryRows for Db<'_> {
    fn put_person(&self, person: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.exec(
            "INSERT INTO people(id, created_at) VALUES (?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET removed_at = NULL
                 WHERE people.removed_at IS NOT NULL",
            args![person, now],
        )?;
        Ok(n == 1)
    }

    fn remove_person(&self, person: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.exec(
            "UPDATE people SET removed_at = ?2 WHERE id = ?1 AND removed_at IS NULL",
            args![person, now],
        )?;
        Ok(n == 1)
    }

    fn person_of(&self, kind: &str, name: &str) -> Result<Option<String>, StoreError> {
        self.row(
            "SELECT p.id FROM person_identities i JOIN people p ON p.id = i.person
                 WHERE i.kind = ?1 AND i.name = ?2 AND p.removed_at IS NULL",
            args![kind, name],
            |r| r.get(0),
        )
    }

    fn identities_of(&self, person: &str, kind: &str) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT i.name FROM person_identities i JOIN people p ON p.id = i.person
                 WHERE i.person = ?1 AND i.kind = ?2 AND p.removed_at IS NULL ORDER BY i.name",
            args![person, kind],
            |r| r.get(0),
        )
    }

    fn owner_of(&self, kind: &str, name: &str) -> Result<Option<String>, StoreError> {
        self.row(
            "SELECT person FROM person_identities WHERE kind = ?1 AND name = ?2",
            args![kind, name],
            |r| r.get(0),
        )
    }

    fn link_identity(
        &self,
        person: &str,
        kind: &str,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        self.exec(
            "INSERT INTO person_identities(kind, name, person) VALUES (?1, ?2, ?3)
                 ON CONFLICT(kind, name) DO NOTHING",
            args![kind, name, person],
        )?;
        Ok(self
            .owner_of(kind, name)?
            .filter(|owner| owner.as_str() != person))
    }

    fn set_groups(&self, person: &str, groups: &[String]) -> Result<(), StoreError> {
        self.exec("DELETE FROM person_groups WHERE person = ?1", args![person])?;
        for g in groups {
            self.exec(
                "INSERT INTO person_groups(person, grp) VALUES (?1, ?2)
                     ON CONFLICT(person, grp) DO NOTHING",
                args![person, g],
            )?;
        }
        Ok(())
    }

    fn directory(&self) -> Result<Vec<PersonListing>, StoreError> {
        listings(self, None)
    }

    fn person_listing(&self, person: &str) -> Result<Option<PersonListing>, StoreError> {
        Ok(listings(self, Some(person))?.pop())
    }

    fn unlink_identities(&self, person: &str) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM person_identities WHERE person = ?1",
            args![person],
        )?;
        Ok(())
    }

    fn directory_version(&self) -> Result<i64, StoreError> {
        self.one(
            "SELECT version FROM directory_version WHERE id = 1",
            args![],
            |r| r.get(0),
        )
    }

    fn groups_of(&self, person: &str) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT g.grp FROM person_groups g JOIN people p ON p.id = g.person
                 WHERE g.person = ?1 AND p.removed_at IS NULL ORDER BY g.grp",
            args![person],
            |r| r.get(0),
        )
    }

    fn group_approvers(&self, group: &str) -> Result<Vec<(String, String)>, StoreError> {
        // CROSS JOIN fixes the order: from the group's index, then each person, then their
        // approver names. Left to itself the planner walks every approver identity of the
        // directory instead (about 5 times slower for a group of 150 among 1,000 people).
        // (PostgreSQL's planner needs no such hint, and has no CROSS JOIN with ON.)
        let sql = match self.dialect() {
            Dialect::Sqlite => {
                "SELECT i.name, p.id FROM person_groups g
                 CROSS JOIN people p ON p.id = g.person
                 CROSS JOIN person_identities i ON i.person = p.id AND i.kind = 'approver'
                 WHERE g.grp = ?1 AND p.removed_at IS NULL AND EXISTS (SELECT 1 FROM passkeys k
                     WHERE k.approver = i.name AND k.retired_at IS NULL) ORDER BY i.name"
            }
            Dialect::Postgres => {
                "SELECT i.name, p.id FROM person_groups g
                 JOIN people p ON p.id = g.person
                 JOIN person_identities i ON i.person = p.id AND i.kind = 'approver'
                 WHERE g.grp = ?1 AND p.removed_at IS NULL AND EXISTS (SELECT 1 FROM passkeys k
                     WHERE k.approver = i.name AND k.retired_at IS NULL) ORDER BY i.name"
            }
        };
        self.rows(sql, args![group], |r| Ok((r.get(0)?, r.get(1)?)))
    }
}

/// Every person's listing, or only `only`'s, by id: three reads, whose rows are handed to
/// their person by id (not by a scan per person, which made a directory of 5,000 people cost
/// seconds to read).
fn listings(db: &Db<'_>, only: Option<&str>) -> Result<Vec<PersonListing>, StoreError> {
    let person = only.unwrap_or_default();
    let (people_sql, owned_sql, params) = match only {
        Some(_) => ("WHERE id = ?1", "WHERE person = ?1", args![person]),
        None => ("", "", args![]),
    };
    let mut people: Vec<PersonListing> = db.rows(
        &format!("SELECT id, created_at, removed_at FROM people {people_sql} ORDER BY id"),
        params,
        |r| {
            Ok(PersonListing {
                person: r.get(0)?,
                created_at: r.get(1)?,
                removed_at: r.get(2)?,
                identities: Vec::new(),
                groups: Vec::new(),
            })
        },
    )?;
    let identities: Vec<(String, String, String)> = db.rows(
        &format!(
            "SELECT person, kind, name FROM person_identities {owned_sql} \
             ORDER BY person, kind, name"
        ),
        params,
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let groups: Vec<(String, String)> = db.rows(
        &format!("SELECT person, grp FROM person_groups {owned_sql} ORDER BY person, grp"),
        params,
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let index: std::collections::HashMap<String, usize> = people
        .iter()
        .enumerate()
        .map(|(i, p)| (p.person.clone(), i))
        .collect();
    for (owner, kind, name) in identities {
        if let Some(&i) = index.get(&owner) {
            people[i].identities.push((kind, name));
        }
    }
    for (owner, group) in groups {
        if let Some(&i) = index.get(&owner) {
            people[i].groups.push(group);
        }
    }
    Ok(people)
}
