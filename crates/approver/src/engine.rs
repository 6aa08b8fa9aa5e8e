//! The [`Engine`]: one data directory (database, device key, soft authenticator), opened and
//! locked here, and the facade every host uses. The operations live with the tables they own:
//! pairing in `pairing`, stream events in `ingest`, deciding in `decide`, queueing and
//! delivering decisions in `outbox`, the stream connections and the run loop in `connector`;
//! the rows themselves in `gateway` (gateways), `inbox` (inbox), `outbox` (outbox) and
//! `audit` (audit log). This module imports none of the modules that implement `Engine`.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use countersign_protocol::audit::AuditEntry;
use countersign_protocol::{Digest, KeyPair, PublicKey};
use rusqlite::Connection;
use tokio::sync::{broadcast, watch};

use crate::audit::{self, AuditSummary};
use crate::clock::Clock;
use crate::device;
use crate::error::EngineError;
use crate::events::{EngineEvent, Notifier, SilentNotifier};
use crate::gateway::{self, GatewayRecord};
use crate::inbox::{self, InboxItem, ListFilter};
use crate::store;

pub const DATABASE_FILE: &str = "approver.db";
pub use crate::device::DEVICE_KEY_FILE;

/// How an engine is opened.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub clock: Clock,
    /// Backoff before the first retry of a connection or delivery; doubles up to `backoff_cap`.
    pub backoff_base: std::time::Duration,
    pub backoff_cap: std::time::Duration,
    /// Where a new device key is created (an existing one stays where it is).
    pub key_store: crate::device::KeyStore,
    /// How often a running engine polls each hoop.dev connection.
    pub hoop_poll: std::time::Duration,
}

/// How often a running engine asks each hoop gateway for its pending reviews, by default. Each
/// poll is one `GET /api/sessions` per 100 pending reviews: 20 requests a minute per approver
/// while fewer than 100 wait, plus one per review that arrives or leaves.
pub const HOOP_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3);

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            clock: Clock::system(),
            backoff_base: std::time::Duration::from_secs(1),
            backoff_cap: std::time::Duration::from_secs(30),
            key_store: crate::device::KeyStore::File,
            hoop_poll: HOOP_POLL_INTERVAL,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) data_dir: PathBuf,
    db: Mutex<Connection>,
    pub(crate) key: KeyPair,
    key_location: crate::device::KeyLocation,
    pub(crate) options: EngineOptions,
    pub(crate) http: reqwest::Client,
    pub(crate) events: broadcast::Sender<EngineEvent>,
    notifier: RwLock<Arc<dyn Notifier>>,
    /// Decisions being sent right now, so the background flusher and an interactive send never
    /// deliver the same row concurrently (delivery is idempotent, but audit entries would double).
    pub(crate) in_flight: Mutex<HashSet<String>>,
    pub(crate) outbox_wake: tokio::sync::Notify,
    /// Woken by every ingested event while [`Engine::run`] is active: its audit checkpointer
    /// signs a checkpoint that became due by entry count, off the ingest path.
    pub(crate) checkpoint_wake: tokio::sync::Notify,
    /// How many [`Engine::run`] loops are active (their checkpointer takes over from ingest).
    pub(crate) runs: std::sync::atomic::AtomicUsize,
    /// One HTTP client per pinned TLS certificate.
    pub(crate) pinned: Mutex<std::collections::HashMap<String, reqwest::Client>>,
    /// Rollbacks already reported, as `gateway:held seq`, so each is audited once.
    pub(crate) rollback_alarms: Mutex<HashSet<String>>,
    /// The open windows of aggregated audit entries (see `aggregate`).
    pub(crate) aggregated: Mutex<countersign_protocol::aggregate::Aggregator>,
    /// Bumped by every pairing; a running [`Engine::run`] watches it to connect new gateways.
    pub(crate) paired: watch::Sender<u64>,
    /// Bumped by every hoop connection made or removed; a running [`Engine::run`] follows it.
    pub(crate) hoop_connected: watch::Sender<u64>,
    /// Wakes the hoop pollers now (after an action), rather than at their next interval.
    pub(crate) hoop_wake: tokio::sync::Notify,
    /// The data directory's single-writer lock, held until the engine is dropped.
    _lock: std::fs::File,
}

