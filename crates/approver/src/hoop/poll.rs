//! Polling a hoop gateway: hoop pushes nothing a connector can subscribe to, so each
//! connection asks for the reviews pending for its user every `EngineOptions::hoop_poll`
//! ([`crate::HOOP_POLL_INTERVAL`] by default) while the engine runs, at once after a connection is made, and with jittered backoff while hoop
//! cannot be reached.
//!
//! One poll (`Engine::poll_hoop`): the pending list, read page by page; each review not seen
//! before is read in full (`GET /api/sessions/{id}`, for its script and hoop's analysis),
//! stored with its `hoop.review_received` audit entry in one transaction, and then announced
//! (`EngineEvent::HoopReviewReceived` and the notifier). A stored pending review that left the
//! list is read again (`GET /api/reviews/{id}`) and its new status stored, audited
//! `hoop.review_status`. A review still pending whose groups moved is updated in place.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rusqlite::params;
use sha2::Digest as _;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::api::{HoopError, Review};
use super::inbox::HoopItem;
use super::HoopConnection;
use crate::audit::{self, kind};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::EngineEvent;

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Reviews new to the inbox.
    pub arrived: usize,
    /// Reviews whose status changed.
    pub changed: usize,
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, EngineError> {
    serde_json::to_string(v).map_err(|e| EngineError::Corrupt(e.to_string()))
}

