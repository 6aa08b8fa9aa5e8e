//! The deciding process of the crash-consistency test (`sigkill_at_seeded_points_...` in the
//! e2e suite). It opens the approver engine in the data directory it is given, runs the engine's
//! connectors, outbox and checkpointer, and decides every pending request in turn with the
//! software authenticator: it denies when the request digest's first byte is divisible by 3 and
//! approves otherwise. After each decision the engine has committed, it prints
//! `ACK <request id> <decision id>` and flushes; that line is the acknowledgement the test holds
//! it to. The test kills it with SIGKILL at random moments.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use countersign_approver::{DeliveryState, Engine, ListFilter, SoftAuthenticator};

fn say(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let data: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: countersign-crash-child DATA_DIR")?;
    let engine = Engine::open(&data)?;
    let mut auth = SoftAuthenticator::open(&data.join("soft-authenticator.cbor"))?;
    let mut events = engine.subscribe();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let runner = engine.clone();
    tokio::spawn(async move { runner.run(shutdown).await });
    say("READY")?;
    loop {
        let mut todo: Vec<_> = engine
            .list(ListFilter::Pending)?
            .into_iter()
            .filter(|i| {
                i.decision
                    .as_ref()
                    .is_none_or(|d| d.delivery == DeliveryState::Refused)
            })
            .collect();
        todo.sort_by(|a, b| a.id().cmp(b.id()));
        for item in todo {
            let id = item.id().to_owned();
            let outcome = if item.digest.0[0] % 3 == 0 {
                engine.deny(&id, "crash test").await
            } else {
                engine.approve(&id, None, &mut auth).await
            };
            match outcome {
                Ok(o) => say(&format!("ACK {id} {}", o.decision.body.decision_id))?,
                Err(e) => say(&format!("ERR {id} {} {e}", e.code()))?,
            }
        }
        tokio::select! {
            _ = events.recv() => {}
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}
