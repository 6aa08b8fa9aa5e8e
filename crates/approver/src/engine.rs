//! The [`Engine`]: one data directory (database, device key, soft authenticator) and every
//! operation on it — pairing, ingesting stream events, the inbox, deciding, and the audit log.
//! Stream connections live in `connector`, decision delivery in `outbox`.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use countersign_protocol::api::paths;
use countersign_protocol::audit::AuditEntry;
use countersign_protocol::{
    ApprovalRequest, Decision, Digest, GatewayInfo, KeyPair, PairChallenge, PairFinish, PairStart,
    Paired, PairingLink, PublicKey, RequestState, Signed, StatusUpdate, StreamEvent, Verdict, Vote,
    PROTOCOL_VERSION,
};
use rusqlite::{params, Connection, OptionalExtension, Row};
use tokio::sync::broadcast;
use url::Url;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};

use crate::audit::{self, kind, AuditSummary};
use crate::authenticator::Authenticator;
use crate::clock::{format_time, Clock};
use crate::device;
use crate::error::EngineError;
use crate::events::{EngineEvent, Notifier, SilentNotifier};
use crate::gateway::{self, GatewayRecord};
use crate::inbox::{
    check_request, DeliveryState, InboxItem, IngestOutcome, ListFilter, LocalDecision, RejectReason,
};
use crate::store;

pub const DATABASE_FILE: &str = "approver.db";
pub use crate::device::DEVICE_KEY_FILE;

/// What one ingest transaction produced: the outcome, the events to emit after commit, the
/// request that arrived (gateway, id) and the request that was resolved.
type Ingested = (
    IngestOutcome,
    Vec<EngineEvent>,
    Option<(String, String)>,
    Option<(String, RequestState)>,
);

