//! The schema of `gateway.db` and its migrations: each version's statements, and
//! `migrate`, which brings a database of any older version (`PRAGMA user_version`) up to this
//! build's and refuses one that is newer.

use rusqlite::Connection;

use crate::error::StoreError;

/// The schema version this build writes; `PRAGMA user_version` holds a database's.
pub(super) const SCHEMA_VERSION: i64 = 18;

const SCHEMA_V1: &str = r#"
CREATE TABLE tokens(
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE approvers(
    name TEXT PRIMARY KEY,
    user_id TEXT NOT NULL
);
CREATE TABLE invites(
    code_hash TEXT PRIMARY KEY,
    approver TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE TABLE pairings(
    id TEXT PRIMARY KEY,
    approver TEXT NOT NULL,
    device_key TEXT NOT NULL,
    device_name TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE TABLE devices(
    id TEXT PRIMARY KEY,
    approver TEXT NOT NULL,
    public_key TEXT NOT NULL,
    name TEXT NOT NULL,
    paired_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE passkeys(
    cred_id TEXT PRIMARY KEY,
    approver TEXT NOT NULL,
    passkey TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX passkeys_approver ON passkeys(approver);
CREATE TABLE requests(
    id TEXT PRIMARY KEY,
    signed TEXT NOT NULL,
    digest TEXT NOT NULL,
    requester TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    min_approvals INTEGER NOT NULL,
    match_code TEXT,
    match_failures INTEGER NOT NULL DEFAULT 0,
    dup_key TEXT NOT NULL,
    closed_at INTEGER
);
CREATE INDEX requests_pending ON requests(state, expires_at);
CREATE INDEX requests_dup ON requests(dup_key, state);
CREATE INDEX requests_requester ON requests(requester, created_at);
CREATE TABLE challenges(
    request_id TEXT NOT NULL,
    approver TEXT NOT NULL,
    state TEXT NOT NULL,
    used_at INTEGER,
    PRIMARY KEY(request_id, approver)
);
CREATE TABLE decisions(
    decision_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    approver TEXT NOT NULL,
    verdict TEXT NOT NULL,
    digest TEXT NOT NULL,
    signed TEXT NOT NULL,
    receipt TEXT NOT NULL,
    at INTEGER NOT NULL,
    UNIQUE(request_id, approver)
);
CREATE TABLE events(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    approver TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX events_approver ON events(approver, seq);
CREATE TABLE audit(
    seq INTEGER PRIMARY KEY,
    entry TEXT NOT NULL,
    hash TEXT NOT NULL
);
"#;

/// Version 2: the latest audit checkpoint each device uploaded (see `checkpoints`).
const SCHEMA_V2: &str = r#"
CREATE TABLE device_checkpoints(
    device TEXT PRIMARY KEY REFERENCES devices(id),
    seq INTEGER NOT NULL,
    head TEXT NOT NULL,
    signed TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
"#;

/// Version 3: "I did not expect this" reports and the requester blocks they create (see
/// `reports`).
const SCHEMA_V3: &str = r#"
CREATE TABLE reports(
    report_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    approver TEXT NOT NULL,
    device_id TEXT NOT NULL,
    requester TEXT NOT NULL,
    signed TEXT NOT NULL,
    ack TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE blocks(
    requester TEXT NOT NULL,
    approver TEXT NOT NULL,
    report_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (requester, approver)
);
"#;

/// Version 4: the votes on a request come from an index alone. A decision row holds the signed
/// decision with its passkey assertion and the receipt, several KiB that spill into overflow
/// pages; without this index, reading a vote's time (stored after them) walked those pages.
const SCHEMA_V4: &str = r#"
CREATE INDEX decisions_votes ON decisions(request_id, at, approver, verdict);
"#;

/// Version 5: a passkey's signature counter and backup flags in columns of their own. The
/// `passkey` text is the credential as registered; these columns hold the values its latest
/// assertion left, and override the text's when a passkey is loaded. An approval updates three
/// integers instead of parsing and rewriting the whole stored credential.
const SCHEMA_V5: &str = r#"
ALTER TABLE passkeys ADD COLUMN counter INTEGER NOT NULL DEFAULT 0;
ALTER TABLE passkeys ADD COLUMN backup_eligible INTEGER NOT NULL DEFAULT 0;
ALTER TABLE passkeys ADD COLUMN backup_state INTEGER NOT NULL DEFAULT 0;
UPDATE passkeys SET
    counter = coalesce(json_extract(passkey, '$.cred.counter'), 0),
    backup_eligible = coalesce(json_extract(passkey, '$.cred.backup_eligible'), 0),
    backup_state = coalesce(json_extract(passkey, '$.cred.backup_state'), 0);
"#;

/// Version 6: protocol version 2 (docs/protocol.md, section 1.5).
/// - Every request has a status sequence number and the time of its latest change, so that the
///   status signed for a given `seq` is always the same body.
/// - Pairings of protocol version 1 end: their devices are revoked, and their passkeys retired
///   (kept, but never offered or used again, so the same authenticator can register anew).
/// - The stored version 1 events are dropped: they were addressed to those devices only.
const SCHEMA_V6: &str = r#"
ALTER TABLE requests ADD COLUMN status_seq INTEGER NOT NULL DEFAULT 1;
ALTER TABLE requests ADD COLUMN status_at INTEGER NOT NULL DEFAULT 0;
UPDATE requests SET
    status_seq = 1 + (SELECT count(*) FROM decisions d WHERE d.request_id = requests.id)
        + (CASE WHEN closed_at IS NULL THEN 0 ELSE 1 END),
    status_at = coalesce(closed_at, created_at);
UPDATE devices SET revoked_at = CAST(strftime('%s', 'now') AS INTEGER) WHERE revoked_at IS NULL;
ALTER TABLE passkeys ADD COLUMN retired_at INTEGER;
UPDATE passkeys SET retired_at = CAST(strftime('%s', 'now') AS INTEGER);
DELETE FROM events;
"#;

/// Version 7: security keys.
/// - What an administrator sees of a passkey (`countersign-gateway devices list`): the device
///   that registered it, the AAGUID its authenticator claimed, the registration response as it
///   arrived (for evidence), and when it last made an accepted assertion.
/// - Passkeys being added by a device (a backup key): the proof's and the registration's
///   webauthn-rs states between the two steps.
const SCHEMA_V7: &str = r#"
ALTER TABLE passkeys ADD COLUMN device_id TEXT;
ALTER TABLE passkeys ADD COLUMN aaguid TEXT;
ALTER TABLE passkeys ADD COLUMN registration TEXT;
ALTER TABLE passkeys ADD COLUMN last_used_at INTEGER;
CREATE TABLE passkey_enrolments(
    id TEXT PRIMARY KEY,
    approver TEXT NOT NULL,
    device_id TEXT NOT NULL,
    proof_state TEXT NOT NULL,
    registration_state TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
"#;

/// Version 8: whether a passkey was registered under a verified attestation chain, so that
/// `devices list` says whether the model its AAGUID names is attested or only claimed.
const SCHEMA_V8: &str = r#"
ALTER TABLE passkeys ADD COLUMN attested INTEGER NOT NULL DEFAULT 0;
"#;

/// Version 9: the directory of people (`directory`): each person, their identities in every
/// system (an identity belongs to one person) and their groups; and the requester tokens'
/// attributes (team, the environments they may ask for). Every approver known before becomes
/// a person of the same id.
const SCHEMA_V9: &str = r#"
CREATE TABLE people(
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    removed_at INTEGER
);
CREATE TABLE person_identities(
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    person TEXT NOT NULL REFERENCES people(id),
    PRIMARY KEY (kind, name)
);
CREATE INDEX person_identities_person ON person_identities(person);
CREATE TABLE person_groups(
    person TEXT NOT NULL REFERENCES people(id),
    grp TEXT NOT NULL,
    PRIMARY KEY (person, grp)
);
CREATE INDEX person_groups_grp ON person_groups(grp);
INSERT INTO people(id, created_at)
    SELECT name, CAST(strftime('%s', 'now') AS INTEGER) FROM approvers;
INSERT INTO person_identities(kind, name, person) SELECT 'approver', name, name FROM approvers;
ALTER TABLE tokens ADD COLUMN team TEXT;
ALTER TABLE tokens ADD COLUMN environments TEXT NOT NULL DEFAULT '[]';
"#;

/// Version 10: stages of approval. Each accepted decision records its approver's person and
/// the stages they were eligible for at that moment, so that a request's status at a given
/// `seq` is the same body whatever the directory says later. Votes recorded before are on
/// requests in the list form (`eligible` null: its one stage).
///
/// The directory's version: a counter that every change to the directory's tables raises (by
/// triggers), so that a request is never routed by a policy whose data is an older directory
/// than the store's, without reading the whole directory to find out.
const SCHEMA_V10: &str = r#"
ALTER TABLE decisions ADD COLUMN person TEXT;
ALTER TABLE decisions ADD COLUMN eligible TEXT;
CREATE TABLE directory_version(
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO directory_version(id, version) VALUES (1, 0);
CREATE TRIGGER people_insert_version AFTER INSERT ON people
    BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER people_update_version AFTER UPDATE ON people
    BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER people_delete_version AFTER DELETE ON people
    BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER person_identities_insert_version AFTER INSERT ON person_identities
    BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER person_identities_update_version AFTER UPDATE ON person_identities
    BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER person_identities_delete_version AFTER DELETE ON person_identities
    BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER person_groups_insert_version AFTER INSERT ON person_groups
    BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER person_groups_update_version AFTER UPDATE ON person_groups
    BEGIN UPDATE directory_version SET version = version + 1; END;
CREATE TRIGGER person_groups_delete_version AFTER DELETE ON person_groups
    BEGIN UPDATE directory_version SET version = version + 1; END;
"#;

/// Version 11: what an approval grants after it is made. A request's revocation (when, by
/// whom) and the first acknowledgement of a break-glass or auto-approved request; every
/// acknowledgement as the device signed it (table `acks`, one per `ack_id`); every revocation
/// an approver signed, with its receipt (table `revocations`, one per `decision_id`; they are
/// not votes, so they are kept apart from `decisions`); and the membership statement last sent
/// to each approver (table `memberships`: its `seq`, person and groups).
const SCHEMA_V11: &str = r#"
ALTER TABLE requests ADD COLUMN revoked_at INTEGER;
ALTER TABLE requests ADD COLUMN revoked_by TEXT;
ALTER TABLE requests ADD COLUMN acked_at INTEGER;
ALTER TABLE requests ADD COLUMN acked_by TEXT;
CREATE TABLE acks(
    ack_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES requests(id),
    approver TEXT NOT NULL,
    device_id TEXT NOT NULL,
    signed TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX acks_request ON acks(request_id);
CREATE TABLE memberships(
    approver TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    person TEXT,
    groups TEXT NOT NULL,
    issued_at INTEGER NOT NULL
);
CREATE TABLE revocations(
    decision_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES requests(id),
    approver TEXT NOT NULL,
    digest TEXT NOT NULL,
    signed TEXT NOT NULL,
    receipt TEXT NOT NULL,
    at INTEGER NOT NULL
);
"#;

/// Version 12: the audit chain as a transparency log (docs/protocol.md, section 9.6). The
/// tree's stored hashes (`log_hashes`, by tlog-tiles stored-hash index, written with each
/// audit entry; those of entries written before this version are filled in when the store
/// opens), an index of the entries by request (for evidence bundles), every log checkpoint the gateway signed (`log_checkpoints`), and the role of each
/// token (`requester`, or `auditor`: read-only access to evidence and the log).
const SCHEMA_V12: &str = r#"
CREATE TABLE log_hashes(
    idx INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
);
CREATE TABLE log_checkpoints(
    size INTEGER PRIMARY KEY,
    root TEXT NOT NULL,
    note TEXT NOT NULL,
    signed_at INTEGER NOT NULL
);
ALTER TABLE tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'requester';
CREATE INDEX audit_request ON audit(json_extract(entry, '$.request_id'));
"#;

/// Version 13: the devices' cosignatures of the log's checkpoints (one line per checkpoint and
/// device, as the checkpoint note carries it in evidence bundles), and every gateway-signed
/// WebAuthn Challenge issued, under its digest (kept after it is used or replaced, for
/// evidence bundles).
const SCHEMA_V13: &str = r#"
CREATE TABLE issued_challenges(
    digest TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    approver TEXT NOT NULL,
    signed TEXT NOT NULL,
    issued_at INTEGER NOT NULL
);
CREATE TABLE log_cosignatures(
    size INTEGER NOT NULL,
    device TEXT NOT NULL,
    line TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY(size, device)
);
"#;

/// Version 14: when an integration used an approval's grant to let the action start
/// (`requests.used_at`), and the operations the Kubernetes admission webhook holds, each under
/// the key of the exact operation (`admission_holds`: the requests created for it, newest last).
const SCHEMA_V14: &str = r#"
ALTER TABLE requests ADD COLUMN used_at INTEGER;
CREATE TABLE admission_holds(
    op_key TEXT NOT NULL,
    request_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY(op_key, request_id)
);
CREATE INDEX admission_holds_newest ON admission_holds(op_key, created_at);
"#;

/// Version 15: outgoing webhooks. The position in the audit log up to which entries were
/// turned into deliveries (`notify_cursor`, one row), and every delivery with its body, its
/// attempts and when it is next due or was delivered (`deliveries`).
const SCHEMA_V15: &str = r#"
CREATE TABLE notify_cursor(
    id INTEGER PRIMARY KEY CHECK (id = 1),
    next_seq INTEGER NOT NULL
);
CREATE TABLE deliveries(
    id TEXT PRIMARY KEY,
    destination TEXT NOT NULL,
    event TEXT NOT NULL,
    request_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    delivered_at INTEGER,
    failed_at INTEGER,
    last_error TEXT
);
CREATE INDEX deliveries_due ON deliveries(next_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
"#;

/// Version 16: the GitHub deployments held for a protection rule, one per request, with the
/// webhook's delivery id (GitHub redelivers) and what the callback needs.
const SCHEMA_V16: &str = r#"
CREATE TABLE github_deployments(
    request_id TEXT PRIMARY KEY,
    delivery TEXT NOT NULL UNIQUE,
    callback_url TEXT NOT NULL,
    installation_id INTEGER NOT NULL,
    environment TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
"#;

/// Version 17: mail. A delivery can be skipped when it is due (a mail to an approver whose
/// device connected, or who decided, meanwhile): `delivered_at` then says when, and `skipped`
/// why. And when the last digest was made (`email_digest`, one row).
const SCHEMA_V17: &str = r#"
ALTER TABLE deliveries ADD COLUMN skipped TEXT;
CREATE TABLE email_digest(
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_at INTEGER NOT NULL
);
"#;

/// Version 18: an event sent once to a wide audience (a request's groups, docs/protocol.md
/// 3.12) is one row whose `approver` is `+`, with its audience here.
const SCHEMA_V18: &str = "ALTER TABLE events ADD COLUMN audience TEXT;";

/// The first schema version of protocol version 2.
pub(super) const PROTOCOL_2_SCHEMA: i64 = 6;

/// Each schema version's statements, in order: a database at version `n` runs the ones after
/// it, in one transaction with the new `user_version`.
const MIGRATIONS: [&str; 18] = [
    SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8,
    SCHEMA_V9, SCHEMA_V10, SCHEMA_V11, SCHEMA_V12, SCHEMA_V13, SCHEMA_V14, SCHEMA_V15, SCHEMA_V16,
    SCHEMA_V17, SCHEMA_V18,
];

/// Brings the database behind `conn` to `SCHEMA_VERSION`, all missing versions in one
/// transaction with the new `user_version`, so a failed upgrade leaves the old version intact.
/// A database written by a newer build is refused rather than misread. Returns the version the
/// database had (0 for a new one).
pub(super) fn migrate(conn: &mut Connection) -> Result<i64, StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < SCHEMA_VERSION {
        let tx = conn.transaction()?;
        for sql in MIGRATIONS.iter().skip(version.max(0) as usize) {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::Store;

    /// A version-1 database (as the first release created it) gains the checkpoint table in
    /// place and keeps its rows.
    #[test]
    fn version_1_database_upgrades_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.db");
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch(SCHEMA_V1).unwrap();
            c.execute(
                "INSERT INTO tokens(name, hash, created_at) VALUES ('ci', 'h', 1)",
                [],
            )
            .unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
        }
        let _store = Store::open(&p, Arc::default()).unwrap();
        let c = Connection::open(&p).unwrap();
        let count = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
        let (tokens, version, cps) = (
            count("SELECT count(*) FROM tokens"),
            count("PRAGMA user_version"),
            count("SELECT count(*) FROM device_checkpoints"),
        );
        assert_eq!((tokens, version, cps), (1, SCHEMA_VERSION, 0));
    }

    /// A version-4 database keeps each passkey's counter and backup flags inside the stored
    /// credential; version 5 copies them into their columns.
    #[test]
    fn version_4_passkeys_get_their_counter_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.db");
        {
            let c = Connection::open(&p).unwrap();
            for sql in &MIGRATIONS[..4] {
                c.execute_batch(sql).unwrap();
            }
            c.execute(
                "INSERT INTO passkeys(cred_id, approver, passkey, created_at) VALUES
                 ('a', 'alice', '{\"cred\":{\"counter\":7,\"backup_eligible\":true,\"backup_state\":false}}', 1),
                 ('b', 'bob', '{\"cred\":{\"counter\":0,\"backup_eligible\":false,\"backup_state\":true}}', 1)",
                [],
            )
            .unwrap();
            c.pragma_update(None, "user_version", 4).unwrap();
        }
        let _store = Store::open(&p, Arc::default()).unwrap();
        let c = Connection::open(&p).unwrap();
        let mut st = c
            .prepare(
                "SELECT cred_id, counter, backup_eligible, backup_state FROM passkeys ORDER BY cred_id",
            )
            .unwrap();
        let rows: Vec<(String, i64, bool, bool)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                ("a".to_string(), 7, true, false),
                ("b".to_string(), 0, false, true)
            ]
        );
    }

    /// A database of protocol version 1 (schema 5) ends its pairings at the upgrade: devices
    /// revoked, passkeys retired (not offered again, and registrable anew), version 1 events
    /// dropped without their ids being reused, and every request given its status `seq`.
    #[test]
    fn a_protocol_1_database_ends_its_pairings_at_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.db");
        {
            let c = Connection::open(&p).unwrap();
            for sql in &MIGRATIONS[..5] {
                c.execute_batch(sql).unwrap();
            }
            c.execute_batch(
                "INSERT INTO devices(id, approver, public_key, name, paired_at) VALUES ('d1', 'alice', 'k', 'laptop', 1);
                 INSERT INTO passkeys(cred_id, approver, passkey, created_at) VALUES ('c1', 'alice', '{}', 1);
                 INSERT INTO events(approver, kind, data) VALUES ('alice', 'request', '{}'), ('alice', 'status', '{}');
                 INSERT INTO requests(id, signed, digest, requester, state, created_at, expires_at, min_approvals, dup_key, closed_at)
                     VALUES ('r1', '{}', 'd', 'ci', 'denied', 10, 100, 1, 'k', 20);
                 INSERT INTO decisions(decision_id, request_id, approver, verdict, digest, signed, receipt, at)
                     VALUES ('x', 'r1', 'alice', 'deny', 'dd', '{}', '{}', 20);
                 PRAGMA user_version = 5;",
            )
            .unwrap();
        }
        let store = Store::open(&p, Arc::default()).unwrap();
        assert_eq!(store.upgraded_from_protocol_1(), Some(5));
        let (next, passkeys) = store
            .read(|tx| -> Result<_, StoreError> {
                Ok((tx.next_event_id()?, tx.passkey_rows("alice")?.len()))
            })
            .unwrap();
        assert_eq!(
            (next, passkeys),
            (3, 0),
            "ids go on; retired passkeys are not offered"
        );
        let c = Connection::open(&p).unwrap();
        let count = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(
            count("SELECT count(*) FROM devices WHERE revoked_at IS NULL"),
            0
        );
        assert_eq!(count("SELECT count(*) FROM events"), 0);
        assert_eq!(count("SELECT status_seq FROM requests WHERE id = 'r1'"), 3);
        assert_eq!(count("SELECT status_at FROM requests WHERE id = 'r1'"), 20);
        drop(store);
        // Opened again, nothing more happens.
        let store = Store::open(&p, Arc::default()).unwrap();
        assert_eq!(store.upgraded_from_protocol_1(), None);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.db");
        drop(Store::open(&p, Arc::default()).unwrap());
        let c = Connection::open(&p).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(matches!(
            Store::open(&p, Arc::default()),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
