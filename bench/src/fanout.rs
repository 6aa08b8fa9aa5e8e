//! Figure 4: one request pushed to many open approver streams. The gateway runs in a child
//! process so its memory per idle stream can be read from /proc/<pid>/status.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use countersign_protocol::api::{paths, CreatedRequest};
use countersign_protocol::KeyPair;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::child::ChildGateway;
use anyhow::Context as _;
use countersign_test_support::postgres::Postgres;
use countersign_test_support::{answer, Device, EventStream};

use crate::common::{ms, new_request, raise_open_files, rss_kib, unix_now, Figure, Stats};

/// The directory group of every approver, with `--group`.
const GROUP: &str = "everyone";

/// A policy that asks one approval of the group [`GROUP`] for every request.
const GROUP_POLICY: &str = r#"package countersign

import rego.v1

result := {"allow": true, "rule": "everyone", "mode": "ask", "stages": [{"name": "everyone", "group": "everyone", "min": 1}]}
"#;

pub struct Options {
    /// Approvers named in the one request (the protocol allows at most 64), or in the group.
    pub approvers: usize,
    /// Paired devices per approver; streams = approvers x devices.
    pub devices: usize,
    /// Address the request to a policy group of every approver rather than naming them: one
    /// event to the group's audience instead of one per approver.
    pub group: bool,
    /// Two gateway replicas on one PostgreSQL database rather than one SQLite gateway: the
    /// request is created through the first, and every other device's stream is held by the
    /// second.
    pub replicas: bool,
    pub data_parent: Option<PathBuf>,
}

