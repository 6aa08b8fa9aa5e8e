//! The local audit log: an append-only, hash-chained table (`audit`) following the protocol's
//! chain rule, its verification and its export as JSON Lines with a signed checkpoint.
//!
//! Appends happen inside the caller's transaction so that an audit entry and the state change
//! it records commit together or not at all.

use std::io::Write;

use countersign_protocol::audit::{
    verify_checkpoints, verify_links, AuditEntry, ChainBreak, Checkpoint, Damage, Link, GENESIS,
};
use countersign_protocol::canonical::to_canonical_bytes;
use countersign_protocol::types::Decode;
use countersign_protocol::{Digest, KeyPair, PublicKey, Signed, AUDIT_VERSION};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::EngineError;

/// Audit entry kinds written by the engine.
pub mod kind;

/// A checkpoint is signed once this many entries follow the last one.
pub const CHECKPOINT_EVERY_ENTRIES: u64 = 100;
/// ... or once this many seconds passed since the last one and new entries exist.
pub const CHECKPOINT_EVERY_SECONDS: i64 = 60;

/// A verified chain: how many entries, the hash of the last one, and the highest entry a
/// verified checkpoint covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AuditSummary {
    pub entries: u64,
    pub head: Digest,
    pub checkpoints: u64,
    pub checkpointed_through: Option<u64>,
}

/// Signs a checkpoint over the current head if one is due: `force` (at shutdown and export),
/// or [`CHECKPOINT_EVERY_ENTRIES`] new entries, or [`CHECKPOINT_EVERY_SECONDS`] since the last
/// checkpoint. Returns the checkpoint written, if any.
pub(crate) fn checkpoint_if_due(
    conn: &Connection,
    key: &KeyPair,
    now: i64,
    force: bool,
) -> Result<Option<Signed<Checkpoint>>, EngineError> {
    let head: Option<(i64, String)> = crate::store::query_row(
        conn,
        "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?;
    let Some((seq, hash)) = head else {
        return Ok(None);
    };
    let last: Option<(i64, i64)> = crate::store::query_row(
        conn,
        "SELECT seq, at FROM checkpoints ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?;
    let (last_seq, last_at) = last.unwrap_or((0, i64::MIN));
    if seq <= last_seq {
        return Ok(None);
    }
    let due = force
        || (seq - last_seq) as u64 >= CHECKPOINT_EVERY_ENTRIES
        || now.saturating_sub(last_at) >= CHECKPOINT_EVERY_SECONDS;
    if !due {
        return Ok(None);
    }
    let head = Digest::parse("hash", &hash)
        .map_err(|_| EngineError::Corrupt(format!("audit entry {seq} has a bad hash")))?;
    let checkpoint = Signed::sign(
        key,
        Checkpoint {
            v: AUDIT_VERSION,
            signer: key.public().fingerprint(),
            seq: seq as u64,
            head,
            at: now,
        },
    )?;
    let text = serde_json::to_string(&checkpoint)
        .map_err(|e| EngineError::Corrupt(format!("cannot encode a checkpoint: {e}")))?;
    crate::store::execute(
        conn,
        "INSERT INTO checkpoints (seq, signed, at) VALUES (?1, ?2, ?3)",
        params![seq, text, now],
    )?;
    Ok(Some(checkpoint))
}

/// The latest stored checkpoint, if any (not verified: callers compare it or send it on).
pub(crate) fn latest_checkpoint(
    conn: &Connection,
) -> Result<Option<Signed<Checkpoint>>, EngineError> {
    let text: Option<String> = crate::store::query_row(
        conn,
        "SELECT signed FROM checkpoints ORDER BY seq DESC LIMIT 1",
        [],
        |r| r.get(0),
    )
    .optional()?;
    text.map(|t| {
        Signed::<Checkpoint>::decode(t.as_bytes())
            .map_err(|e| EngineError::Corrupt(format!("the latest audit checkpoint: {e}")))
    })
    .transpose()
}

/// The number of entries (the highest seq) and the stored hash of entry `seq`, if present.
pub(crate) fn head_and_hash_at(
    conn: &Connection,
    seq: u64,
) -> Result<(u64, Option<Digest>), EngineError> {
    let entries: i64 =
        crate::store::query_row(conn, "SELECT coalesce(max(seq), 0) FROM audit", [], |r| {
            r.get(0)
        })?;
    let hash: Option<String> = crate::store::query_row(
        conn,
        "SELECT hash FROM audit WHERE seq = ?1",
        params![i64::try_from(seq).unwrap_or(i64::MAX)],
        |r| r.get(0),
    )
    .optional()?;
    let hash = hash
        .map(|h| Digest::parse("hash", &h))
        .transpose()
        .map_err(|_| EngineError::Corrupt(format!("audit entry {seq} has a bad hash")))?;
    Ok((u64::try_from(entries).unwrap_or(0), hash))
}

/// Every stored checkpoint, in order. A row that does not decode is reported as forged.
fn checkpoints(conn: &Connection) -> Result<Vec<Signed<Checkpoint>>, EngineError> {
    let mut stmt = conn.prepare_cached("SELECT seq, signed FROM checkpoints ORDER BY seq")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, text) = row?;
        let cp = Signed::<Checkpoint>::decode(text.as_bytes()).map_err(|e| ChainBreak {
            position: seq.max(0) as u64,
            damage: Damage::CheckpointForged,
            problem: format!("the checkpoint stored at entry {seq} cannot be read ({e})"),
        })?;
        if cp.body.seq as i64 != seq {
            return Err(ChainBreak {
                position: seq.max(0) as u64,
                damage: Damage::CheckpointForged,
                problem: format!(
                    "the checkpoint stored at entry {seq} names entry {}",
                    cp.body.seq
                ),
            }
            .into());
        }
        out.push(cp);
    }
    Ok(out)
}

