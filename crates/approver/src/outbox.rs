//! The outbox: signed decisions waiting for delivery (`outbox` table), their delivery with
//! retry and backoff, receipt verification, and the raw `submit` call.
//!
//! Delivery is at-least-once on the wire and exactly-once in effect: the gateway answers a
//! re-sent decision id with the receipt it already issued, so retrying after a lost answer is
//! safe.

use std::time::Duration;

use countersign_protocol::api::{paths, ErrorBody, ErrorCode};
use countersign_protocol::types::Decode;
use countersign_protocol::{Decision, Receipt, Refusal, RequestState, Signed, StatusUpdate};
use rand::Rng;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::audit::{self, kind};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::EngineEvent;
use crate::gateway::{self, find_gateway, GatewayRecord};
use crate::inbox::{self, DeliveryState};

/// What one delivery attempt achieved.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "delivery", rename_all = "snake_case")]
pub enum Delivery {
    /// The gateway accepted the decision and signed a receipt (verified).
    Delivered { receipt: Signed<Receipt> },
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

/// A classified answer to a decision; anything else is an error to retry on.
enum Answer {
    Receipt(Box<Signed<Receipt>>),
    /// A verified, confirmed refusal.
    Refused {
        http_status: u16,
        refusal: Box<Signed<Refusal>>,
        status: Option<Box<Signed<StatusUpdate>>>,
    },
}

/// A receipt verifies under the pinned key and matches the decision that was sent.
fn check_receipt(
    gw: &GatewayRecord,
    decision: &Signed<Decision>,
    receipt: &Signed<Receipt>,
) -> Result<(), EngineError> {
    receipt.verify(&gw.gateway_key).map_err(|_| {
        EngineError::BadGatewayResponse(
            "the receipt is not signed by the pinned gateway key".into(),
        )
    })?;
    let r = &receipt.body;
    let d = &decision.body;
    if r.decision_id != d.decision_id
        || r.request_id != d.request_id
        || r.request_digest != d.request_digest
        || r.verdict != d.verdict
        || r.decision_digest != decision.digest()?
    {
        return Err(EngineError::BadGatewayResponse(
            "the receipt does not match the decision that was sent".into(),
        ));
    }
    Ok(())
}

/// A refusal verifies under the pinned key, names this gateway and this exact decision, has a
/// final code equal to the answer's, and its status (if any) verifies and is the request's at
/// the refusal's `status_seq`.
fn check_refusal(
    gw: &GatewayRecord,
    decision: &Signed<Decision>,
    code: &ErrorCode,
    refusal: &Signed<Refusal>,
    status: Option<&Signed<StatusUpdate>>,
) -> Result<(), &'static str> {
    let r = &refusal.body;
    let d = &decision.body;
    if refusal.verify(&gw.gateway_key).is_err() || r.validate().is_err() {
        return Err("the refusal is not signed by the pinned gateway key");
    }
    let digest = decision
        .digest()
        .map_err(|_| "the decision cannot be digested")?;
    if r.gateway != gw.fingerprint
        || r.decision_id != d.decision_id
        || r.decision_digest != digest
        || r.request_id != d.request_id
        || r.request_digest != d.request_digest
        || r.approver != d.approver
    {
        return Err("the refusal is for another decision");
    }
    if !r.code.is_final_refusal() || r.code != *code {
        return Err("the refusal's code is not the answer's final code");
    }
    match (status, r.status_seq) {
        (None, None) => Ok(()),
        (Some(s), Some(seq)) => {
            if s.verify(&gw.gateway_key).is_err()
                || s.body.validate().is_err()
                || s.body.request_id != d.request_id
                || s.body.request_digest != d.request_digest
                || s.body.seq != seq
            {
                Err("the refusal's status is not the request's at the refusal")
            } else {
                Ok(())
            }
        }
        _ => Err("the refusal's status does not match its status_seq"),
    }
}

