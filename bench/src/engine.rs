//! Figures 1 and 2, gateway and approver engine in this process over loopback HTTP:
//! push latency (POST /v2/requests until the engine has verified and stored the request) and
//! the decision round trip with the software authenticator (engine approve until the signed
//! receipt is verified and stored).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use countersign_approver::{Delivery, DeliveryState, EngineEvent};
use countersign_protocol::api::{paths, CreatedRequest};
use countersign_protocol::Verdict;
use countersign_test_support::{answer, Approver, TestGateway};
use tokio::sync::mpsc;

use crate::common::{bench_config, ms, new_request, Figure, Stats};

const APPROVER: &str = "bench-approver";

/// What the event listener saw, stamped when it saw it.
enum Seen {
    Received(String, Instant),
    Rejected(String),
    Delivered(String, Instant),
    Refused(String, String),
}

struct Setup {
    gateway: TestGateway,
    approver: Approver,
    http: reqwest::Client,
    seen: mpsc::UnboundedReceiver<Seen>,
    counter: usize,
}

/// A new temporary directory under `parent` (the system's if `None`).
fn temp_dir(parent: Option<&Path>) -> Result<tempfile::TempDir> {
    Ok(match parent {
        Some(p) => tempfile::tempdir_in(p)?,
        None => tempfile::tempdir()?,
    })
}

impl Setup {
    async fn new(data_parent: Option<&Path>) -> Result<Setup> {
        let dir = temp_dir(data_parent)?;
        let gateway = TestGateway::serve(bench_config(dir.path().join("gateway")), dir).await?;
        let mut approver = Approver::open_in(temp_dir(data_parent)?);
        approver.pair(&gateway.invite(APPROVER)).await;

        let mut events = approver.engine.subscribe();
        let (tx, seen) = mpsc::unbounded_channel();
        let (up_tx, up_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut up = Some(up_tx);
            loop {
                let e = match events.recv().await {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        eprintln!("warning: the event listener lagged by {n} events");
                        continue;
                    }
                    Err(_) => return,
                };
                let now = Instant::now();
                let s = match e {
                    EngineEvent::RequestReceived { request_id, .. } => {
                        Seen::Received(request_id, now)
                    }
                    EngineEvent::RequestRejected { reason, .. } => Seen::Rejected(reason),
                    EngineEvent::DecisionDelivered { decision_id, .. } => {
                        Seen::Delivered(decision_id, now)
                    }
                    EngineEvent::DecisionRefused {
                        decision_id, code, ..
                    } => Seen::Refused(decision_id, code.to_string()),
                    EngineEvent::ConnectionUp { .. } => {
                        if let Some(u) = up.take() {
                            let _ = u.send(());
                        }
                        continue;
                    }
                    _ => continue,
                };
                if tx.send(s).is_err() {
                    return;
                }
            }
        });
        approver.start();
        tokio::time::timeout(Duration::from_secs(10), up_rx)
            .await
            .map_err(|_| anyhow!("the engine did not connect within 10 s"))??;
        // One client, kept alive, for everything this side sends.
        let http = reqwest::Client::new();
        Ok(Setup {
            gateway,
            approver,
            http,
            seen,
            counter: 0,
        })
    }

    async fn create(&mut self) -> Result<CreatedRequest> {
        self.counter += 1;
        let body = new_request(vec![APPROVER.into()], self.counter);
        let resp = self
            .http
            .post(self.gateway.url.join(paths::REQUESTS)?)
            .bearer_auth(&self.gateway.token)
            .json(&body)
            .send()
            .await?;
        let created: CreatedRequest = answer(resp).await?;
        if created.duplicate {
            bail!("a benchmark request collapsed into an earlier one");
        }
        Ok(created)
    }

    /// Waits for the engine to report `request_id` stored; returns when it did.
    async fn received(&mut self, request_id: &str) -> Result<Instant> {
        loop {
            let s = tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
                .await
                .map_err(|_| anyhow!("request {request_id} did not arrive within 10 s"))?
                .ok_or_else(|| anyhow!("the event listener ended"))?;
            match s {
                Seen::Received(id, at) if id == request_id => return Ok(at),
                Seen::Rejected(reason) => bail!("the engine rejected a request: {reason}"),
                _ => {}
            }
        }
    }

    async fn delivered(&mut self, decision_id: &str) -> Result<Instant> {
        loop {
            let s = tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
                .await
                .map_err(|_| anyhow!("decision {decision_id} was not delivered within 10 s"))?
                .ok_or_else(|| anyhow!("the event listener ended"))?;
            match s {
                Seen::Delivered(id, at) if id == decision_id => return Ok(at),
                Seen::Refused(id, code) if id == decision_id => {
                    bail!("the gateway refused the decision: {code}")
                }
                _ => {}
            }
        }
    }

    async fn info_rtt(&self, n: usize) -> Result<Vec<Duration>> {
        let url = self.gateway.url.join(paths::INFO)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let t0 = Instant::now();
            let resp = self.http.get(url.clone()).send().await?;
            let _ = resp.error_for_status()?.bytes().await?;
            out.push(t0.elapsed());
        }
        Ok(out)
    }

    async fn close(mut self) -> Result<()> {
        self.approver.stop().await;
        self.gateway.running.shutdown().await;
        Ok(())
    }
}

