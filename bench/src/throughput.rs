//! Figure 3: decisions verified per second by a gateway (child process) under concurrent
//! POST /v2/decisions, next to the raw cost of the signature work each decision needs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use countersign_approver::authenticator::authenticate_with;
use countersign_protocol::api::{paths, CreatedRequest};
use countersign_protocol::types::Decode;
use countersign_protocol::{Decision, Event, Signed, StreamEvent, Verdict, PROTOCOL_VERSION};
use futures::StreamExt;

use crate::child::ChildGateway;
use countersign_test_support::{answer, Device, EventStream};

use crate::common::{cpu_time, ms, new_request, unix_now, Figure};

pub struct Options {
    pub requests: usize,
    pub concurrency: usize,
    pub approvers: usize,
    /// Where the gateway's data directory goes (default: the system temporary directory).
    pub data_parent: Option<PathBuf>,
    /// Record a CPU profile of the gateway with `perf record` into this file.
    pub perf: Option<PathBuf>,
}

/// Raw single-thread cost of the signature work per decision.
pub struct RawCost {
    pub ed25519_verify: Duration,
    pub p256_verify: Duration,
    pub ed25519_sign: Duration,
}

impl RawCost {
    /// One device-signature verify, one WebAuthn (P-256) verify, receipt and status signatures.
    pub fn per_decision(&self) -> Duration {
        self.ed25519_verify + self.p256_verify + self.ed25519_sign * 2
    }
}

fn per_op(n: u32, mut f: impl FnMut(u32) -> Result<()>) -> Result<Duration> {
    for i in 0..n / 10 {
        f(i)?;
    }
    let t0 = Instant::now();
    for i in 0..n {
        f(i)?;
    }
    Ok(t0.elapsed() / n)
}

pub fn raw_cost(n: u32) -> Result<RawCost> {
    use ed25519_dalek::Signer as _;
    use p256::ecdsa::signature::{Signer as _, Verifier as _};

    // Messages of the size the gateway signs and verifies (a JCS body of ~1 KiB).
    let msg = vec![0x5au8; 1024];
    let ed = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let ed_pub = ed.verifying_key();
    let ed_sig = ed.sign(&msg);
    let ed25519_verify = per_op(n, |_| {
        ed_pub
            .verify_strict(std::hint::black_box(&msg), &ed_sig)
            .map_err(|e| anyhow!("ed25519 verify: {e}"))
    })?;
    let ed25519_sign = per_op(n, |i| {
        let mut m = msg.clone();
        m[..4].copy_from_slice(&i.to_le_bytes());
        std::hint::black_box(ed.sign(&m));
        Ok(())
    })?;
    // WebAuthn signs authenticatorData || SHA-256(clientDataJSON): about 70 bytes.
    let p_msg = vec![0xa5u8; 69];
    let p =
        p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).map_err(|e| anyhow!("p256 key: {e}"))?;
    let p_pub = *p.verifying_key();
    let p_sig: p256::ecdsa::Signature = p.sign(&p_msg);
    let p256_verify = per_op(n, |_| {
        p_pub
            .verify(std::hint::black_box(&p_msg), &p_sig)
            .map_err(|e| anyhow!("p256 verify: {e}"))
    })?;
    Ok(RawCost {
        ed25519_verify,
        p256_verify,
        ed25519_sign,
    })
}

