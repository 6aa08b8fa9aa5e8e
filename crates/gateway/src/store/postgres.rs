//! The PostgreSQL engine behind [`Store`](super::Store), for several gateway replicas that share
//! one database (`database_url = "postgres://…"`): a pool of `tokio-postgres` connections
//! (deadpool), the schema with its migrations (`schema`), serialised writes, and the publisher
//! that brings every replica's commits to this replica's hub.
//!
//! **Writes.** Each write is one transaction that first takes a transaction-level advisory lock
//! (`pg_advisory_xact_lock`), held until its commit: write transactions on every replica run
//! one after another, as [`Tx`](super::Tx) requires, so the audit chain is appended in one
//! order and event ids are numbered in commit order (a reader of `seq > last` never skips a
//! transaction that took a smaller id and committed later, because none can). A write is
//! answered only after its `COMMIT` returned. A write that stored events also sends `NOTIFY`
//! on [`CHANNEL`], delivered at its commit.
//!
//! **Push.** This replica's publisher reads the events after the last one it published, in id
//! order, and hands them to the hub, whenever a notification arrives, this replica committed
//! events, or [`POLL`] passed, so a lost notification delays an event by at most [`POLL`] and
//! loses nothing. Every replica's streams therefore see every replica's events, in commit
//! order.
//!
//! **Threads.** The domain's transactions are synchronous and run on tokio's blocking pool.
//! The connections are driven by a small runtime of this engine's own, and a statement's
//! future is awaited with `futures::executor::block_on` on the calling thread, so a statement
//! can be run from any thread (tests call the store on theirs) without blocking a runtime
//! that drives its connection.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{ManagerConfig, Pool, PoolConfig, RecyclingMethod};
use tokio_postgres::NoTls;

use super::events::EventRows as _;
use super::sql::Db;
use super::sqlite::StoreStats;
use crate::error::StoreError;
use crate::hub::{Hub, Pushed};

mod schema;

/// The notification channel of committed events.
pub const CHANNEL: &str = "countersign_events";

/// The key of the advisory lock every write transaction holds until its commit.
const WRITE_LOCK: i64 = 0x0063_6f75_6e74_6572;

/// The key of the session-level advisory lock the leader holds (see [`lead`]).
const LEADER_LOCK: i64 = 0x0063_6f75_6e74_6571;

/// How often a replica that does not lead tries to, and the leader checks its connection.
pub const LEADER_POLL: Duration = Duration::from_millis(500);

/// How often the publisher looks for events when no notification came.
pub const POLL: Duration = Duration::from_millis(500);

/// Connections in this replica's pool.
const POOL_SIZE: usize = 16;

/// Claims of single-use keys between two prunings of the old ones.
const ONCE_PRUNE_EVERY: u64 = 1024;

/// Events the publisher reads at once.
const PUBLISH_BATCH: i64 = 1000;

#[derive(Default)]
struct Counters {
    writes: AtomicU64,
    commits: AtomicU64,
    lock_held_ns: AtomicU64,
    commit_ns: AtomicU64,
    errors: AtomicU64,
}

pub(super) struct Postgres {
    pool: Pool,
    /// Drives the connections and the publisher; shut down in the background when dropped.
    rt: Option<tokio::runtime::Runtime>,
    counters: Arc<Counters>,
    /// Wakes the publisher when this replica committed events.
    wake: Arc<tokio::sync::Notify>,
    /// Single-use keys claimed, to prune the old ones now and then.
    claims: AtomicU64,
    /// Whether this replica holds the leader's lock (see [`lead`]).
    leader: Arc<std::sync::atomic::AtomicBool>,
    /// Set at shutdown: the leader's connection is closed, so another replica leads at once.
    step_down: tokio::sync::watch::Sender<bool>,
}

/// A PostgreSQL error, with the server's message and detail when the server sent one (the
/// driver's own text is only "db error").
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let disk_full = e.code() == Some(&tokio_postgres::error::SqlState::DISK_FULL);
        let source: Box<dyn std::error::Error + Send + Sync> = match e.as_db_error() {
            Some(db) => format!(
                "{}: {} ({}){}",
                db.severity(),
                db.message(),
                db.code().code(),
                db.detail().map(|d| format!(": {d}")).unwrap_or_default()
            )
            .into(),
            None => Box::new(e),
        };
        StoreError::Database { source, disk_full }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Database {
            source: Box::new(e),
            disk_full: false,
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(std::io::Error::other(e.to_string()))
}

