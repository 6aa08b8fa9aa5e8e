//! Ingest: one stream event from a paired gateway, verified and either stored in the inbox or
//! recorded as a rejection, with its audit entry and the stream's resume point in the same
//! transaction. What a request must pass is in [`crate::inbox`]; this module runs the checks
//! and says what happened.

use countersign_protocol::{
    ApprovalRequest, Digest, Event, Membership, RequestState, Signed, StatusUpdate, StreamEvent,
};
use rusqlite::Connection;
use serde::Serialize;
use webauthn_rs::prelude::RequestChallengeResponse;

use crate::audit::{self, kind};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::EngineEvent;
use crate::gateway::{find_gateway, set_resume_point, GatewayRecord};
use crate::inbox::{self, check_request, RejectReason, StatusApplied};

/// What one ingest transaction produced: the outcome, the events to emit after commit, the
/// request that arrived (gateway, id) and the request that was resolved.
type Ingested = (
    IngestOutcome,
    Vec<EngineEvent>,
    Option<(String, String)>,
    Option<(String, RequestState)>,
);

/// What [`crate::Engine::ingest`] did with one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum IngestOutcome {
    Accepted,
    /// Already seen: the event id was not newer than the last one stored, or the request is
    /// already in the inbox.
    Duplicate,
    /// A genuine status update older than the one held, or one for a request already in a
    /// final state: ignored, since a request never goes back.
    Stale,
    Rejected {
        reason: RejectReason,
    },
    /// The frame is not a verified event addressed to this device: refused and audited, and
    /// the resume point did not move.
    Refused {
        reason: FrameRefusal,
    },
}

/// Why a stream frame was refused before anything in it was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameRefusal {
    /// The envelope is not a valid `Signed<Event>`.
    Undecodable,
    /// The envelope's signature does not verify with the pinned gateway key.
    BadSignature,
    /// The envelope names another gateway.
    WrongGateway,
    /// The SSE `id:` or `event:` line differs from the envelope.
    IdMismatch,
    /// The event is addressed to another approver.
    NotAddressed,
    /// An event before the stream's verified hello.
    BeforeHello,
}

impl FrameRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            FrameRefusal::Undecodable => "undecodable",
            FrameRefusal::BadSignature => "bad_signature",
            FrameRefusal::WrongGateway => "wrong_gateway",
            FrameRefusal::IdMismatch => "id_mismatch",
            FrameRefusal::NotAddressed => "not_addressed",
            FrameRefusal::BeforeHello => "before_hello",
        }
    }
}

impl Engine {
    /// Verifies and stores one stream event from the gateway `gateway` (fingerprint or a
    /// unique prefix): a gateway-signed envelope addressed to this device, whose id is the
    /// only one that moves the resume point (in the same transaction as the event's effect).
    /// An envelope that does not verify, names another gateway or is for another approver is
    /// refused and audited, and the resume point stays. Events not newer than the resume point
    /// are duplicates of a resume overlap.
    pub fn ingest(
        &self,
        gateway: &str,
        envelope: &Signed<Event>,
    ) -> Result<IngestOutcome, EngineError> {
        self.ingest_with(gateway, envelope, None)
    }

