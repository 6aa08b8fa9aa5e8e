//! Deciding a hoop review: the connection's passkey first ([`super::passkey`]), then a
//! decision signed by the device key (domain `countersign/v2/hoop-decision`, docs/hoop.md),
//! written to the audit log and the hoop outbox (table `hoop_outbox`) in one transaction,
//! then sent: `PUT /api/reviews/{id}` with `APPROVED` or `REJECTED`.
//!
//! Delivery is exactly once in effect. An attempt that failed on the way (hoop unreachable,
//! a 5xx, an answer lost) is retried with backoff, and a retry first reads the review again
//! (`GET /api/reviews/{id}`): if hoop already shows this approver's verdict, the lost attempt
//! was applied and nothing is sent again; if it shows another outcome, the review was decided
//! elsewhere meanwhile and the decision is marked superseded, never sent. hoop's refusals
//! (self-approval, not eligible, already decided, an unknown id) are final, shown as
//! sentences, with their code in the audit log.

use rusqlite::{params, OptionalExtension as _};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::api::{HoopError, HoopVerdict, Review};
use super::HoopConnection;
use crate::audit::{self, kind};
use crate::authenticator::Authenticator;
use crate::engine::Engine;
use crate::error::EngineError;

/// The signing domain of a hoop decision.
pub const DOMAIN: &str = "countersign/v2/hoop-decision";

/// What this device decided about a hoop review, as it signs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoopDecision {
    pub v: u32,
    pub decision_id: String,
    pub connection: String,
    /// The hoop gateway's address.
    pub url: String,
    pub review_id: String,
    pub session_id: String,
    /// hoop's id of the approver (the token's user).
    pub hoop_user: String,
    /// `approve` or `reject`.
    pub verdict: String,
    pub reason: String,
    /// SHA-256 (hex) of the script shown when deciding.
    pub script_sha256: String,
    pub decided_at: i64,
    /// The connection passkey's credential id (base64url) and the SHA-256 of the assertion's
    /// client data: which ceremony confirmed this decision.
    pub credential_id: String,
    pub client_data_sha256: String,
}

/// A [`HoopDecision`] with the device key's Ed25519 signature over
/// `DOMAIN || 0x00 || JCS(body)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHoopDecision {
    pub body: HoopDecision,
    pub signature: countersign_protocol::Signature,
}

/// Where a hoop decision stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HoopDelivery {
    /// hoop took it; the review's status after it.
    Delivered { status: String },
    /// Not sent yet (hoop could not be reached, or its answer was lost): retried.
    Queued { error: String },
    /// hoop refused it for good.
    Refused { code: String, message: String },
    /// The review was decided elsewhere before this decision reached hoop: never sent.
    Superseded { status: String },
}

/// A decision made here, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoopOutcome {
    pub decision: SignedHoopDecision,
    pub delivery: HoopDelivery,
}

struct Row {
    decision: SignedHoopDecision,
    attempts: u32,
}

fn verdict_of(s: &str) -> HoopVerdict {
    if s == "approve" {
        HoopVerdict::Approve
    } else {
        HoopVerdict::Reject
    }
}

/// Whether `r` shows `user`'s `verdict` on one of its groups: an attempt of it was applied.
fn shows_mine(r: &Review, user: &str, verdict: HoopVerdict) -> bool {
    r.review_groups_data.iter().any(|g| {
        g.status == verdict.status() && g.reviewed_by.as_ref().is_some_and(|b| b.id == user)
    })
}

/// The wait before attempt `attempts + 1`: 2^attempts seconds, at most five minutes.
fn backoff(attempts: u32) -> i64 {
    (1i64 << attempts.min(8)).min(300)
}