/// The lock file in a data directory; it holds the owner's process id, for the message.
pub const LOCK_FILE: &str = "lock";

/// Takes the data directory's exclusive lock, or says who holds it.
fn take_lock(data_dir: &Path) -> Result<std::fs::File, EngineError> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| EngineError::at_path(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let pid = holder.trim().parse::<u32>().ok();
            return Err(EngineError::InUse {
                dir: data_dir.display().to_string(),
                pid,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.sync_all()?;
    Ok(file)
}

impl Drop for Inner {
    /// The last handle closing is a shutdown: sign a checkpoint over whatever the log gained.
    /// Aggregated audit counts still open are written first, so that none is lost.
    fn drop(&mut self) {
        let now = self.options.clock.now();
        let pending = self
            .aggregated
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .close(now, true);
        let db = self.db.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = audit::append_all(db, now, pending) {
            tracing::warn!(error = %e, "writing aggregated audit entries at shutdown failed");
        }
        if let Err(e) = audit::checkpoint_if_due(db, &self.key, now, true) {
            tracing::warn!(error = %e, "audit checkpoint at shutdown failed");
        }
    }
}

/// The approver engine. Cheap to clone; clones share one database connection and key.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.inner.data_dir)
            .field("device", &self.device_fingerprint())
            .finish()
    }
}