    /// [`Engine::ingest`], with the consistency proof a `checkpoint` event of a larger tree
    /// needs (see [`Engine::receive`]).
    pub(crate) fn ingest_with(
        &self,
        gateway: &str,
        envelope: &Signed<Event>,
        proof: Option<&countersign_protocol::log::Proof>,
    ) -> Result<IngestOutcome, EngineError> {
        let gw = self.gateway(gateway)?;
        let digest = match envelope.verify_and_digest(&gw.gateway_key) {
            Ok(d) => d,
            Err(_) => return self.refuse_frame(&gw, FrameRefusal::BadSignature, envelope.body.id),
        };
        let e = &envelope.body;
        if e.gateway != gw.fingerprint {
            return self.refuse_frame(&gw, FrameRefusal::WrongGateway, e.id);
        }
        let groups = if e.audience.groups.is_empty() {
            Vec::new()
        } else {
            crate::gateway::membership_groups(&self.db(), &gw.fingerprint)?
        };
        if !e.audience.includes(&gw.approver, &groups) {
            return self.refuse_frame(&gw, FrameRefusal::NotAddressed, e.id);
        }
        let event_id = Some(e.id);
        let event = e.payload.clone();
        let now = self.now();
        let mut db = self.db();
        // Stream events are committed with synchronous=NORMAL: a power cut can roll back only
        // the last ingested events, always together with the resume point that moves in the
        // same transaction, so the gateway (which holds them durably) replays them on
        // reconnect. Decisions, receipts and everything else stay FULL: the next FULL commit
        // also makes these durable.
        db.pragma_update(None, "synchronous", "NORMAL")?;
        let ingested = Self::ingest_tx(&mut db, gateway, (event_id, digest), event, now, proof);
        db.pragma_update(None, "synchronous", "FULL")?;
        let (outcome, after_commit, arrived, resolved) = ingested?;
        drop(db);
        for e in after_commit {
            self.emit(e);
        }
        if let Some((gw, id)) = arrived {
            // The lock is released before the notifier runs: it may call back into the engine.
            let item = inbox::get(&self.db(), &gw, &id);
            if let Ok(item) = item {
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
        (event_id, envelope_digest): (Option<u64>, Digest),
        event: StreamEvent,
        now: i64,
        proof: Option<&countersign_protocol::log::Proof>,
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
            StreamEvent::Request {
                request,
                challenge,
                signed_challenge,
            } => {
                let outcome = ingest_request(
                    &tx,
                    &gw,
                    event_id,
                    now,
                    &request,
                    (&challenge, signed_challenge.as_deref()),
                )?;
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
                    IngestOutcome::Duplicate
                    | IngestOutcome::Stale
                    | IngestOutcome::Refused { .. } => {}
                }
                outcome
            }
            StreamEvent::Membership { membership } => {
                ingest_membership(&tx, &gw, event_id, now, &membership)?
            }
            StreamEvent::Checkpoint { checkpoint } => {
                use crate::witness::{ingest_checkpoint, CheckpointOutcome};
                let (outcome, event) = ingest_checkpoint(&tx, &gw, now, &checkpoint, proof)?;
                after_commit.extend(event);
                match outcome {
                    CheckpointOutcome::Witnessed => IngestOutcome::Accepted,
                    CheckpointOutcome::Duplicate => IngestOutcome::Duplicate,
                    CheckpointOutcome::Stale => IngestOutcome::Stale,
                    CheckpointOutcome::Rejected(reason) => IngestOutcome::Rejected { reason },
                }
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
                            stages: b.stages.clone(),
                        });
                        // A broken glass is still news until someone acknowledges it: its
                        // notification stays until then.
                        if b.state.is_final()
                            && !inbox::asks_attention(&tx, &gw.fingerprint, &b.request_id)?
                        {
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
                    IngestOutcome::Duplicate
                    | IngestOutcome::Stale
                    | IngestOutcome::Refused { .. } => {}
                }
                outcome
            }
        };
        if let Some(id) = event_id {
            set_resume_point(&tx, &gw.fingerprint, id, &envelope_digest)?;
        }
        tx.commit()?;
        Ok((outcome, after_commit, arrived, resolved))
    }

    /// Drops the resume point of `gateway` so that the next connection reads the whole backlog,
    /// and audits why (`stream.resync`), in one transaction.
    pub(crate) fn resync(&self, gateway: &str, reason: &str) -> Result<(), EngineError> {
        let now = self.now();
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let gw = find_gateway(&tx, gateway)?;
        crate::gateway::clear_resume_point(&tx, &gw.fingerprint)?;
        audit::append(
            &tx,
            now,
            kind::STREAM_RESYNC,
            None,
            serde_json::json!({
                "gateway": gw.fingerprint,
                "reason": reason,
                "old_resume_point": gw.last_event_id,
            }),
        )?;
        tx.commit()?;
        tracing::info!(gateway = %gw.name, reason, "stream resync");
        Ok(())
    }

    /// Appends one stream audit entry in its own transaction.
    pub(crate) fn audit_stream(
        &self,
        kind: &str,
        detail: serde_json::Value,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        audit::append(&tx, now, kind, None, detail)?;
        tx.commit()?;
        Ok(())
    }

    /// Refuses a stream frame that is not a verified event for this device: audited (at most
    /// two entries a minute per gateway and reason, with the count), the resume point unmoved.
    pub(crate) fn refuse_frame(
        &self,
        gw: &GatewayRecord,
        reason: FrameRefusal,
        claimed_id: u64,
    ) -> Result<IngestOutcome, EngineError> {
        self.audit_aggregated(
            kind::STREAM_FRAME_REJECTED,
            &format!("{}:{}", gw.fingerprint, reason.as_str()),
            serde_json::json!({
                "gateway": gw.fingerprint,
                "reason": reason.as_str(),
                "claimed_event_id": claimed_id,
            }),
        )?;
        Ok(IngestOutcome::Refused { reason })
    }
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
    (challenge, signed_challenge): (
        &serde_json::Value,
        Option<&Signed<countersign_protocol::challenge::Challenge>>,
    ),
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
    let existing = inbox::stored_digest(db, &gw.fingerprint, id)?;
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
    // A request approved at once (break-glass) takes no decision, and one addressed to many
    // approvers has each ask for a challenge when they decide: both come without one.
    if !challenge.is_null()
        && serde_json::from_value::<RequestChallengeResponse>(challenge.clone()).is_err()
    {
        return reject(RejectReason::Malformed {
            error: "the passkey challenge is not a WebAuthn RequestChallengeResponse".into(),
        });
    }
    // A challenge is bound to this request and approver by the gateway's signature
    // (docs/protocol.md 3.24): the passkey will sign its digest.
    match (challenge.is_null(), signed_challenge) {
        (true, None) => {}
        (false, Some(signed)) => {
            let bound = countersign_protocol::challenge::check_bound(
                signed,
                &gw.gateway_key,
                &request.body.id,
                &digest,
                &gw.approver,
                challenge,
            );
            if let Err(error) = bound {
                return reject(RejectReason::Malformed { error });
            }
        }
        (false, None) => {
            return reject(RejectReason::Malformed {
                error: "the passkey challenge is not signed by the gateway".into(),
            })
        }
        (true, Some(_)) => {
            return reject(RejectReason::Malformed {
                error: "a signed challenge came without its WebAuthn options".into(),
            })
        }
    }
    inbox::insert(db, &gw.fingerprint, request, &digest, challenge, now)?;
    let b = &request.body;
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

