//! The SQLite engine behind [`Store`](super::Store): the file `gateway.db`, its connections
//! (WAL, `synchronous = FULL`, foreign keys, a statement cache larger than the gateway's set of
//! statements), one writer with group commit, a few readers, the background checkpoint thread,
//! the writer's counts ([`StoreStats`]) and the schema with its migrations (`schema`).
//!
//! A write or read is handed a [`Db`] on its connection (see `sql`), through which the owner
//! modules beside this one (`requests`, `decisions`, …) run their statements, every statement
//! prepared once per connection (`prepare_cached`). Nothing outside `store` sees a `rusqlite`
//! type.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, Params};

use super::sql::Db;
use crate::error::StoreError;
use crate::hub::{Hub, Pushed};

mod schema;

/// Most writes one commit (one fsync) carries. A cap keeps a single commit's latency bounded.
const MAX_BATCH: usize = 64;

/// Prepared statements kept per connection: more than the gateway has distinct statements.
const STATEMENT_CACHE: usize = 128;

/// Read connections (WAL readers see the last commit and never wait for the writer).
const READERS: usize = 4;

/// How long the checkpointer lets commits accumulate before it copies them into the database.
const CHECKPOINT_DELAY: Duration = Duration::from_millis(100);

/// WAL pages at which the writer checkpoints by itself, inside a commit. Only a backstop: the
/// background checkpointer normally keeps the WAL far below it.
const WRITER_AUTOCHECKPOINT_PAGES: u64 = 8000;

/// What the store's writer has done since it opened; see [`Store::stats`](super::Store::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreStats {
    /// Writes committed or rolled back (each `write` call that got the write lock).
    pub writes: u64,
    /// Commits (each one fsync of the WAL).
    pub commits: u64,
    /// Pages appended to the WAL by those commits, from the WAL's size after each one. A commit
    /// that restarts the WAL after a checkpoint and writes more pages than the WAL held before
    /// is counted short by the pages the WAL held; under load, commits are far smaller than it.
    pub wal_frames: u64,
    /// Nanoseconds the write lock was held, commits included.
    pub lock_held_ns: u64,
    /// Nanoseconds spent in `COMMIT` (writing the WAL and its fsync), under the lock.
    pub commit_ns: u64,
    /// Statements and commits the database refused (a constraint, a full disk, a lost file).
    pub errors: u64,
}

