//! The local audit log: an append-only, hash-chained table (`audit`) following the protocol's
//! chain rule, its verification and its export as JSON Lines with a signed checkpoint.
//!
//! Appends happen inside the caller's transaction so that an audit entry and the state change
//! it records commit together or not at all.

use std::io::Write;

use countersign_protocol::audit::{verify_chain, AuditEntry, ChainBreak, Checkpoint, GENESIS};
use countersign_protocol::canonical::to_canonical_bytes;
use countersign_protocol::types::Decode;
use countersign_protocol::{Digest, KeyPair, Signed, PROTOCOL_VERSION};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::EngineError;

/// Audit entry kinds written by the engine.
pub mod kind {
    pub const GATEWAY_PAIRED: &str = "gateway.paired";
    pub const REQUEST_RECEIVED: &str = "request.received";
    pub const REQUEST_REJECTED: &str = "request.rejected";
    pub const REQUEST_STATUS: &str = "request.status";
    pub const DECISION_MADE: &str = "decision.made";
    pub const DECISION_SENT: &str = "decision.sent";
    pub const RECEIPT_RECEIVED: &str = "receipt.received";
    pub const DECISION_REFUSED: &str = "decision.refused";
}

/// A verified chain: how many entries and the hash of the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AuditSummary {
    pub entries: u64,
    pub head: Digest,
}

/// Appends one entry. Must run inside a transaction (the caller's), so that reading the
/// previous hash and writing the new row cannot interleave with another append.
pub(crate) fn append(
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
        v: PROTOCOL_VERSION,
        seq,
        at,
        kind: kind.to_owned(),
        request_id: request_id.map(str::to_owned),
        detail,
        prev,
    };
    let hash = entry.hash()?;
    let text = String::from_utf8(to_canonical_bytes(&entry)?)
        .map_err(|_| EngineError::Corrupt("canonical JSON is not UTF-8".into()))?;
    crate::store::execute(
        conn,
        "INSERT INTO audit (seq, entry, hash) VALUES (?1, ?2, ?3)",
        params![seq as i64, text, hash.to_hex()],
    )?;
    Ok((seq, hash))
}

/// Reads every row in order, verifies the chain and names the first bad entry.
pub(crate) fn verify(
    conn: &Connection,
) -> Result<(AuditSummary, Vec<(AuditEntry, Digest)>), EngineError> {
    let mut stmt = conn.prepare_cached("SELECT seq, entry, hash FROM audit ORDER BY seq")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut chain = Vec::new();
    let mut unreadable: Option<ChainBreak> = None;
    for (i, row) in rows.enumerate() {
        let (seq, text, hash) = row?;
        let entry = AuditEntry::decode(text.as_bytes());
        let hash = Digest::parse("hash", &hash);
        match (entry, hash) {
            (Ok(e), Ok(h)) => chain.push((e, h)),
            (Err(e), _) => {
                unreadable = Some(ChainBreak {
                    position: i as u64 + 1,
                    problem: format!("row seq {seq} cannot be read as an audit entry ({e})"),
                });
                break;
            }
            (_, Err(_)) => {
                unreadable = Some(ChainBreak {
                    position: i as u64 + 1,
                    problem: format!("row seq {seq} has a stored hash that is not a digest"),
                });
                break;
            }
        }
    }
    // An earlier break in the readable prefix is the first bad entry, so check it first.
    let (entries, head) = verify_chain(chain.iter().cloned())?;
    if let Some(b) = unreadable {
        return Err(b.into());
    }
    Ok((AuditSummary { entries, head }, chain))
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

/// Writes the verified chain as JSON Lines followed by a checkpoint signed by the device key.
/// A broken chain is not exported: signing a checkpoint over it would vouch for the damage.
pub(crate) fn export(
    conn: &Connection,
    key: &KeyPair,
    at: i64,
    out: &mut dyn Write,
) -> Result<AuditSummary, EngineError> {
    let (summary, chain) = verify(conn)?;
    for (entry, hash) in &chain {
        serde_json::to_writer(&mut *out, &ExportLine { entry, hash })
            .map_err(|e| EngineError::Io(e.into()))?;
        out.write_all(b"\n")?;
    }
    let checkpoint = Signed::sign(
        key,
        Checkpoint {
            v: PROTOCOL_VERSION,
            signer: key.public().fingerprint(),
            seq: summary.entries,
            head: summary.head,
            at,
        },
    )?;
    serde_json::to_writer(
        &mut *out,
        &CheckpointLine {
            checkpoint: &checkpoint,
            public_key: key.public().to_base64(),
        },
    )
    .map_err(|e| EngineError::Io(e.into()))?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE audit (seq INTEGER PRIMARY KEY, entry TEXT NOT NULL, hash TEXT NOT NULL);")
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
        let (s, _) = verify(&c).unwrap();
        assert_eq!(s.entries, 4);
        crate::store::execute(
            &c,
            "UPDATE audit SET entry = replace(entry, '\"i\":2', '\"i\":9') WHERE seq = 3",
            [],
        )
        .unwrap();
        match verify(&c) {
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
}
