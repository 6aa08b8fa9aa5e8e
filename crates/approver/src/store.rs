//! The SQLite file `approver.db`: how it is opened (WAL, full sync, busy timeout) and its schema
//! and migrations. The tables themselves are read and written by the modules that own them.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::error::EngineError;

/// The schema version this build writes, kept in `PRAGMA user_version` and recorded, with the
/// time each migration ran, in the table `schema_version`.
pub const SCHEMA_VERSION: i64 = 8;

const SCHEMA_V1: &str = r#"
CREATE TABLE gateways (
    fingerprint     TEXT PRIMARY KEY,
    url             TEXT NOT NULL,
    gateway_key     TEXT NOT NULL,
    name            TEXT NOT NULL,
    approver        TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    webauthn_origin TEXT NOT NULL,
    paired_at       INTEGER NOT NULL,
    last_event_id   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE inbox (
    gateway        TEXT NOT NULL REFERENCES gateways(fingerprint),
    request_id     TEXT NOT NULL,
    request        TEXT NOT NULL,
    digest         TEXT NOT NULL,
    challenge      TEXT NOT NULL,
    state          TEXT NOT NULL,
    approvals      INTEGER NOT NULL DEFAULT 0,
    min_approvals  INTEGER NOT NULL,
    votes          TEXT NOT NULL DEFAULT '[]',
    expires_at     INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    decision_id    TEXT,
    PRIMARY KEY (gateway, request_id)
);
CREATE INDEX inbox_request_id ON inbox(request_id);
CREATE TABLE outbox (
    decision_id     TEXT PRIMARY KEY,
    gateway         TEXT NOT NULL REFERENCES gateways(fingerprint),
    request_id      TEXT NOT NULL,
    verdict         TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'refused')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    receipt         TEXT,
    created_at      INTEGER NOT NULL
);
CREATE TABLE audit (
    seq   INTEGER PRIMARY KEY,
    entry TEXT NOT NULL,
    hash  TEXT NOT NULL
);
"#;

/// `Connection::query_row` through the connection's statement cache.
pub(crate) fn query_row<T, P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    params: P,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(params, f)
}

/// `Connection::execute` through the connection's statement cache.
pub(crate) fn execute<P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(params)
}

/// WAL pages after which a commit copies the log into the database file itself (SQLite's
/// default is 1,000). [`crate::Engine::run`] checkpoints in the background every
/// [`WAL_CHECKPOINT_INTERVAL`], so that copy and its fsyncs stay off the path of arriving
/// requests; this is the backstop when nothing runs it, and a closing connection checkpoints
/// anyway.
pub(crate) const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// How often a running engine checkpoints its WAL in the background.
pub(crate) const WAL_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Opens (creating if needed) and migrates the database.
/// Opens (creating it owner-only) and migrates the database; `now` (the engine's clock) is
/// recorded with each migration.
pub(crate) fn open(path: &Path, now: i64) -> Result<Connection, EngineError> {
    // SQLite gives its -wal and -shm files the permissions of the database file, so creating
    // it owner-only first keeps all three private.
    create_private_file(path)?;
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(EngineError::Corrupt(format!(
            "the database refused WAL mode (it is in {mode} mode)"
        )));
    }
    // FULL: a committed decision or audit entry survives a power cut, not only a crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    // Statements are prepared once (`prepare_cached`); SQLite's default cache of 16 is smaller
    // than the engine's set, and an evicted statement is parsed again on its next use.
    conn.set_prepared_statement_cache_capacity(128);
    migrate(&conn, now)?;
    Ok(conn)
}

/// A connection that only checkpoints the WAL, for the background checkpointer.
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, EngineError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // The checkpoint syncs the database file as the engine's own commits would (FULL).
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Copies committed WAL frames into the database file without blocking readers or writers
/// (`PASSIVE`). Returns the frames in the log and how many of them are now checkpointed.
pub(crate) fn checkpoint_wal(conn: &Connection) -> Result<(i64, i64), EngineError> {
    // The first column says whether a reader or writer kept the checkpoint from finishing;
    // that shows in `done < log` too, and the next round picks up the rest.
    Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })?)
}