#[derive(Default)]
struct Counters {
    writes: AtomicU64,
    commits: AtomicU64,
    wal_frames: AtomicU64,
    lock_held_ns: AtomicU64,
    commit_ns: AtomicU64,
    /// The WAL's size in pages after the last commit, to count what each commit added.
    wal_pages: AtomicU64,
    errors: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The SQLite engine: one writer connection with group commit, and a few readers.
///
/// Every write runs inside a savepoint of a shared transaction. A writer that finishes while
/// other writers are already queued for the connection leaves the transaction open for them
/// and waits; the last writer of a batch commits it, so one fsync makes a whole batch durable.
/// Nobody's write is answered before the commit that contains it returned, and a write that
/// fails is rolled back to its savepoint without touching the others. Events to push are
/// collected per batch and published after the commit, in commit order.
///
/// The single writer connection, locked for each write, is what serialises write transactions
/// as [`Tx`](super::Tx) requires: writes run one after another, and audit entries and event
/// sequence numbers are assigned in the order the writes commit. Its transactions begin
/// `IMMEDIATE`, so another process on the same file waits for the lock instead of writing
/// from a stale snapshot. Readers use their own connections, see the last commit and never
/// wait for the writer.
pub(super) struct Sqlite {
    writer: Mutex<Writer>,
    committed: Condvar,
    queued: AtomicUsize,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    hub: Arc<Hub>,
    /// The background checkpointer. The writer's WAL hook holds the only sender that wakes it;
    /// removing the hook stops the thread (see `Drop`).
    checkpointer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    /// The schema version found at open (0 for a new database).
    found_version: i64,
}

struct Writer {
    conn: Connection,
    batch: Option<Batch>,
}

struct Batch {
    writes: usize,
    pushed: Vec<Pushed>,
    /// The batch's commit result: the error text and whether the disk was full.
    outcome: Arc<OnceLock<Result<(), (String, bool)>>>,
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a receipt handed to an approver must survive a power cut of the gateway.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Every statement is prepared once per connection (`prepare_cached`). The default cache
    // of 16 is smaller than the set a decision alone uses, so statements were evicted and
    // parsed again on every request.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // The query planner's stability guarantee: a plan never depends on the values bound to it.
    // Without it, a statement with `WHERE x = ?` and an `ORDER BY` is marked for re-planning
    // when its bindings change, and the statement cache clears bindings on every return, so
    // those statements (the votes, the stream's backlog) were parsed again on every run.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

impl Sqlite {
    pub(super) fn open(path: &Path, hub: Arc<Hub>) -> Result<Sqlite, StoreError> {
        // SQLite gives its -wal and -shm files the permissions of the database file, so creating
        // it owner-only first keeps all three private.
        create_private_file(path)?;
        let mut conn = open_connection(path)?;
        let found_version = schema::migrate(&mut conn)?;
        // Checkpoints (copying committed WAL pages into the database file, with its fsync) run
        // on their own connection and thread, not inside a commit that holds the write lock.
        // This hook replaces SQLite's automatic checkpoint on the writer: after each commit it
        // counts the pages the commit appended and wakes the checkpointer; only if the WAL
        // grew past a backstop (the checkpointer stalled) does the writer checkpoint itself.
        let counters = Arc::new(Counters::default());
        let (hook_signal, wakeups) = mpsc::sync_channel::<()>(1);
        let hook_counters = counters.clone();
        conn.wal_hook(Some(
            move |wal: &mut rusqlite::hooks::Wal, pages: std::os::raw::c_int| {
                let pages = u64::try_from(pages).unwrap_or(0);
                let before = hook_counters.wal_pages.swap(pages, Ordering::Relaxed);
                // A smaller WAL means it restarted from its beginning after a checkpoint.
                let added = if pages >= before {
                    pages - before
                } else {
                    pages
                };
                hook_counters.wal_frames.fetch_add(added, Ordering::Relaxed);
                // A full channel already holds a wakeup the checkpointer has not taken yet.
                let _ = hook_signal.try_send(());
                // The commit has succeeded by now: an error returned here would be reported as
                // the commit's. A busy or failed checkpoint is retried after the next commit,
                // as SQLite's own automatic checkpoint does.
                if pages >= WRITER_AUTOCHECKPOINT_PAGES {
                    if let Err(e) = wal.checkpoint() {
                        tracing::warn!(%e, "the writer's backstop WAL checkpoint failed");
                    }
                }
                Ok(())
            },
        ))?;
        let checkpoint_conn = open_connection(path)?;
        let checkpointer = std::thread::Builder::new()
            .name("gateway-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpoint_conn, &wakeups))
            .map_err(StoreError::Io)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = open_connection(path)?;
            r.pragma_update(None, "query_only", "ON")?;
            readers.push(Mutex::new(r));
        }
        Ok(Sqlite {
            writer: Mutex::new(Writer { conn, batch: None }),
            committed: Condvar::new(),
            queued: AtomicUsize::new(0),
            readers,
            next_reader: AtomicUsize::new(0),
            hub,
            checkpointer: Some(checkpointer),
            counters,
            found_version,
        })
    }

    /// The schema version the database had when it was opened, if opening upgraded it past
    /// protocol version 1 (see `schema`).
    pub(super) fn upgraded_from_protocol_1(&self) -> Option<i64> {
        (self.found_version > 0 && self.found_version < schema::PROTOCOL_2_SCHEMA)
            .then_some(self.found_version)
    }

