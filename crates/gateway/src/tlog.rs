//! The gateway's audit log as a transparency log (docs/protocol.md, section 9.6): signing
//! checkpoints over its Merkle tree, the checkpointer that keeps one current, and what the log
//! endpoints and `countersign-gateway audit export` answer (entries, inclusion and consistency
//! proofs).
//!
//! Checkpoints and cosignatures are not themselves audit entries: each would grow the tree it
//! signs, and the checkpointer would never rest. They are kept in `log_checkpoints`.

use std::sync::Arc;
use std::time::Duration;

use countersign_protocol::api::ErrorCode;
use countersign_protocol::audit::AuditEntry;
use countersign_protocol::log::{self as tlog, LogEntry, Proof};
use countersign_protocol::StreamEvent;

use crate::devices::Device;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::store::audit::StoredTree;
use crate::store::Tx;

/// How often the checkpointer looks at the tree: a checkpoint is at most this old while the
/// log grows.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// The newest checkpoint covering the whole log, signed now if the log grew since the last
/// one (and then sent to every device as a `checkpoint` event): its size and note.
pub fn checkpoint(gw: &Gateway) -> Result<(u64, String), ApiError> {
    let now = gw.now();
    gw.store.write_publish(|tx| -> Result<_, ApiError> {
        let size = tree_size(tx)?;
        if let Some((held, note)) = tx.log_checkpoint_latest()? {
            if held == size {
                return Ok(((held, note), Vec::new()));
            }
        }
        let root =
            tlog::root(size, &StoredTree(tx)).map_err(|e| ApiError::internal("log root", e))?;
        let note = tlog::sign_checkpoint(&gw.key, size, &root);
        tx.log_checkpoint_put(size, &tlog::hash_to_string(&root), &note, now)?;
        let event = StreamEvent::Checkpoint {
            checkpoint: note.clone(),
        };
        let pushed = crate::envelope::enqueue_everyone(gw, tx, &event)?;
        Ok(((size, note), vec![pushed]))
    })
}

/// The number of leaves: the audit chain's length.
pub fn tree_size(tx: &dyn Tx) -> Result<u64, ApiError> {
    Ok(tx.audit_last()?.map_or(0, |(seq, _)| seq))
}

/// The newest stored checkpoint, or a first one if there is none.
pub fn latest(gw: &Gateway) -> Result<String, ApiError> {
    match gw
        .store
        .read(|tx| -> Result<_, ApiError> { Ok(tx.log_checkpoint_latest()?) })?
    {
        Some((_, note)) => Ok(note),
        None => checkpoint(gw).map(|(_, note)| note),
    }
}

/// The checkpoint an evidence bundle of the first `size` entries is proven against: the
/// smallest stored one covering them that a device cosigned, else the smallest stored one
/// covering them, else one signed now over the whole log. Its size and note.
pub fn covering(gw: &Gateway, size: u64) -> Result<(u64, String), ApiError> {
    let held = gw.store.read(|tx| -> Result<_, ApiError> {
        match tx.log_checkpoint_witnessed(size)? {
            Some(found) => Ok(Some(found)),
            None => Ok(tx.log_checkpoint_covering(size)?),
        }
    })?;
    match held {
        Some(found) => Ok(found),
        None => checkpoint(gw),
    }
}

/// `POST /v2/log/cosignatures`: keeps a device's cosignature of a stored checkpoint once it
/// verified under the device's key. Answers the checkpoint's size.
pub fn cosigned(
    gw: &Gateway,
    device: &Device,
    cosignature: &tlog::Cosignature,
) -> Result<tlog::CosignatureAck, ApiError> {
    if cosignature.device_id != device.id {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidMessage,
            "The cosignature names another device.",
        ));
    }
    let size = cosignature.size;
    let now = gw.now();
    gw.store.write(|tx| -> Result<_, ApiError> {
        let Some(note) = tx.log_checkpoint_of(size)? else {
            return Err(ApiError::not_found(
                ErrorCode::UnknownCheckpoint,
                format!("The gateway signed no checkpoint of {size} entries."),
            ));
        };
        let cp = tlog::verify_checkpoint(&note, &gw.key.public())
            .map_err(|e| ApiError::internal("stored log checkpoint", e))?;
        let line = cosignature.verify(&cp, &device.public_key).map_err(|e| {
            ApiError::bad_request(ErrorCode::BadCosignature, format!("The cosignature {e}."))
        })?;
        tx.cosignature_put(size, &device.id, &line, now)?;
        Ok(tlog::CosignatureAck {
            v: countersign_protocol::PROTOCOL_VERSION,
            size,
        })
    })
}

fn bad_range(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::BadLogRange, message)
}