/// Version 2: the device's signed audit checkpoints, and the migration record.
const SCHEMA_V2: &str = r#"
CREATE TABLE schema_version (
    version    INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL
);
INSERT INTO schema_version (version, applied_at) VALUES (1, 0);
CREATE TABLE checkpoints (
    seq    INTEGER PRIMARY KEY,
    signed TEXT NOT NULL,
    at     INTEGER NOT NULL
);
"#;

/// Version 3: the TLS certificate pinned for each gateway.
const SCHEMA_V3: &str = "ALTER TABLE gateways ADD COLUMN tls_pin TEXT;";

/// Version 4: protocol version 2 (docs/protocol.md, section 1.5).
/// - Each gateway row says which protocol version it was paired under; rows from before are
///   version 1, kept as read-only history until the device pairs again.
/// - The resume point is kept with the digest of the verified event envelope that set it, and
///   the highest stream head the gateway has signed.
/// - Each request holds the status `seq` it is at, so an older status is never applied.
const SCHEMA_V4: &str = r#"
ALTER TABLE gateways ADD COLUMN protocol INTEGER NOT NULL DEFAULT 1;
ALTER TABLE gateways ADD COLUMN resume_digest TEXT;
ALTER TABLE gateways ADD COLUMN head_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inbox ADD COLUMN status_seq INTEGER NOT NULL DEFAULT 0;
"#;

/// Version 5: stages of approval. Each request holds the progress of each of its stages from
/// the newest status or receipt applied (`[]` for a request in the list form).
const SCHEMA_V5: &str = "ALTER TABLE inbox ADD COLUMN stages TEXT NOT NULL DEFAULT '[]';";

/// Version 6: what an approval grants. Each request holds the grant of its newest approved
/// status (JSON, or null), and whether it needs this approver's attention though it is
/// approved: a break-glass or auto-approved request nobody acknowledged yet. Each gateway holds
/// the newest membership statement it signed for this approver (`Signed<Membership>` JSON).
const SCHEMA_V6: &str = r#"
ALTER TABLE inbox ADD COLUMN granted TEXT;
ALTER TABLE inbox ADD COLUMN attention INTEGER NOT NULL DEFAULT 0;
ALTER TABLE gateways ADD COLUMN membership TEXT;
"#;

/// Version 7: this device as a witness of each gateway's log. Every log checkpoint it
/// witnessed (verified as consistent with the ones before, and cosigned), and, per gateway,
/// the newest checkpoint it refused because the log changed history (JSON, with when that was
/// first and last seen). Each gateway also holds its newest signed acknowledgement of this
/// device's audit checkpoint (`Signed<CheckpointAck>` JSON), which exports carry.
const SCHEMA_V7: &str = r#"
CREATE TABLE log_witnessed (
    gateway TEXT NOT NULL,
    size INTEGER NOT NULL,
    root TEXT NOT NULL,
    note TEXT NOT NULL,
    witnessed_at INTEGER NOT NULL,
    PRIMARY KEY (gateway, size)
);
CREATE TABLE log_history_changed (
    gateway TEXT PRIMARY KEY,
    detail TEXT NOT NULL
);
ALTER TABLE gateways ADD COLUMN checkpoint_ack TEXT;
"#;

