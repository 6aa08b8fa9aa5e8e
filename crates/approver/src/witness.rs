//! This device as a witness of each paired gateway's log (docs/protocol.md, section 9.8).
//!
//! Every `checkpoint` event carries the gateway's newest log checkpoint. The device checks it
//! against the newest one it witnessed from that gateway: a larger tree must extend it (an RFC
//! 9162 consistency proof, fetched from the gateway before the event is ingested), the same
//! size must have the same root, and a smaller tree is a rollback. A checkpoint that passes is
//! kept (`log_witnessed`), audited `log.witnessed`, co-signed with the device key
//! (`tlog-cosignature/v1`) and the cosignature uploaded. One that fails is refused, audited
//! `log.history_changed` once per checkpoint, and the gateway is marked: "this gateway's log
//! changed history", shown by the app and the command line from then on. The device keeps its
//! newest good checkpoint and refuses every later one not consistent with it.

use countersign_protocol::log::{self as tlog, Proof};
use rusqlite::{params, Connection, OptionalExtension as _};
use serde::{Deserialize, Serialize};

use crate::audit::{self, kind};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::EngineEvent;
use crate::gateway::GatewayRecord;
use crate::reject::RejectReason;

/// A log checkpoint this device witnessed: its tree size and root (standard base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Witnessed {
    pub size: u64,
    pub root: String,
    pub witnessed_at: i64,
}

/// How a gateway's log was seen to change history: the checkpoint held, the newest one
/// refused, and how they disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryChanged {
    pub held_size: u64,
    pub held_root: String,
    pub size: u64,
    pub root: String,
    /// `rolled_back` (a smaller tree) or `forked` (another root, or no consistency proof).
    pub damage: String,
    pub first_at: i64,
    pub last_at: i64,
}

impl HistoryChanged {
    /// What the command line shows: "This gateway's log changed history." and why.
    pub fn sentence(&self) -> String {
        format!("This gateway's log changed history. {}", self.explanation())
    }

    /// What was seen, for a display that titles it "This gateway's log changed history".
    pub fn explanation(&self) -> String {
        let how = if self.damage == "rolled_back" {
            "rolled back"
        } else {
            "forked"
        };
        format!(
            "This device witnessed {} entries (root {}), and the gateway now signs {} entries \
             (root {}) that do not extend them: its log was {how}. Its evidence cannot be \
             trusted until whoever runs it explains why.",
            self.held_size, self.held_root, self.size, self.root
        )
    }
}

/// What this device knows of one gateway's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogWitness {
    pub newest: Option<Witnessed>,
    pub history_changed: Option<HistoryChanged>,
}