pub async fn run(o: Options) -> Result<Vec<Figure>> {
    let streams = o.approvers * o.devices;
    // Each stream is one socket here and one in the child, which inherits the limit.
    raise_open_files(streams as u64 + 256)?;
    let policy_dir = tempfile::tempdir()?;
    let policy = policy_dir.path().join("group.rego");
    std::fs::write(&policy, GROUP_POLICY)?;
    let policy = o.group.then_some(policy.as_path());
    let pg = if o.replicas {
        Some(Postgres::start().context("starting PostgreSQL")?)
    } else {
        None
    };
    let database = pg.as_ref().map(Postgres::database).transpose()?;
    let mut gw =
        ChildGateway::start_with(o.data_parent.as_deref(), policy, database.as_deref()).await?;
    let second = match &database {
        Some(url) => Some(gw.replica(policy, url).await?),
        None => None,
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;

    // Pair every device through the public HTTP API, a few at a time.
    let t0 = Instant::now();
    let mut links = Vec::with_capacity(streams);
    let mut names = Vec::with_capacity(o.approvers);
    for a in 0..o.approvers {
        let name = format!("bench-f{a}");
        links.extend(gw.invites(&name, o.devices).await?);
        names.push(name);
    }
    let devices: Vec<(KeyPair, String)> = futures::stream::iter(links)
        .map(|link| {
            let http = http.clone();
            async move {
                let d = Device::pair(&http, &link, "bench").await?;
                Ok::<_, anyhow::Error>((d.key, d.id))
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    println!(
        "fanout: paired {} devices ({} approvers x {}) over HTTP in {:.1} s",
        devices.len(),
        o.approvers,
        o.devices,
        t0.elapsed().as_secs_f64()
    );
    if o.group {
        let t0 = Instant::now();
        gw.group(GROUP, &names).await?;
        println!(
            "fanout: {} approvers put in group {GROUP}, memberships stated and the policy loaded in {:.1} s",
            names.len(),
            t0.elapsed().as_secs_f64()
        );
    }

    let rss_before = rss_kib(&gw.pid)?;
    let rss_before_2 = second.as_ref().map(|g| rss_kib(&g.pid)).transpose()?;
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<()>>();
    let (got_tx, mut got_rx) = mpsc::unbounded_channel::<Result<Instant>>();
    // With two replicas every other device's stream is on the second.
    let bases = [
        gw.url.clone(),
        second.as_ref().map_or(gw.url.clone(), |g| g.url.clone()),
    ];
    let opener = {
        let http = http.clone();
        tokio::spawn(async move {
            futures::stream::iter(devices.into_iter().enumerate())
                .for_each_concurrent(64, |(n, (key, id))| {
                    let http = http.clone();
                    let base = bases[n % 2].clone();
                    let ready_tx = ready_tx.clone();
                    let got_tx = got_tx.clone();
                    async move {
                        let mut s =
                            match EventStream::open(&http, &base, &key, &id, unix_now(), 0).await {
                                Ok(s) => s,
                                Err(e) => {
                                    let _ = ready_tx.send(Err(e));
                                    return;
                                }
                            };
                        // Hold the stream in its own task from here on.
                        tokio::spawn(async move {
                            loop {
                                match s.next_message(Duration::from_secs(600)).await {
                                    Ok((event, _)) if event == "ready" => {
                                        let _ = ready_tx.send(Ok(()));
                                    }
                                    Ok((event, _)) if event == "request" => {
                                        let _ = got_tx.send(Ok(Instant::now()));
                                        return;
                                    }
                                    Ok(_) => {}
                                    Err(e) => {
                                        let _ = got_tx.send(Err(e));
                                        return;
                                    }
                                }
                            }
                        });
                    }
                })
                .await;
        })
    };
    let t_open = Instant::now();
    for _ in 0..streams {
        tokio::time::timeout(Duration::from_secs(120), ready_rx.recv())
            .await
            .map_err(|_| anyhow!("streams did not all open within 120 s"))?
            .ok_or_else(|| anyhow!("a stream task ended"))??;
    }
    opener.await?;
    let open_time = t_open.elapsed();
    // Let the allocator settle, then read the gateway's memory with every stream idle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(&gw.pid)?;
    let (grown, on_first) = match (&second, rss_before_2) {
        (Some(g), Some(before)) => {
            let after = rss_kib(&g.pid)?;
            println!("fanout: replica 2 VmRSS {before} KiB -> {after} KiB");
            (
                (rss_after + after) as f64 - (rss_before + before) as f64,
                streams,
            )
        }
        _ => (rss_after as f64 - rss_before as f64, streams),
    };
    let per_stream_kib = grown / on_first as f64;
    println!(
        "fanout: {streams} streams open and ready in {:.2} s; gateway VmRSS {rss_before} KiB -> \
         {rss_after} KiB; {per_stream_kib:.1} KiB per idle stream",
        open_time.as_secs_f64()
    );

    // One request naming every approver (one stored event per approver, pushed to each of
    // that approver's devices), or one to the group (one event to the group's audience).
    let body = new_request(if o.group { Vec::new() } else { names }, 0);
    let t0 = Instant::now();
    let resp = http
        .post(gw.url.join(paths::REQUESTS)?)
        // A replica started later issued the requester token anew: the newest is valid.
        .bearer_auth(second.as_ref().map_or(&gw.token, |g| &g.token))
        .json(&body)
        .send()
        .await?;
    let created: CreatedRequest = answer(resp).await?;
    let posted = t0.elapsed();
    let mut arrivals = Vec::with_capacity(streams);
    for _ in 0..streams {
        let at = tokio::time::timeout(Duration::from_secs(60), got_rx.recv())
            .await
            .map_err(|_| anyhow!("only {} of {streams} streams got the event", arrivals.len()))?
            .ok_or_else(|| anyhow!("a stream task ended"))??;
        arrivals.push(at.duration_since(t0));
    }
    let st = Stats::of(&arrivals)?;
    println!(
        "fanout: request {} (POST answered in {}): arrival over {streams} streams: {}",
        created.request.body.id,
        ms(posted),
        st.line()
    );
    if let Some(g) = second {
        g.stop().await?;
    }
    gw.stop().await?;
    Ok(vec![
        Figure {
            name: "fanout last",
            value: format!("{} to the last of {streams} streams", ms(st.max)),
            target: "none set (informational)".into(),
            pass: None,
        },
        Figure {
            name: "fanout memory",
            value: format!("{per_stream_kib:.1} KiB gateway RSS per idle stream"),
            target: "none set (informational)".into(),
            pass: None,
        },
    ])
}