impl Engine {
    /// Decides hoop review `id` (or a unique prefix): the connection's passkey, then the
    /// signed decision stored with its audit entry, then sent once.
    pub async fn decide_hoop(
        &self,
        id: &str,
        verdict: HoopVerdict,
        reason: &str,
        authenticator: &mut dyn Authenticator,
    ) -> Result<HoopOutcome, EngineError> {
        let item = self
            .hoop_item(id)?
            .ok_or_else(|| EngineError::UnknownRequest(id.to_owned()))?;
        if !item.is_pending() {
            return Err(EngineError::RequestNotPending {
                request_id: item.review.id.clone(),
                state: item.review.status.to_lowercase(),
            });
        }
        if let Some(existing) = self.hoop_decision_of(&item.connection, &item.review.id)? {
            return Err(EngineError::AlreadyDecided {
                request_id: item.review.id.clone(),
                decision_id: existing,
            });
        }
        let c = self.hoop_connection(&item.connection)?;
        let mut passkey = self.hoop_passkey(&c)?;
        let (assertion, result) = super::passkey::confirm(authenticator, &passkey)?;
        passkey.update_credential(&result);
        let now = self.now();
        use base64::Engine as _;
        let body = HoopDecision {
            v: 1,
            decision_id: uuid::Uuid::now_v7().to_string(),
            connection: c.id.clone(),
            url: c.url.to_string(),
            review_id: item.review.id.clone(),
            session_id: item.session.id.clone(),
            hoop_user: c.user.id.clone(),
            verdict: match verdict {
                HoopVerdict::Approve => "approve".into(),
                HoopVerdict::Reject => "reject".into(),
            },
            reason: reason.to_owned(),
            script_sha256: item.script_sha256(),
            decided_at: now,
            credential_id: base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(AsRef::<[u8]>::as_ref(result.cred_id())),
            client_data_sha256: hex::encode(sha2::Sha256::digest(AsRef::<[u8]>::as_ref(
                &assertion.response.client_data_json,
            ))),
        };
        let signature = self.inner.key.sign(DOMAIN, &body)?;
        let decision = SignedHoopDecision { body, signature };
        let text =
            serde_json::to_string(&decision).map_err(|e| EngineError::Corrupt(e.to_string()))?;
        let passkey_text =
            serde_json::to_string(&passkey).map_err(|e| EngineError::Corrupt(e.to_string()))?;
        {
            let mut db = self.db();
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO hoop_outbox (decision_id, connection, review_id, verdict, body, state, next_at, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6)",
                params![
                    decision.body.decision_id,
                    c.id,
                    decision.body.review_id,
                    decision.body.verdict,
                    text,
                    now
                ],
            )?;
            tx.execute(
                "UPDATE hoop_connections SET passkey = ?2 WHERE id = ?1",
                params![c.id, passkey_text],
            )?;
            audit::append(
                &tx,
                now,
                kind::HOOP_DECISION_MADE,
                Some(&decision.body.review_id),
                serde_json::json!({"decision": decision, "authenticator": authenticator.kind()}),
            )?;
            tx.commit()?;
        }
        let delivery = self
            .hoop_deliver(
                &c,
                Row {
                    decision: decision.clone(),
                    attempts: 0,
                },
            )
            .await?;
        Ok(HoopOutcome { decision, delivery })
    }

    /// The decision this device made on a review, if any.
    fn hoop_decision_of(
        &self,
        connection: &str,
        review: &str,
    ) -> Result<Option<String>, EngineError> {
        Ok(self
            .db()
            .query_row(
                "SELECT decision_id FROM hoop_outbox WHERE connection = ?1 AND review_id = ?2",
                params![connection, review],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn hoop_passkey(
        &self,
        c: &HoopConnection,
    ) -> Result<webauthn_rs::prelude::Passkey, EngineError> {
        let text: String = self.db().query_row(
            "SELECT passkey FROM hoop_connections WHERE id = ?1",
            params![c.id],
            |r| r.get(0),
        )?;
        serde_json::from_str(&text)
            .map_err(|e| EngineError::Corrupt(format!("hoop connection {}'s passkey: {e}", c.id)))
    }

    /// Ends a decision's row in `state`, with its audit entry.
    fn hoop_settle(
        &self,
        row: &Row,
        state: &str,
        outcome: &str,
        audit_kind: &str,
        detail: serde_json::Value,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE hoop_outbox SET state = ?2, outcome = ?3, attempts = ?4, last_error = NULL \
             WHERE decision_id = ?1",
            params![
                row.decision.body.decision_id,
                state,
                outcome,
                row.attempts + 1
            ],
        )?;
        audit::append(
            &tx,
            now,
            audit_kind,
            Some(&row.decision.body.review_id),
            detail,
        )?;
        tx.commit()?;
        Ok(())
    }

    /// One attempt at a queued decision.
    async fn hoop_deliver(
        &self,
        c: &HoopConnection,
        row: Row,
    ) -> Result<HoopDelivery, EngineError> {
        let d = &row.decision.body;
        let verdict = verdict_of(&d.verdict);
        let client = self.hoop_client(c)?;
        let failed = |e: HoopError| -> Result<HoopDelivery, EngineError> {
            if e.is_transient() {
                let next = self.now() + backoff(row.attempts);
                self.db().execute(
                    "UPDATE hoop_outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3 \
                     WHERE decision_id = ?1",
                    params![d.decision_id, next, e.to_string()],
                )?;
                return Ok(HoopDelivery::Queued {
                    error: e.to_string(),
                });
            }
            // hoop's words are kept for the hosts to show; the code is in the audit entry.
            self.hoop_settle(
                &row,
                "refused",
                &e.to_string(),
                kind::HOOP_DECISION_REFUSED,
                serde_json::json!({"decision_id": d.decision_id, "code": e.code(), "message": e.to_string()}),
            )?;
            Ok(HoopDelivery::Refused {
                code: e.code().to_owned(),
                message: e.to_string(),
            })
        };
        if row.attempts > 0 {
            // An earlier attempt may have been applied with its answer lost: read first.
            let r = match client.review(&d.review_id).await {
                Ok(r) => r,
                Err(e) => return failed(e),
            };
            if shows_mine(&r, &d.hoop_user, verdict) {
                self.hoop_settle(
                    &row,
                    "delivered",
                    &r.status,
                    kind::HOOP_DECISION_SENT,
                    serde_json::json!({"decision_id": d.decision_id, "status": r.status, "found_applied": true}),
                )?;
                self.hoop_after(c, &r)?;
                return Ok(HoopDelivery::Delivered { status: r.status });
            }
            if r.status != "PENDING" {
                let by: Vec<&str> = r
                    .review_groups_data
                    .iter()
                    .filter_map(|g| g.reviewed_by.as_ref().map(|b| b.email.as_str()))
                    .collect();
                self.hoop_settle(
                    &row,
                    "superseded",
                    &r.status,
                    kind::HOOP_DECISION_SUPERSEDED,
                    serde_json::json!({"decision_id": d.decision_id, "status": r.status, "by": by}),
                )?;
                self.hoop_after(c, &r)?;
                return Ok(HoopDelivery::Superseded { status: r.status });
            }
        }
        match client.decide(&d.review_id, verdict, &d.reason).await {
            Ok(r) => {
                self.hoop_settle(
                    &row,
                    "delivered",
                    &r.status,
                    kind::HOOP_DECISION_SENT,
                    serde_json::json!({"decision_id": d.decision_id, "status": r.status}),
                )?;
                self.hoop_after(c, &r)?;
                Ok(HoopDelivery::Delivered { status: r.status })
            }
            Err(e) => {
                let out = failed(e.clone())?;
                if matches!(e, HoopError::AlreadyDecided { .. }) {
                    // Read what it became, for the inbox.
                    if let Ok(r) = client.review(&d.review_id).await {
                        self.hoop_after(c, &r)?;
                    }
                }
                Ok(out)
            }
        }
    }

    /// The review as hoop left it after a decision: stored when it is no longer pending, and
    /// the pollers woken.
    fn hoop_after(&self, c: &HoopConnection, r: &Review) -> Result<(), EngineError> {
        if r.status != "PENDING" {
            self.hoop_store_status(c, r)?;
        }
        self.inner.hoop_wake.notify_waiters();
        Ok(())
    }

    /// Sends every queued hoop decision that is due (all of them with `all`); returns how many
    /// were settled (delivered, refused or superseded).
    pub async fn flush_hoop(&self, all: bool) -> Result<usize, EngineError> {
        let now = self.now();
        let rows: Vec<(String, String, u32)> = {
            let db = self.db();
            let mut stmt = db.prepare_cached(
                "SELECT connection, body, attempts FROM hoop_outbox \
                 WHERE state = 'queued' AND (next_at <= ?1 OR ?2) ORDER BY created_at",
            )?;
            let rows = stmt
                .query_map(params![now, all], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            rows
        };
        let mut settled = 0;
        for (connection, body, attempts) in rows {
            let Ok(c) = self.hoop_connection(&connection) else {
                continue;
            };
            let decision: SignedHoopDecision = serde_json::from_str(&body)
                .map_err(|e| EngineError::Corrupt(format!("a queued hoop decision: {e}")))?;
            let out = self.hoop_deliver(&c, Row { decision, attempts }).await?;
            settled += usize::from(!matches!(out, HoopDelivery::Queued { .. }));
        }
        Ok(settled)
    }

    /// The decision this device made on hoop review `review_id`, and where it stands.
    pub fn hoop_decision(
        &self,
        review_id: &str,
    ) -> Result<Option<(SignedHoopDecision, String, Option<String>)>, EngineError> {
        let row: Option<(String, String, Option<String>)> = self
            .db()
            .query_row(
                "SELECT body, state, COALESCE(outcome, last_error) FROM hoop_outbox WHERE review_id = ?1",
                params![review_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        row.map(|(body, state, note)| {
            serde_json::from_str(&body)
                .map(|d| (d, state, note))
                .map_err(|e| EngineError::Corrupt(e.to_string()))
        })
        .transpose()
    }
}
