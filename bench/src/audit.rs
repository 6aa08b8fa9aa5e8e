//! Audit log figures: the append rate against a plain SQLite insert of the same row in the same
//! durability mode, and the time to verify a long chain.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use countersign_approver::audit::{append, kind};
use countersign_approver::{Engine, DATABASE_FILE};
use countersign_protocol::audit::{AuditEntry, GENESIS};
use countersign_protocol::canonical::to_canonical_bytes;
use countersign_protocol::PROTOCOL_VERSION;
use rusqlite::{params, Connection};

use crate::common::{ms, Figure};

/// A connection to the approver database the engine created, in the engine's durability mode.
fn open_like_the_engine(dir: &Path) -> Result<Connection> {
    drop(Engine::open(dir)?);
    let conn = Connection::open(dir.join(DATABASE_FILE))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

fn detail(i: usize) -> serde_json::Value {
    serde_json::json!({
        "gateway": "3f1c0b6a9d2e4f8a",
        "decision_id": format!("00000000-0000-4000-8000-{i:012}"),
        "verdict": "approve",
        "request_digest": "9f63f7097f9202ed52b2003fc96d31809d17c634f68aa6658b47af23950081ca",
    })
}

/// Appends `n` entries, each in its own `IMMEDIATE` transaction as the engine does, then
/// inserts the same rows into a plain table with the same shape in the same mode. Interleaved in
/// blocks of 50 so that disk drift affects both alike.
pub fn append_rate(n: usize, data_parent: Option<&Path>) -> Result<Vec<Figure>> {
    let dir = match data_parent {
        Some(p) => tempfile::tempdir_in(p)?,
        None => tempfile::tempdir()?,
    };
    let mut conn = open_like_the_engine(dir.path())?;
    conn.execute_batch(
        "CREATE TABLE plain (seq INTEGER PRIMARY KEY, entry TEXT NOT NULL, hash TEXT NOT NULL)",
    )?;
    let mut audit_time = Duration::ZERO;
    let mut plain_time = Duration::ZERO;
    let mut done = 0;
    while done < n {
        let block = (n - done).min(50);
        let t0 = Instant::now();
        for i in done..done + block {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            append(
                &tx,
                1_800_000_000,
                kind::DECISION_MADE,
                Some("r"),
                detail(i),
            )?;
            tx.commit()?;
        }
        audit_time += t0.elapsed();
        // The rows just appended, inserted again as they are: the same bytes, no hashing.
        let rows: Vec<(i64, String, String)> = conn
            .prepare("SELECT seq, entry, hash FROM audit WHERE seq > ?1 ORDER BY seq")?
            .query_map([done as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let t1 = Instant::now();
        for (seq, entry, hash) in &rows {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.prepare_cached("INSERT INTO plain (seq, entry, hash) VALUES (?1, ?2, ?3)")?
                .execute(params![seq, entry, hash])?;
            tx.commit()?;
        }
        plain_time += t1.elapsed();
        done += block;
    }
    let per = |t: Duration| t / n as u32;
    let ratio = audit_time.as_secs_f64() / plain_time.as_secs_f64();
    println!(
        "audit-append: {n} appends, one transaction each, synchronous=FULL: audit {} per append ({:.0}/s); plain insert of the same row {} ({:.0}/s)",
        ms(per(audit_time)),
        n as f64 / audit_time.as_secs_f64(),
        ms(per(plain_time)),
        n as f64 / plain_time.as_secs_f64(),
    );
    Ok(vec![Figure {
        name: "audit append",
        value: format!(
            "{} vs plain {} = {ratio:.2}x",
            ms(per(audit_time)),
            ms(per(plain_time))
        ),
        target: "<= 1.5x a plain insert".into(),
        pass: Some(ratio <= 1.5),
    }])
}

/// Writes a valid chain of `n` entries straight into a fresh approver database, then times
/// `Engine::audit_verify` over it (read, decode, hash, chain walk, checkpoints).
pub fn verify(n: usize, data_parent: Option<&Path>) -> Result<Vec<Figure>> {
    let dir = match data_parent {
        Some(p) => tempfile::tempdir_in(p)?,
        None => tempfile::tempdir()?,
    };
    let t0 = Instant::now();
    {
        let mut conn = open_like_the_engine(dir.path())?;
        let tx = conn.transaction()?;
        {
            let mut insert =
                tx.prepare("INSERT INTO audit (seq, entry, hash) VALUES (?1, ?2, ?3)")?;
            let mut prev = GENESIS;
            for i in 0..n {
                let entry = AuditEntry {
                    v: PROTOCOL_VERSION,
                    seq: i as u64 + 1,
                    at: 1_800_000_000 + i as i64,
                    kind: kind::REQUEST_RECEIVED.into(),
                    request_id: Some(format!("00000000-0000-4000-8000-{i:012}")),
                    detail: detail(i),
                    prev,
                };
                let hash = entry.hash()?;
                let text = String::from_utf8(to_canonical_bytes(&entry)?)?;
                insert.execute(params![i as i64 + 1, text, hash.to_hex()])?;
                prev = hash;
            }
        }
        tx.commit()?;
        // A log that grew over months lives in the database file, not in the write-ahead log.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    // Written long ago: on disk, not still being written back while verification runs.
    std::fs::File::open(dir.path().join(DATABASE_FILE))?.sync_all()?;
    std::thread::sleep(Duration::from_secs(2));
    let size = std::fs::metadata(dir.path().join(DATABASE_FILE))?.len();
    println!(
        "audit-verify: wrote {n} entries ({:.0} MiB database) in {:.1} s",
        size as f64 / (1024.0 * 1024.0),
        t0.elapsed().as_secs_f64()
    );
    let engine = Engine::open(dir.path())?;
    let t1 = Instant::now();
    let s = engine
        .audit_verify()
        .context("verifying the written chain")?;
    let took = t1.elapsed();
    anyhow::ensure!(
        s.entries == n as u64,
        "verified {} of {n} entries",
        s.entries
    );
    println!(
        "audit-verify: {n} entries verified in {:.2} s ({:.0} entries/s) on {} cores",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |c| c.get())
    );
    Ok(vec![Figure {
        name: "audit verify",
        value: format!("{n} entries in {:.2} s", took.as_secs_f64()),
        target: "<= 3 s for 1,000,000 entries".into(),
        pass: (n == 1_000_000).then_some(took <= Duration::from_secs(3)),
    }])
}
