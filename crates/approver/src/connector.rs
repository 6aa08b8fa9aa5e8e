//! Stream connectors: one long-lived `GET /v2/stream` per paired gateway, parsed as
//! Server-Sent Events and fed to [`Engine::ingest`]; reconnection with backoff and
//! `Last-Event-ID` resume; half-open detection from missing keep-alives. Also the engine's
//! run loop (connectors plus the outbox flusher) and `sync` (drain each stream until `ready`).

use std::collections::HashMap;
use std::time::Duration;

use countersign_protocol::api::{paths, ErrorCode};
use countersign_protocol::sse::{SseItem, SseParser};
use countersign_protocol::types::Decode;
use countersign_protocol::{DeviceAuth, Event, Signed, StreamHello, StreamMode};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::EngineEvent;
use crate::gateway::{self, GatewayRecord};
use crate::ingest::{FrameRefusal, IngestOutcome};
use crate::outbox::{backoff_delay, FlushReport};
use crate::stream_rules::{before_connect, check_hello, violation};

/// Keep-alive interval assumed until the gateway's hello says otherwise.
const DEFAULT_KEEPALIVE_SECONDS: u64 = 15;
/// Silence longer than this many keep-alive intervals means a dead (half-open) connection.
const DEAD_AFTER_KEEPALIVES: f64 = 2.5;
/// How long `sync` waits for one gateway's backlog.
const SYNC_TIMEOUT: Duration = Duration::from_secs(20);

/// The result of syncing with one gateway.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncReport {
    pub gateway: String,
    pub name: String,
    /// Events stored (accepted, rejected or duplicate) during the sync.
    pub events: u32,
    /// Why the gateway could not be synced, if it could not.
    pub error: Option<String>,
    pub error_code: Option<String>,
    /// "This gateway's log changed history. ...", once this device refused one of its log
    /// checkpoints.
    pub log_history_changed: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Keep the stream open until shut down.
    Follow,
    /// Return once the backlog has been replayed (`ready`).
    UntilReady,
}

enum End {
    Ready,
    Shutdown,
}

/// After this many refused frames on one connection, it is closed and opened again (resuming
/// from the unchanged resume point).
const MAX_REFUSED_FRAMES: u32 = 8;

