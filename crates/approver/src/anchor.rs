//! Anchoring the local audit log at the gateways: each paired gateway keeps the latest
//! checkpoint this device signed, so a local log that was wiped or restored from an older copy
//! (which still verifies on its own) is detected against it.
//!
//! For each gateway: read the checkpoint it holds, check that the local chain still contains
//! it (`rolled_back` if the chain ends before it, `rewritten` if the entry differs), then
//! upload the local latest checkpoint if it is newer. A detection is reported to the host as
//! [`EngineEvent::AuditRolledBack`] and written to the audit log, once per gateway and held
//! checkpoint per process.

use countersign_protocol::api::{paths, CheckpointAck, CheckpointState, ErrorCode};
use countersign_protocol::audit::{ChainBreak, Checkpoint, Damage};
use countersign_protocol::{DeviceAuth, Signed};
use rusqlite::Connection;
use serde::Serialize;
use serde_json::json;

use crate::audit::{self, kind};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::EngineEvent;
use crate::gateway::{self, GatewayRecord};

/// What anchoring at one gateway found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchorReport {
    pub gateway: String,
    pub name: String,
    /// The entry the gateway's held checkpoint covers, before any upload.
    pub held: Option<u64>,
    /// The entry of the checkpoint uploaded now, if one was.
    pub uploaded: Option<u64>,
    /// The local log disagrees with the gateway's checkpoint.
    pub damage: Option<Damage>,
    /// Why the gateway could not be checked, or what the damage is.
    pub problem: Option<String>,
}

/// Checks the local chain against a checkpoint a gateway holds. The local chain itself is
/// verified elsewhere; this compares the stored hash at the checkpoint's entry.
pub(crate) fn check_against(
    conn: &Connection,
    device: &countersign_protocol::PublicKey,
    held: &Signed<Checkpoint>,
    gateway_name: &str,
) -> Result<(), ChainBreak> {
    let seq = held.body.seq;
    if held.verify(device).is_err() || held.body.signer != device.fingerprint() {
        return Err(ChainBreak {
            position: seq,
            damage: Damage::CheckpointForged,
            problem: format!(
                "the gateway {gateway_name} holds a checkpoint at entry {seq} that this device did not sign"
            ),
        });
    }
    let (entries, hash_at) = audit::head_and_hash_at(conn, seq).map_err(|e| ChainBreak {
        position: seq,
        damage: Damage::Unreadable,
        problem: e.to_string(),
    })?;
    if entries < seq {
        return Err(ChainBreak {
            position: entries + 1,
            damage: Damage::RolledBack,
            problem: format!(
                "the log ends after {entries} entries, but the gateway {gateway_name} holds a checkpoint \
                 this device signed at entry {seq}: the log was wiped or restored from an older copy"
            ),
        });
    }
    match hash_at {
        Some(h) if h.ct_eq(&held.body.head) => Ok(()),
        _ => Err(ChainBreak {
            position: seq,
            damage: Damage::Rewritten,
            problem: format!(
                "entry {seq} differs from the checkpoint this device signed and the gateway {gateway_name} holds"
            ),
        }),
    }
}

impl Engine {
    fn device_auth(
        &self,
        gw: &GatewayRecord,
        method: &str,
        path: &str,
    ) -> Result<String, EngineError> {
        Ok(
            DeviceAuth::create(&self.inner.key, &gw.device_id, method, path, self.now())?
                .to_header(),
        )
    }

