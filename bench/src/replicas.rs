//! Push latency across replicas (docs/performance.md, section 1b): from sending
//! `POST /v2/requests` until the approver engine has verified and stored the request, measured
//! in one run for one SQLite node, one PostgreSQL replica, and a request created through one
//! PostgreSQL replica for an engine whose stream is held by another (the event reaches it
//! through `NOTIFY` and that replica's publisher). The PostgreSQL server is the test harness's,
//! on this machine, with its default durability (`fsync` and `synchronous_commit` on).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use countersign_approver::EngineEvent;
use countersign_protocol::api::{paths, CreatedRequest};
use countersign_test_support::postgres::Postgres;
use countersign_test_support::{answer, Approver, TestGateway};

use crate::common::{bench_config, ms, new_request, Figure, Stats};

const APPROVER: &str = "bench-approver";

/// Where the request is created and where the engine's stream is.
#[derive(Clone, Copy)]
enum Setup {
    Sqlite,
    /// Created and pushed by the same PostgreSQL replica.
    Postgres,
    /// Created through one PostgreSQL replica, pushed by another.
    Across,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Sqlite => "SQLite, one node",
            Setup::Postgres => "PostgreSQL, one replica",
            Setup::Across => "PostgreSQL, created on replica 1, pushed by replica 2",
        }
    }
}

async fn measure(setup: Setup, pg: &Postgres, requests: usize, warmup: usize) -> Result<Stats> {
    let dir = tempfile::tempdir()?;
    let mut config = bench_config(dir.path().join("gateway"));
    if !matches!(setup, Setup::Sqlite) {
        config.database_url = Some(pg.database()?);
    }
    let primary = TestGateway::serve(config, dir).await?;
    let replica = match setup {
        Setup::Across => Some(primary.replica(|_| {}).await),
        _ => None,
    };
    let push_url = replica
        .as_ref()
        .map_or(primary.url.clone(), |r| r.url.clone());
    let link = countersign_gateway::pairing::invite(primary.gw(), APPROVER, push_url)
        .context("inviting the approver")?;
    let mut approver = Approver::open_in(tempfile::tempdir()?);
    approver.pair(&link).await;
    let mut events = approver.engine.subscribe();
    approver.start();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(EngineEvent::ConnectionUp { .. }) => return Ok(()),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => bail!("the engine's events ended: {e}"),
            }
        }
    })
    .await
    .map_err(|_| anyhow!("the engine did not connect within 10 s"))??;
    let http = reqwest::Client::new();
    let mut samples = Vec::with_capacity(requests);
    for n in 0..warmup + requests {
        let body = new_request(vec![APPROVER.into()], n);
        let t0 = Instant::now();
        let resp = http
            .post(primary.url.join(paths::REQUESTS)?)
            .bearer_auth(&primary.token)
            .json(&body)
            .send()
            .await?;
        let created: CreatedRequest = answer(resp).await?;
        let id = created.request.body.id;
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.recv().await {
                    Ok(EngineEvent::RequestReceived { request_id, .. }) if request_id == id => {
                        return Ok(())
                    }
                    Ok(EngineEvent::RequestRejected { reason, .. }) => {
                        bail!("the engine rejected a request: {reason}")
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => bail!("the engine's events ended: {e}"),
                }
            }
        })
        .await
        .map_err(|_| anyhow!("request {id} did not arrive within 10 s"))??;
        if n >= warmup {
            samples.push(t0.elapsed());
        }
    }
    approver.stop().await;
    if let Some(r) = replica {
        r.running.shutdown().await;
    }
    primary.running.shutdown().await;
    Stats::of(&samples)
}

/// Section 1b.
pub async fn run(requests: usize) -> Result<Vec<Figure>> {
    let pg = Postgres::start().context("starting PostgreSQL")?;
    let mut results = Vec::new();
    for setup in [Setup::Sqlite, Setup::Postgres, Setup::Across] {
        let stats = measure(setup, &pg, requests, 50)
            .await
            .with_context(|| setup.name())?;
        println!(
            "push-replicas: POST sent -> engine stored, {}: {}",
            setup.name(),
            stats.line()
        );
        results.push((setup, stats));
    }
    let sqlite = results[0].1.p99;
    Ok(results
        .iter()
        .map(|(setup, s)| Figure {
            name: match setup {
                Setup::Sqlite => "push p99, SQLite node",
                Setup::Postgres => "push p99, PostgreSQL replica",
                Setup::Across => "push p99, across replicas",
            },
            value: format!(
                "{} ({:.1} x SQLite)",
                ms(s.p99),
                s.p99.as_secs_f64() / sqlite.as_secs_f64()
            ),
            target: "informational".into(),
            pass: None,
        })
        .collect())
}