    /// Runs `f` in its own savepoint of the shared transaction and answers once the commit that
    /// holds it returned; the events `f` returns are published to the hub after that commit, in
    /// commit order.
    pub(super) fn write_publish<T, E>(
        &self,
        f: impl FnOnce(&Db<'_>) -> Result<(T, Vec<Pushed>), E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let locked = self.writer.lock();
        let held_since = Instant::now();
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let mut w = locked.map_err(|_| StoreError::Poisoned)?;

        if w.batch.is_none() {
            execute(&w.conn, "BEGIN IMMEDIATE", []).map_err(|e| {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                StoreError::from(e)
            })?;
            w.batch = Some(Batch {
                writes: 0,
                pushed: Vec::new(),
                outcome: Arc::new(OnceLock::new()),
            });
        }
        let mine = self.run_in_savepoint(&mut w, f);
        let outcome = match &w.batch {
            Some(b) => b.outcome.clone(),
            // The batch was abandoned (a savepoint could not be undone): nothing to wait for.
            None => return mine,
        };
        let writes = w.batch.as_ref().map_or(0, |b| b.writes);
        if self.queued.load(Ordering::SeqCst) == 0 || writes >= MAX_BATCH {
            self.commit(&mut w);
        }
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        self.counters
            .lock_held_ns
            .fetch_add(nanos(held_since.elapsed()), Ordering::Relaxed);
        let value = mine?;
        let w = self
            .committed
            .wait_while(w, |_| outcome.get().is_none())
            .map_err(|_| StoreError::Poisoned)?;
        drop(w);
        match outcome.get() {
            Some(Ok(())) => Ok(value),
            Some(Err((message, disk_full))) => Err(StoreError::CommitFailed {
                message: message.clone(),
                disk_full: *disk_full,
            }
            .into()),
            None => Err(StoreError::Poisoned.into()),
        }
    }

    fn run_in_savepoint<T, E>(
        &self,
        w: &mut Writer,
        f: impl FnOnce(&Db<'_>) -> Result<(T, Vec<Pushed>), E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        if let Err(e) = execute(&w.conn, "SAVEPOINT write", []) {
            return Err(StoreError::from(e).into());
        }
        match f(&Db::sqlite(&w.conn, &self.counters.errors)) {
            Ok((value, pushed)) => match execute(&w.conn, "RELEASE write", []) {
                Ok(_) => {
                    if let Some(b) = w.batch.as_mut() {
                        b.writes += 1;
                        b.pushed.extend(pushed);
                    }
                    Ok(value)
                }
                Err(e) => {
                    self.undo_savepoint(w);
                    Err(StoreError::from(e).into())
                }
            },
            Err(err) => {
                self.undo_savepoint(w);
                Err(err)
            }
        }
    }

    /// Rolls back the current write only. If even that fails, the whole batch is rolled back
    /// and every writer in it gets the error.
    fn undo_savepoint(&self, w: &mut Writer) {
        if let Err(e) = w.conn.execute_batch("ROLLBACK TO write; RELEASE write") {
            let _ = w.conn.execute_batch("ROLLBACK");
            if let Some(b) = w.batch.take() {
                let _ = b
                    .outcome
                    .set(Err((format!("rolling back a failed write: {e}"), false)));
            }
            self.committed.notify_all();
        }
    }

    fn commit(&self, w: &mut Writer) {
        let Some(batch) = w.batch.take() else {
            return;
        };
        let started = Instant::now();
        let result = execute(&w.conn, "COMMIT", []).map(drop).map_err(|e| {
            // A failed COMMIT can leave the transaction open; end it so the next batch starts
            // clean. Nothing of this batch was made durable.
            let _ = w.conn.execute_batch("ROLLBACK");
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            (
                e.to_string(),
                e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
            )
        });
        self.counters
            .commit_ns
            .fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        if result.is_ok() {
            self.hub.publish(&batch.pushed);
        }
        let _ = batch.outcome.set(result);
        self.committed.notify_all();
    }

    /// Counts of the writer's work since the store opened (for benchmarks and diagnostics).
    pub(super) fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            writes: c.writes.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
            wal_frames: c.wal_frames.load(Ordering::Relaxed),
            lock_held_ns: c.lock_held_ns.load(Ordering::Relaxed),
            commit_ns: c.commit_ns.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// The schema version of the database now (`PRAGMA user_version`, read on a reader, so
    /// this also shows that the database answers).
    pub(super) fn schema_version(&self) -> Result<i64, StoreError> {
        self.read(|tx| tx.one("PRAGMA user_version", crate::args![], |r| r.get(0)))
    }

    /// The schema version this build writes.
    pub(super) fn schema_wanted(&self) -> i64 {
        schema::SCHEMA_VERSION
    }

    /// Runs a read-only `f` on a reader connection: it sees the last commit.
    pub(super) fn read<T, E>(&self, f: impl FnOnce(&Db<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Some(r) = self.readers.get((start + i) % self.readers.len()) {
                if let Ok(conn) = r.try_lock() {
                    return f(&Db::sqlite(&conn, &self.counters.errors));
                }
            }
        }
        let r = self
            .readers
            .get(start % self.readers.len().max(1))
            .ok_or(StoreError::Poisoned)?;
        let conn = r.lock().map_err(|_| StoreError::Poisoned)?;
        f(&Db::sqlite(&conn, &self.counters.errors))
    }
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        // Removing the writer's WAL hook drops the only sender of the checkpointer's channel,
        // which ends its loop; joining it means no connection outlives the store.
        let writer = match self.writer.get_mut() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        type Hook = fn(&mut rusqlite::hooks::Wal, std::os::raw::c_int) -> rusqlite::Result<()>;
        if let Err(e) = writer.conn.wal_hook(None::<Hook>) {
            tracing::error!(%e, "could not remove the gateway's WAL hook");
            return;
        }
        if let Some(thread) = self.checkpointer.take() {
            if thread.join().is_err() {
                tracing::error!("the gateway's checkpoint thread panicked");
            }
        }
    }
}

/// The checkpointer: after commits, waits `CHECKPOINT_DELAY` so that a burst of them is
/// copied at once, then runs a passive checkpoint (it never blocks the writer or readers, and
/// copies what no reader still needs). Returns when the store is dropped.
fn checkpoint_loop(conn: &Connection, wakeups: &Receiver<()>) {
    while wakeups.recv().is_ok() {
        let until = Instant::now() + CHECKPOINT_DELAY;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match wakeups.recv_timeout(left) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                // Closing the last connection checkpoints the rest.
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(%e, "a background WAL checkpoint failed; the next commit retries");
        }
    }
}

/// A failed SQLite call, kept as the error's source; a full disk is noted, so that it can be
/// answered as such.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        let disk_full = e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull);
        StoreError::Database {
            source: Box::new(e),
            disk_full,
        }
    }
}