/// Runs one or more statements without parameters (the simple query protocol).
fn batch(client: &deadpool_postgres::ClientWrapper, sql: &str) -> Result<(), StoreError> {
    futures::executor::block_on(client.batch_execute(sql)).map_err(StoreError::from)
}

impl Postgres {
    /// Connects to `url`, migrates the schema, and starts the publisher to `hub`.
    pub(super) fn open(url: &str, hub: Arc<Hub>) -> Result<Postgres, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gateway-postgres")
            .enable_all()
            .build()
            .map_err(StoreError::Io)?;
        let config = deadpool_postgres::Config {
            url: Some(url.to_owned()),
            manager: Some(ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            }),
            pool: Some(PoolConfig::new(POOL_SIZE)),
            ..Default::default()
        };
        let pool = {
            let _in = rt.enter();
            config
                .create_pool(Some(deadpool_postgres::Runtime::Tokio1), NoTls)
                .map_err(io)?
        };
        let pg = Postgres {
            pool,
            rt: Some(rt),
            counters: Arc::default(),
            wake: Arc::default(),
            claims: AtomicU64::new(0),
            leader: Arc::default(),
            step_down: tokio::sync::watch::channel(false).0,
        };
        let found = pg.migrate()?;
        tracing::debug!(found, "PostgreSQL schema");
        let head = pg.read(|tx| tx.head_event_id())?;
        let publisher = publish(pg.pool.clone(), url.to_owned(), hub, head, pg.wake.clone());
        pg.runtime()?.spawn(publisher);
        // The first try at leading is made before the store is handed out, so a gateway that
        // can lead (a single node, the first replica) does from its first request on.
        let (tried, first_try) = std::sync::mpsc::channel::<()>();
        pg.runtime()?.spawn(lead(
            url.to_owned(),
            pg.leader.clone(),
            pg.step_down.subscribe(),
            tried,
        ));
        let _ = first_try.recv_timeout(Duration::from_secs(5));
        Ok(pg)
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, StoreError> {
        self.rt.as_ref().ok_or(StoreError::Poisoned)
    }

    /// Runs `f` on this engine's runtime and waits for it on the calling thread.
    fn on_runtime<F>(&self, f: F) -> Result<F::Output, StoreError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        futures::executor::block_on(self.runtime()?.spawn(f)).map_err(io)
    }

    /// A connection from the pool (a new one is made on this engine's runtime).
    fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        let pool = self.pool.clone();
        self.on_runtime(async move { pool.get().await })?
            .map_err(|e| {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                StoreError::from(e)
            })
    }

    /// Brings the schema to [`schema::SCHEMA_VERSION`] under the write lock; returns the
    /// version found (0 for a new database).
    fn migrate(&self) -> Result<i64, StoreError> {
        let client = self.client()?;
        batch(
            &client,
            &format!(
                "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK}); \
                 CREATE TABLE IF NOT EXISTS schema_version(version BIGINT NOT NULL)"
            ),
        )?;
        let result = (|| {
            let db = Db::postgres(&client, &self.counters.errors);
            let found: i64 = db
                .row("SELECT version FROM schema_version", crate::args![], |r| {
                    r.get(0)
                })?
                .unwrap_or(0);
            if found > schema::SCHEMA_VERSION {
                return Err(StoreError::TooNew {
                    found,
                    supported: schema::SCHEMA_VERSION,
                });
            }
            let from = usize::try_from(found).unwrap_or(0);
            for m in schema::MIGRATIONS.iter().skip(from) {
                batch(&client, m)?;
            }
            if found < schema::SCHEMA_VERSION {
                batch(
                    &client,
                    &format!(
                        "DELETE FROM schema_version; \
                         INSERT INTO schema_version(version) VALUES ({})",
                        schema::SCHEMA_VERSION
                    ),
                )?;
            }
            Ok(found)
        })();
        match result {
            Ok(found) => batch(&client, "COMMIT").map(|()| found),
            Err(e) => {
                let _ = batch(&client, "ROLLBACK");
                Err(e)
            }
        }
    }

    /// The schema version recorded in the database now.
    pub(super) fn schema_version(&self) -> Result<i64, StoreError> {
        self.read(|tx| {
            tx.one("SELECT version FROM schema_version", crate::args![], |r| {
                r.get(0)
            })
        })
    }

    pub(super) fn schema_wanted(&self) -> i64 {
        schema::SCHEMA_VERSION
    }

    /// Runs `f` in a write transaction under the write lock; commits if it returns `Ok` and
    /// every statement succeeded, and answers once the commit returned. The events `f` stored
    /// are published by the publisher (this replica's and every other's).
    pub(super) fn write_publish<T, E>(
        &self,
        f: impl FnOnce(&Db<'_>) -> Result<(T, Vec<Pushed>), E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let client = self.client()?;
        let started = Instant::now();
        batch(
            &client,
            &format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"),
        )?;
        let db = Db::postgres(&client, &self.counters.errors);
        let outcome = f(&db);
        let clean = !db.any_failed();
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        let result = match outcome {
            // A statement that failed aborted the transaction, whatever `f` made of it:
            // PostgreSQL would answer COMMIT with a rollback, so it is not asked to.
            Ok(_) if !clean => {
                let _ = batch(&client, "ROLLBACK");
                Err(StoreError::CommitFailed {
                    message: "a statement of the write failed".into(),
                    disk_full: false,
                }
                .into())
            }
            Ok((value, pushed)) => {
                let commit_started = Instant::now();
                let sql = if pushed.is_empty() {
                    "COMMIT".to_owned()
                } else {
                    format!("NOTIFY {CHANNEL}; COMMIT")
                };
                let committed = batch(&client, &sql);
                self.counters
                    .commit_ns
                    .fetch_add(nanos(commit_started.elapsed()), Ordering::Relaxed);
                match committed {
                    Ok(()) => {
                        self.counters.commits.fetch_add(1, Ordering::Relaxed);
                        if !pushed.is_empty() {
                            self.wake.notify_one();
                        }
                        Ok(value)
                    }
                    Err(e) => {
                        self.counters.errors.fetch_add(1, Ordering::Relaxed);
                        let _ = batch(&client, "ROLLBACK");
                        Err(StoreError::CommitFailed {
                            disk_full: e.is_disk_full(),
                            message: e.to_string(),
                        }
                        .into())
                    }
                }
            }
            Err(e) => {
                let _ = batch(&client, "ROLLBACK");
                Err(e)
            }
        };
        self.counters
            .lock_held_ns
            .fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
        result
    }

    /// Runs a read-only `f` in a `REPEATABLE READ` transaction: one snapshot of the last
    /// commit for all its statements.
    pub(super) fn read<T, E>(&self, f: impl FnOnce(&Db<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let client = self.client()?;
        batch(&client, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        let result = f(&Db::postgres(&client, &self.counters.errors));
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        if let Err(e) = batch(&client, end) {
            tracing::warn!(%e, "ending a read transaction failed");
        }
        result
    }

    /// Inserts `key` unless it is there; true if it was new. Every [`ONCE_PRUNE_EVERY`]
    /// claims, keys older than `horizon` are removed. Autocommit, outside the write lock: the
    /// primary key alone decides, on every replica.
    pub(super) fn claim_once(&self, key: &str, at: i64, horizon: i64) -> Result<bool, StoreError> {
        let client = self.client()?;
        let db = Db::postgres(&client, &self.counters.errors);
        let n = db.exec(
            "INSERT INTO used_once(key, at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            crate::args![key, at],
        )?;
        if self
            .claims
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(ONCE_PRUNE_EVERY)
        {
            db.exec("DELETE FROM used_once WHERE at < ?1", crate::args![horizon])?;
        }
        Ok(n == 1)
    }

    /// Whether this replica leads: it holds the leader's lock, on a connection that answered
    /// within the last [`LEADER_POLL`] or so.
    pub(super) fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// Gives up leadership for good (at shutdown): the leader's connection closes and
    /// PostgreSQL releases its lock for another replica.
    pub(super) fn step_down(&self) {
        self.step_down.send_replace(true);
        self.leader.store(false, Ordering::SeqCst);
    }

    pub(super) fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            writes: c.writes.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
            wal_frames: 0,
            lock_held_ns: c.lock_held_ns.load(Ordering::Relaxed),
            commit_ns: c.commit_ns.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The publisher and the connections end with the runtime; dropping a runtime inside
        // another's context would panic, so it is shut down in the background.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The events after `after`, in id order, at most [`PUBLISH_BATCH`].
async fn events_after(pool: &Pool, after: u64) -> Result<Vec<Pushed>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT seq, approver, kind, data, audience FROM events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .await?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let rows = client.query(&stmt, &[&after, &PUBLISH_BATCH]).await?;
    rows.iter()
        .map(|r| {
            Ok(Pushed {
                seq: u64::try_from(r.try_get::<_, i64>(0)?).unwrap_or(0),
                approver: r.try_get(1)?,
                wide: super::events::wide_of(r.try_get(4)?)?,
                kind: r.try_get(2)?,
                data: r.try_get::<_, String>(3)?.into(),
                published: None,
            })
        })
        .collect()
}

/// A connection that listens on [`CHANNEL`] and wakes `wake` at each notification; it ends
/// (and `closed` is set) when the connection does.
async fn listen(
    url: &str,
    wake: Arc<tokio::sync::Notify>,
) -> Result<(tokio_postgres::Client, Arc<tokio::sync::Notify>), StoreError> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let closed = Arc::new(tokio::sync::Notify::new());
    let ended = closed.clone();
    tokio::spawn(async move {
        loop {
            match futures::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => wake.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(%e, "the PostgreSQL notification connection failed");
                    break;
                }
                None => break,
            }
        }
        ended.notify_one();
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    Ok((client, closed))
}

/// The publisher: hands every committed event after `published` to `hub`, in id order, on
/// each wake-up, notification or [`POLL`]; reconnects its listening connection when it ends.
async fn publish(
    pool: Pool,
    url: String,
    hub: Arc<Hub>,
    mut published: u64,
    wake: Arc<tokio::sync::Notify>,
) {
    let mut listening: Option<(tokio_postgres::Client, Arc<tokio::sync::Notify>)> = None;
    loop {
        if listening.is_none() {
            match listen(&url, wake.clone()).await {
                Ok(l) => listening = Some(l),
                Err(e) => tracing::warn!(%e, "cannot listen for PostgreSQL notifications; polling"),
            }
        }
        loop {
            match events_after(&pool, published).await {
                Ok(events) => {
                    let Some(last) = events.last().map(|e| e.seq) else {
                        break;
                    };
                    hub.publish(&events);
                    published = last;
                }
                Err(e) => {
                    tracing::warn!(%e, "reading the events to publish failed; retrying");
                    break;
                }
            }
        }
        let closed = listening.as_ref().map(|(_, c)| c.clone());
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = async { match &closed { Some(c) => c.notified().await, None => std::future::pending().await } } => {
                listening = None;
            }
        }
    }
}