pub async fn run(o: Options) -> Result<Vec<Figure>> {
    let raw = raw_cost(3000)?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let raw_one = raw.per_decision();
    let raw_rate = cores / raw_one.as_secs_f64();
    println!(
        "throughput: raw single-thread: ed25519 verify {} + p256 verify {} + 2 x ed25519 sign {} \
         = {} per decision -> {:.0}/s on 1 core, {:.0}/s scaled to {cores} cores",
        ms(raw.ed25519_verify),
        ms(raw.p256_verify),
        ms(raw.ed25519_sign),
        ms(raw_one),
        1.0 / raw_one.as_secs_f64(),
        raw_rate
    );

    let mut gw = ChildGateway::start(o.data_parent.as_deref()).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.concurrency * 2)
        .build()?;
    // Approvers, one device each.
    let mut devices: Vec<Device> = Vec::new();
    for i in 0..o.approvers {
        let name = format!("bench-t{i}");
        let links = gw.invites(&name, 1).await?;
        for link in links {
            devices.push(Device::pair(&http, &link, "bench").await?);
        }
    }
    // Pre-create the requests, a few in flight.
    let t0 = Instant::now();
    let base = gw.url.clone();
    let token = gw.token.clone();
    let approver_names: Vec<String> = devices.iter().map(|d| d.approver.clone()).collect();
    let created: Vec<CreatedRequest> = futures::stream::iter(0..o.requests)
        .map(|i| {
            let http = http.clone();
            let url = base.join(paths::REQUESTS);
            let token = token.clone();
            let body = new_request(vec![approver_names[i % approver_names.len()].clone()], i);
            async move {
                let resp = http
                    .post(url?)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await?;
                Ok(answer::<CreatedRequest>(resp).await?)
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    println!(
        "throughput: setup: {} requests created in {:.1} s ({:.0}/s, 4 in flight)",
        created.len(),
        t0.elapsed().as_secs_f64(),
        created.len() as f64 / t0.elapsed().as_secs_f64()
    );
    // Each device reads its backlog to get the requests and their passkey challenges, then
    // pre-computes the assertion and the signed decision for every one of them.
    let mut bodies: Vec<bytes::Bytes> = Vec::with_capacity(o.requests);
    let gateway_fp = created
        .first()
        .map(|c| c.request.body.gateway.clone())
        .ok_or_else(|| anyhow!("no requests"))?;
    for d in devices.iter_mut() {
        let mut s = EventStream::open(&http, &base, &d.key, &d.id, unix_now(), 0).await?;
        loop {
            let (event, data) = s.next_message(Duration::from_secs(30)).await?;
            if event == "ready" {
                break;
            }
            if event == "hello" {
                continue;
            }
            let envelope = Signed::<Event>::decode(data.as_bytes())?;
            let StreamEvent::Request {
                request, challenge, ..
            } = envelope.body.payload
            else {
                continue;
            };
            let cred =
                authenticate_with(&mut d.token, &d.origin, serde_json::from_value(challenge)?)
                    .map_err(|e| anyhow!("assertion: {e:?}"))?;
            let decision = Decision {
                v: PROTOCOL_VERSION,
                decision_id: uuid::Uuid::now_v7().to_string(),
                request_id: request.body.id.clone(),
                request_digest: request.digest()?,
                gateway: gateway_fp.clone(),
                approver: d.approver.clone(),
                device_id: d.id.clone(),
                verdict: Verdict::Approve,
                reason: None,
                match_code: None,
                decided_at: unix_now(),
                assertion: Some(serde_json::to_value(&cred)?),
            };
            let signed = Signed::sign(&d.key, decision)?;
            bodies.push(serde_json::to_vec(&signed)?.into());
        }
    }
    if bodies.len() != o.requests {
        bail!(
            "expected {} pushed requests, the devices saw {}",
            o.requests,
            bodies.len()
        );
    }

    // Optional CPU profile of the gateway during the timed run.
    let perf = match &o.perf {
        Some(file) => Some(
            tokio::process::Command::new("perf")
                .args(["record", "-F", "499", "--call-graph", "dwarf,16384", "-o"])
                .arg(file)
                .args(["-p", &gw.pid])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?,
        ),
        None => None,
    };
    if perf.is_some() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let url = base.join(paths::DECISIONS)?;
    let store0 = gw.store_stats().await?;
    let cpu_gw0 = cpu_time(&gw.pid)?;
    let cpu_me0 = cpu_time("self")?;
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let t0 = Instant::now();
    let latencies: Vec<Duration> = futures::stream::iter(bodies)
        .map(|body| {
            let http = http.clone();
            let url = url.clone();
            let failures = failures.clone();
            async move {
                let t = Instant::now();
                let r = http
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().is_success() => {
                        let _ = resp.bytes().await;
                    }
                    Ok(resp) => {
                        let status = resp.status();
                        let text = resp.text().await.unwrap_or_default();
                        if let Ok(mut f) = failures.lock() {
                            f.push(format!("HTTP {status}: {text}"));
                        }
                    }
                    Err(e) => {
                        if let Ok(mut f) = failures.lock() {
                            f.push(e.to_string());
                        }
                    }
                }
                t.elapsed()
            }
        })
        .buffer_unordered(o.concurrency)
        .collect()
        .await;
    let wall = t0.elapsed();
    let cpu_gw = cpu_time(&gw.pid)? - cpu_gw0;
    let cpu_me = cpu_time("self")? - cpu_me0;
    let store1 = gw.store_stats().await?;
    if let Some(mut p) = perf {
        let pid = p.id().map(|p| p.to_string()).unwrap_or_default();
        let _ = tokio::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .await;
        let _ = p.wait().await;
    }
    gw.stop().await?;
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    if !failures.is_empty() {
        bail!(
            "{} of {} decisions failed, first: {}",
            failures.len(),
            latencies.len(),
            failures[0]
        );
    }
    let n = latencies.len() as f64;
    let rate = n / wall.as_secs_f64();
    let lat = crate::common::Stats::of(&latencies)?;
    println!(
        "throughput: {} decisions, {} in flight, in {:.2} s: {rate:.0} decisions/s; \
         per-POST latency {}",
        latencies.len(),
        o.concurrency,
        wall.as_secs_f64(),
        lat.line()
    );
    println!(
        "throughput: gateway CPU {:.2} s ({:.2} cores busy, {} CPU per decision); \
         load generator CPU {:.2} s ({} per decision)",
        cpu_gw.as_secs_f64(),
        cpu_gw.as_secs_f64() / wall.as_secs_f64(),
        ms(cpu_gw / latencies.len() as u32),
        cpu_me.as_secs_f64(),
        ms(cpu_me / latencies.len() as u32),
    );
    // The store's writer in the timed run: every decision is one write; the lock is the one
    // thing decisions do one at a time.
    let writes = store1.writes.saturating_sub(store0.writes).max(1);
    let commits = store1.commits.saturating_sub(store0.commits).max(1);
    let held = store1.lock_held_ns.saturating_sub(store0.lock_held_ns);
    let committing = store1.commit_ns.saturating_sub(store0.commit_ns);
    println!(
        "throughput: store writer: {writes} writes in {commits} commits ({:.1} per commit), \
         {:.1} WAL pages per write; write lock held {:.0}% of the run, {:.3} ms per write, \
         of which COMMIT {:.3} ms per commit",
        writes as f64 / commits as f64,
        store1.wal_frames.saturating_sub(store0.wal_frames) as f64 / writes as f64,
        100.0 * held as f64 / 1e9 / wall.as_secs_f64(),
        held as f64 / 1e6 / writes as f64,
        committing as f64 / 1e6 / commits as f64,
    );
    let data_on = o
        .data_parent
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| std::env::temp_dir().display().to_string());
    println!("throughput: gateway data directory under {data_on}");
    // The "within 2x of the raw signature cost" target was withdrawn (docs/performance.md 3d
    // says why this design cannot reach it); the raw cost stays beside the gateway's CPU per
    // decision as information.
    let cpu_per_decision = cpu_gw / latencies.len() as u32;
    Ok(vec![
        Figure {
            name: "throughput",
            value: format!(
                "{rate:.0} decisions/s, gateway CPU {} ms per decision",
                ms(cpu_per_decision)
            ),
            target: ">= 1000/s".into(),
            pass: Some(rate >= 1000.0),
        },
        Figure {
            name: "vs raw crypto",
            value: format!(
                "{rate:.0}/s vs raw {raw_rate:.0}/s = {:.1}x the raw signature cost",
                raw_rate / rate
            ),
            target: "none (information)".into(),
            pass: None,
        },
    ])
}