/// Figure 1.
pub async fn push_latency(
    requests: usize,
    warmup: usize,
    data_parent: Option<&Path>,
) -> Result<Vec<Figure>> {
    let mut s = Setup::new(data_parent)
        .await
        .context("setting up gateway and engine")?;
    // The gateway publishes a request to its streams right after the transaction that created
    // it commits, and stamps that moment on the event (the request exists from then on).
    let mut hub = s.gateway.gw().hub.subscribe();
    let (commit_tx, mut committed) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let listener = tokio::spawn(async move {
        loop {
            match hub.recv().await {
                Ok(p) if p.kind == "request" => {
                    let at = p.published.unwrap_or_else(Instant::now);
                    if commit_tx.send(at).is_err() {
                        return;
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    for _ in 0..warmup {
        let c = s.create().await?;
        s.received(&c.request.body.id).await?;
    }
    while committed.try_recv().is_ok() {}
    let _ = s.info_rtt(warmup).await?;
    // Interleave: half the RTT samples before, half after, so drift affects both alike.
    let mut rtt = s.info_rtt(requests / 2).await?;
    let mut push = Vec::with_capacity(requests);
    let mut end_to_end = Vec::with_capacity(requests);
    let mut post = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t0 = Instant::now();
        let c = s.create().await?;
        post.push(t0.elapsed());
        let at = s.received(&c.request.body.id).await?;
        end_to_end.push(at.duration_since(t0));
        // One request is in flight at a time, so the one commit published since t0 is its own.
        let created = tokio::time::timeout(Duration::from_secs(10), committed.recv())
            .await
            .map_err(|_| anyhow!("the gateway published no request within 10 s"))?
            .ok_or_else(|| anyhow!("the hub listener ended"))?;
        push.push(at.duration_since(created));
    }
    listener.abort();
    rtt.extend(s.info_rtt(requests - requests / 2).await?);
    let push = Stats::of(&push)?;
    let end_to_end = Stats::of(&end_to_end)?;
    let rtt = Stats::of(&rtt)?;
    let post = Stats::of(&post)?;
    println!(
        "push-latency: loopback GET /v2/info round trip: {}",
        rtt.line()
    );
    println!(
        "push-latency: POST /v2/requests answered:      {}",
        post.line()
    );
    println!(
        "push-latency: request created (gateway commit) -> engine stored: {}",
        push.line()
    );
    println!(
        "push-latency: POST sent -> engine stored (creation included): {}",
        end_to_end.line()
    );
    s.close().await?;
    let limit = rtt.p50 * 20;
    Ok(vec![
        Figure {
            name: "push p50",
            value: format!("{} (RTT p50 {})", ms(push.p50), ms(rtt.p50)),
            target: "informational".into(),
            pass: None,
        },
        Figure {
            name: "push p99",
            value: format!(
                "{} = {:.1} x RTT p50",
                ms(push.p99),
                push.p99.as_secs_f64() / rtt.p50.as_secs_f64()
            ),
            target: format!("<= 20 x RTT p50 = {}", ms(limit)),
            pass: Some(push.p99 <= limit),
        },
    ])
}

/// Figure 2.
pub async fn decision_rtt(
    decisions: usize,
    warmup: usize,
    data_parent: Option<&Path>,
) -> Result<Vec<Figure>> {
    let mut s = Setup::new(data_parent)
        .await
        .context("setting up gateway and engine")?;
    let mut samples = Vec::with_capacity(decisions);
    let mut in_flight = 0usize;
    for i in 0..warmup + decisions {
        let c = s.create().await?;
        let id = c.request.body.id.clone();
        s.received(&id).await?;
        let engine = s.approver.engine.clone();
        let t0 = Instant::now();
        let outcome = engine.approve(&id, None, &mut s.approver.auth).await?;
        let done = match outcome.delivery {
            Delivery::Delivered { receipt } => {
                if receipt.body.request_id != id {
                    bail!("the receipt names another request");
                }
                Instant::now()
            }
            // The background flusher claimed the row first (and may have finished already):
            // done when it reported delivery.
            Delivery::InFlight
            | Delivery::Settled {
                state: DeliveryState::Delivered,
            } => {
                in_flight += 1;
                s.delivered(&outcome.decision.body.decision_id).await?
            }
            other => bail!("the decision was not delivered: {other:?}"),
        };
        if i >= warmup {
            samples.push(done.duration_since(t0));
        }
    }
    // Where the time goes: the same steps approve takes, timed one by one.
    let parts = breakdown(&mut s, decisions.min(200)).await?;
    s.close().await?;
    let st = Stats::of(&samples)?;
    println!(
        "decision-rtt: approve -> receipt verified and stored: {}",
        st.line()
    );
    if in_flight > 0 {
        println!(
            "decision-rtt: {in_flight} of {} deliveries were taken by the background flusher \
             (approve returned InFlight or Settled; timed to the DecisionDelivered event)",
            warmup + decisions
        );
    }
    for (name, st) in &parts {
        println!("decision-rtt: step {name:<34} {}", st.line());
    }
    let limit = Duration::from_millis(25);
    Ok(vec![
        Figure {
            name: "decision p50",
            value: ms(st.p50),
            target: "informational".into(),
            pass: None,
        },
        Figure {
            name: "decision p99",
            value: ms(st.p99),
            target: format!("<= {}", ms(limit)),
            pass: Some(st.p99 <= limit),
        },
    ])
}

async fn breakdown(s: &mut Setup, n: usize) -> Result<Vec<(&'static str, Stats)>> {
    let (mut ceremony, mut sign, mut queue, mut deliver) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let c = s.create().await?;
        let id = c.request.body.id.clone();
        s.received(&id).await?;
        let engine = s.approver.engine.clone();
        let t0 = Instant::now();
        let assertion = engine.assertion_for(&id, &mut s.approver.auth)?;
        let t1 = Instant::now();
        let signed = engine.sign_decision(&id, Verdict::Approve, None, None, Some(assertion))?;
        let t2 = Instant::now();
        engine.queue_decision(&signed)?;
        let t3 = Instant::now();
        let done = match engine.deliver(&signed.body.decision_id).await? {
            Delivery::Delivered { .. } => Instant::now(),
            Delivery::InFlight
            | Delivery::Settled {
                state: DeliveryState::Delivered,
            } => s.delivered(&signed.body.decision_id).await?,
            other => bail!("the decision was not delivered: {other:?}"),
        };
        ceremony.push(t1 - t0);
        sign.push(t2 - t1);
        queue.push(t3 - t2);
        deliver.push(done - t3);
    }
    Ok(vec![
        ("ceremony (soft token, saved)", Stats::of(&ceremony)?),
        ("sign decision", Stats::of(&sign)?),
        ("queue (audit + outbox commit)", Stats::of(&queue)?),
        ("deliver (POST + receipt commit)", Stats::of(&deliver)?),
    ])
}