/// Appends `entries` (kind and detail, no request) in one transaction of its own.
pub(crate) fn append_all(
    db: &mut Connection,
    at: i64,
    entries: Vec<countersign_protocol::aggregate::Entry>,
) -> Result<(), EngineError> {
    if entries.is_empty() {
        return Ok(());
    }
    let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (kind, detail) in entries {
        append(&tx, at, kind, None, detail)?;
    }
    tx.commit()?;
    Ok(())
}

/// Appends one entry. Must run inside a transaction (the caller's), so that reading the
/// previous hash and writing the new row cannot interleave with another append. Public for the
/// benchmarks, which compare it with a plain insert; the engine is its only other user.
pub fn append(
    conn: &Connection,
    at: i64,
    kind: &str,
    request_id: Option<&str>,
    detail: serde_json::Value,
) -> Result<(u64, Digest), EngineError> {
    let last: Option<(i64, String)> = crate::store::query_row(
        conn,
        "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?;
    let (seq, prev) = match last {
        Some((seq, hash)) => (
            u64::try_from(seq).map_err(|_| EngineError::Corrupt("negative audit seq".into()))? + 1,
            Digest::parse("hash", &hash)
                .map_err(|_| EngineError::Corrupt(format!("audit entry {seq} has a bad hash")))?,
        ),
        None => (1, GENESIS),
    };
    let entry = AuditEntry {
        v: AUDIT_VERSION,
        seq,
        at,
        kind: kind.to_owned(),
        request_id: request_id.map(str::to_owned),
        detail,
        prev,
    };
    // Canonicalised once: the stored text and the hash are over the same bytes.
    let canonical = to_canonical_bytes(&entry)?;
    let hash = countersign_protocol::audit::hash_canonical(&canonical);
    let text = String::from_utf8(canonical)
        .map_err(|_| EngineError::Corrupt("canonical JSON is not UTF-8".into()))?;
    crate::store::execute(
        conn,
        "INSERT INTO audit (seq, entry, hash) VALUES (?1, ?2, ?3)",
        params![seq as i64, text, hash.to_hex()],
    )?;
    Ok((seq, hash))
}

/// Every audit row in order: (seq, canonical text, stored hash).
fn rows(conn: &Connection) -> Result<Vec<(i64, String, String)>, EngineError> {
    let mut stmt = conn.prepare_cached("SELECT seq, entry, hash FROM audit ORDER BY seq")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The chain rule's view of every row, in `seq` order. On a database file with a long log, the
/// `seq` range is split across the cores and each part is read through its own read-only
/// connection and hashed as it is read, so no row text is kept. The caller holds the engine's
/// connection and the data directory's single-writer lock, so nothing commits meanwhile.
fn links(conn: &Connection) -> Result<Vec<Result<Link, String>>, EngineError> {
    let (lo, hi): (Option<i64>, Option<i64>) =
        conn.query_row("SELECT MIN(seq), MAX(seq) FROM audit", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(Vec::new());
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as i128;
    let span = i128::from(hi) - i128::from(lo) + 1;
    let path = conn
        .path()
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from);
    let (Some(path), true) = (path, threads > 1 && span >= 16_384) else {
        return read_links(conn, lo, hi);
    };
    let step = (span + threads - 1) / threads;
    let ranges: Vec<(i64, i64)> = (0..threads)
        .map(|t| {
            let from = i128::from(lo) + t * step;
            let to = (from + step - 1).min(i128::from(hi));
            (from as i64, to as i64)
        })
        .filter(|(from, to)| from <= to)
        .collect();
    let parts: Vec<Result<Vec<Result<Link, String>>, EngineError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|&(from, to)| {
                let path = &path;
                scope.spawn(move || {
                    let c = Connection::open_with_flags(
                        path,
                        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    c.busy_timeout(std::time::Duration::from_secs(5))?;
                    read_links(&c, from, to)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(EngineError::Corrupt(
                        "an audit reader thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    let mut out = Vec::new();
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

fn read_links(
    conn: &Connection,
    from: i64,
    to: i64,
) -> Result<Vec<Result<Link, String>>, EngineError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, entry, hash FROM audit WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
    )?;
    let mut rows = stmt.query(params![from, to])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let text = r.get_ref(1)?.as_bytes().map_err(rusqlite::Error::from)?;
        let hash = r.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?;
        out.push(
            Digest::parse("hash", hash)
                .map_err(|_| format!("row seq {seq} has a stored hash that is not a digest"))
                .and_then(|stored| {
                    Link::from_canonical_text(text, stored).map_err(|e| {
                        format!("row seq {seq} cannot be read as an audit entry ({e})")
                    })
                }),
        );
    }
    Ok(out)
}

/// Reads every row in order, verifies the chain and the device's checkpoints over it, and names
/// the first bad entry and the kind of damage. Each entry is hashed from its stored canonical
/// bytes and only its `v`, `seq` and `prev` are decoded, on every core.
pub(crate) fn verify(conn: &Connection, device: &PublicKey) -> Result<AuditSummary, EngineError> {
    let links = links(conn)?;
    let mut chain = Vec::with_capacity(links.len());
    let mut unreadable: Option<ChainBreak> = None;
    for (i, link) in links.into_iter().enumerate() {
        match link {
            Ok(l) => chain.push(l),
            Err(problem) => {
                unreadable = Some(ChainBreak {
                    position: i as u64 + 1,
                    damage: Damage::Unreadable,
                    problem,
                });
                break;
            }
        }
    }
    // An earlier break in the readable prefix is the first bad entry, so check it first.
    let (entries, head, hashes) = verify_links(&chain)?;
    if let Some(b) = unreadable {
        return Err(b.into());
    }
    let cps = checkpoints(conn)?;
    let checkpointed_through = verify_checkpoints(&hashes, cps.iter(), device)?;
    Ok(AuditSummary {
        entries,
        head,
        checkpoints: cps.len() as u64,
        checkpointed_through,
    })
}

/// Verifies (see [`verify`]), then decodes every entry strictly.
pub(crate) fn verified_entries(
    conn: &Connection,
    device: &PublicKey,
) -> Result<(AuditSummary, Vec<(AuditEntry, Digest)>), EngineError> {
    let summary = verify(conn, device)?;
    let rows = rows(conn)?;
    let decoded = countersign_protocol::audit::par_map(&rows, |(seq, text, hash)| {
        let entry = AuditEntry::decode(text.as_bytes()).map_err(|e| ChainBreak {
            position: *seq as u64,
            damage: Damage::Unreadable,
            problem: format!("row seq {seq} cannot be read as an audit entry ({e})"),
        })?;
        let hash = Digest::parse("hash", hash).map_err(|_| ChainBreak {
            position: *seq as u64,
            damage: Damage::Unreadable,
            problem: format!("row seq {seq} has a stored hash that is not a digest"),
        })?;
        Ok::<_, ChainBreak>((entry, hash))
    });
    let chain = decoded.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok((summary, chain))
}

#[derive(Serialize)]
struct ExportLine<'a> {
    entry: &'a AuditEntry,
    hash: &'a Digest,
}

#[derive(Serialize)]
struct CheckpointLine<'a> {
    checkpoint: &'a Signed<Checkpoint>,
    public_key: String,
}

/// The newest checkpoint acknowledgement kept for each gateway, with the gateway's key.
fn acks(conn: &Connection) -> Result<Vec<(serde_json::Value, String)>, EngineError> {
    let mut st = conn.prepare(
        "SELECT checkpoint_ack, gateway_key FROM gateways \
         WHERE checkpoint_ack IS NOT NULL ORDER BY paired_at",
    )?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (ack, key) = row?;
        let ack = serde_json::from_str(&ack)
            .map_err(|e| EngineError::Corrupt(format!("gateways.checkpoint_ack: {e}")))?;
        out.push((ack, key));
    }
    Ok(out)
}

/// Writes the verified chain as JSON Lines followed by every checkpoint the device signed over
/// it, the last one signed now over the head. A broken chain is not exported: signing a
/// checkpoint over it would vouch for the damage.
pub(crate) fn export(
    conn: &Connection,
    key: &KeyPair,
    at: i64,
    out: &mut dyn Write,
) -> Result<AuditSummary, EngineError> {
    verify(conn, &key.public())?;
    checkpoint_if_due(conn, key, at, true)?;
    let (summary, chain) = verified_entries(conn, &key.public())?;
    for (entry, hash) in &chain {
        serde_json::to_writer(&mut *out, &ExportLine { entry, hash })
            .map_err(|e| EngineError::Io(e.into()))?;
        out.write_all(b"\n")?;
    }
    let public_key = key.public().to_base64();
    for checkpoint in &checkpoints(conn)? {
        serde_json::to_writer(
            &mut *out,
            &CheckpointLine {
                checkpoint,
                public_key: public_key.clone(),
            },
        )
        .map_err(|e| EngineError::Io(e.into()))?;
        out.write_all(b"\n")?;
    }
    // The newest acknowledgement each gateway signed of the checkpoint it holds: an export
    // cut back below one of them fails (docs/protocol.md 9.3).
    for (ack, gateway_key) in acks(conn)? {
        serde_json::to_writer(
            &mut *out,
            &serde_json::json!({ "ack": ack, "gateway_key": gateway_key }),
        )
        .map_err(|e| EngineError::Io(e.into()))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE audit (seq INTEGER PRIMARY KEY, entry TEXT NOT NULL, hash TEXT NOT NULL);
             CREATE TABLE checkpoints (seq INTEGER PRIMARY KEY, signed TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE TABLE gateways (gateway_key TEXT NOT NULL, paired_at INTEGER NOT NULL, checkpoint_ack TEXT);",
        )
        .unwrap();
        c
    }

    #[test]
    fn append_chains_and_verify_finds_edits() {
        let c = db();
        for i in 0..4 {
            append(
                &c,
                100 + i,
                kind::REQUEST_RECEIVED,
                Some("r"),
                serde_json::json!({"i": i}),
            )
            .unwrap();
        }
        let key = KeyPair::generate();
        let s = verify(&c, &key.public()).unwrap();
        assert_eq!(s.entries, 4);
        crate::store::execute(
            &c,
            "UPDATE audit SET entry = replace(entry, '\"i\":2', '\"i\":9') WHERE seq = 3",
            [],
        )
        .unwrap();
        match verify(&c, &key.public()) {
            Err(EngineError::AuditBroken(b)) => assert_eq!(b.position, 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn export_ends_with_verifiable_checkpoint() {
        let c = db();
        append(&c, 1, kind::GATEWAY_PAIRED, None, serde_json::json!({})).unwrap();
        let key = KeyPair::generate();
        let mut out = Vec::new();
        export(&c, &key, 5, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let last: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        let cp: Signed<Checkpoint> = serde_json::from_value(last["checkpoint"].clone()).unwrap();
        cp.verify(&key.public()).unwrap();
        assert_eq!(cp.body.seq, 1);
    }

    /// A log of 250 entries written within one second, so checkpoints fall every 100 entries
    /// (1, 101, 201), on a real database file.
    fn real_log() -> (tempfile::TempDir, std::path::PathBuf, KeyPair) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("approver.db");
        let c = crate::store::open(&path, 0).unwrap();
        let key = KeyPair::generate();
        for i in 0..250 {
            append(
                &c,
                1000,
                kind::REQUEST_RECEIVED,
                Some("r"),
                serde_json::json!({"i": i}),
            )
            .unwrap();
            checkpoint_if_due(&c, &key, 1000, false).unwrap();
        }
        (dir, path, key)
    }

    /// Damage done with a plain SQLite connection, as a thief of the database would, is named
    /// by `verify` with its kind and position.
    #[test]
    fn tampering_with_the_file_is_named() {
        let cases: &[(&str, &str, Damage, u64)] = &[
            (
                "edit",
                "UPDATE audit SET entry = replace(entry, '\"i\":40', '\"i\":41') WHERE seq = 41",
                Damage::Edit,
                41,
            ),
            ("delete", "DELETE FROM audit WHERE seq = 120", Damage::Deletion, 120),
            (
                "insert (a copy of an entry under a new number)",
                // A copy of entry 150 appended as entry 251: the table's key allows it.
                "INSERT INTO audit (seq, entry, hash) SELECT 251, entry, hash FROM audit WHERE seq = 150",
                Damage::Insertion,
                251,
            ),
            (
                "reorder",
                "UPDATE audit SET seq = -1 WHERE seq = 60; UPDATE audit SET seq = 60 WHERE seq = 61;
                 UPDATE audit SET seq = 61 WHERE seq = -1",
                Damage::Reorder,
                60,
            ),
            ("truncate", "DELETE FROM audit WHERE seq > 150", Damage::Truncation, 151),
            (
                "checkpoint forged",
                "UPDATE checkpoints SET signed = replace(signed, '\"at\":1000', '\"at\":1001') WHERE seq = 101",
                Damage::CheckpointForged,
                101,
            ),
        ];
        for (name, sql, damage, position) in cases {
            let (_dir, path, key) = real_log();
            let plain = Connection::open(&path).unwrap();
            plain.execute_batch(sql).unwrap();
            drop(plain);
            let c = crate::store::open(&path, 0).unwrap();
            let err = match verify(&c, &key.public()) {
                Err(EngineError::AuditBroken(b)) => b,
                other => panic!("{name}: not detected: {other:?}"),
            };
            assert_eq!(err.damage, *damage, "{name}: {err}");
            assert_eq!(err.position, *position, "{name}: {err}");
        }
    }

    /// Long logs are read in parallel ranges; damage in any range is still found in place.
    #[test]
    fn long_logs_are_verified_in_parallel_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("approver.db");
        let mut c = crate::store::open(&path, 0).unwrap();
        let key = KeyPair::generate();
        let tx = c.transaction().unwrap();
        for i in 0..20_000 {
            append(
                &tx,
                1000,
                kind::REQUEST_RECEIVED,
                None,
                serde_json::json!({"i": i}),
            )
            .unwrap();
        }
        tx.commit().unwrap();
        checkpoint_if_due(&c, &key, 1000, true).unwrap();
        assert_eq!(verify(&c, &key.public()).unwrap().entries, 20_000);
        c.execute("DELETE FROM audit WHERE seq = 14000", [])
            .unwrap();
        match verify(&c, &key.public()) {
            Err(EngineError::AuditBroken(b)) => {
                assert_eq!((b.damage, b.position), (Damage::Deletion, 14_000), "{b}")
            }
            other => panic!("not detected: {other:?}"),
        }
        c.execute(
            "UPDATE audit SET entry = replace(entry, '\"i\":3000', '\"i\":3001') WHERE seq = 3001",
            [],
        )
        .unwrap();
        match verify(&c, &key.public()) {
            Err(EngineError::AuditBroken(b)) => {
                assert_eq!((b.damage, b.position), (Damage::Edit, 3001), "{b}")
            }
            other => panic!("not detected: {other:?}"),
        }
    }

    #[test]
    fn checkpoints_follow_the_policy() {
        let (_dir, path, key) = real_log();
        let c = crate::store::open(&path, 0).unwrap();
        let s = verify(&c, &key.public()).unwrap();
        // The first entry (no checkpoint yet), then every 100 entries.
        assert_eq!(s.entries, 250);
        assert_eq!(s.checkpoints, 3);
        assert_eq!(s.checkpointed_through, Some(201));
        // Time alone makes one due once new entries exist.
        assert!(checkpoint_if_due(&c, &key, 1059, false).unwrap().is_none());
        assert_eq!(
            checkpoint_if_due(&c, &key, 1000 + CHECKPOINT_EVERY_SECONDS, false)
                .unwrap()
                .map(|cp| cp.body.seq),
            Some(250)
        );
        // Nothing new: nothing to sign, even when forced.
        assert!(checkpoint_if_due(&c, &key, 5000, true).unwrap().is_none());
    }
}
