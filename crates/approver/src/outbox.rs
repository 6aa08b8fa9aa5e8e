//! The outbox: signed decisions waiting for delivery (`outbox` table), their delivery with
//! retry and backoff; what each answer means is in `answers`.
//!
//! Delivery is at-least-once on the wire and exactly-once in effect: the gateway answers a
//! re-sent decision id with the receipt it already issued, so retrying after a lost answer is
//! safe.

use std::time::Duration;

use countersign_protocol::api::ErrorCode;
use countersign_protocol::{Decision, Receipt, RequestState, Signed};
use rand::Rng;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::answers::{refusal_sentence, Answer};
use crate::audit::{self, kind};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::EngineEvent;
use crate::gateway::find_gateway;
use crate::inbox::{self, DeliveryState};

/// What one delivery attempt achieved.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "delivery", rename_all = "snake_case")]
pub enum Delivery {
    /// The gateway accepted the decision and signed a receipt (verified).
    Delivered { receipt: Box<Signed<Receipt>> },
    /// The gateway refused the decision for good.
    Refused { code: ErrorCode, message: String },
    /// Not delivered yet; it stays queued and is retried with backoff.
    Queued { error: String },
    /// Another task is sending it right now.
    InFlight,
    /// It was already delivered or refused earlier.
    Settled { state: DeliveryState },
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxItem {
    pub decision_id: String,
    pub gateway: String,
    pub request_id: String,
    pub verdict: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

/// Totals of one [`Engine::flush`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FlushReport {
    pub delivered: u32,
    pub refused: u32,
    pub queued: u32,
}

/// Exponential backoff with jitter: attempt 0 waits about `base`, doubling up to `cap`. The
/// delay is drawn from the upper half of the window so many clients do not retry in step.
pub(crate) fn backoff_delay(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let window = base
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(cap);
    let half = window / 2;
    let jitter = rand::thread_rng().gen_range(0..=half.as_millis().max(1) as u64);
    half + Duration::from_millis(jitter)
}

/// Removes a decision id from the in-flight set when the attempt ends, however it ends.
struct Claim<'a> {
    engine: &'a Engine,
    id: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.engine
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Engine {
    /// Makes one delivery attempt for a queued decision and records the result.
    pub async fn deliver(&self, decision_id: &str) -> Result<Delivery, EngineError> {
        {
            let mut set = self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !set.insert(decision_id.to_owned()) {
                return Ok(Delivery::InFlight);
            }
        }
        let _claim = Claim {
            engine: self,
            id: decision_id.to_owned(),
        };
        let row: Option<(String, String, String, u32)> = self
            .db()
            .query_row(
                "SELECT gateway, body, state, attempts FROM outbox WHERE decision_id = ?1",
                [decision_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((gw, body, state, attempts)) = row else {
            return Err(EngineError::InvalidInput(format!(
                "decision {decision_id} is not in the outbox"
            )));
        };
        let state = DeliveryState::parse(&state)
            .ok_or_else(|| EngineError::Corrupt(format!("outbox state `{state}`")))?;
        if state != DeliveryState::Queued {
            return Ok(Delivery::Settled { state });
        }
        let signed: Signed<Decision> = serde_json::from_str(&body)
            .map_err(|e| EngineError::Corrupt(format!("outbox body of {decision_id}: {e}")))?;
        let result = self.send_decision(&gw, &signed).await;
        let now = self.now();
        let d = &signed.body;
        match result {
            Ok(Answer::Receipt(receipt)) => {
                let receipt = *receipt;
                let receipt_json = serde_json::to_string(&receipt)
                    .map_err(|e| EngineError::Corrupt(format!("cannot encode receipt: {e}")))?;
                let r = &receipt.body;
                let mut db = self.db();
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let gw = find_gateway(&tx, &gw)?;
                crate::store::execute(&tx,
                    "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, receipt = ?1, \
                     last_error = NULL WHERE decision_id = ?2",
                    params![receipt_json, decision_id],
                )?;
                let applied = inbox::apply_receipt(&tx, &gw.fingerprint, &d.request_id, r)?;
                audit::append(
                    &tx,
                    now,
                    kind::DECISION_SENT,
                    Some(&d.request_id),
                    serde_json::json!({
                        "gateway": gw.fingerprint,
                        "decision_id": d.decision_id,
                        "attempts": attempts + 1,
                    }),
                )?;
                audit::append(
                    &tx,
                    now,
                    kind::RECEIPT_RECEIVED,
                    Some(&d.request_id),
                    serde_json::json!({
                        "gateway": gw.fingerprint,
                        "decision_id": d.decision_id,
                        "receipt_digest": receipt.digest()?,
                        "request_state": r.request_state,
                        "approvals": r.approvals,
                        "min_approvals": r.min_approvals,
                        "accepted_at": r.accepted_at,
                        "status_seq": r.status_seq,
                        "applied": applied == inbox::StatusApplied::Applied,
                    }),
                )?;
                tx.commit()?;
                drop(db);
                self.emit(EngineEvent::DecisionDelivered {
                    decision_id: d.decision_id.clone(),
                    request_id: d.request_id.clone(),
                    request_state: r.request_state,
                });
                if r.request_state != RequestState::Pending {
                    self.notifier()
                        .request_resolved(&d.request_id, r.request_state);
                }
                Ok(Delivery::Delivered {
                    receipt: Box::new(receipt),
                })
            }
            Ok(Answer::Refused {
                http_status: status,
                refusal,
                status: request_status,
            }) => {
                let code = refusal.body.code.clone();
                let message = refusal_sentence(&code);
                let mut db = self.db();
                let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                if let Some(st) = &request_status {
                    let fp = find_gateway(&tx, &gw)?.fingerprint;
                    inbox::apply_status(&tx, &fp, &st.body)?;
                }
                crate::store::execute(&tx,
                    "UPDATE outbox SET state = 'refused', attempts = attempts + 1, last_error = ?1 \
                     WHERE decision_id = ?2",
                    params![format!("{code}: {message}"), decision_id],
                )?;
                audit::append(
                    &tx,
                    now,
                    kind::DECISION_REFUSED,
                    Some(&d.request_id),
                    serde_json::json!({
                        "gateway": gw,
                        "decision_id": d.decision_id,
                        "status": status,
                        "code": code.as_str(),
                        "refusal_digest": refusal.digest()?,
                        "status_seq": refusal.body.status_seq,
                    }),
                )?;
                tx.commit()?;
                drop(db);
                self.emit(EngineEvent::DecisionRefused {
                    decision_id: d.decision_id.clone(),
                    request_id: d.request_id.clone(),
                    code: code.clone(),
                    message: message.clone(),
                });
                Ok(Delivery::Refused { code, message })
            }
            Err(e) => {
                // Anything else may be transient (network, 5xx, a garbled answer, an error
                // without a verified refusal): keep the decision and try again later. Retries
                // are audited, aggregated per gateway so that a peer cannot flood the log.
                self.audit_aggregated(
                    kind::DECISION_RETRY,
                    &format!("{}:{gw}", kind::DECISION_RETRY),
                    serde_json::json!({
                        "gateway": gw,
                        "decision_id": d.decision_id,
                        "request_id": d.request_id,
                        "error": e.to_string(),
                    }),
                )?;
                let o = &self.inner.options;
                let delay = backoff_delay(o.backoff_base, o.backoff_cap, attempts);
                let next = now + delay.as_secs().max(1) as i64;
                let error = e.to_string();
                self.db().execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?1, \
                     last_error = ?2 WHERE decision_id = ?3",
                    params![next, error, decision_id],
                )?;
                tracing::info!(decision = decision_id, %error, "delivery failed; will retry");
                Ok(Delivery::Queued { error })
            }
        }
    }

    /// Sends every queued decision that is due. With `force`, ignores the backoff schedule
    /// (used by `sync`, where a person is waiting).
    pub async fn flush_due(&self, force: bool) -> Result<FlushReport, EngineError> {
        let now = self.now();
        let due: Vec<String> = {
            let db = self.db();
            let mut stmt = db.prepare_cached(
                "SELECT decision_id FROM outbox WHERE state = 'queued' \
                 AND (?1 OR next_attempt_at <= ?2) ORDER BY created_at, decision_id",
            )?;
            let rows = stmt.query_map(params![force, now], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut report = FlushReport::default();
        for id in due {
            match self.deliver(&id).await? {
                Delivery::Delivered { .. } => report.delivered += 1,
                Delivery::Refused { .. } => report.refused += 1,
                Delivery::Queued { .. } | Delivery::InFlight => report.queued += 1,
                Delivery::Settled { .. } => {}
            }
        }
        Ok(report)
    }

    /// Sends every queued decision that is due.
    pub async fn flush(&self) -> Result<FlushReport, EngineError> {
        self.flush_due(false).await
    }

    /// Every outbox row, newest first.
    pub fn outbox(&self) -> Result<Vec<OutboxItem>, EngineError> {
        let db = self.db();
        let mut stmt = db.prepare_cached(
            "SELECT decision_id, gateway, request_id, verdict, state, attempts, next_attempt_at, \
             last_error, created_at FROM outbox ORDER BY created_at DESC, decision_id",
        )?;
        let rows = stmt.query_map([], |r| {
            let state: String = r.get(4)?;
            Ok((
                OutboxItem {
                    decision_id: r.get(0)?,
                    gateway: r.get(1)?,
                    request_id: r.get(2)?,
                    verdict: r.get(3)?,
                    state: DeliveryState::Queued,
                    attempts: r.get(5)?,
                    next_attempt_at: r.get(6)?,
                    last_error: r.get(7)?,
                    created_at: r.get(8)?,
                },
                state,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut item, state) = row?;
            item.state = DeliveryState::parse(&state)
                .ok_or_else(|| EngineError::Corrupt(format!("outbox state `{state}`")))?;
            out.push(item);
        }
        Ok(out)
    }

    /// When the next queued decision is due, if any.
    pub(crate) fn next_due(&self) -> Result<Option<i64>, EngineError> {
        Ok(self.db().query_row(
            "SELECT min(next_attempt_at) FROM outbox WHERE state = 'queued'",
            [],
            |r| r.get(0),
        )?)
    }

    // ------------------------------------------------------------ queueing

    /// Records a signed decision: the `decision.made` audit entry, the outbox row and the
    /// inbox link, in one transaction. Delivery happens later ([`Engine::flush`]).
    pub fn queue_decision(&self, signed: &Signed<Decision>) -> Result<(), EngineError> {
        self.queue_decision_inner(signed, true)
    }

    /// `wake`: whether to wake the background flusher. The interactive path delivers at once
    /// itself and does not wake it, so the two do not race for the same row.
    pub(crate) fn queue_decision_inner(
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
        inbox::link_decision(&tx, &gw.fingerprint, &d.request_id, &d.decision_id)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(30);
        for attempt in 0..40 {
            let d = backoff_delay(base, cap, attempt);
            assert!(d <= cap, "attempt {attempt}: {d:?}");
        }
        let late = backoff_delay(base, cap, 10);
        assert!(late >= Duration::from_secs(15));
        assert!(backoff_delay(base, cap, 0) <= Duration::from_secs(1));
    }
}