/// Leadership: the work that must run once (the expiry sweep, the webhook and mail queues, the
/// log's checkpoints) runs on the replica that holds a session-level advisory lock on a
/// connection of its own. When that replica dies its connection closes and PostgreSQL releases
/// the lock; another replica's next try, within [`LEADER_POLL`], takes it. A leader whose
/// connection fails stops leading at once. (Each of those tasks is also a transaction under
/// the write lock, so the moment two replicas might both believe they lead is harmless.)
async fn lead(
    url: String,
    leader: Arc<std::sync::atomic::AtomicBool>,
    mut step_down: tokio::sync::watch::Receiver<bool>,
    tried: std::sync::mpsc::Sender<()>,
) {
    let mut tried = Some(tried);
    loop {
        if *step_down.borrow_and_update() {
            return;
        }
        let connected = tokio_postgres::connect(&url, NoTls).await;
        let (client, connection) = match connected {
            Ok(c) => c,
            Err(e) => {
                if let Some(t) = tried.take() {
                    let _ = t.send(());
                }
                tracing::warn!(%e, "the leader election cannot connect; retrying");
                tokio::time::sleep(LEADER_POLL).await;
                continue;
            }
        };
        let driver = tokio::spawn(connection);
        loop {
            let held = if leader.load(Ordering::SeqCst) {
                client.simple_query("SELECT 1").await.map(|_| true)
            } else {
                client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
                    .await
                    .and_then(|r| r.try_get::<_, bool>(0))
            };
            // Said after the outcome is recorded below.
            let first = tried.take();
            match held {
                Ok(true) => {
                    if !leader.swap(true, Ordering::SeqCst) {
                        tracing::info!("this replica now leads (expiry, deliveries, checkpoints)");
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    if leader.swap(false, Ordering::SeqCst) {
                        tracing::warn!(%e, "this replica lost its leader's connection");
                    }
                    if let Some(t) = first {
                        let _ = t.send(());
                    }
                    break;
                }
            }
            if let Some(t) = first {
                let _ = t.send(());
            }
            tokio::select! {
                _ = tokio::time::sleep(LEADER_POLL) => {}
                _ = step_down.changed() => {
                    leader.store(false, Ordering::SeqCst);
                    // Closing the connection releases the lock.
                    drop(client);
                    driver.abort();
                    return;
                }
            }
        }
        driver.abort();
        tokio::time::sleep(LEADER_POLL).await;
    }
}