/// One connection: connect, read until the stream ends, dies or (in `UntilReady`) is drained.
/// `healthy` is set once `ready` arrives, so the caller can reset its backoff.
async fn connect_once(
    engine: &Engine,
    fingerprint: &str,
    mode: Mode,
    shutdown: &mut watch::Receiver<bool>,
    healthy: &mut bool,
    events: &mut u32,
) -> Result<End, EngineError> {
    // Re-read the record every time: the resume point moves as events are stored.
    let (gw, head_seen): (GatewayRecord, u64) = before_connect(engine, fingerprint)?;
    let url = gateway::endpoint(&gw.url, paths::STREAM)?;
    let auth = DeviceAuth::create(
        &engine.inner.key,
        &gw.device_id,
        "GET",
        paths::STREAM,
        engine.now(),
    )?;
    let mut req = engine
        .http_for(&gw)?
        .get(url.clone())
        .header(reqwest::header::AUTHORIZATION, auth.to_header())
        .header(reqwest::header::ACCEPT, "text/event-stream");
    let sent = (gw.last_event_id > 0).then_some(gw.last_event_id);
    if let Some(r) = sent {
        req = req.header("Last-Event-ID", r.to_string());
    }
    let resp = tokio::time::timeout(gateway::CALL_TIMEOUT, req.send())
        .await
        .map_err(|_| gateway::unreachable(&url, "no answer within 30 seconds"))?
        .map_err(|e| gateway::send_failed(&url, e))?;
    if !resp.status().is_success() {
        // Reuse the common reading rule for the error body (4xx refused, 5xx transient).
        let err = match gateway::read_answer::<countersign_protocol::GatewayInfo>(&url, resp).await
        {
            Err(e) => e,
            Ok(_) => EngineError::BadGatewayResponse("unexpected stream answer".into()),
        };
        // An answer that names the resume point costs a full resync, never more: it is not
        // signed, and resyncing loses nothing.
        if let EngineError::GatewayRefused { code, .. } = &err {
            if *code == ErrorCode::BadLastEventId && sent.is_some() {
                engine.resync(&gw.fingerprint, "refused")?;
            }
        }
        return Err(err);
    }
    engine.emit(EngineEvent::ConnectionUp {
        gateway: gw.fingerprint.clone(),
    });
    let mut resp = resp;
    let mut parser = SseParser::new();
    let mut dead_after =
        Duration::from_secs_f64(DEFAULT_KEEPALIVE_SECONDS as f64 * DEAD_AFTER_KEEPALIVES);
    let mut hello: Option<StreamHello> = None;
    let mut refused: u32 = 0;
    let mut last_on_connection: u64 = 0;
    loop {
        let chunk = tokio::select! {
            _ = shutdown.changed() => return Ok(End::Shutdown),
            c = tokio::time::timeout(dead_after, resp.chunk()) => c,
        };
        let bytes = match chunk {
            Err(_) => {
                return Err(gateway::unreachable(
                    &url,
                    format!(
                        "no data for {} seconds (connection presumed dead)",
                        dead_after.as_secs()
                    ),
                ))
            }
            Ok(Err(e)) => return Err(gateway::unreachable(&url, e)),
            Ok(Ok(None)) => {
                return Err(gateway::unreachable(&url, "the gateway closed the stream"))
            }
            Ok(Ok(Some(b))) => b,
        };
        let items = match parser.feed(&bytes) {
            Ok(items) => items,
            // Input that breaks the framing ends the connection, and is audited.
            Err(e) => return Err(violation(engine, &gw, &format!("broken_framing: {e}"))?),
        };
        for item in items {
            let SseItem::Event { id, event, data } = item else {
                continue;
            };
            match event.as_str() {
                "hello" if hello.is_none() => {
                    let (h, resync) =
                        check_hello(engine, &gw, &data, &auth.nonce, sent, head_seen)?;
                    if resync.is_some() && h.mode == StreamMode::Resume {
                        // The gateway resumes from a point the device no longer trusts:
                        // reconnect without one, for the full backlog.
                        return Err(EngineError::BadGatewayResponse(format!(
                            "the stream resumed from an implausible point ({})",
                            resync.unwrap_or_default()
                        )));
                    }
                    let n = h.keepalive_seconds.clamp(1, 3600);
                    dead_after = Duration::from_secs_f64(n as f64 * DEAD_AFTER_KEEPALIVES);
                    hello = Some(h);
                }
                "hello" => {
                    return Err(violation(engine, &gw, "second_hello")?);
                }
                "ready" => {
                    if hello.is_none() {
                        return Err(violation(engine, &gw, "ready_before_hello")?);
                    }
                    *healthy = true;
                    if mode == Mode::UntilReady {
                        return Ok(End::Ready);
                    }
                }
                name => {
                    *events += 1;
                    let claimed = id
                        .as_deref()
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0);
                    let outcome = match (&hello, Signed::<Event>::decode(data.as_bytes())) {
                        (None, _) => {
                            engine.refuse_frame(&gw, FrameRefusal::BeforeHello, claimed)?
                        }
                        (Some(_), Err(_)) => {
                            engine.refuse_frame(&gw, FrameRefusal::Undecodable, claimed)?
                        }
                        (Some(h), Ok(envelope)) => {
                            let e = &envelope.body;
                            if id.as_deref() != Some(e.id.to_string().as_str())
                                || name != e.payload.kind()
                            {
                                engine.refuse_frame(&gw, FrameRefusal::IdMismatch, claimed)?
                            } else {
                                let outcome = engine.receive(&gw.fingerprint, &envelope).await?;
                                // Ids rise on a connection, and none in the backlog is above
                                // the hello's head: checked on events that verified. One that
                                // breaks this was a duplicate of the resume point, or is
                                // stored like any other genuine event; the connection ends.
                                if !matches!(outcome, IngestOutcome::Refused { .. }) {
                                    if e.id <= last_on_connection {
                                        return Err(violation(engine, &gw, "id_not_increasing")?);
                                    }
                                    if e.id > h.head && !*healthy {
                                        return Err(violation(engine, &gw, "above_head")?);
                                    }
                                    last_on_connection = e.id;
                                }
                                outcome
                            }
                        }
                    };
                    if matches!(outcome, IngestOutcome::Refused { .. }) {
                        refused += 1;
                        if refused >= MAX_REFUSED_FRAMES {
                            return Err(EngineError::BadGatewayResponse(format!(
                                "{refused} stream frames on this connection were refused"
                            )));
                        }
                    }
                    tracing::debug!(gateway = %gw.name, ?id, ?outcome, "stream event");
                }
            }
        }
    }
}