/// Version 8: hoop.dev connections (`hoop`): each hoop gateway's URL, who its token is, and
/// where the token is kept (never the token), and the passkey registered for it; the reviews
/// they fetched, each with its session as read when it arrived and the review as hoop last
/// reported it; and the decisions made on them, signed, until hoop took them (`hoop_outbox`).
const SCHEMA_V8: &str = r#"
CREATE TABLE hoop_connections (
    id           TEXT PRIMARY KEY,
    url          TEXT NOT NULL UNIQUE,
    user         TEXT NOT NULL,
    token        TEXT NOT NULL,
    passkey      TEXT NOT NULL,
    connected_at INTEGER NOT NULL,
    unreachable_since INTEGER,
    unreachable_error TEXT
);
CREATE TABLE hoop_reviews (
    connection  TEXT NOT NULL,
    review_id   TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    status      TEXT NOT NULL,
    review      TEXT NOT NULL,
    session     TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (connection, review_id)
);
CREATE TABLE hoop_outbox (
    decision_id TEXT PRIMARY KEY,
    connection  TEXT NOT NULL,
    review_id   TEXT NOT NULL,
    verdict     TEXT NOT NULL,
    body        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('queued', 'delivered', 'refused', 'superseded')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    last_error  TEXT,
    outcome     TEXT,
    created_at  INTEGER NOT NULL,
    UNIQUE (connection, review_id)
);
"#;

/// Every migration, in order: version `n` is applied to a database at version `n - 1`.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, SCHEMA_V1),
    (2, SCHEMA_V2),
    (3, SCHEMA_V3),
    (4, SCHEMA_V4),
    (5, SCHEMA_V5),
    (6, SCHEMA_V6),
    (7, SCHEMA_V7),
    (8, SCHEMA_V8),
];

fn migrate(conn: &Connection, now: i64) -> Result<(), EngineError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(EngineError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > version) {
        // Each migration and its record commit together: an interrupted upgrade leaves the
        // database at the previous version, and the next open retries it.
        let record = if *v >= 2 {
            format!("INSERT INTO schema_version (version, applied_at) VALUES ({v}, {now});")
        } else {
            String::new()
        };
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql} {record} PRAGMA user_version = {v}; COMMIT;"
        ))
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })?;
    }
    Ok(())
}

/// Creates `path` with mode 0600 if it does not exist yet.
fn create_private_file(path: &Path) -> Result<(), EngineError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_wal_copies_every_committed_frame_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("approver.db");
        let c = open(&p, 0).unwrap();
        let pages: u32 = c
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pages, WAL_AUTOCHECKPOINT_PAGES);
        c.execute_batch("CREATE TABLE t(x TEXT)").unwrap();
        for i in 0..200 {
            c.execute("INSERT INTO t VALUES (?1)", [format!("{i:0>2000}")])
                .unwrap();
        }
        // Below the backstop, commits leave their frames in the log.
        let (log, done) = checkpoint_wal(&open_checkpointer(&p).unwrap()).unwrap();
        assert!(log > 100, "{log} frames in the log");
        assert_eq!(done, log);
        // The database file alone, without its log, now has every row.
        let copy = dir.path().join("copy.db");
        std::fs::copy(&p, &copy).unwrap();
        let n: i64 = Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 200);
        drop(c);
    }

    #[test]
    fn opens_twice_and_refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("approver.db");
        drop(open(&p, 0).unwrap());
        let c = open(&p, 0).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(matches!(
            open(&p, 0),
            Err(EngineError::SchemaTooNew { found: 99, .. })
        ));
    }

    /// A database written by the first release (version 1, no checkpoints, no certificate
    /// pins) is upgraded in place through every later version, keeping its rows, and each
    /// upgrade is recorded.
    #[test]
    fn version_1_database_upgrades_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("approver.db");
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch(&format!(
                "BEGIN; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;"
            ))
            .unwrap();
            c.execute(
                "INSERT INTO audit (seq, entry, hash) VALUES (1, 'e', 'h')",
                [],
            )
            .unwrap();
        }
        let c = open(&p, 0).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let kept: i64 = c
            .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1);
        let versions: Vec<i64> = c
            .prepare("SELECT version FROM schema_version ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
        c.execute(
            "INSERT INTO checkpoints (seq, signed, at) VALUES (1, 's', 0)",
            [],
        )
        .unwrap();
        // Version 3's column exists and starts empty.
        let pins: i64 = c
            .query_row("SELECT COUNT(tls_pin) FROM gateways", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pins, 0);
    }
}