/// The entries `start <= index < end` (0-based leaf indices), at most
/// [`tlog::MAX_ENTRIES_PER_READ`].
pub fn entries(gw: &Gateway, start: u64, end: u64) -> Result<Vec<LogEntry>, ApiError> {
    if end < start || end - start > tlog::MAX_ENTRIES_PER_READ {
        return Err(bad_range(format!(
            "A range is start <= index < end with at most {} entries.",
            tlog::MAX_ENTRIES_PER_READ
        )));
    }
    let rows = gw.store.read(|tx| -> Result<_, ApiError> {
        let size = tree_size(tx)?;
        if end > size {
            return Err(bad_range(format!("The log has {size} entries.")));
        }
        Ok(tx.audit_text_range(start + 1, end + 1)?)
    })?;
    rows.into_iter()
        .map(|(seq, text)| {
            let entry: AuditEntry = serde_json::from_str(&text)
                .map_err(|e| ApiError::internal("stored audit entry", e))?;
            Ok(LogEntry {
                index: seq - 1,
                entry,
            })
        })
        .collect()
}

/// The proof that leaf `index` is in the tree of `size` leaves.
pub fn inclusion(gw: &Gateway, index: u64, size: u64) -> Result<Proof, ApiError> {
    gw.store.read(|tx| -> Result<_, ApiError> {
        let held = tree_size(tx)?;
        if size > held || index >= size {
            return Err(bad_range(format!(
                "An inclusion proof needs index < size <= {held}."
            )));
        }
        Proof::inclusion(size, index, &StoredTree(tx))
            .map_err(|e| ApiError::internal("inclusion proof", e))
    })
}

/// The proof that the tree of `size` leaves extends the one of `old` leaves.
pub fn consistency(gw: &Gateway, old: u64, size: u64) -> Result<Proof, ApiError> {
    gw.store.read(|tx| -> Result<_, ApiError> {
        let held = tree_size(tx)?;
        if size > held || old > size {
            return Err(bad_range(format!(
                "A consistency proof needs old <= size <= {held}."
            )));
        }
        Proof::consistency(size, old, &StoredTree(tx))
            .map_err(|e| ApiError::internal("consistency proof", e))
    })
}

/// `countersign-gateway audit export`: every entry as a LogEntry line, then one line
/// `{"checkpoint": note}` with a checkpoint of exactly that many entries.
pub fn export(gw: &Gateway, out: &mut dyn std::io::Write) -> Result<u64, ApiError> {
    let (size, note) = checkpoint(gw)?;
    let mut start = 0;
    while start < size {
        let end = (start + tlog::MAX_ENTRIES_PER_READ).min(size);
        for e in entries(gw, start, end)? {
            write_line(out, &e)?;
        }
        start = end;
    }
    write_line(out, &serde_json::json!({ "checkpoint": note }))?;
    Ok(size)
}

fn write_line<T: serde::Serialize>(
    out: &mut dyn std::io::Write,
    value: &T,
) -> Result<(), ApiError> {
    let mut text =
        serde_json::to_string(value).map_err(|e| ApiError::internal("audit export", e))?;
    text.push('\n');
    out.write_all(text.as_bytes())
        .map_err(|e| ApiError::internal("audit export", e))
}

/// Rebuilds the tree from the audit entries as stored and checks it against the stored tree
/// hashes and the newest stored checkpoint (its signature and root). Returns that checkpoint's
/// size, or `None` when none is stored yet.
pub fn verify_tree(gw: &Gateway) -> Result<Option<u64>, ApiError> {
    gw.store.read(|tx| -> Result<Option<u64>, ApiError> {
        let size = tree_size(tx)?;
        let mut rebuilt = tlog::MemoryHashes::default();
        let mut start = 1;
        while start <= size {
            let end = (start + tlog::MAX_ENTRIES_PER_READ).min(size + 1);
            for (_, text) in tx.audit_text_range(start, end)? {
                rebuilt
                    .push(tlog::leaf_hash_of_text(text.as_bytes()))
                    .map_err(|e| ApiError::internal("log tree", e))?;
            }
            start = end;
        }
        let stored =
            tlog::root(size, &StoredTree(tx)).map_err(|e| ApiError::internal("log tree", e))?;
        let root = tlog::root(size, &rebuilt).map_err(|e| ApiError::internal("log tree", e))?;
        if stored != root {
            return Err(ApiError::internal(
                "log tree",
                "the stored tree hashes are not the tree over the entries",
            ));
        }
        let Some((held, note)) = tx.log_checkpoint_latest()? else {
            return Ok(None);
        };
        let cp = tlog::verify_checkpoint(&note, &gw.key.public())
            .map_err(|e| ApiError::internal("log checkpoint", e))?;
        let want = tlog::root(held, &rebuilt).map_err(|e| ApiError::internal("log tree", e))?;
        if cp.size != held || cp.root != want {
            return Err(ApiError::internal(
                "log checkpoint",
                format!("the checkpoint of {held} entries does not sign the tree over them"),
            ));
        }
        Ok(Some(held))
    })
}

/// Signs a checkpoint whenever the log grew, every [`CHECKPOINT_INTERVAL`], until aborted.
pub async fn checkpointer(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // One replica signs the log's checkpoints (`Store::is_leader`).
        if !gw.store.is_leader() {
            continue;
        }
        if let Err(e) = gw.blocking(checkpoint).await {
            tracing::error!(%e, "the log checkpoint could not be signed");
        }
    }
}