/// How an engine is opened.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub clock: Clock,
    /// Backoff before the first retry of a connection or delivery; doubles up to `backoff_cap`.
    pub backoff_base: std::time::Duration,
    pub backoff_cap: std::time::Duration,
    /// Where a new device key is created (an existing one stays where it is).
    pub key_store: crate::device::KeyStore,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            clock: Clock::system(),
            backoff_base: std::time::Duration::from_secs(1),
            backoff_cap: std::time::Duration::from_secs(30),
            key_store: crate::device::KeyStore::File,
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
    fn drop(&mut self) {
        let now = self.options.clock.now();
        let db = self.db.get_mut().unwrap_or_else(|p| p.into_inner());
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

/// What became of a decision made through [`Engine::approve`] or [`Engine::deny`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DecisionOutcome {
    pub decision: Signed<Decision>,
    pub delivery: crate::outbox::Delivery,
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
        let db = store::open(&data_dir.join(DATABASE_FILE))?;
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
        let db = self.db();
        let mut stmt = db.prepare_cached(&format!(
            "SELECT {GATEWAY_COLUMNS} FROM gateways ORDER BY paired_at"
        ))?;
        let rows = stmt.query_map([], gateway_row)?;
        rows.map(|r| r?).collect()
    }

    /// The gateway whose fingerprint is, or starts with, `selector`.
    pub fn gateway(&self, selector: &str) -> Result<GatewayRecord, EngineError> {
        let db = self.db();
        find_gateway(&db, selector)
    }

    /// Pins a gateway from a record obtained elsewhere (an import, or a test that plays the
    /// gateway). The record's fingerprint must be its key's. Audited like a pairing.
    pub fn trust_gateway(&self, record: GatewayRecord) -> Result<(), EngineError> {
        if record.gateway_key.fingerprint() != record.fingerprint {
            return Err(EngineError::GatewayKeyMismatch {
                pinned: record.fingerprint.clone(),
                presented: record.gateway_key.fingerprint(),
            });
        }
        let now = self.now();
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        upsert_gateway(&tx, &record)?;
        audit::append(
            &tx,
            now,
            kind::GATEWAY_PAIRED,
            None,
            serde_json::json!({
                "gateway": record.fingerprint,
                "url": record.url.as_str(),
                "approver": record.approver,
                "device_id": record.device_id,
                "method": "imported",
            }),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Pairs with the gateway named in `link`: pins its key (refusing any key but the one the
    /// link names), registers a passkey with `authenticator` and proves possession of the
    /// device key. The ceremony blocks the calling thread until it ends.
    pub async fn pair(
        &self,
        link: &PairingLink,
        device_name: &str,
        authenticator: &mut dyn Authenticator,
    ) -> Result<GatewayRecord, EngineError> {
        let now = self.now();
        if now >= link.expires_at {
            return Err(EngineError::LinkExpired {
                expires_at: format_time(link.expires_at),
            });
        }
        let client = self.client_for_pin(link.tls.as_deref())?;
        let http = &client;
        let info: GatewayInfo =
            gateway::get(http, gateway::endpoint(&link.gateway, paths::INFO)?).await?;
        if info.fingerprint != link.fingerprint {
            return Err(EngineError::GatewayKeyMismatch {
                pinned: link.fingerprint.clone(),
                presented: info.fingerprint,
            });
        }
        let start = PairStart {
            v: PROTOCOL_VERSION,
            code: link.code.clone(),
            device_key: self.inner.key.public(),
            device_name: device_name.to_owned(),
        };
        let challenge: PairChallenge = gateway::post(
            http,
            gateway::endpoint(&link.gateway, paths::PAIR_START)?,
            &start,
        )
        .await?;
        // The key pin: nothing from this answer is used before its key matches the link.
        let presented = challenge.gateway_key.fingerprint();
        if presented != link.fingerprint {
            return Err(EngineError::GatewayKeyMismatch {
                pinned: link.fingerprint.clone(),
                presented,
            });
        }
        let origin = Url::parse(&challenge.webauthn_origin).map_err(|e| {
            EngineError::BadGatewayResponse(format!("webauthn_origin is not a URL: {e}"))
        })?;
        let creation: CreationChallengeResponse = serde_json::from_value(challenge.creation)
            .map_err(|e| {
                EngineError::BadGatewayResponse(format!(
                    "the registration challenge is malformed: {e}"
                ))
            })?;
        let credential = authenticator.register(&origin, creation)?;
        let credential = serde_json::to_value(&credential)
            .map_err(|e| EngineError::Ceremony(format!("cannot encode the credential: {e}")))?;
        let finish = Signed::sign(
            &self.inner.key,
            PairFinish {
                v: PROTOCOL_VERSION,
                pairing_id: challenge.pairing_id.clone(),
                device_key: self.inner.key.public(),
                credential,
            },
        )?;
        let paired: Signed<Paired> = gateway::post(
            http,
            gateway::endpoint(&link.gateway, paths::PAIR_FINISH)?,
            &finish,
        )
        .await?;
        paired.verify(&challenge.gateway_key).map_err(|_| {
            EngineError::BadGatewayResponse(
                "the pairing confirmation is not signed by the pinned gateway key".into(),
            )
        })?;
        if paired.body.device_key != self.inner.key.public()
            || paired.body.approver != challenge.approver
        {
            return Err(EngineError::BadGatewayResponse(
                "the pairing confirmation names another device or approver".into(),
            ));
        }
        let record = GatewayRecord {
            fingerprint: presented,
            url: link.gateway.clone(),
            gateway_key: challenge.gateway_key,
            name: info.name,
            approver: paired.body.approver.clone(),
            device_id: paired.body.device_id.clone(),
            webauthn_origin: origin,
            paired_at: now,
            last_event_id: 0,
            tls_pin: link.tls.clone(),
        };
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        upsert_gateway(&tx, &record)?;
        audit::append(
            &tx,
            now,
            kind::GATEWAY_PAIRED,
            None,
            serde_json::json!({
                "gateway": record.fingerprint,
                "url": record.url.as_str(),
                "approver": record.approver,
                "device_id": record.device_id,
                "method": "link",
                "authenticator": authenticator.kind(),
            }),
        )?;
        tx.commit()?;
        Ok(record)
    }

    // ---------------------------------------------------------------- ingest

    /// Verifies and stores one stream event from the gateway `gateway` (fingerprint or a
    /// unique prefix). `event_id` is the SSE id; events not newer than the last stored one are
    /// ignored. The resume point moves in the same transaction as the stored event.
    pub fn ingest(
        &self,
        gateway: &str,
        event_id: Option<u64>,
        event: StreamEvent,
    ) -> Result<IngestOutcome, EngineError> {
        let now = self.now();
        let mut db = self.db();
        // Stream events are committed with synchronous=NORMAL: a power cut can roll back only
        // the last ingested events, always together with the resume point that moves in the
        // same transaction, so the gateway (which holds them durably) replays them on
        // reconnect. Decisions, receipts and everything else stay FULL: the next FULL commit
        // also makes these durable.
        db.pragma_update(None, "synchronous", "NORMAL")?;
        let ingested = Self::ingest_tx(&mut db, gateway, event_id, event, now);
        db.pragma_update(None, "synchronous", "FULL")?;
        let (outcome, after_commit, arrived, resolved) = ingested?;
        drop(db);
        for e in after_commit {
            self.emit(e);
        }
        if let Some((gw, id)) = arrived {
            if let Ok(item) = self.item(&gw, &id) {
                self.notifier().request_arrived(&item);
            }
        }
        if let Some((id, state)) = resolved {
            self.notifier().request_resolved(&id, state);
        }
        // A checkpoint that became due costs a signature and a durable commit (an fsync), which
        // must not delay this event or the next: a running engine's checkpointer signs it once
        // the stream is quiet. Without one (a one-shot sync), it is signed here.
        if self.inner.runs.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            self.inner.checkpoint_wake.notify_one();
        } else if let Err(e) = audit::checkpoint_if_due(&self.db(), &self.inner.key, now, false) {
            tracing::warn!(error = %e, "audit checkpoint failed");
        }
        Ok(outcome)
    }

    fn ingest_tx(
        db: &mut Connection,
        gateway: &str,
        event_id: Option<u64>,
        event: StreamEvent,
        now: i64,
    ) -> Result<Ingested, EngineError> {
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let gw = find_gateway(&tx, gateway)?;
        if let Some(id) = event_id {
            if id <= gw.last_event_id {
                // A resume overlap: the stream replays from our resume point. Not audited, as
                // the first delivery was.
                return Ok((IngestOutcome::Duplicate, Vec::new(), None, None));
            }
        }
        let mut after_commit: Vec<EngineEvent> = Vec::new();
        let mut arrived: Option<(String, String)> = None;
        let mut resolved: Option<(String, RequestState)> = None;
        let outcome = match event {
            StreamEvent::Request { request, challenge } => {
                let outcome = ingest_request(&tx, &gw, event_id, now, &request, &challenge)?;
                match &outcome {
                    IngestOutcome::Accepted => {
                        arrived = Some((gw.fingerprint.clone(), request.body.id.clone()));
                        after_commit.push(EngineEvent::RequestReceived {
                            gateway: gw.fingerprint.clone(),
                            request_id: request.body.id.clone(),
                        });
                    }
                    IngestOutcome::Rejected { reason } => {
                        after_commit.push(EngineEvent::RequestRejected {
                            gateway: gw.fingerprint.clone(),
                            request_id: Some(request.body.id.clone()),
                            reason: reason.message(),
                        })
                    }
                    IngestOutcome::Duplicate => {}
                }
                outcome
            }
            StreamEvent::Status { status } => {
                let outcome = ingest_status(&tx, &gw, event_id, now, &status)?;
                match &outcome {
                    IngestOutcome::Accepted => {
                        let b = &status.body;
                        after_commit.push(EngineEvent::StatusChanged {
                            gateway: gw.fingerprint.clone(),
                            request_id: b.request_id.clone(),
                            state: b.state,
                            approvals: b.approvals,
                            min_approvals: b.min_approvals,
                        });
                        if b.state.is_final() {
                            resolved = Some((b.request_id.clone(), b.state));
                        }
                    }
                    IngestOutcome::Rejected { reason } => {
                        after_commit.push(EngineEvent::RequestRejected {
                            gateway: gw.fingerprint.clone(),
                            request_id: Some(status.body.request_id.clone()),
                            reason: reason.message(),
                        })
                    }
                    IngestOutcome::Duplicate => {}
                }
                outcome
            }
        };
        if let Some(id) = event_id {
            crate::store::execute(
                &tx,
                "UPDATE gateways SET last_event_id = ?1 WHERE fingerprint = ?2",
                params![id as i64, gw.fingerprint],
            )?;
        }
        tx.commit()?;
        Ok((outcome, after_commit, arrived, resolved))
    }

    /// Records an event that could not be decoded at all, and moves past it.
    pub(crate) fn ingest_malformed(
        &self,
        gateway: &str,
        event_id: Option<u64>,
        error: String,
    ) -> Result<IngestOutcome, EngineError> {
        let now = self.now();
        let reason = RejectReason::Malformed { error };
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let gw = find_gateway(&tx, gateway)?;
        if matches!(event_id, Some(id) if id <= gw.last_event_id) {
            return Ok(IngestOutcome::Duplicate);
        }
        audit_rejection(&tx, now, &gw, event_id, None, None, &reason)?;
        if let Some(id) = event_id {
            crate::store::execute(
                &tx,
                "UPDATE gateways SET last_event_id = ?1 WHERE fingerprint = ?2",
                params![id as i64, gw.fingerprint],
            )?;
        }
        tx.commit()?;
        drop(db);
        self.emit(EngineEvent::RequestRejected {
            gateway: gw.fingerprint,
            request_id: None,
            reason: reason.message(),
        });
        Ok(IngestOutcome::Rejected { reason })
    }

    // ---------------------------------------------------------------- inbox

    pub fn list(&self, filter: ListFilter) -> Result<Vec<InboxItem>, EngineError> {
        let now = self.now();
        let db = self.db();
        let mut out = Vec::new();
        match filter {
            ListFilter::All => {
                let mut stmt = db.prepare_cached(&format!("{ITEM_SELECT} {LIST_ORDER}"))?;
                for r in stmt.query_map([], item_row)? {
                    out.push(r??);
                }
            }
            ListFilter::Pending => {
                // `inbox.expires_at` is the request's own `expires_at`, so this is
                // `effective_state` in SQL: closed requests are not read at all.
                let sql = format!("{ITEM_SELECT} {PENDING_WHERE} {LIST_ORDER}");
                let mut stmt = db.prepare_cached(&sql)?;
                for r in stmt.query_map(params![now], item_row)? {
                    out.push(r??);
                }
            }
        }
        Ok(out)
    }

    /// How many requests `list(ListFilter::Pending)` would return, without reading them (for
    /// a badge or a tray count).
    pub fn pending_count(&self) -> Result<usize, EngineError> {
        let now = self.now();
        let db = self.db();
        let sql = format!("SELECT count(*) FROM inbox i {PENDING_WHERE}");
        let n: i64 = crate::store::query_row(&db, &sql, params![now], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The request whose id is `id`, or starts with it if that is unique.
    pub fn show(&self, id: &str) -> Result<InboxItem, EngineError> {
        let db = self.db();
        find_item(&db, id)
    }

    fn item(&self, gateway: &str, id: &str) -> Result<InboxItem, EngineError> {
        let db = self.db();
        let sql = format!("{ITEM_SELECT} WHERE i.gateway = ?1 AND i.request_id = ?2");
        crate::store::query_row(&db, &sql, params![gateway, id], item_row)
            .optional()?
            .ok_or_else(|| EngineError::UnknownRequest(id.to_owned()))?
    }

    // ---------------------------------------------------------------- deciding

    /// Runs the passkey ceremony for `request_id` with the challenge the gateway bound to it
    /// and returns the assertion JSON. Blocks the calling thread for the ceremony.
    pub fn assertion_for(
        &self,
        request_id: &str,
        authenticator: &mut dyn Authenticator,
    ) -> Result<serde_json::Value, EngineError> {
        let item = self.show(request_id)?;
        let gw = self.gateway(&item.gateway)?;
        let challenge: RequestChallengeResponse = serde_json::from_value(item.challenge.clone())
            .map_err(|e| {
                EngineError::BadGatewayResponse(format!(
                    "the passkey challenge stored with request {} is malformed: {e}",
                    item.id()
                ))
            })?;
        let credential = authenticator.authenticate(&gw.webauthn_origin, challenge)?;
        serde_json::to_value(&credential)
            .map_err(|e| EngineError::Ceremony(format!("cannot encode the assertion: {e}")))
    }

    /// Builds and signs a decision on `request_id` with a fresh decision id. Makes no local
    /// checks and stores nothing: [`Engine::approve`] and [`Engine::deny`] do both.
    pub fn sign_decision(
        &self,
        request_id: &str,
        verdict: Verdict,
        reason: Option<String>,
        match_code: Option<String>,
        assertion: Option<serde_json::Value>,
    ) -> Result<Signed<Decision>, EngineError> {
        let item = self.show(request_id)?;
        let gw = self.gateway(&item.gateway)?;
        let decision = Decision {
            v: PROTOCOL_VERSION,
            decision_id: uuid::Uuid::now_v7().to_string(),
            request_id: item.id().to_owned(),
            request_digest: item.digest,
            gateway: gw.fingerprint.clone(),
            approver: gw.approver.clone(),
            device_id: gw.device_id.clone(),
            verdict,
            reason,
            match_code,
            decided_at: self.now(),
            assertion,
        };
        Ok(Signed::sign(&self.inner.key, decision)?)
    }

    /// Approves `request_id`: local checks, the passkey ceremony (blocking the calling thread),
    /// signing, the audit entry and outbox row in one transaction, then one delivery attempt.
    pub async fn approve(
        &self,
        request_id: &str,
        match_code: Option<String>,
        authenticator: &mut dyn Authenticator,
    ) -> Result<DecisionOutcome, EngineError> {
        let item = self.show(request_id)?;
        self.check_decidable(&item)?;
        let match_code = match_code
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        if item.request.body.match_required && match_code.is_none() {
            return Err(EngineError::MatchCodeRequired(item.id().to_owned()));
        }
        let assertion = self.assertion_for(item.id(), authenticator)?;
        let signed = self.sign_decision(
            item.id(),
            Verdict::Approve,
            None,
            match_code,
            Some(assertion),
        )?;
        self.decide(&item, signed).await
    }

    /// Denies `request_id`. No passkey is needed; the decision is still device-signed.
    pub async fn deny(
        &self,
        request_id: &str,
        reason: &str,
    ) -> Result<DecisionOutcome, EngineError> {
        let item = self.show(request_id)?;
        self.check_decidable(&item)?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(EngineError::InvalidInput("a denial needs a reason".into()));
        }
        let signed = self.sign_decision(
            item.id(),
            Verdict::Deny,
            Some(reason.to_owned()),
            None,
            None,
        )?;
        self.decide(&item, signed).await
    }

    async fn decide(
        &self,
        item: &InboxItem,
        signed: Signed<Decision>,
    ) -> Result<DecisionOutcome, EngineError> {
        self.queue_decision_inner(&signed, false)?;
        let id = &signed.body.decision_id;
        let mut delivery = self.deliver(id).await?;
        // The background flusher may have picked the row up first: wait for its attempt to end
        // so the person deciding sees the outcome, not "in flight".
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while matches!(delivery, crate::outbox::Delivery::InFlight)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            delivery = self.deliver(id).await?;
        }
        tracing::debug!(request = item.id(), "decision recorded");
        Ok(DecisionOutcome {
            decision: signed,
            delivery,
        })
    }

    fn check_decidable(&self, item: &InboxItem) -> Result<(), EngineError> {
        let now = self.now();
        match item.effective_state(now) {
            RequestState::Pending => {}
            RequestState::Expired => {
                return Err(EngineError::RequestExpired {
                    request_id: item.id().to_owned(),
                    expires_at: format_time(item.request.body.expires_at),
                })
            }
            other => {
                return Err(EngineError::RequestNotPending {
                    request_id: item.id().to_owned(),
                    state: other.as_str().to_owned(),
                })
            }
        }
        if let Some(d) = &item.decision {
            // A refused decision (say, a mistyped match code) may be made again.
            if d.delivery != DeliveryState::Refused {
                return Err(EngineError::AlreadyDecided {
                    request_id: item.id().to_owned(),
                    decision_id: d.decision_id.clone(),
                });
            }
        }
        Ok(())
    }

    /// Records a signed decision: the `decision.made` audit entry, the outbox row and the
    /// inbox link, in one transaction. Delivery happens later ([`Engine::flush`]).
    pub fn queue_decision(&self, signed: &Signed<Decision>) -> Result<(), EngineError> {
        self.queue_decision_inner(signed, true)
    }

    /// `wake`: whether to wake the background flusher. The interactive path delivers at once
    /// itself and does not wake it, so the two do not race for the same row.
    fn queue_decision_inner(
        &self,
        signed: &Signed<Decision>,
        wake: bool,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let d = &signed.body;
        let body = serde_json::to_string(signed)
            .map_err(|e| EngineError::Corrupt(format!("cannot encode the decision: {e}")))?;
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let gw = find_gateway(&tx, &d.gateway)?;
        crate::store::execute(&tx,
            "INSERT INTO outbox (decision_id, gateway, request_id, verdict, body, state, attempts, \
             next_attempt_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, 'queued', 0, ?6, ?6)",
            params![d.decision_id, gw.fingerprint, d.request_id, d.verdict.as_str(), body, now],
        )?;
        crate::store::execute(
            &tx,
            "UPDATE inbox SET decision_id = ?1 WHERE gateway = ?2 AND request_id = ?3",
            params![d.decision_id, gw.fingerprint, d.request_id],
        )?;
        audit::append(
            &tx,
            now,
            kind::DECISION_MADE,
            Some(&d.request_id),
            serde_json::json!({
                "gateway": gw.fingerprint,
                "decision_id": d.decision_id,
                "decision_digest": signed.digest()?,
                "request_digest": d.request_digest,
                "verdict": d.verdict,
                "reason": d.reason,
                "match_code_given": d.match_code.is_some(),
                "with_assertion": d.assertion.is_some(),
            }),
        )?;
        tx.commit()?;
        drop(db);
        self.emit(EngineEvent::DecisionQueued {
            decision_id: d.decision_id.clone(),
            request_id: d.request_id.clone(),
        });
        if wake {
            self.inner.outbox_wake.notify_one();
        }
        Ok(())
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

// -------------------------------------------------------------------- row helpers

const GATEWAY_COLUMNS: &str = "fingerprint, url, gateway_key, name, approver, device_id, \
     webauthn_origin, paired_at, last_event_id, tls_pin";

fn gateway_row(r: &Row<'_>) -> rusqlite::Result<Result<GatewayRecord, EngineError>> {
    let url: String = r.get(1)?;
    let key: String = r.get(2)?;
    let origin: String = r.get(6)?;
    let last: i64 = r.get(8)?;
    let build = || -> Result<GatewayRecord, EngineError> {
        Ok(GatewayRecord {
            fingerprint: r.get(0)?,
            url: Url::parse(&url).map_err(|e| EngineError::Corrupt(format!("gateway url: {e}")))?,
            gateway_key: PublicKey::parse("gateway_key", &key)?,
            name: r.get(3)?,
            approver: r.get(4)?,
            device_id: r.get(5)?,
            webauthn_origin: Url::parse(&origin)
                .map_err(|e| EngineError::Corrupt(format!("webauthn origin: {e}")))?,
            paired_at: r.get(7)?,
            last_event_id: u64::try_from(last).unwrap_or(0),
            tls_pin: r.get(9)?,
        })
    };
    Ok(build())
}

pub(crate) fn find_gateway(db: &Connection, selector: &str) -> Result<GatewayRecord, EngineError> {
    if selector.is_empty() {
        return Err(EngineError::UnknownGateway(String::new()));
    }
    let sql = format!(
        "SELECT {GATEWAY_COLUMNS} FROM gateways WHERE fingerprint = ?1 \
         OR substr(fingerprint, 1, length(?1)) = ?1 ORDER BY fingerprint = ?1 DESC LIMIT 2"
    );
    let mut stmt = db.prepare_cached(&sql)?;
    let mut found: Vec<GatewayRecord> = Vec::new();
    for r in stmt.query_map([selector], gateway_row)? {
        found.push(r??);
    }
    match found.len() {
        0 => Err(EngineError::UnknownGateway(selector.to_owned())),
        1 => Ok(found.remove(0)),
        _ if found[0].fingerprint == selector => Ok(found.remove(0)),
        _ => Err(EngineError::AmbiguousGateway(selector.to_owned())),
    }
}

fn upsert_gateway(db: &Connection, g: &GatewayRecord) -> Result<(), EngineError> {
    // A re-pairing gets a new device id and so a new event stream: the resume point restarts.
    crate::store::execute(
        db,
        "INSERT INTO gateways (fingerprint, url, gateway_key, name, approver, device_id, \
         webauthn_origin, paired_at, last_event_id, tls_pin) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT(fingerprint) DO UPDATE SET url = excluded.url, name = excluded.name, \
         approver = excluded.approver, device_id = excluded.device_id, \
         webauthn_origin = excluded.webauthn_origin, paired_at = excluded.paired_at, \
         last_event_id = excluded.last_event_id, tls_pin = excluded.tls_pin",
        params![
            g.fingerprint,
            g.url.as_str(),
            g.gateway_key.to_base64(),
            g.name,
            g.approver,
            g.device_id,
            g.webauthn_origin.as_str(),
            g.paired_at,
            g.last_event_id as i64,
            g.tls_pin
        ],
    )?;
    Ok(())
}

/// Pending at the gateway and not past expiry by our clock (`?1`): `effective_state` in SQL.
const PENDING_WHERE: &str = "WHERE i.state = 'pending' AND i.expires_at > ?1";
const LIST_ORDER: &str = "ORDER BY i.received_at DESC, i.request_id";

const ITEM_SELECT: &str = "SELECT i.gateway, g.name, i.request, i.digest, i.challenge, i.state, \
     i.approvals, i.min_approvals, i.votes, i.received_at, i.decision_id, o.verdict, o.state, \
     o.last_error, o.receipt, o.created_at \
     FROM inbox i JOIN gateways g ON g.fingerprint = i.gateway \
     LEFT JOIN outbox o ON o.decision_id = i.decision_id";

fn item_row(r: &Row<'_>) -> rusqlite::Result<Result<InboxItem, EngineError>> {
    let request: String = r.get(2)?;
    let digest: String = r.get(3)?;
    let challenge: String = r.get(4)?;
    let state: String = r.get(5)?;
    let votes: String = r.get(8)?;
    let decision_id: Option<String> = r.get(10)?;
    let verdict: Option<String> = r.get(11)?;
    let delivery: Option<String> = r.get(12)?;
    let last_error: Option<String> = r.get(13)?;
    let receipt: Option<String> = r.get(14)?;
    let decided_at: Option<i64> = r.get(15)?;
    let gateway: String = r.get(0)?;
    let gateway_name: String = r.get(1)?;
    let approvals: u32 = r.get(6)?;
    let min_approvals: u32 = r.get(7)?;
    let received_at: i64 = r.get(9)?;
    let build = move || -> Result<InboxItem, EngineError> {
        let bad = |what: &str| EngineError::Corrupt(format!("inbox column {what} is unreadable"));
        let decision = match (decision_id, verdict, delivery) {
            (Some(decision_id), Some(verdict), Some(delivery)) => Some(LocalDecision {
                decision_id,
                verdict: match verdict.as_str() {
                    "approve" => Verdict::Approve,
                    "deny" => Verdict::Deny,
                    _ => return Err(bad("verdict")),
                },
                decided_at: decided_at.unwrap_or(0),
                delivery: DeliveryState::parse(&delivery).ok_or_else(|| bad("delivery"))?,
                last_error,
                receipt: receipt
                    .map(|t| serde_json::from_str(&t))
                    .transpose()
                    .map_err(|_| bad("receipt"))?,
            }),
            _ => None,
        };
        Ok(InboxItem {
            gateway,
            gateway_name,
            request: serde_json::from_str(&request).map_err(|_| bad("request"))?,
            digest: Digest::parse("digest", &digest).map_err(|_| bad("digest"))?,
            challenge: serde_json::from_str(&challenge).map_err(|_| bad("challenge"))?,
            state: RequestState::parse(&state).ok_or_else(|| bad("state"))?,
            approvals,
            min_approvals,
            votes: serde_json::from_str(&votes).map_err(|_| bad("votes"))?,
            received_at,
            decision,
        })
    };
    Ok(build())
}

fn find_item(db: &Connection, id: &str) -> Result<InboxItem, EngineError> {
    if id.is_empty() {
        return Err(EngineError::UnknownRequest(String::new()));
    }
    // Request ids are printable ASCII (the protocol refuses others), so the ids that start with
    // `id` are exactly those in [id, id + DEL): a range of the request-id index, not a scan.
    // In id order the exact id, if stored, comes first; three rows tell one match from several.
    let mut stmt = db.prepare_cached(&find_item_sql())?;
    let mut found = Vec::new();
    for r in stmt.query_map(params![id, format!("{id}\u{7f}")], item_row)? {
        found.push(r??);
    }
    let exact = found.iter().filter(|i| i.id() == id).count();
    match (found.len(), exact) {
        (0, _) => Err(EngineError::UnknownRequest(id.to_owned())),
        (1, _) | (_, 1) => Ok(found.remove(0)),
        _ => Err(EngineError::AmbiguousRequest(id.to_owned())),
    }
}

/// The inbox items whose request id is in [?1, ?2), in id order (see `find_item`).
fn find_item_sql() -> String {
    format!("{ITEM_SELECT} WHERE i.request_id >= ?1 AND i.request_id < ?2 ORDER BY i.request_id LIMIT 3")
}

fn audit_rejection(
    db: &Connection,
    now: i64,
    gw: &GatewayRecord,
    event_id: Option<u64>,
    request_id: Option<&str>,
    request_digest: Option<Digest>,
    reason: &RejectReason,
) -> Result<(), EngineError> {
    audit::append(
        db,
        now,
        kind::REQUEST_REJECTED,
        request_id,
        serde_json::json!({
            "gateway": gw.fingerprint,
            "event_id": event_id,
            "request_digest": request_digest,
            "code": reason.code(),
            "reason": reason.message(),
        }),
    )?;
    Ok(())
}

fn ingest_request(
    db: &Connection,
    gw: &GatewayRecord,
    event_id: Option<u64>,
    now: i64,
    request: &Signed<ApprovalRequest>,
    challenge: &serde_json::Value,
) -> Result<IngestOutcome, EngineError> {
    let digest = request.digest()?;
    let id = request.body.id.as_str();
    let reject = |reason: RejectReason| -> Result<IngestOutcome, EngineError> {
        audit_rejection(db, now, gw, event_id, Some(id), Some(digest), &reason)?;
        Ok(IngestOutcome::Rejected { reason })
    };
    if let Err(reason) = check_request(request, gw, now) {
        return reject(reason);
    }
    let existing: Option<String> = crate::store::query_row(
        db,
        "SELECT digest FROM inbox WHERE gateway = ?1 AND request_id = ?2",
        params![gw.fingerprint, id],
        |r| r.get(0),
    )
    .optional()?;
    if let Some(stored) = existing {
        let reason = if stored == digest.to_hex() {
            RejectReason::Duplicate
        } else {
            RejectReason::ConflictingDuplicate
        };
        let dup = reason == RejectReason::Duplicate;
        let outcome = reject(reason)?;
        return Ok(if dup {
            IngestOutcome::Duplicate
        } else {
            outcome
        });
    }
    if serde_json::from_value::<RequestChallengeResponse>(challenge.clone()).is_err() {
        return reject(RejectReason::Malformed {
            error: "the passkey challenge is not a WebAuthn RequestChallengeResponse".into(),
        });
    }
    let b = &request.body;
    let request_json = serde_json::to_string(request)
        .map_err(|e| EngineError::Corrupt(format!("cannot encode the request: {e}")))?;
    crate::store::execute(
        db,
        "INSERT INTO inbox (gateway, request_id, request, digest, challenge, state, approvals, \
         min_approvals, votes, expires_at, received_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, '[]', ?7, ?8)",
        params![
            gw.fingerprint,
            id,
            request_json,
            digest.to_hex(),
            challenge.to_string(),
            b.min_approvals,
            b.expires_at,
            now
        ],
    )?;
    audit::append(
        db,
        now,
        kind::REQUEST_RECEIVED,
        Some(id),
        serde_json::json!({
            "gateway": gw.fingerprint,
            "event_id": event_id,
            "request_digest": digest,
            "requester": b.requester,
            "action": b.action,
            "resource": b.resource,
            "risk": b.risk,
            "expires_at": b.expires_at,
        }),
    )?;
    Ok(IngestOutcome::Accepted)
}

fn ingest_status(
    db: &Connection,
    gw: &GatewayRecord,
    event_id: Option<u64>,
    now: i64,
    status: &Signed<StatusUpdate>,
) -> Result<IngestOutcome, EngineError> {
    let b = &status.body;
    let reject = |reason: RejectReason| -> Result<IngestOutcome, EngineError> {
        audit_rejection(
            db,
            now,
            gw,
            event_id,
            Some(&b.request_id),
            Some(b.request_digest),
            &reason,
        )?;
        Ok(IngestOutcome::Rejected { reason })
    };
    if status.verify(&gw.gateway_key).is_err() {
        return reject(RejectReason::StatusBadSignature);
    }
    let stored: Option<String> = crate::store::query_row(
        db,
        "SELECT digest FROM inbox WHERE gateway = ?1 AND request_id = ?2",
        params![gw.fingerprint, b.request_id],
        |r| r.get(0),
    )
    .optional()?;
    let known = match stored {
        Some(d) if d != b.request_digest.to_hex() => {
            return reject(RejectReason::StatusDigestMismatch)
        }
        Some(_) => true,
        // A status for a request we rejected or never saw: record it, there is nothing to update.
        None => false,
    };
    if known {
        let votes: Vec<Vote> = b.votes.clone();
        let votes = serde_json::to_string(&votes)
            .map_err(|e| EngineError::Corrupt(format!("cannot encode votes: {e}")))?;
        crate::store::execute(
            db,
            "UPDATE inbox SET state = ?1, approvals = ?2, min_approvals = ?3, votes = ?4 \
             WHERE gateway = ?5 AND request_id = ?6",
            params![
                b.state.as_str(),
                b.approvals,
                b.min_approvals,
                votes,
                gw.fingerprint,
                b.request_id
            ],
        )?;
    }
    audit::append(
        db,
        now,
        kind::REQUEST_STATUS,
        Some(&b.request_id),
        serde_json::json!({
            "gateway": gw.fingerprint,
            "event_id": event_id,
            "request_digest": b.request_digest,
            "state": b.state,
            "approvals": b.approvals,
            "min_approvals": b.min_approvals,
            "votes": b.votes.len(),
            "known": known,
            "status_digest": status.digest()?,
        }),
    )?;
    Ok(IngestOutcome::Accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `show` takes an id prefix; finding it reads a range of the request-id index instead of
    /// scanning the inbox.
    #[test]
    fn an_id_prefix_is_found_in_a_range_of_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open(&dir.path().join("approver.db")).unwrap();
        let mut st = db
            .prepare(&format!("EXPLAIN QUERY PLAN {}", find_item_sql()))
            .unwrap();
        let plan: Vec<String> = st
            .query_map(params!["0b7c", "0b7c\u{7f}"], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(
                |step| step.starts_with("SEARCH i USING INDEX inbox_request_id")
                    && step.contains("request_id>? AND request_id<?")
            ),
            "{plan:?}"
        );
    }
}