/// Follows one gateway's stream until shutdown, reconnecting with backoff.
async fn follow(engine: Engine, fingerprint: String, mut shutdown: watch::Receiver<bool>) {
    let o = engine.inner.options.clone();
    let mut attempt: u32 = 0;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let mut healthy = false;
        let mut events = 0;
        let result = connect_once(
            &engine,
            &fingerprint,
            Mode::Follow,
            &mut shutdown,
            &mut healthy,
            &mut events,
        )
        .await;
        match result {
            Ok(End::Shutdown) => return,
            Ok(End::Ready) => {}
            Err(e) => {
                tracing::warn!(gateway = %fingerprint, error = %e, "stream connection lost");
                engine.emit(EngineEvent::ConnectionDown {
                    gateway: fingerprint.clone(),
                    error: e.to_string(),
                });
            }
        }
        // A connection that got as far as `ready` was good: start the backoff over.
        if healthy {
            attempt = 0;
        }
        let delay = backoff_delay(o.backoff_base, o.backoff_cap, attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Follows every paired gateway until shutdown: the ones paired now, and each one paired
/// later, as soon as its pairing commits. A gateway paired again (a new device id) gets a
/// new connection, since the old one authenticates as a device the gateway no longer has.
async fn follow_paired(engine: Engine, mut shutdown: watch::Receiver<bool>) {
    let mut paired = engine.inner.paired.subscribe();
    let mut followed: HashMap<String, (String, AbortHandle)> = HashMap::new();
    let mut connectors = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        paired.borrow_and_update();
        match engine.gateways() {
            Ok(gateways) => {
                for gw in gateways {
                    if matches!(followed.get(&gw.fingerprint), Some((device, _)) if *device == gw.device_id)
                    {
                        continue;
                    }
                    if let Some((_, old)) = followed.remove(&gw.fingerprint) {
                        old.abort();
                    }
                    let handle = connectors.spawn(follow(
                        engine.clone(),
                        gw.fingerprint.clone(),
                        shutdown.clone(),
                    ));
                    followed.insert(gw.fingerprint, (gw.device_id, handle));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the paired gateways"),
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            // The sender lives as long as the engine, which this task holds.
            changed = paired.changed() => if changed.is_err() { break },
            // Reaps connectors that ended (replaced ones), so the set does not grow.
            Some(_) = connectors.join_next(), if !connectors.is_empty() => {}
        }
    }
    while connectors.join_next().await.is_some() {}
}

/// How long the stream must be quiet before a checkpoint due by entry count is signed.
const CHECKPOINT_QUIET: Duration = Duration::from_millis(200);
/// The longest a checkpoint due by entry count waits for a quiet stream.
const CHECKPOINT_DEFER: Duration = Duration::from_secs(2);

/// Counts an active [`Engine::run`] for as long as it lives.
struct RunGuard(Engine);

impl RunGuard {
    fn new(engine: &Engine) -> RunGuard {
        engine
            .inner
            .runs
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        RunGuard(engine.clone())
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0
            .inner
            .runs
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Engine {
    /// Runs every paired gateway's connector and the outbox flusher until `shutdown` becomes
    /// true. A gateway paired while it runs is connected at once ([`Engine::pair`] wakes it).
    pub async fn run(&self, shutdown: watch::Receiver<bool>) -> Result<(), EngineError> {
        // Fails early, as before, when the gateways cannot be read at all.
        self.gateways()?;
        let mut tasks = JoinSet::new();
        tasks.spawn(follow_paired(self.clone(), shutdown.clone()));
        tasks.spawn(crate::hoop::poll::follow_all(
            self.clone(),
            self.inner.options.hoop_poll,
            shutdown.clone(),
        ));
        let engine = self.clone();
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            loop {
                if *stop.borrow() {
                    return;
                }
                if let Err(e) = engine.flush().await {
                    tracing::warn!(error = %e, "outbox flush failed");
                }
                let now = engine.now();
                let wait = match engine.next_due() {
                    Ok(Some(t)) if t > now => Duration::from_secs((t - now).min(60) as u64),
                    Ok(Some(_)) => Duration::from_secs(1),
                    _ => Duration::from_secs(60),
                };
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = engine.inner.outbox_wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
        // The WAL checkpointer: copies the log into the database file on its own connection
        // and thread, so that arriving requests never wait for that copy and its fsyncs.
        let path = self.inner.data_dir.join(crate::engine::DATABASE_FILE);
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            let mut conn = None;
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(crate::store::WAL_CHECKPOINT_INTERVAL) => {}
                }
                let path = path.clone();
                let ran = tokio::task::spawn_blocking(move || {
                    let c = match conn {
                        Some(c) => c,
                        None => crate::store::open_checkpointer(&path)?,
                    };
                    crate::store::checkpoint_wal(&c)?;
                    Ok::<_, EngineError>(c)
                })
                .await;
                conn = match ran {
                    Ok(Ok(c)) => Some(c),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "WAL checkpoint task failed");
                        None
                    }
                };
            }
        });
        // Checkpoints that became due by entry count (see `Engine::ingest`): signed once the
        // stream has been quiet for CHECKPOINT_QUIET, and at most CHECKPOINT_DEFER after the
        // first event that asked, so a burst of requests never waits for the fsync.
        let _running = RunGuard::new(self);
        let engine = self.clone();
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = engine.inner.checkpoint_wake.notified() => {}
                }
                let latest = tokio::time::Instant::now() + CHECKPOINT_DEFER;
                loop {
                    let quiet = (tokio::time::Instant::now() + CHECKPOINT_QUIET).min(latest);
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep_until(quiet) => break,
                        _ = engine.inner.checkpoint_wake.notified() => {}
                    }
                }
                let e = engine.clone();
                match tokio::task::spawn_blocking(move || e.audit_checkpoint(false)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "audit checkpoint failed"),
                    Err(e) => tracing::warn!(error = %e, "audit checkpoint task failed"),
                }
            }
        });
        // The audit checkpointer: a checkpoint over new entries at least every
        // CHECKPOINT_EVERY_SECONDS, and one at shutdown. Each round also anchors the log at
        // every gateway (checks the checkpoint it holds, uploads a newer one), starting now.
        let engine = self.clone();
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            let period = Duration::from_secs(crate::audit::CHECKPOINT_EVERY_SECONDS as u64);
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    reports = engine.anchor_audit() => match reports {
                        Ok(reports) => {
                            for r in reports.iter().filter(|r| r.damage.is_none()) {
                                if let Some(p) = &r.problem {
                                    tracing::debug!(gateway = %r.name, problem = %p, "audit not anchored this round");
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "audit anchoring failed"),
                    },
                }
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(period) => {}
                }
                if *stop.borrow() {
                    break;
                }
                if let Err(e) = engine.audit_checkpoint(false) {
                    tracing::warn!(error = %e, "audit checkpoint failed");
                }
            }
            // Aggregated counts first, so the last checkpoint covers them.
            if let Err(e) = engine.flush_aggregated() {
                tracing::warn!(error = %e, "writing aggregated audit entries failed");
            }
            if let Err(e) = engine.audit_checkpoint(true) {
                tracing::warn!(error = %e, "audit checkpoint at shutdown failed");
            }
        });
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    /// Connects to every gateway, stores its backlog until `ready`, then sends every queued
    /// decision. Unreachable gateways are reported, not fatal.
    pub async fn sync(&self) -> Result<(Vec<SyncReport>, FlushReport), EngineError> {
        let (_tx, rx) = watch::channel(false);
        let mut reports = Vec::new();
        for gw in self.gateways()? {
            let mut shutdown = rx.clone();
            let mut healthy = false;
            let mut events = 0;
            let result = tokio::time::timeout(
                SYNC_TIMEOUT,
                connect_once(
                    self,
                    &gw.fingerprint,
                    Mode::UntilReady,
                    &mut shutdown,
                    &mut healthy,
                    &mut events,
                ),
            )
            .await
            .unwrap_or_else(|_| {
                Err(EngineError::GatewayUnreachable {
                    url: gw.url.to_string(),
                    detail: "the backlog was not replayed within 20 seconds".into(),
                })
            });
            let (error, error_code) = match result {
                Ok(_) => (None, None),
                Err(e) => (Some(e.to_string()), Some(e.code().to_owned())),
            };
            let log_history_changed =
                crate::witness::history_changed(&self.db(), &gw.fingerprint)?.map(|h| h.sentence());
            reports.push(SyncReport {
                gateway: gw.fingerprint,
                name: gw.name,
                events,
                error,
                error_code,
                log_history_changed,
            });
        }
        // Each hoop connection's queued decisions sent, then polled once; one that cannot be
        // reached is reported.
        if let Err(e) = self.flush_hoop(true).await {
            tracing::warn!(error = %e, "queued hoop decisions could not be sent");
        }
        for c in self.hoop_connections()? {
            let polled = tokio::time::timeout(SYNC_TIMEOUT, self.poll_hoop(&c))
                .await
                .unwrap_or_else(|_| {
                    Err(EngineError::from(
                        crate::hoop::api::HoopError::Unreachable {
                            url: c.url.to_string(),
                            detail: "no answer within 20 seconds".into(),
                        },
                    ))
                });
            self.hoop_record_health(
                &c.id,
                polled.as_ref().err().map(|e| e.to_string()).as_deref(),
            )?;
            let (events, error, error_code) = match polled {
                Ok(r) => (
                    u32::try_from(r.arrived + r.changed).unwrap_or(u32::MAX),
                    None,
                    None,
                ),
                Err(e) => (0, Some(e.to_string()), Some(e.code().to_owned())),
            };
            reports.push(SyncReport {
                gateway: c.id.clone(),
                name: c.name(),
                events,
                error,
                error_code,
                log_history_changed: None,
            });
        }
        let flushed = self.flush_due(true).await?;
        Ok((reports, flushed))
    }
}
