//! The gateway's SQLite store: schema, migrations and the audit chain. Only this module and the
//! modules it hands a transaction to write SQL.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use countersign_protocol::audit::{AuditEntry, GENESIS};
use countersign_protocol::canonical::to_canonical_bytes;
use countersign_protocol::{Digest, PROTOCOL_VERSION};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("The gateway database failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("Cannot create the gateway database file: {0}")]
    Io(std::io::Error),
    #[error("The gateway database has schema version {found}, newer than this build's {supported}; upgrade the gateway.")]
    TooNew { found: i64, supported: i64 },
    #[error("A stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("The gateway's database lock is poisoned by an earlier panic.")]
    Poisoned,
}

const SCHEMA_VERSION: i64 = 1;

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

/// One SQLite connection behind a mutex: the gateway is a single writer, and every operation is
/// a short transaction.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        // SQLite gives its -wal and -shm files the permissions of the database file, so creating
        // it owner-only first keeps all three private.
        create_private_file(path)?;
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a receipt handed to an approver must survive a power cut of the gateway.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version < 1 {
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA_V1)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    pub fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Runs `f` in a transaction that commits if `f` returns `Ok`.
    pub fn write<T, E>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// Like [`Store::write`], then runs `after` on the result while still holding the lock, so
    /// that whatever `after` publishes is ordered exactly as the commits were.
    pub fn write_then<T, E>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
        after: impl FnOnce(&T),
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(StoreError::from)?;
        after(&out);
        Ok(out)
    }

    /// Runs a read-only `f`.
    pub fn read<T, E>(&self, f: impl FnOnce(&Connection) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let conn = self.lock()?;
        f(&conn)
    }
}

/// Appends one entry to the audit chain inside `tx`.
pub fn audit_append(
    tx: &Transaction<'_>,
    at: i64,
    kind: &str,
    request_id: Option<&str>,
    detail: serde_json::Value,
) -> Result<Digest, StoreError> {
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (seq, prev) = match last {
        Some((seq, hash)) => (
            seq as u64 + 1,
            Digest::parse("audit.hash", &hash).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        ),
        None => (1, GENESIS),
    };
    let entry = AuditEntry {
        v: PROTOCOL_VERSION,
        seq,
        at,
        kind: kind.to_string(),
        request_id: request_id.map(str::to_string),
        detail,
        prev,
    };
    let hash = entry
        .hash()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let text = to_canonical_bytes(&entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let text = String::from_utf8(text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO audit(seq, entry, hash) VALUES (?1, ?2, ?3)",
        params![seq as i64, text, hash.to_hex()],
    )?;
    Ok(hash)
}

/// Reads the whole audit chain in order, for verification and for tests.
pub fn audit_entries(conn: &Connection) -> Result<Vec<(AuditEntry, Digest)>, StoreError> {
    let mut stmt = conn.prepare("SELECT entry, hash FROM audit ORDER BY seq")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (entry, hash) = row?;
        let entry: AuditEntry =
            serde_json::from_str(&entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let hash =
            Digest::parse("audit.hash", &hash).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        out.push((entry, hash));
    }
    Ok(out)
}

/// Creates `path` with mode 0600 if it does not exist yet.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_chain_appends_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("g.db")).unwrap();
        for i in 0..3 {
            store
                .write(|tx| audit_append(tx, i, "x", None, serde_json::json!({"i": i})))
                .unwrap();
        }
        let entries = store.read(audit_entries).unwrap();
        assert_eq!(
            countersign_protocol::audit::verify_chain(entries)
                .unwrap()
                .0,
            3
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.db");
        drop(Store::open(&p).unwrap());
        let c = Connection::open(&p).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(matches!(
            Store::open(&p),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