impl Engine {
    /// Polls connection `c` once.
    pub async fn poll_hoop(&self, c: &HoopConnection) -> Result<PollReport, EngineError> {
        let client = self.hoop_client(c)?;
        let pending = client.pending(&c.user.email).await?;
        let known: HashMap<String, String> =
            super::inbox::known(self, &c.id)?.into_iter().collect();
        let mut report = PollReport::default();
        let mut listed = HashSet::new();
        for s in &pending {
            let Some(review) = &s.review else { continue };
            listed.insert(review.id.clone());
            if known.contains_key(&review.id) {
                self.hoop_progress(c, review)?;
                continue;
            }
            let full = match client.session(&s.id).await {
                Ok(f) => f,
                // Gone between the list and the read: the next poll sees what became of it.
                Err(HoopError::UnknownReview(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let review = full.review.clone().unwrap_or_else(|| review.clone());
            let item = HoopItem {
                connection: c.id.clone(),
                url: c.url.clone(),
                review: Review {
                    session: Some(full.id.clone()),
                    ..review
                },
                session: full,
                received_at: self.now(),
                updated_at: self.now(),
            };
            if self.hoop_store_new(&item)? {
                report.arrived += 1;
                self.emit(EngineEvent::HoopReviewReceived {
                    connection: c.id.clone(),
                    review_id: item.review.id.clone(),
                });
                self.notifier().hoop_review_arrived(&c.id, item.id());
            }
        }
        for (id, status) in &known {
            if status != "PENDING" || listed.contains(id) {
                continue;
            }
            match client.review(id).await {
                Ok(r) if r.status != "PENDING" => {
                    self.hoop_store_status(c, &r)?;
                    report.changed += 1;
                }
                // Still pending, but no longer listed for this user (moved out of their
                // groups): kept as it is.
                Ok(_) => {}
                Err(HoopError::UnknownReview(_)) => {
                    let gone = Review {
                        status: "UNKNOWN".into(),
                        ..self.hoop_review_of(c, id)?
                    };
                    self.hoop_store_status(c, &gone)?;
                    report.changed += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(report)
    }

    fn hoop_review_of(&self, c: &HoopConnection, id: &str) -> Result<Review, EngineError> {
        let text = self
            .hoop_stored_review(&c.id, id)?
            .ok_or_else(|| EngineError::UnknownRequest(id.to_owned()))?;
        serde_json::from_str(&text).map_err(|e| EngineError::Corrupt(e.to_string()))
    }

    /// Stores a new review and its audit entry; false when it was stored meanwhile.
    fn hoop_store_new(&self, item: &HoopItem) -> Result<bool, EngineError> {
        let now = self.now();
        let script_sha256 = hex::encode(sha2::Sha256::digest(item.detail().as_bytes()));
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO hoop_reviews \
             (connection, review_id, session_id, status, review, session, received_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![
                item.connection,
                item.review.id,
                item.session.id,
                item.review.status,
                json(&item.review)?,
                json(&item.session)?,
                now
            ],
        )?;
        if n == 1 {
            audit::append(
                &tx,
                now,
                kind::HOOP_REVIEW_RECEIVED,
                Some(&item.review.id),
                serde_json::json!({
                    "connection": item.connection,
                    "url": item.url.as_str(),
                    "session": item.session.id,
                    "requester": item.requester(),
                    "action": item.action(),
                    "resource": item.resource(),
                    "script_sha256": script_sha256,
                    "groups": item.review.review_groups_data.iter().map(|g| &g.group).collect::<Vec<_>>(),
                    "needed": item.review.needed(),
                    "signed": false,
                }),
            )?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// Updates a pending review's groups when they moved (no audit entry: nothing decided).
    fn hoop_progress(&self, c: &HoopConnection, listed: &Review) -> Result<(), EngineError> {
        let stored = self.hoop_review_of(c, &listed.id)?;
        if stored.review_groups_data == listed.review_groups_data {
            return Ok(());
        }
        let updated = Review {
            review_groups_data: listed.review_groups_data.clone(),
            ..stored
        };
        self.db().execute(
            "UPDATE hoop_reviews SET review = ?3, updated_at = ?4 \
             WHERE connection = ?1 AND review_id = ?2",
            params![c.id, listed.id, json(&updated)?, self.now()],
        )?;
        Ok(())
    }

    /// Stores a review's new status, audited `hoop.review_status` with who decided each group;
    /// once committed, a status that is no longer pending is announced
    /// (`EngineEvent::HoopReviewChanged`, `Notifier::hoop_review_resolved`).
    pub(crate) fn hoop_store_status(
        &self,
        c: &HoopConnection,
        r: &Review,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE hoop_reviews SET status = ?3, review = ?4, updated_at = ?5 \
             WHERE connection = ?1 AND review_id = ?2",
            params![c.id, r.id, r.status, json(r)?, now],
        )?;
        let decided_by: Vec<serde_json::Value> = r
            .review_groups_data
            .iter()
            .filter(|g| g.status != "PENDING")
            .map(|g| {
                serde_json::json!({
                    "group": g.group,
                    "status": g.status,
                    "by": g.reviewed_by.as_ref().map(|b| &b.email),
                })
            })
            .collect();
        audit::append(
            &tx,
            now,
            kind::HOOP_REVIEW_STATUS,
            Some(&r.id),
            serde_json::json!({"connection": c.id, "status": r.status, "groups": decided_by}),
        )?;
        tx.commit()?;
        drop(db);
        if r.status != "PENDING" {
            self.emit(EngineEvent::HoopReviewChanged {
                connection: c.id.clone(),
                review_id: r.id.clone(),
                status: r.status.clone(),
            });
            self.notifier().hoop_review_resolved(&r.id, &r.status);
        }
        Ok(())
    }
}

/// The wait after `failures` polls in a row failed: the interval doubled per failure, at most
/// a minute, less up to a quarter at random.
fn backoff(interval: Duration, failures: u32) -> Duration {
    use rand::Rng as _;
    let base = interval
        .saturating_mul(1 << failures.min(6))
        .min(Duration::from_secs(60));
    let jitter = rand::thread_rng().gen_range(0.0..0.25);
    base.mul_f64(1.0 - jitter)
}

/// Polls one connection until shutdown or until it is removed.
async fn follow(
    engine: Engine,
    id: String,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    // The first answer is announced either way, so hosts count the connection from the start.
    let mut first = true;
    loop {
        let c = match engine.hoop_connections() {
            Ok(all) => match all.into_iter().find(|c| c.id == id) {
                Some(c) => c,
                None => return,
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the hoop connections");
                return;
            }
        };
        if let Err(e) = engine.flush_hoop(false).await {
            tracing::warn!(connection = %c.id, error = %e, "queued hoop decisions could not be sent");
        }
        let polled = engine.poll_hoop(&c).await;
        let failure = polled.as_ref().err().map(|e| e.to_string());
        if let Err(e) = engine.hoop_record_health(&c.id, failure.as_deref()) {
            tracing::warn!(connection = %c.id, error = %e, "the hoop connection's health could not be recorded");
        }
        let wait = match polled {
            Ok(_) => {
                if failures > 0 || first {
                    engine.emit(EngineEvent::ConnectionUp {
                        gateway: c.id.clone(),
                    });
                }
                failures = 0;
                interval
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(connection = %c.id, error = %e, "hoop cannot be polled");
                    engine.emit(EngineEvent::ConnectionDown {
                        gateway: c.id.clone(),
                        error: e.to_string(),
                    });
                }
                failures = failures.saturating_add(1);
                backoff(interval, failures)
            }
        };
        first = false;
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = engine.inner.hoop_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Polls every hoop connection, each on its own task so that one that cannot be reached
/// holds up no other; a connection made later is followed as soon as it is stored.
pub(crate) async fn follow_all(
    engine: Engine,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changed = engine.inner.hoop_connected.subscribe();
    let mut followed: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    let mut tasks = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        changed.borrow_and_update();
        match engine.hoop_connections() {
            Ok(all) => {
                let ids: HashSet<String> = all.iter().map(|c| c.id.clone()).collect();
                followed.retain(|id, handle| {
                    let keep = ids.contains(id);
                    if !keep {
                        handle.abort();
                    }
                    keep
                });
                for c in all {
                    if let std::collections::hash_map::Entry::Vacant(slot) = followed.entry(c.id) {
                        let id = slot.key().clone();
                        slot.insert(tasks.spawn(follow(
                            engine.clone(),
                            id,
                            interval,
                            shutdown.clone(),
                        )));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the hoop connections"),
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            c = changed.changed() => if c.is_err() { break },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}