    /// One device-authorized call to `path` on `gw`, with `body` as JSON when given.
    pub(crate) async fn device_call<B: serde::Serialize, T: countersign_protocol::types::Decode>(
        &self,
        gw: &GatewayRecord,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, EngineError> {
        self.device_call_query(gw, method, path, &[], body).await
    }

    /// [`Engine::device_call`] with a query string; the authorization signs the path alone.
    pub(crate) async fn device_call_query<
        B: serde::Serialize,
        T: countersign_protocol::types::Decode,
    >(
        &self,
        gw: &GatewayRecord,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, EngineError> {
        let mut url = gateway::endpoint(&gw.url, path)?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (k, v)));
        }
        let auth = self.device_auth(gw, method.as_str(), path)?;
        let mut req = self
            .http_for(gw)?
            .request(method, url.clone())
            .header(reqwest::header::AUTHORIZATION, auth)
            .timeout(gateway::CALL_TIMEOUT);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| gateway::send_failed(&url, e))?;
        gateway::read_answer(&url, resp).await
    }

    async fn held_checkpoint(&self, gw: &GatewayRecord) -> Result<CheckpointState, EngineError> {
        self.device_call::<Signed<Checkpoint>, _>(
            gw,
            reqwest::Method::GET,
            paths::CHECKPOINT_LATEST,
            None,
        )
        .await
    }

    async fn upload_checkpoint(
        &self,
        gw: &GatewayRecord,
        cp: &Signed<Checkpoint>,
    ) -> Result<CheckpointState, EngineError> {
        self.device_call(gw, reqwest::Method::POST, paths::CHECKPOINTS, Some(cp))
            .await
    }

    /// Keeps the gateway's acknowledgement of the checkpoint it holds when it verifies, names
    /// this device and its key, and is newer than the one kept: exports carry it.
    fn keep_ack(&self, gw: &GatewayRecord, state: &CheckpointState) {
        let Some(ack) = &state.ack else { return };
        let b = &ack.body;
        let mine = b.gateway == gw.fingerprint
            && b.device_id == gw.device_id
            && b.signer == self.inner.key.public().fingerprint()
            && ack.verify(&gw.gateway_key).is_ok();
        if !mine {
            tracing::warn!(gateway = %gw.name, "a checkpoint acknowledgement that is not this device's was ignored");
            return;
        }
        let kept = (|| -> Result<(), EngineError> {
            let text =
                serde_json::to_string(ack).map_err(|e| EngineError::Corrupt(e.to_string()))?;
            let db = self.db();
            let held: Option<String> = db.query_row(
                "SELECT checkpoint_ack FROM gateways WHERE fingerprint = ?1",
                [&gw.fingerprint],
                |r| r.get(0),
            )?;
            let newer = match held
                .as_deref()
                .map(serde_json::from_str::<Signed<CheckpointAck>>)
            {
                Some(Ok(h)) => h.body.seq < b.seq,
                _ => true,
            };
            if newer {
                db.execute(
                    "UPDATE gateways SET checkpoint_ack = ?1 WHERE fingerprint = ?2",
                    rusqlite::params![text, gw.fingerprint],
                )?;
            }
            Ok(())
        })();
        if let Err(e) = kept {
            tracing::warn!(gateway = %gw.name, error = %e, "the checkpoint acknowledgement was not kept");
        }
    }

    /// Tells the host and the audit log, once per gateway and held checkpoint.
    fn report_rollback(&self, gw: &GatewayRecord, held: &Checkpoint, b: &ChainBreak) {
        let first = self
            .inner
            .rollback_alarms
            .lock()
            .map(|mut s| s.insert(format!("{}:{}", gw.fingerprint, held.seq)))
            .unwrap_or(true);
        if !first {
            return;
        }
        tracing::error!(gateway = %gw.name, damage = %b.damage, "{}", b.problem);
        let now = self.now();
        let written = (|| -> Result<(), EngineError> {
            let mut db = self.db();
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            audit::append(
                &tx,
                now,
                kind::AUDIT_ROLLED_BACK,
                None,
                json!({
                    "gateway": gw.fingerprint,
                    "held_seq": held.seq,
                    "held_head": held.head,
                    "damage": b.damage,
                    "problem": b.problem,
                }),
            )?;
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot audit a detected rollback");
        }
        self.emit(EngineEvent::AuditRolledBack {
            gateway: gw.fingerprint.clone(),
            damage: b.damage.as_str().to_owned(),
            problem: b.problem.clone(),
        });
    }

    async fn anchor_one(&self, gw: &GatewayRecord) -> AnchorReport {
        let mut report = AnchorReport {
            gateway: gw.fingerprint.clone(),
            name: gw.name.clone(),
            held: None,
            uploaded: None,
            damage: None,
            problem: None,
        };
        let held = match self.held_checkpoint(gw).await {
            Ok(s) => {
                self.keep_ack(gw, &s);
                s.checkpoint
            }
            Err(e) => {
                report.problem = Some(e.to_string());
                return report;
            }
        };
        report.held = held.as_ref().map(|c| c.body.seq);
        let local = {
            let db = self.db();
            let check = held
                .as_ref()
                .map(|h| check_against(&db, &self.inner.key.public(), h, &gw.name));
            match check {
                Some(Err(b)) => Err(b),
                _ => audit::latest_checkpoint(&db).map_err(|e| ChainBreak {
                    position: 0,
                    damage: Damage::Unreadable,
                    problem: e.to_string(),
                }),
            }
        };
        let local = match (local, &held) {
            (Ok(l), _) => l,
            (Err(b), Some(h)) => {
                self.report_rollback(gw, &h.body, &b);
                report.damage = Some(b.damage);
                report.problem = Some(b.problem);
                return report;
            }
            (Err(b), None) => {
                report.problem = Some(b.problem);
                return report;
            }
        };
        let Some(local) = local else {
            return report;
        };
        if report.held.is_some_and(|h| h >= local.body.seq) {
            return report;
        }
        match self.upload_checkpoint(gw, &local).await {
            Ok(s) => {
                self.keep_ack(gw, &s);
                report.uploaded = Some(local.body.seq)
            }
            Err(EngineError::GatewayRefused {
                code: code @ (ErrorCode::CheckpointRollback | ErrorCode::CheckpointFork),
                message,
                ..
            }) => {
                // The gateway moved on between the read and the upload: another copy of this
                // device's log is ahead of this one.
                let b = ChainBreak {
                    position: local.body.seq,
                    damage: match code {
                        ErrorCode::CheckpointFork => Damage::Rewritten,
                        _ => Damage::RolledBack,
                    },
                    problem: message,
                };
                self.report_rollback(gw, &local.body, &b);
                report.damage = Some(b.damage);
                report.problem = Some(b.problem);
            }
            Err(e) => report.problem = Some(e.to_string()),
        }
        report
    }

    /// Checks the local audit log against the checkpoint every paired gateway holds and uploads
    /// the latest local checkpoint where it is newer. Unreachable gateways are reported, not
    /// fatal.
    pub async fn anchor_audit(&self) -> Result<Vec<AnchorReport>, EngineError> {
        let mut reports = Vec::new();
        for gw in self.gateways()? {
            reports.push(self.anchor_one(&gw).await);
        }
        Ok(reports)
    }
}
