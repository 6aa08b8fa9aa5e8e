//! The gateway log's figures (docs/performance.md, section 6c): an audit append with its tree
//! hashes near the start of the log and at 100,000 entries (the tree's share grows with
//! log2 n), inclusion and consistency proofs and a signed checkpoint over 100,000 entries, and
//! the backfill of a log whose tree hashes are missing (a gateway upgraded from schema 11).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use countersign_gateway::error::StoreError;
use countersign_gateway::store::audit::StoredTree;
use countersign_gateway::store::Store;
use countersign_protocol::log::{self as tlog, Proof};
use countersign_protocol::KeyPair;

use crate::common::{ms, Figure};

fn detail(i: u64) -> serde_json::Value {
    serde_json::json!({
        "decision_id": format!("00000000-0000-4000-8000-{i:012}"),
        "approver": "alice@example.com",
        "verdict": "approve",
        "decision_digest": "9f63f7097f9202ed52b2003fc96d31809d17c634f68aa6658b47af23950081ca",
    })
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// `n` appends, one write each, from entry `start`; the mean time per append.
fn appends(store: &Store, start: u64, n: u64) -> Result<Duration> {
    let t = Instant::now();
    for i in start..start + n {
        store.write(|tx| {
            tx.audit_append(i as i64, "decision.accepted", Some("r"), detail(i))
                .map(|_| ())
        })?;
    }
    Ok(t.elapsed() / n as u32)
}

pub fn run(entries: u64) -> Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gateway.db");
    let store = Store::open(&path, Arc::default())?;
    let timed = 500;
    let early = appends(&store, 0, timed)?;
    let mut size = timed;
    while size < entries {
        let batch = (entries - size).min(1000);
        store.write(|tx| {
            for i in size..size + batch {
                tx.audit_append(i as i64, "decision.accepted", Some("r"), detail(i))?;
            }
            Ok::<_, StoreError>(())
        })?;
        size += batch;
    }
    let late = appends(&store, size, timed)?;
    size += timed;

    let proofs = 1000u64;
    let t = Instant::now();
    for k in 0..proofs {
        store.read(|tx| {
            Proof::inclusion(size, (k * 7919) % size, &StoredTree(tx)).map_err(corrupt)
        })?;
    }
    let inclusion = t.elapsed() / proofs as u32;
    let t = Instant::now();
    for k in 0..proofs {
        store
            .read(|tx| Proof::consistency(size, size / 2 + k, &StoredTree(tx)).map_err(corrupt))?;
    }
    let consistency = t.elapsed() / proofs as u32;
    let key = KeyPair::generate();
    let t = Instant::now();
    for _ in 0..proofs {
        let root = store.read(|tx| tlog::root(size, &StoredTree(tx)).map_err(corrupt))?;
        std::hint::black_box(tlog::sign_checkpoint(&key, size, &root));
    }
    let checkpoint = t.elapsed() / proofs as u32;

    // The tree hashes dropped, as in a store written before schema 12: filled in at open.
    drop(store);
    let db = rusqlite::Connection::open(&path)?;
    db.execute_batch("DELETE FROM log_hashes")?;
    drop(db);
    let t = Instant::now();
    let store = Store::open(&path, Arc::default())?;
    let backfill = t.elapsed();
    let filled = store.read(|tx| tx.log_behind())?;

    println!(
        "gateway-log: append at {timed} entries {}, at {size} entries {}; over {size} entries: inclusion proof {}, consistency proof {}, root + signed checkpoint {}; backfill of {size} entries at open {:.2} s ({:.0}/s){}",
        ms(early),
        ms(late),
        ms(inclusion),
        ms(consistency),
        ms(checkpoint),
        backfill.as_secs_f64(),
        size as f64 / backfill.as_secs_f64(),
        if filled { " (INCOMPLETE)" } else { "" },
    );
    let ratio = late.as_secs_f64() / early.as_secs_f64();
    Ok(vec![
        Figure {
            name: "log append, large vs small log",
            value: format!("{} vs {} = {ratio:.2}x", ms(late), ms(early)),
            target: "informational: the tree's cost grows with log2 n".into(),
            pass: None,
        },
        Figure {
            name: "log inclusion proof",
            value: ms(inclusion),
            target: format!("informational, {size} entries"),
            pass: None,
        },
        Figure {
            name: "log backfill",
            value: format!("{:.2} s for {size} entries", backfill.as_secs_f64()),
            target: "informational".into(),
            pass: Some(!filled),
        },
    ])
}