/// `Connection::execute` through the connection's statement cache.
fn execute<P: Params>(c: &Connection, sql: &str, params: P) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(params)
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
    use crate::store::{audit_entries, Store};

    /// Statements with `WHERE x = ?` and an `ORDER BY` (the votes, the stream's backlog) stay
    /// prepared across runs with different bindings instead of being parsed again each time.
    #[test]
    fn ordered_statements_are_not_prepared_again_when_rebound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let _store = Store::open(&path, Arc::default()).unwrap();
        let c = open_connection(&path).unwrap();
        for sql in [
            super::super::decisions::VOTES_SQL,
            super::super::events::BACKLOG_SQL,
        ] {
            for i in 0..4 {
                let mut st = c.prepare_cached(sql).unwrap();
                let n = st.parameter_count();
                let values: Vec<String> = (0..n).map(|p| format!("{i}-{p}")).collect();
                let rows = st
                    .query_map(rusqlite::params_from_iter(values.iter()), |_| Ok(()))
                    .unwrap()
                    .count();
                assert_eq!(rows, 0);
                assert_eq!(
                    st.get_status(rusqlite::StatementStatus::RePrepare),
                    0,
                    "{sql} was prepared again on run {i}"
                );
            }
        }
    }

    #[test]
    fn wal_is_checkpointed_in_the_background_and_the_writer_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let store = Store::open(&path, Arc::default()).unwrap();
        let empty = std::fs::metadata(&path).unwrap().len();
        // 64 audit entries of ~2 KiB: far below the writer's own checkpoint threshold, so only
        // the background checkpointer can copy them into the database file.
        for i in 0..64 {
            store
                .write(|tx| {
                    tx.audit_append(i, "x", None, serde_json::json!({"pad": "p".repeat(2000)}))
                })
                .unwrap();
        }
        let stats = store.stats();
        assert_eq!(stats.writes, 64);
        assert!(stats.commits >= 1 && stats.commits <= 64, "{stats:?}");
        assert!(stats.wal_frames >= 32, "{stats:?}");
        assert!(stats.lock_held_ns >= stats.commit_ns, "{stats:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < empty + 64 * 2000 {
            assert!(
                Instant::now() < deadline,
                "the WAL was not checkpointed into the database within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Dropping the store stops and joins the checkpointer; the data is all there.
        drop(store);
        let store = Store::open(&path, Arc::default()).unwrap();
        let entries = store.read(audit_entries).unwrap();
        assert_eq!(entries.len(), 64);
    }

    #[test]
    fn concurrent_writes_group_commit_and_failed_writes_roll_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let hub = Arc::new(Hub::new());
        let mut live = hub.subscribe();
        let store = Arc::new(Store::open(&path, hub).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut ok = 0;
                    for i in 0..40 {
                        let fail = (t * 40 + i) % 7 == 0;
                        let r =
                            store.write_publish(|tx| -> Result<((), Vec<Pushed>), StoreError> {
                                tx.audit_append(i, "x", None, serde_json::json!({"t": t, "i": i}))?;
                                let id = tx.next_event_id()?;
                                tx.insert_event(id, "a", "k", "{}", None)?;
                                let pushed = vec![Pushed {
                                    seq: id,
                                    approver: "a".into(),
                                    wide: None,
                                    kind: "k".into(),
                                    data: "{}".into(),
                                    published: None,
                                }];
                                if fail {
                                    return Err(StoreError::Corrupt("refused".into()));
                                }
                                Ok(((), pushed))
                            });
                        assert_eq!(r.is_ok(), !fail);
                        ok += usize::from(!fail);
                    }
                    ok
                })
            })
            .collect();
        let ok: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(ok, 320 - (0..320).filter(|n| n % 7 == 0).count());
        // Every acknowledged write is committed, and only those: the chain has no gaps.
        let entries = store.read(audit_entries).unwrap();
        assert_eq!(entries.len(), ok);
        assert_eq!(
            countersign_protocol::audit::verify_chain(entries)
                .unwrap()
                .0,
            ok as u64
        );
        let events: i64 = open_connection(&path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(events as usize, ok);
        // Published after commit, in commit order, each committed event exactly once.
        let mut seqs = Vec::new();
        while let Ok(p) = live.try_recv() {
            seqs.push(p.seq);
        }
        assert_eq!(seqs.len(), ok);
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "out of order: {seqs:?}"
        );
    }
}