impl Engine {
    /// Opens the data directory with the system clock, creating it (mode 0700) on first use.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Engine, EngineError> {
        Self::open_with(data_dir, EngineOptions::default())
    }

    pub fn open_with(
        data_dir: impl AsRef<Path>,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
        let data_dir = data_dir.as_ref().to_path_buf();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&data_dir)
            .map_err(|e| EngineError::at_path(&data_dir, e))?;
        // Single writer: the lock is held for the engine's lifetime and released by the kernel
        // when the process ends, however it ends.
        let lock = take_lock(&data_dir)?;
        let (key, key_location) = device::load_or_create(&data_dir, options.key_store)?;
        let db = store::open(&data_dir.join(DATABASE_FILE), options.clock.now())?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EngineError::InvalidInput(format!("cannot build the HTTP client: {e}")))?;
        let (events, _) = broadcast::channel(256);
        Ok(Engine {
            inner: Arc::new(Inner {
                data_dir,
                db: Mutex::new(db),
                key,
                key_location,
                options,
                http,
                events,
                notifier: RwLock::new(Arc::new(SilentNotifier)),
                in_flight: Mutex::new(HashSet::new()),
                outbox_wake: tokio::sync::Notify::new(),
                checkpoint_wake: tokio::sync::Notify::new(),
                runs: std::sync::atomic::AtomicUsize::new(0),
                pinned: Mutex::new(std::collections::HashMap::new()),
                rollback_alarms: Mutex::new(HashSet::new()),
                aggregated: Mutex::new(Default::default()),
                paired: watch::channel(0).0,
                hoop_connected: watch::channel(0).0,
                hoop_wake: tokio::sync::Notify::new(),
                _lock: lock,
            }),
        })
    }

    /// Where the device key lives (a file or a Secret Service item); never the key.
    pub fn key_location(&self) -> &crate::device::KeyLocation {
        &self.inner.key_location
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    pub fn device_public_key(&self) -> PublicKey {
        self.inner.key.public()
    }

    pub fn device_fingerprint(&self) -> String {
        self.inner.key.public().fingerprint()
    }

    pub fn now(&self) -> i64 {
        self.inner.options.clock.now()
    }

    /// The engine's clock, for a host that shows times next to the engine's (notifications).
    pub fn clock(&self) -> Clock {
        self.inner.options.clock.clone()
    }

    /// Events for a UI. See [`EngineEvent`].
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    pub fn set_notifier(&self, notifier: Arc<dyn Notifier>) {
        *self
            .inner
            .notifier
            .write()
            .unwrap_or_else(|p| p.into_inner()) = notifier;
    }

    pub(crate) fn notifier(&self) -> Arc<dyn Notifier> {
        self.inner
            .notifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn emit(&self, event: EngineEvent) {
        // No receiver is fine: the CLI runs without a UI.
        let _ = self.inner.events.send(event);
    }

    /// The database connection. Held only for short synchronous work, never across an await.
    pub(crate) fn db(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back on
        // drop), so a poisoned lock is safe to keep using.
        self.inner.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---------------------------------------------------------------- gateways

    /// Every paired gateway.
    pub fn gateways(&self) -> Result<Vec<GatewayRecord>, EngineError> {
        gateway::all(&self.db())
    }

    /// The gateway whose fingerprint is, or starts with, `selector`.
    pub fn gateway(&self, selector: &str) -> Result<GatewayRecord, EngineError> {
        gateway::find_gateway(&self.db(), selector)
    }

    // ---------------------------------------------------------------- inbox

    pub fn list(&self, filter: ListFilter) -> Result<Vec<InboxItem>, EngineError> {
        let now = self.now();
        inbox::list(&self.db(), filter, now)
    }

    /// How many items the pending lists hold, without reading them (for a badge or a tray
    /// count): the requests `list(ListFilter::Pending)` would return and the pending hoop
    /// reviews (`hoop_items(false)`).
    pub fn pending_count(&self) -> Result<usize, EngineError> {
        let now = self.now();
        let db = self.db();
        let hoop: i64 = db.query_row(
            "SELECT COUNT(*) FROM hoop_reviews WHERE status = 'PENDING'",
            [],
            |r| r.get(0),
        )?;
        Ok(inbox::count_pending(&db, now)? + usize::try_from(hoop).unwrap_or(0))
    }

    /// The request whose id is `id`, or starts with it if that is unique.
    pub fn show(&self, id: &str) -> Result<InboxItem, EngineError> {
        inbox::find_item(&self.db(), id)
    }

    // ---------------------------------------------------------------- audit

    /// Verifies the whole audit chain; the error names the first bad entry.
    pub fn audit_verify(&self) -> Result<AuditSummary, EngineError> {
        let db = self.db();
        audit::verify(&db, &self.inner.key.public())
    }

    /// Every audit entry, in order (verified first).
    pub fn audit_entries(&self) -> Result<Vec<(AuditEntry, Digest)>, EngineError> {
        let db = self.db();
        Ok(audit::verified_entries(&db, &self.inner.key.public())?.1)
    }

    /// Signs a checkpoint over the audit chain's head with the device key if one is due (see
    /// [`audit::checkpoint_if_due`]), or now if `force`. Returns the entry it covers.
    pub fn audit_checkpoint(&self, force: bool) -> Result<Option<u64>, EngineError> {
        let now = self.now();
        let db = self.db();
        Ok(audit::checkpoint_if_due(&db, &self.inner.key, now, force)?.map(|c| c.body.seq))
    }

    /// Writes the chain as JSON Lines followed by the device's checkpoints, the last signed now.
    pub fn audit_export(&self, out: &mut dyn Write) -> Result<AuditSummary, EngineError> {
        let now = self.now();
        let db = self.db();
        audit::export(&db, &self.inner.key, now, out)
    }
}

/// Where a host keeps its data directory when none is given: `$XDG_DATA_HOME/countersign`, or
/// `~/.local/share/countersign`. The CLI and the desktop app share it (`COUNTERSIGN_DATA_DIR`,
/// and the CLI's `--data-dir`, override it before this is asked).
pub fn default_data_dir() -> Result<PathBuf, EngineError> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("countersign"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            EngineError::InvalidInput(
                "no data directory: neither COUNTERSIGN_DATA_DIR, XDG_DATA_HOME nor HOME is set"
                    .into(),
            )
        })?;
    Ok(PathBuf::from(home).join(".local/share/countersign"))
}

/// Which program pairs, for the device name a gateway shows its administrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    Cli,
    Desktop,
}

/// The device name a pairing sends unless the person gave one: the program and this
/// machine's name, e.g. "Countersign desktop on build-7".
pub fn device_name(host: Host) -> String {
    let machine = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_owned())
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "this computer".to_owned());
    match host {
        Host::Cli => format!("Countersign CLI on {machine}"),
        Host::Desktop => format!("Countersign desktop on {machine}"),
    }
}