/// The gateway's statement of this approver's person and groups: verified, for this gateway
/// and approver, and kept if newer than the one held (an older one is a replay and changes
/// nothing). Audited either way.
fn ingest_membership(
    db: &Connection,
    gw: &GatewayRecord,
    event_id: Option<u64>,
    now: i64,
    membership: &Signed<Membership>,
) -> Result<IngestOutcome, EngineError> {
    let m = &membership.body;
    let reject = |reason: RejectReason| -> Result<IngestOutcome, EngineError> {
        audit_rejection(db, now, gw, event_id, None, None, &reason)?;
        Ok(IngestOutcome::Rejected { reason })
    };
    if membership.verify(&gw.gateway_key).is_err() {
        return reject(RejectReason::BadSignature);
    }
    if m.gateway != gw.fingerprint {
        return reject(RejectReason::WrongGateway {
            named: m.gateway.clone(),
            pinned: gw.fingerprint.clone(),
        });
    }
    if m.approver != gw.approver {
        return reject(RejectReason::NotAddressed {
            approver: gw.approver.clone(),
        });
    }
    let (held, stored) = crate::gateway::store_membership(db, &gw.fingerprint, membership)?;
    audit::append(
        db,
        now,
        if stored {
            kind::MEMBERSHIP_RECEIVED
        } else {
            kind::MEMBERSHIP_STALE
        },
        None,
        serde_json::json!({
            "gateway": gw.fingerprint,
            "event_id": event_id,
            "seq": m.seq,
            "held_seq": held,
            "person": m.person,
            "groups": m.groups,
        }),
    )?;
    Ok(if stored {
        IngestOutcome::Accepted
    } else {
        IngestOutcome::Stale
    })
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
    let stored = inbox::stored_digest(db, &gw.fingerprint, &b.request_id)?;
    let known = match stored {
        Some(d) if d != b.request_digest.to_hex() => {
            return reject(RejectReason::StatusDigestMismatch)
        }
        Some(_) => true,
        // A status for a request we rejected or never saw: record it, there is nothing to update.
        None => false,
    };
    let status_digest = status.digest()?;
    if known {
        match inbox::apply_status(db, &gw.fingerprint, b)? {
            StatusApplied::Applied => {}
            StatusApplied::Stale { held } | StatusApplied::AfterFinal { held } => {
                // A genuine but older status, or one after the request closed: a replay, or
                // a gateway that contradicts itself. It changes nothing.
                audit::append(
                    db,
                    now,
                    kind::STATUS_STALE,
                    Some(&b.request_id),
                    serde_json::json!({
                        "gateway": gw.fingerprint,
                        "event_id": event_id,
                        "seq": b.seq,
                        "held_seq": held,
                        "state": b.state,
                        "status_digest": status_digest,
                    }),
                )?;
                return Ok(IngestOutcome::Stale);
            }
        }
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
            "seq": b.seq,
            "status_digest": status_digest,
        }),
    )?;
    Ok(IngestOutcome::Accepted)
}