/// The sentence this device shows for a confirmed refusal: its own, never the gateway's.
pub fn refusal_sentence(code: &ErrorCode) -> String {
    let s = match code {
        ErrorCode::RequestClosed => "The request was already decided before this decision arrived.",
        ErrorCode::RequestExpired => {
            "The request expired before this decision reached the gateway."
        }
        ErrorCode::AlreadyDecided => "You had already decided this request.",
        ErrorCode::RequestNotYetValid => "The request is not valid yet; decide again once it is.",
        ErrorCode::WrongMatchCode => "The match code does not match the one the requester sees.",
        ErrorCode::MatchCodeRequired => "This request needs the match code the requester sees.",
        ErrorCode::NotEligible => "You are not an approver of this request.",
        ErrorCode::UnknownRequest => {
            "The gateway does not know this request, although it signed it."
        }
        ErrorCode::RequestDigestMismatch | ErrorCode::WrongGateway => {
            "The gateway disowns the version of the request it signed and you decided on."
        }
        ErrorCode::UnknownDevice | ErrorCode::DeviceRevoked | ErrorCode::DeviceNotForApprover => {
            "This device is no longer paired for you at the gateway; pair it again."
        }
        ErrorCode::UserNotVerified => "The passkey did not verify you; decide again.",
        ErrorCode::PasskeyCounterRegressed => {
            "The gateway suspects a cloned passkey (its counter went backwards)."
        }
        _ => "The gateway refused this decision.",
    };
    format!("{s} (code {code}, signed by the gateway)")
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
    /// Sends a signed decision and classifies the answer (docs/protocol.md 8.6): a receipt that
    /// verifies and matches; a signed refusal that verifies, matches this decision and is borne
    /// out by the request's signed status ([`EngineError::GatewayRefused`]); or anything else,
    /// which is "not delivered yet" and is retried. An unsigned error answer is never final,
    /// and the gateway's sentence is never shown: the refusal's sentence is this device's own.
    pub async fn submit(
        &self,
        gateway: &str,
        decision: &Signed<Decision>,
    ) -> Result<Signed<Receipt>, EngineError> {
        match self.send_decision(gateway, decision).await? {
            Answer::Receipt(r) => Ok(*r),
            Answer::Refused {
                http_status,
                refusal,
                ..
            } => Err(EngineError::GatewayRefused {
                status: http_status,
                code: refusal.body.code.clone(),
                message: refusal_sentence(&refusal.body.code),
            }),
        }
    }

    /// [`Engine::submit`], with the signed refusal and status of a confirmed refusal.
    async fn send_decision(
        &self,
        gateway: &str,
        decision: &Signed<Decision>,
    ) -> Result<Answer, EngineError> {
        let gw = self.gateway(gateway)?;
        let url = gateway::endpoint(&gw.url, paths::DECISIONS)?;
        let resp = self
            .http_for(&gw)?
            .post(url.clone())
            .timeout(gateway::DELIVERY_TIMEOUT)
            .json(decision)
            .send()
            .await
            .map_err(|e| gateway::send_failed(&url, e))?;
        let http_status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| gateway::unreachable(&url, e))?;
        if http_status.is_success() {
            let receipt = Signed::<Receipt>::decode(&bytes)
                .map_err(|e| EngineError::BadGatewayResponse(format!("the receipt: {e}")))?;
            check_receipt(&gw, decision, &receipt)?;
            return Ok(Answer::Receipt(Box::new(receipt)));
        }
        let body = serde_json::from_slice::<ErrorBody>(&bytes).ok();
        let code = body
            .as_ref()
            .map(|b| b.error.code.clone())
            .unwrap_or_else(|| ErrorCode::Unknown(format!("http_{}", http_status.as_u16())));
        // The answer's sentence is never used: it is not signed.
        let transient = |why: &str| {
            EngineError::BadGatewayResponse(format!(
                "the gateway's answer (HTTP {}, code {code}) is not a verified refusal: {why}; \
                 the decision will be sent again",
                http_status.as_u16()
            ))
        };
        let Some(body) = body.filter(|_| http_status.is_client_error()) else {
            return Err(transient("no signed refusal"));
        };
        let Some(refusal) = body.refusal.as_ref() else {
            return Err(transient("no signed refusal"));
        };
        if let Err(why) = check_refusal(
            &gw,
            decision,
            &body.error.code,
            refusal,
            body.status.as_ref(),
        ) {
            return Err(transient(why));
        }
        match self.confirm_refusal(&gw, decision, refusal, body.status.as_ref())? {
            Ok(()) => Ok(Answer::Refused {
                http_status: http_status.as_u16(),
                refusal: Box::new(refusal.clone()),
                status: body.status.clone().map(Box::new),
            }),
            Err(why) => {
                self.audit_stream(
                    kind::REFUSAL_UNCONFIRMED,
                    serde_json::json!({
                        "gateway": gw.fingerprint,
                        "decision_id": decision.body.decision_id,
                        "request_id": decision.body.request_id,
                        "code": refusal.body.code.as_str(),
                        "status_seq": refusal.body.status_seq,
                        "refusal_digest": refusal.digest()?,
                        "why": why,
                    }),
                )?;
                Err(transient(why))
            }
        }
    }

    /// Whether the request's signed status bears a verified refusal out (docs/protocol.md 8.6):
    /// a refusal about the request's state is confirmed by a status at least as new that shows
    /// that state; one about the decision itself by the signature alone.
    fn confirm_refusal(
        &self,
        gw: &GatewayRecord,
        decision: &Signed<Decision>,
        refusal: &Signed<Refusal>,
        status: Option<&Signed<StatusUpdate>>,
    ) -> Result<Result<(), &'static str>, EngineError> {
        let r = &refusal.body;
        let d = &decision.body;
        let status = status.map(|s| &s.body);
        Ok(match r.code {
            ErrorCode::RequestClosed => match status {
                Some(s) if s.state.is_final() => Ok(()),
                _ => Err("the request's signed status is not final"),
            },
            ErrorCode::RequestExpired => {
                let expires_at = inbox::get(&self.db(), &gw.fingerprint, &d.request_id)
                    .map(|i| i.request.body.expires_at)
                    .ok();
                match status {
                    Some(s) if s.state.is_final() => Ok(()),
                    Some(_) if expires_at.is_some_and(|e| e <= r.refused_at) => Ok(()),
                    _ => Err("the request's signed status shows it neither closed nor expired"),
                }
            }
            ErrorCode::AlreadyDecided => match status {
                Some(s) if s.votes.iter().any(|v| v.approver == d.approver) => Ok(()),
                _ => Err("the request's signed status has no vote by this approver"),
            },
            _ => Ok(()),
        })
    }

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
                Ok(Delivery::Delivered { receipt })
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