/// The newest checkpoint witnessed from `gateway`.
pub(crate) fn newest(db: &Connection, gateway: &str) -> Result<Option<Witnessed>, EngineError> {
    Ok(db
        .query_row(
            "SELECT size, root, witnessed_at FROM log_witnessed WHERE gateway = ?1 \
             ORDER BY size DESC LIMIT 1",
            params![gateway],
            |r| {
                Ok(Witnessed {
                    size: r.get::<_, i64>(0)? as u64,
                    root: r.get(1)?,
                    witnessed_at: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// The root of the checkpoint of `size` entries witnessed from `gateway`, if one was.
pub(crate) fn witnessed_root(
    db: &Connection,
    gateway: &str,
    size: u64,
) -> Result<Option<String>, EngineError> {
    Ok(db
        .query_row(
            "SELECT root FROM log_witnessed WHERE gateway = ?1 AND size = ?2",
            params![gateway, size as i64],
            |r| r.get(0),
        )
        .optional()?)
}

/// The history change seen at `gateway`, if any.
pub(crate) fn history_changed(
    db: &Connection,
    gateway: &str,
) -> Result<Option<HistoryChanged>, EngineError> {
    let text: Option<String> = db
        .query_row(
            "SELECT detail FROM log_history_changed WHERE gateway = ?1",
            params![gateway],
            |r| r.get(0),
        )
        .optional()?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| EngineError::Corrupt(format!("log_history_changed: {e}")))
    })
    .transpose()
}

/// What became of one checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CheckpointOutcome {
    /// Consistent with the ones witnessed before: kept (and to be co-signed).
    Witnessed,
    /// The newest one witnessed, again.
    Duplicate,
    /// One witnessed before, older than the newest.
    Stale,
    /// Refused: it does not verify, or the log changed history.
    Rejected(RejectReason),
}

/// Checks one checkpoint note from `gw` inside the ingest transaction: kept and audited when
/// it is consistent with the newest one witnessed (given `proof` for a larger tree), refused
/// and audited when the log changed history. Returns the outcome, and an event to emit.
pub(crate) fn ingest_checkpoint(
    db: &Connection,
    gw: &GatewayRecord,
    now: i64,
    note: &str,
    proof: Option<&Proof>,
) -> Result<(CheckpointOutcome, Option<EngineEvent>), EngineError> {
    let cp = match tlog::verify_checkpoint(note, &gw.gateway_key) {
        Ok(cp) => cp,
        Err(e) => {
            let reason = RejectReason::Malformed {
                error: format!("the log checkpoint does not verify: {e}"),
            };
            audit::append(
                db,
                now,
                kind::REQUEST_REJECTED,
                None,
                serde_json::json!({
                    "gateway": gw.fingerprint,
                    "code": reason.code(),
                    "reason": reason.message(),
                }),
            )?;
            return Ok((CheckpointOutcome::Rejected(reason), None));
        }
    };
    let root = tlog::hash_to_string(&cp.root);
    let Some(held) = newest(db, &gw.fingerprint)? else {
        return witnessed(db, gw, now, cp.size, &root, note);
    };
    let held_root = tlog::parse_hash(&held.root)
        .map_err(|e| EngineError::Corrupt(format!("log_witnessed root: {e}")))?;
    let damage = if cp.size < held.size {
        match witnessed_root(db, &gw.fingerprint, cp.size)? {
            // One witnessed before: an old checkpoint again, nothing new.
            Some(r) if r == root => return Ok((CheckpointOutcome::Stale, None)),
            _ => "rolled_back",
        }
    } else if cp.size == held.size {
        if root == held.root {
            return Ok((CheckpointOutcome::Duplicate, None));
        }
        "forked"
    } else if held.size == 0 {
        // Every tree extends the empty one.
        return witnessed(db, gw, now, cp.size, &root, note);
    } else {
        let Some(proof) = proof else {
            return Err(EngineError::BadGatewayResponse(
                "a larger log checkpoint arrived without its consistency proof".into(),
            ));
        };
        if proof
            .check_consistency(held.size, &held_root, cp.size, &cp.root)
            .is_ok()
        {
            return witnessed(db, gw, now, cp.size, &root, note);
        }
        "forked"
    };
    let before = history_changed(db, &gw.fingerprint)?;
    let seen_before = before
        .as_ref()
        .is_some_and(|h| h.size == cp.size && h.root == root);
    let change = HistoryChanged {
        held_size: held.size,
        held_root: held.root.clone(),
        size: cp.size,
        root: root.clone(),
        damage: damage.to_owned(),
        first_at: before.as_ref().map_or(now, |h| h.first_at),
        last_at: now,
    };
    db.execute(
        "INSERT INTO log_history_changed (gateway, detail) VALUES (?1, ?2) \
         ON CONFLICT (gateway) DO UPDATE SET detail = excluded.detail",
        params![
            gw.fingerprint,
            serde_json::to_string(&change).map_err(|e| EngineError::Corrupt(e.to_string()))?
        ],
    )?;
    if !seen_before {
        audit::append(
            db,
            now,
            kind::LOG_HISTORY_CHANGED,
            None,
            serde_json::json!({
                "gateway": gw.fingerprint,
                "held_size": held.size,
                "held_root": held.root,
                "size": cp.size,
                "root": root,
                "damage": damage,
            }),
        )?;
    }
    let reason = RejectReason::LogHistoryChanged {
        damage: damage.to_owned(),
    };
    let event = EngineEvent::LogHistoryChanged {
        gateway: gw.fingerprint.clone(),
        damage: damage.to_owned(),
        problem: change.explanation(),
    };
    Ok((CheckpointOutcome::Rejected(reason), Some(event)))
}

fn witnessed(
    db: &Connection,
    gw: &GatewayRecord,
    now: i64,
    size: u64,
    root: &str,
    note: &str,
) -> Result<(CheckpointOutcome, Option<EngineEvent>), EngineError> {
    db.execute(
        "INSERT OR IGNORE INTO log_witnessed (gateway, size, root, note, witnessed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![gw.fingerprint, size as i64, root, note, now],
    )?;
    audit::append(
        db,
        now,
        kind::LOG_WITNESSED,
        None,
        serde_json::json!({ "gateway": gw.fingerprint, "size": size, "root": root }),
    )?;
    Ok((CheckpointOutcome::Witnessed, None))
}

impl Engine {
    /// What this device witnessed of `gateway`'s log.
    pub fn log_witness(&self, gateway: &str) -> Result<LogWitness, EngineError> {
        let gw = self.gateway(gateway)?;
        let db = self.db();
        Ok(LogWitness {
            newest: newest(&db, &gw.fingerprint)?,
            history_changed: history_changed(&db, &gw.fingerprint)?,
        })
    }
}

/// How an evidence bundle's log checkpoint compares with what this device witnessed of its
/// gateway's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "witness", rename_all = "snake_case")]
pub enum BundleWitness {
    /// This device witnessed that very checkpoint (same size, same root).
    Witnessed { size: u64 },
    /// This device witnessed no checkpoint of that size and saw no change of history: the
    /// bundle stands on the gateway's signature alone.
    NotWitnessed { size: u64 },
    /// The checkpoint contradicts what this device witnessed.
    Contradicted { problem: String },
}

/// Compares a bundle's checkpoint (already verified under the gateway key `gateway`, size
/// `size` and root `root` in standard base64) with the checkpoints witnessed from it.
pub(crate) fn bundle_witness(
    db: &Connection,
    gateway: &str,
    size: u64,
    root: &str,
) -> Result<BundleWitness, EngineError> {
    match witnessed_root(db, gateway, size)? {
        Some(r) if r == root => return Ok(BundleWitness::Witnessed { size }),
        Some(r) => {
            return Ok(BundleWitness::Contradicted {
                problem: format!(
                    "this gateway's log changed history: the bundle's checkpoint of {size} \
                     entries has root {root}, and this device witnessed root {r} for that size"
                ),
            })
        }
        None => {}
    }
    if let Some(h) = history_changed(db, gateway)? {
        return Ok(BundleWitness::Contradicted {
            problem: format!(
                "{} The bundle's checkpoint ({size} entries) was not witnessed by this device.",
                h.sentence()
            ),
        });
    }
    Ok(BundleWitness::NotWitnessed { size })
}

/// [`bundle_witness`] against the database in `data_dir`, opened read-only (the app may hold
/// the engine meanwhile). `None` when there is no database there.
pub fn bundle_witness_in(
    data_dir: &std::path::Path,
    bundle: &countersign_protocol::evidence::Evidence,
) -> Result<Option<BundleWitness>, EngineError> {
    let path = data_dir.join(crate::engine::DATABASE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let db = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let has_table: bool = db.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'log_witnessed')",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(None);
    }
    let cp = tlog::verify_checkpoint(&bundle.log.checkpoint, &bundle.gateway_key)
        .map_err(|e| EngineError::InvalidInput(format!("the bundle's checkpoint: {e}")))?;
    bundle_witness(
        &db,
        &bundle.gateway_key.fingerprint(),
        cp.size,
        &tlog::hash_to_string(&cp.root),
    )
    .map(Some)
}
