//! Cross-crate scenarios: the real gateway and the real approver engine (and their binaries),
//! the software authenticator as the passkey, real SQLite files and loopback HTTP only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use countersign_approver::{Delivery, DeliveryState, EngineEvent, ListFilter};
use countersign_e2e::{
    bin, reopen_gateway, Approver, ChildGuard, GatewayProcess, ReadOnly, SmallDisk, TestGateway,
};
use countersign_protocol::RequestState;

/// Reads a child's stdout lines on a thread.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_line(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line containing {needle}"));
        if line.contains(needle) {
            return line;
        }
    }
}

fn countersign(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("countersign"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

fn wait_exit(child: &mut std::process::Child) -> i32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "request did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// invite -> pair -> `request --wait -- CMD` -> pushed to `watch` -> approve with the passkey
/// -> the gateway verifies -> the command runs and `request` exits 0; then a denial gives exit
/// code 3 and the command does not run.
#[test]
fn the_full_loop_with_the_real_binaries() {
    let tmp = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(&tmp.path().join("gateway"));
    let token = gw.admin(&["token", "create", "ci-bot"]);
    let link = gw.admin(&["invite", "alice@example.com"]);
    assert!(link.starts_with("countersign://pair?"));
    let alice = tmp.path().join("alice");

    let paired = countersign(&alice, &["--authenticator", "soft", "pair", &link]);
    assert!(paired.status.success(), "{paired:?}");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&paired.stdout),
        String::from_utf8_lossy(&paired.stderr)
    );
    assert!(
        all.contains("development mode"),
        "soft mode is not labelled: {all}"
    );

    // `watch` receives; it holds the data directory, so it is stopped (SIGKILL) before each
    // decision is made with the one-shot CLI.
    let start_watch = || {
        let mut watch = ChildGuard(
            Command::new(bin("countersign"))
                .arg("--data-dir")
                .arg(&alice)
                .args(["--json", "watch"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let watched = lines_of(&mut watch.0);
        (watch, watched)
    };
    let (watch, watched) = start_watch();

    let request = |marker: &std::path::Path, summary: &str| {
        let mut child = Command::new(bin("countersign-gateway"))
            .args(["request", "--gateway", gw.url.as_str(), "--token", &token])
            .args(["--action", "sql.exec", "--resource", "prod-db"])
            .args(["--summary", summary, "--reason", "nightly cleanup"])
            .args([
                "--approver",
                "alice@example.com",
                "--require-match",
                "--json",
            ])
            .arg("--")
            .args(["sh", "-c", &format!("echo ran > '{}'", marker.display())])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = lines_of(&mut child);
        let first: serde_json::Value = serde_json::from_str(&wait_line(&lines, "\"id\"")).unwrap();
        (
            ChildGuard(child),
            first["id"].as_str().unwrap().to_string(),
            first["match_code"].as_str().unwrap().to_string(),
        )
    };

    // Approve.
    let marker = tmp.path().join("approved-ran");
    let (mut req, id, code) = request(&marker, "truncate sessions");
    wait_line(&watched, &id);
    // Single writer: a second instance on the same data directory is refused, by name.
    let second = countersign(&alice, &["list"]);
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains("data_dir_in_use") || said.contains("Another Countersign instance"),
        "{said}"
    );
    drop(watch);
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let refused = countersign(
        &alice,
        &[
            "--authenticator",
            "soft",
            "approve",
            &id,
            "--match-code",
            wrong,
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("wrong_match_code"));
    let approved = countersign(
        &alice,
        &[
            "--authenticator",
            "soft",
            "approve",
            &id,
            "--match-code",
            &code,
        ],
    );
    assert!(approved.status.success(), "{approved:?}");
    assert_eq!(wait_exit(&mut req.0), 0);
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "ran");

    // Deny.
    let marker2 = tmp.path().join("denied-ran");
    let (watch, watched) = start_watch();
    let (mut req2, id2, _) = request(&marker2, "drop sessions");
    wait_line(&watched, &id2);
    drop(watch);
    let denied = countersign(&alice, &["deny", &id2, "--reason", "change freeze"]);
    assert!(denied.status.success(), "{denied:?}");
    assert_eq!(wait_exit(&mut req2.0), 3);
    assert!(
        !marker2.exists(),
        "the command ran although the request was denied"
    );

    // Both sides' audit chains verify.
    let verify = countersign(&alice, &["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
    assert!(gw.admin(&["audit", "verify"]).contains("intact"));
}

/// A running engine connects a gateway paired after it started: the pairing wakes its run
/// loop, so no host has to stop and start anything (the desktop app used to restart its loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_paired_while_the_engine_runs_is_connected_at_once() {
    let gw = TestGateway::start().await;
    let mut alice = Approver::new();
    alice.start();
    alice.pair(&gw.invite("alice@example.com")).await;
    alice
        .wait_for(|e| matches!(e, EngineEvent::GatewayPaired { .. }))
        .await;
    alice
        .wait_for(|e| matches!(e, EngineEvent::ConnectionUp { .. }))
        .await;
    let created = gw
        .requester()
        .create(&gw.new_request(&["alice@example.com"], "after pairing"))
        .await
        .unwrap();
    alice.wait_received(&created.request.body.id).await;
    alice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_two_of_three_and_one_deny_decides_at_once() {
    let gw = TestGateway::start().await;
    let names = ["a@example.com", "b@example.com", "c@example.com"];
    let mut approvers = Vec::new();
    for n in names {
        let mut a = Approver::new();
        a.pair(&gw.invite(n)).await;
        a.start();
        approvers.push(a);
    }
    let requester = gw.requester();
    let mut new = gw.new_request(&names, "two of three");
    new.min_approvals = 2;
    let created = requester.create(&new).await.unwrap();
    let id = created.request.body.id.clone();
    for a in approvers.iter_mut() {
        a.wait_received(&id).await;
    }
    let [a, b, c] = &mut approvers[..] else {
        unreachable!()
    };
    let first = a.engine.approve(&id, None, &mut a.auth).await.unwrap();
    assert!(
        matches!(
            first.delivery,
            Delivery::Delivered { .. }
                | Delivery::Settled {
                    state: DeliveryState::Delivered
                }
        ),
        "{:?}",
        first.delivery
    );
    assert_eq!(
        requester
            .get(&id, Duration::ZERO)
            .await
            .unwrap()
            .status
            .body
            .state,
        RequestState::Pending
    );
    b.engine.approve(&id, None, &mut b.auth).await.unwrap();
    let view = requester.wait_final(&id).await.unwrap();
    assert_eq!(view.status.body.state, RequestState::Approved);
    assert_eq!(view.status.body.approvals, 2);
    // The third approver is told it is settled.
    c.wait_for(|e| {
        matches!(e, EngineEvent::StatusChanged { request_id, state: RequestState::Approved, .. } if *request_id == id)
    })
    .await;

    let mut new = gw.new_request(&names, "one deny closes it");
    new.min_approvals = 2;
    let created = requester.create(&new).await.unwrap();
    let id = created.request.body.id.clone();
    a.wait_received(&id).await;
    c.wait_received(&id).await;
    a.engine.approve(&id, None, &mut a.auth).await.unwrap();
    c.engine.deny(&id, "not during the freeze").await.unwrap();
    let view = requester.wait_final(&id).await.unwrap();
    assert_eq!(view.status.body.state, RequestState::Denied);
    for a in approvers.iter_mut() {
        a.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_created_while_disconnected_arrive_once_after_reconnect() {
    let gw = TestGateway::start().await;
    let mut alice = Approver::new();
    alice.pair(&gw.invite("alice@example.com")).await;
    alice.start();
    let requester = gw.requester();
    let first = requester
        .create(&gw.new_request(&["alice@example.com"], "before"))
        .await
        .unwrap();
    alice.wait_received(&first.request.body.id).await;
    alice.stop().await;

    let mut ids = Vec::new();
    for i in 0..3 {
        let c = requester
            .create(&gw.new_request(&["alice@example.com"], &format!("while away {i}")))
            .await
            .unwrap();
        ids.push(c.request.body.id);
    }
    alice.start();
    for id in &ids {
        alice.wait_received(id).await;
    }
    // Reconnect once more: nothing is delivered again.
    alice.stop().await;
    alice.start();
    alice
        .wait_for(|e| matches!(e, EngineEvent::ConnectionUp { .. }))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.stop().await;

    let inbox = alice.engine.list(ListFilter::All).unwrap();
    assert_eq!(inbox.len(), 4);
    let entries = alice.engine.audit_entries().unwrap();
    for id in ids.iter().chain(std::iter::once(&first.request.body.id)) {
        let received = entries
            .iter()
            .filter(|(e, _)| e.kind == "request.received" && e.request_id.as_deref() == Some(id))
            .count();
        assert_eq!(received, 1, "{id} received {received} times");
    }
    alice.engine.audit_verify().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_made_while_the_gateway_is_down_is_delivered_once_when_it_returns() {
    let gw = TestGateway::start().await;
    let addr = gw.running.addr;
    let data_dir = gw.gw().config.data_dir.clone();
    let token = gw.token.clone();
    let mut alice = Approver::new();
    alice.pair(&gw.invite("alice@example.com")).await;
    let requester = gw.requester();
    let created = requester
        .create(&gw.new_request(&["alice@example.com"], "offline approval"))
        .await
        .unwrap();
    let id = created.request.body.id.clone();
    alice.engine.sync().await.unwrap();
    assert_eq!(alice.engine.show(&id).unwrap().state, RequestState::Pending);

    // The gateway goes away; the approver still decides from its store.
    let TestGateway { running, dir, .. } = gw;
    running.shutdown().await;
    let outcome = alice
        .engine
        .approve(&id, None, &mut alice.auth)
        .await
        .unwrap();
    assert!(
        matches!(outcome.delivery, Delivery::Queued { .. }),
        "{:?}",
        outcome.delivery
    );

    // It comes back on the same address and data; the outbox delivers exactly once.
    let running = reopen_gateway(&data_dir, addr, |_| {}, |_| {}).await;
    let report = alice.engine.flush_due(true).await.unwrap();
    assert_eq!(report.delivered, 1, "{report:?}");
    let again = alice.engine.flush_due(true).await.unwrap();
    assert_eq!(again.delivered, 0);
    let client = countersign_gateway::client::RequesterClient::new(running.url(), token).unwrap();
    let view = client.wait_final(&id).await.unwrap();
    assert_eq!(view.status.body.state, RequestState::Approved);
    let accepted = running
        .gateway
        .store
        .read(countersign_gateway::store::audit_entries)
        .unwrap()
        .into_iter()
        .filter(|(e, _)| e.kind == "decision.accepted")
        .count();
    assert_eq!(accepted, 1);
    running.shutdown().await;
    dir.close().unwrap();
}

/// A decision queued while the gateway was down, for a request that expired meanwhile, is
/// refused as expired: the user sees why (the outbox row and the refusal event), and both audit
/// logs record it. It is never counted as delivered.
#[tokio::test]
async fn a_queued_decision_whose_request_expired_meanwhile_is_reported_as_expired() {
    let gw = TestGateway::start().await;
    let addr = gw.running.addr;
    let data_dir = gw.gw().config.data_dir.clone();
    let mut alice = Approver::new();
    alice.pair(&gw.invite("alice@example.com")).await;
    let created = gw
        .requester()
        .create(&gw.new_request(&["alice@example.com"], "expires while queued"))
        .await
        .unwrap();
    let id = created.request.body.id.clone();
    alice.engine.sync().await.unwrap();

    let TestGateway { running, dir, .. } = gw;
    running.shutdown().await;
    let outcome = alice
        .engine
        .approve(&id, None, &mut alice.auth)
        .await
        .unwrap();
    assert!(matches!(outcome.delivery, Delivery::Queued { .. }));

    // The gateway returns ten minutes later: past the request's 300 s time to live.
    let running = reopen_gateway(&data_dir, addr, |_| {}, |g| g.clock.shift(600)).await;
    let mut events = alice.engine.subscribe();
    let report = alice.engine.flush_due(true).await.unwrap();
    assert_eq!((report.delivered, report.refused), (0, 1), "{report:?}");
    let row = alice.engine.outbox().unwrap().remove(0);
    assert_eq!(row.state, DeliveryState::Refused);
    assert!(
        row.last_error
            .as_deref()
            .unwrap_or("")
            .starts_with("request_expired"),
        "{row:?}"
    );
    let refused = loop {
        match events.try_recv() {
            Ok(countersign_approver::EngineEvent::DecisionRefused { code, .. }) => break code,
            Ok(_) => continue,
            Err(e) => panic!("no refusal event: {e:?}"),
        }
    };
    assert_eq!(refused, "request_expired");
    let audited = alice
        .engine
        .audit_entries()
        .unwrap()
        .into_iter()
        .any(|(e, _)| e.kind == "decision.refused" && e.detail["code"] == "request_expired");
    assert!(audited, "the refusal is not in the approver's audit log");
    let gateway_audit = running
        .gateway
        .store
        .read(countersign_gateway::store::audit_entries)
        .unwrap();
    assert!(gateway_audit
        .iter()
        .any(|(e, _)| e.kind == "decision.rejected" && e.detail["code"] == "request_expired"));
    assert!(!gateway_audit
        .iter()
        .any(|(e, _)| e.kind == "decision.accepted"));
    running.shutdown().await;
    dir.close().unwrap();
}

/// The gateway is restarted 10 times on the same address and data while 5,000 requests are
/// created. The approver's engine, streaming throughout, receives every request exactly once:
/// 5,000 inbox rows, 5,000 `request.received` audit entries, no rejection, and its chain
/// verifies. (Creation retries through the outages; a retried POST that had already committed
/// collapses into the first request, so each summary is one request.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_requests_through_ten_gateway_restarts_arrive_exactly_once() {
    const REQUESTS: usize = 5000;
    const RESTARTS: usize = 10;
    let gw = TestGateway::start_with(|c| c.rate_limit_per_minute = 1_000_000).await;
    let addr = gw.running.addr;
    let url = gw.url.clone();
    let token = gw.token.clone();
    let data_dir = gw.gw().config.data_dir.clone();
    let mut alice = Approver::new();
    alice.pair(&gw.invite("alice@example.com")).await;
    alice.start();
    let template = gw.new_request(&["alice@example.com"], "restart");
    let created_so_far = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = created_so_far.clone();

    let creator = tokio::spawn(async move {
        let client = countersign_gateway::client::RequesterClient::new(url, token).unwrap();
        let mut ids = std::collections::BTreeSet::new();
        let mut retries = 0u32;
        for i in 0..REQUESTS {
            let mut req = template.clone();
            req.summary = format!("restart {i}");
            loop {
                match client.create(&req).await {
                    Ok(created) => {
                        ids.insert(created.request.body.id.clone());
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        break;
                    }
                    Err(_) => {
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
        (ids, retries)
    });

    let TestGateway {
        mut running, dir, ..
    } = gw;
    // Spread the restarts over the whole push: one each time another 1/11 of it is created.
    for k in 1..=RESTARTS {
        while created_so_far.load(std::sync::atomic::Ordering::SeqCst)
            < k * REQUESTS / (RESTARTS + 1)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        running.shutdown().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        running = reopen_gateway(
            &data_dir,
            addr,
            |c| c.rate_limit_per_minute = 1_000_000,
            |_| {},
        )
        .await;
    }
    let (ids, retries) = creator.await.unwrap();
    assert_eq!(ids.len(), REQUESTS, "each summary is one request");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let received = loop {
        let n = alice.engine.list(ListFilter::All).unwrap().len();
        if n >= REQUESTS || tokio::time::Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    alice.stop().await;
    assert_eq!(received, REQUESTS);
    let inbox: std::collections::BTreeSet<String> = alice
        .engine
        .list(ListFilter::All)
        .unwrap()
        .into_iter()
        .map(|i| i.request.body.id)
        .collect();
    assert_eq!(inbox, ids);
    let entries = alice.engine.audit_entries().unwrap();
    let received_entries = entries
        .iter()
        .filter(|(e, _)| e.kind == "request.received")
        .count();
    let rejected = entries
        .iter()
        .filter(|(e, _)| e.kind == "request.rejected")
        .count();
    assert_eq!((received_entries, rejected), (REQUESTS, 0));
    alice.engine.audit_verify().unwrap();
    println!(
        "restarts: {RESTARTS}, requests pushed: {REQUESTS}, create retries: {retries}, received: {received_entries}, duplicated: 0, lost: 0"
    );
    running.shutdown().await;
    dir.close().unwrap();
}

/// Between the approver and the gateway, a fault-injecting proxy adds latency, resets
/// connections, goes silent without closing (half-open) and truncates responses, while requests
/// are created and decisions made. Nothing is lost: every request reaches the engine and every
/// decision reaches the gateway. Nothing is duplicated: each once. The half-open stream is
/// detected by the keep-alive timeout, 2.5 keep-alive intervals (2.5 s here), plus the
/// reconnect backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_between_approver_and_gateway_lose_and_duplicate_nothing() {
    use countersign_e2e::{Fault, FaultProxy};
    let gw = TestGateway::start().await;
    let proxy = FaultProxy::start(gw.running.addr).await;
    let mut alice = Approver::new();
    // The device learns the proxy's address as the gateway's: all its traffic goes through it.
    let link =
        countersign_gateway::pairing::invite(gw.gw(), "alice@example.com", proxy.url()).unwrap();
    alice.pair(&link).await;
    alice.start();
    let mut ids = Vec::new();
    let mut decided = Vec::new();
    let phases = [
        Fault::Latency(Duration::from_millis(30)),
        Fault::Reset,
        Fault::Truncate,
        Fault::Silence,
        Fault::Latency(Duration::from_millis(5)),
    ];
    let mut silence_detected = None;
    for (p, fault) in phases.iter().enumerate() {
        // Decide two requests received earlier while the fault is on (delivery may fail and be
        // queued; the outbox retries).
        proxy.set(*fault);
        let before = proxy.accepted();
        let t0 = tokio::time::Instant::now();
        // A decision sent into a silent connection waits for its HTTP timeout before the outbox
        // retries; the silent phase measures the stream's detection alone.
        let to_decide = if *fault == Fault::Silence { 0 } else { 2 };

        for id in ids
            .iter()
            .skip(decided.len())
            .take(to_decide)
            .cloned()
            .collect::<Vec<String>>()
        {
            let verdict = alice.engine.deny(&id, "fault test").await;
            assert!(verdict.is_ok(), "{verdict:?}");
            decided.push(id);
        }
        // The requester talks to the gateway directly, not through the proxy.
        let requester = gw.requester();
        for i in 0..20 {
            let created = requester
                .create(&gw.new_request(&["alice@example.com"], &format!("fault {p}.{i}")))
                .await
                .unwrap();
            ids.push(created.request.body.id.clone());
        }
        if *fault == Fault::Silence {
            // Wait for the engine to give up on the silent stream and dial again.
            while proxy.accepted() == before {
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "half-open stream never detected"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            silence_detected = Some(t0.elapsed());
        } else {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        proxy.set(Fault::None);
        // Settle: everything created so far arrives, everything decided is delivered.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let have = alice.engine.list(ListFilter::All).unwrap().len();
            let report = alice.engine.flush_due(true).await.unwrap();
            if have == ids.len() && report.queued == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "phase {p} ({fault:?}) did not settle: {have} of {} requests, {report:?}",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    alice.stop().await;

    // Lost: none. Duplicated: none.
    let inbox: Vec<String> = alice
        .engine
        .list(ListFilter::All)
        .unwrap()
        .into_iter()
        .map(|i| i.request.body.id)
        .collect();
    let unique: std::collections::BTreeSet<&String> = inbox.iter().collect();
    assert_eq!((inbox.len(), unique.len()), (ids.len(), ids.len()));
    let entries = alice.engine.audit_entries().unwrap();
    let received = entries
        .iter()
        .filter(|(e, _)| e.kind == "request.received")
        .count();
    assert_eq!(received, ids.len());
    let outbox = alice.engine.outbox().unwrap();
    assert_eq!(outbox.len(), decided.len());
    assert!(
        outbox.iter().all(|o| o.state == DeliveryState::Delivered),
        "{outbox:?}"
    );
    let gateway_audit = gw
        .gw()
        .store
        .read(countersign_gateway::store::audit_entries)
        .unwrap();
    let accepted: Vec<String> = gateway_audit
        .iter()
        .filter(|(e, _)| e.kind == "decision.accepted")
        .map(|(e, _)| e.detail["decision_id"].as_str().unwrap().to_string())
        .collect();
    let accepted_unique: std::collections::BTreeSet<&String> = accepted.iter().collect();
    assert_eq!(
        (accepted.len(), accepted_unique.len()),
        (decided.len(), decided.len())
    );
    alice.engine.audit_verify().unwrap();
    let detected = silence_detected.unwrap();
    println!(
        "faults injected: {}, connections: {}, requests pushed: {}, decisions: {}, lost: 0, duplicated: 0, half-open detected after {:.2} s",
        proxy.injected(),
        proxy.accepted(),
        ids.len(),
        decided.len(),
        detected.as_secs_f64()
    );
    // 2.5 keep-alives (1 s each), then the reconnect backoff (at most 2 s here), with margin for
    // a loaded machine.
    assert!(detected < Duration::from_secs(10), "{detected:?}");
}

/// A local audit log restored from an older copy, or wiped, still verifies on its own; against
/// the checkpoint the gateway holds for the device it is `rolled_back`. The engine reports it
/// (event and audit entry, once), and `countersign audit verify` exits non-zero naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_or_wiped_audit_log_is_detected_against_the_gateways_checkpoint() {
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let mut alice = Approver::new();
    alice.pair(&gw.invite("alice@example.com")).await;
    let receive = async |alice: &mut Approver, summary: &str| {
        requester
            .create(&gw.new_request(&["alice@example.com"], summary))
            .await
            .unwrap();
        alice.engine.sync().await.unwrap();
        alice.engine.audit_checkpoint(true).unwrap();
        let local = alice.engine.audit_verify().unwrap();
        let seq = local.entries;
        assert_eq!(local.checkpointed_through, Some(seq));
        let anchored = alice.engine.anchor_audit().await.unwrap();
        assert_eq!(anchored.len(), 1);
        assert_eq!(anchored[0].uploaded, Some(seq), "{anchored:?}");
        assert_eq!(anchored[0].damage, None);
        seq
    };

    let first = receive(&mut alice, "first deploy").await;
    let copy = alice.dir.path().join("old-copy.db");
    rusqlite::Connection::open(alice.data_dir().join("approver.db"))
        .unwrap()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    let second = receive(&mut alice, "second deploy").await;
    assert!(second > first);
    // The anchor is idempotent: nothing newer to upload, nothing wrong.
    let again = alice.engine.anchor_audit().await.unwrap();
    assert_eq!((again[0].held, again[0].uploaded), (Some(second), None));

    // Restored from the older copy: consistent in itself, behind the gateway.
    let mut alice = alice.reopen(|data| {
        for f in ["approver.db-wal", "approver.db-shm"] {
            let _ = std::fs::remove_file(data.join(f));
        }
        std::fs::copy(&copy, data.join("approver.db")).unwrap();
    });
    let local = alice.engine.audit_verify().unwrap();
    assert!(local.entries < second, "{local:?}");
    // Detected as rolled back; the detection is itself logged, so the log now forks from what
    // the gateway holds and stays detected on every later check.
    use countersign_protocol::audit::Damage;
    for expected in [Damage::RolledBack, Damage::Rewritten] {
        let found = alice.engine.anchor_audit().await.unwrap();
        assert_eq!(found[0].held, Some(second));
        assert_eq!(found[0].uploaded, None);
        assert_eq!(found[0].damage, Some(expected), "{found:?}");
    }
    let ev = alice
        .wait_for(|e| matches!(e, EngineEvent::AuditRolledBack { .. }))
        .await;
    let EngineEvent::AuditRolledBack { damage, .. } = ev else {
        unreachable!()
    };
    assert_eq!(damage, "rolled_back");
    let recorded = alice
        .engine
        .audit_entries()
        .unwrap()
        .into_iter()
        .filter(|(e, _)| e.kind == "audit.rolled_back")
        .count();
    assert_eq!(
        recorded, 1,
        "a detection is audited once per held checkpoint"
    );

    // Wiped: an empty log verifies, and is rolled back all the same.
    let alice = alice.reopen(|data| {
        let c = rusqlite::Connection::open(data.join("approver.db")).unwrap();
        c.execute_batch("DELETE FROM audit; DELETE FROM checkpoints;")
            .unwrap();
    });
    // The reopened engine's own shutdown checkpoint did not move the gateway's.
    let data = alice.data_dir();
    let Approver { engine, dir, .. } = alice;
    drop(engine);
    let local = countersign(&data, &["audit", "verify", "--local"]);
    assert!(local.status.success(), "{local:?}");
    let out = countersign(&data, &["--json", "audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("audit_chain_broken"), "{stdout}");
    assert!(stdout.contains("rolled_back"), "{stdout}");
    assert!(stdout.contains(&format!("entry {second}")), "{stdout}");
    drop(dir);
}

/// Crash consistency: a child process (`countersign-crash-child`) decides requests with the
/// engine while the test SIGKILLs it at seeded random moments (uniform over 0 to 250 ms after
/// spawn: during start-up, stream replay, the passkey ceremony, the commit, delivery or a
/// checkpoint). After every kill the data directory is opened again and checked: every decision
/// the child acknowledged is stored under the same decision id, no request has two decisions,
/// and the audit chain verifies. At the end the rest is decided and delivered, and the gateway
/// must have accepted exactly one decision per request, each the one the approver stored, and
/// refused none. `COUNTERSIGN_CRASH_SEED` and `COUNTERSIGN_CRASH_POINTS` reproduce or lengthen a
/// run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_seeded_points_loses_no_acknowledged_decision_and_delivers_each_once() {
    use rand::{Rng, SeedableRng};
    use std::collections::{BTreeMap, BTreeSet};

    let seed: u64 = std::env::var("COUNTERSIGN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261128);
    let points: usize = std::env::var("COUNTERSIGN_CRASH_POINTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let gw = TestGateway::start_with(|c| c.rate_limit_per_minute = 1_000_000).await;
    let requester = gw.requester();
    let alice = {
        let mut a = Approver::new();
        a.pair(&gw.invite("alice@example.com")).await;
        a
    };
    let data = alice.data_dir();
    let Approver { engine, dir, .. } = alice;
    drop(engine);

    let mut created: BTreeSet<String> = BTreeSet::new();
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let (mut before_ready, mut acks_total, mut decided) = (0usize, 0usize, 0usize);
    for point in 0..points {
        // Keep undecided requests in front of the child.
        while created.len() < decided + 12 {
            let n = created.len();
            let c = requester
                .create(&gw.new_request(&["alice@example.com"], &format!("crash {n}")))
                .await
                .unwrap();
            created.insert(c.request.body.id.clone());
        }
        let delay = Duration::from_millis(rng.gen_range(0..250));
        let mut child = ChildGuard(
            Command::new(env!("CARGO_BIN_EXE_countersign-crash-child"))
                .arg(&data)
                .env("COUNTERSIGN_LOG", "error")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let out = child.0.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        tokio::time::sleep(delay).await;
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        let lines = reader.join().unwrap();
        if !lines.iter().any(|l| l == "READY") {
            before_ready += 1;
        }
        for line in &lines {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["READY"] => {}
                ["ACK", req, decision] => {
                    acks_total += 1;
                    if let Some(prev) = acked.insert(req.to_string(), decision.to_string()) {
                        panic!("point {point}: {req} decided twice ({prev}, then {decision})");
                    }
                }
                _ => panic!("point {point} (seed {seed}): unexpected child output {line:?}"),
            }
        }
        // After the restart: nothing acknowledged is lost, nothing is doubled, the chain holds.
        let engine = countersign_approver::Engine::open(&data).unwrap();
        let stored: Vec<_> = engine.outbox().unwrap();
        let mut by_request: BTreeMap<&str, &str> = BTreeMap::new();
        for row in &stored {
            assert!(
                by_request
                    .insert(&row.request_id, &row.decision_id)
                    .is_none(),
                "point {point} (seed {seed}): two decisions stored for {}",
                row.request_id
            );
        }
        for (req, decision) in &acked {
            assert_eq!(
                by_request.get(req.as_str()),
                Some(&decision.as_str()),
                "point {point} (seed {seed}): acknowledged decision on {req} lost"
            );
        }
        engine
            .audit_verify()
            .unwrap_or_else(|e| panic!("point {point} (seed {seed}): {e}"));
        decided = stored.len();
    }
    // Killed after the commit but before the child could say so: stored, not acknowledged.
    let unacknowledged = decided - acked.len();

    // Decide and deliver whatever is left, in this process.
    let engine = countersign_approver::Engine::open(&data).unwrap();
    let mut auth =
        countersign_approver::SoftAuthenticator::open(&data.join("soft-authenticator.cbor"))
            .unwrap();
    engine.sync().await.unwrap();
    for item in engine.list(ListFilter::Pending).unwrap() {
        if item.decision.is_none() {
            engine.approve(item.id(), None, &mut auth).await.unwrap();
        }
    }
    engine.flush_due(true).await.unwrap();
    let stored = engine.outbox().unwrap();
    assert_eq!(stored.len(), created.len(), "every request decided once");
    assert!(
        stored.iter().all(|r| r.state == DeliveryState::Delivered),
        "{stored:?}"
    );
    let inbox = engine.list(ListFilter::All).unwrap();
    assert_eq!(inbox.len(), created.len());
    let local = engine.audit_verify().unwrap();

    // The gateway: exactly one accepted decision per request, the one the approver stored.
    let audit = gw
        .gw()
        .store
        .read(countersign_gateway::store::audit_entries)
        .unwrap();
    let mut accepted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (e, _) in &audit {
        match e.kind.as_str() {
            "decision.accepted" => accepted
                .entry(e.request_id.clone().unwrap())
                .or_default()
                .push(e.detail["decision_id"].as_str().unwrap_or("?").to_owned()),
            "decision.rejected" => panic!("the gateway refused a decision: {:?}", e.detail),
            _ => {}
        }
    }
    assert_eq!(accepted.len(), created.len(), "lost at the gateway");
    let duplicated = accepted.values().filter(|v| v.len() > 1).count();
    assert_eq!(duplicated, 0, "decisions accepted twice");
    for row in &stored {
        assert_eq!(
            accepted[&row.request_id],
            std::slice::from_ref(&row.decision_id),
            "the gateway accepted another decision than the one stored"
        );
    }
    countersign_protocol::audit::verify_chain(audit).unwrap();
    println!(
        "seed: {seed}, points killed: {points} ({before_ready} before start-up finished), \
         requests: {}, decisions acknowledged by the child: {acks_total}, \
         stored but killed before acknowledging: {unacknowledged}, delivered: {}, \
         approver audit entries: {}, lost: 0, duplicated: 0",
        created.len(),
        stored.len(),
        local.entries
    );
    drop(engine);
    drop(dir);
}

/// Pairs a fresh engine in `data` with `gw` and closes it.
async fn pair_in(data: &std::path::Path, gw: &TestGateway) {
    let engine = countersign_approver::Engine::open(data).unwrap();
    let mut auth =
        countersign_approver::SoftAuthenticator::open(&data.join("soft-authenticator.cbor"))
            .unwrap();
    engine
        .pair(&gw.invite("alice@example.com"), "storage test", &mut auth)
        .await
        .unwrap();
}

/// The `code` of a `--json` error answer of the CLI.
fn error_code(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| {
            v["error"]["code"]
                .as_str()
                .or(v["error_code"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no error code in {stdout}"))
}

fn files_of(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// The data directory on a small tmpfs that the test fills for real (ENOSPC). Streaming requests
/// in and deciding then fail with `storage_full`; nothing already stored is lost and nothing is
/// half-written. Once space returns, every request arrives exactly once, the undecided request
/// is decided normally, and the chain verifies. Needs root to mount the tmpfs (CI runs as root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gives_a_clear_error_and_loses_nothing() {
    let disk = match SmallDisk::mount(16 << 20) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED a_full_disk_gives_a_clear_error_and_loses_nothing: {why}");
            return;
        }
    };
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let data = disk.path.join("approver");
    pair_in(&data, &gw).await;
    let mut ids = Vec::new();
    for i in 0..60 {
        let c = requester
            .create(&gw.new_request(&["alice@example.com"], &format!("disk {i}")))
            .await
            .unwrap();
        ids.push(c.request.body.id.clone());
    }
    // The first requests arrive while there is room.
    let first = countersign(&data, &["--json", "sync"]);
    assert!(first.status.success(), "{first:?}");
    for i in 60..120 {
        let c = requester
            .create(&gw.new_request(&["alice@example.com"], &format!("disk {i}")))
            .await
            .unwrap();
        ids.push(c.request.body.id.clone());
    }

    let filler = disk.fill_leaving(96 << 10);
    let full = countersign(&data, &["--json", "sync"]);
    assert_eq!(full.status.code(), Some(1), "{full:?}");
    assert_eq!(error_code(&full), "storage_full", "{full:?}");
    let decide = countersign(
        &data,
        &[
            "--json",
            "--offline",
            "--authenticator",
            "soft",
            "approve",
            &ids[0],
        ],
    );
    assert_eq!(decide.status.code(), Some(1), "{decide:?}");
    assert_eq!(error_code(&decide), "storage_full", "{decide:?}");
    let message = String::from_utf8_lossy(&decide.stdout);
    assert!(
        message.contains("disk holding the data directory is full"),
        "{message}"
    );
    println!(
        "full disk, sync: {}",
        String::from_utf8_lossy(&full.stdout).trim()
    );
    println!("full disk, approve: {}", message.trim());

    std::fs::remove_file(filler).unwrap();
    let again = countersign(&data, &["--json", "sync"]);
    assert!(again.status.success(), "{again:?}");
    let engine = countersign_approver::Engine::open(&data).unwrap();
    let inbox = engine.list(ListFilter::All).unwrap();
    let mut stored: Vec<String> = inbox.iter().map(|i| i.id().to_owned()).collect();
    stored.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(stored, want, "every request exactly once");
    // The failed approval left nothing behind: no decision, no outbox row, nothing at the gateway.
    assert!(engine.show(&ids[0]).unwrap().decision.is_none());
    assert!(engine.outbox().unwrap().is_empty());
    let entries = engine.audit_entries().unwrap();
    let received = entries
        .iter()
        .filter(|(e, _)| e.kind == "request.received")
        .count();
    assert_eq!(received, ids.len());
    assert!(entries.iter().all(|(e, _)| e.kind != "decision.made"));
    drop(engine);
    let decide = countersign(
        &data,
        &["--json", "--authenticator", "soft", "approve", &ids[0]],
    );
    assert!(decide.status.success(), "{decide:?}");
    let view = requester.wait_final(&ids[0]).await.unwrap();
    assert_eq!(view.status.body.state, RequestState::Approved);
    let verify = countersign(&data, &["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
}

/// A read-only data directory (a read-only bind mount as root, permission bits otherwise):
/// reading, syncing and deciding each fail with `storage_read_only`, and not one byte of the
/// directory changes. Made writable again, everything works and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_data_directory_gives_a_clear_error_and_changes_nothing() {
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("approver");
    pair_in(&data, &gw).await;
    let created = requester
        .create(&gw.new_request(&["alice@example.com"], "read-only"))
        .await
        .unwrap();
    let id = created.request.body.id.clone();
    assert!(countersign(&data, &["sync"]).status.success());
    let before = files_of(&data);

    let ro = match ReadOnly::apply(&data) {
        Ok(ro) => ro,
        Err(why) => {
            eprintln!(
                "SKIPPED a_read_only_data_directory_gives_a_clear_error_and_changes_nothing: {why}"
            );
            return;
        }
    };
    for args in [
        vec!["--json", "--offline", "list"],
        vec!["--json", "sync"],
        vec!["--json", "--authenticator", "soft", "approve", &id],
    ] {
        let out = countersign(&data, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert_eq!(error_code(&out), "storage_read_only", "{args:?}: {out:?}");
        let message = String::from_utf8_lossy(&out.stdout);
        assert!(message.contains("cannot be written"), "{message}");
        assert!(message.contains(data.to_str().unwrap()), "{message}");
        println!("read-only, {}: {}", args[args.len() - 1], message.trim());
    }
    drop(ro);
    assert_eq!(
        files_of(&data),
        before,
        "a refused run changed the data directory"
    );

    let decide = countersign(&data, &["--authenticator", "soft", "approve", &id]);
    assert!(decide.status.success(), "{decide:?}");
    assert!(countersign(&data, &["audit", "verify"]).status.success());
}

/// "I did not expect this" from the engine: the reported request is denied by a device-signed
/// decision, the gateway blocks the requester from this approver and denies their other
/// pending requests to her, the engine hears of those denials on its stream, and both audit
/// logs hold the report. A new request from the same requester to her is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporting_an_unexpected_request_blocks_the_requester_on_both_sides() {
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let mut alice = Approver::new();
    alice.pair(&gw.invite("alice@example.com")).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let c = requester
            .create(&gw.new_request(&["alice@example.com"], &format!("bombing {i}")))
            .await
            .unwrap();
        ids.push(c.request.body.id.clone());
    }
    alice.engine.sync().await.unwrap();

    let out = alice.engine.report_unexpected(&ids[0]).await.unwrap();
    let denial = out.denial.expect("the reported request is denied here");
    assert_eq!(
        denial.decision.body.verdict,
        countersign_protocol::Verdict::Deny
    );
    assert_eq!(
        denial.decision.body.reason.as_deref(),
        Some(countersign_approver::UNEXPECTED_REASON)
    );
    assert_eq!(out.ack.requester, "ci-bot");
    let mut denied = out.ack.denied.clone();
    denied.sort();
    let mut others = ids[1..].to_vec();
    others.sort();
    assert_eq!(
        denied, others,
        "the other pending requests are denied by the gateway"
    );

    alice.engine.sync().await.unwrap();
    for id in &ids {
        assert_eq!(
            alice.engine.show(id).unwrap().state,
            RequestState::Denied,
            "{id}"
        );
    }
    let kinds: Vec<String> = alice
        .engine
        .audit_entries()
        .unwrap()
        .into_iter()
        .map(|(e, _)| e.kind)
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "report.sent").count(), 1);
    let gateway_audit = gw
        .gw()
        .store
        .read(countersign_gateway::store::audit_entries)
        .unwrap();
    let reported = gateway_audit
        .iter()
        .filter(|(e, _)| e.kind == "report.unexpected")
        .count();
    assert_eq!(reported, 1);
    let again = requester
        .create(&gw.new_request(&["alice@example.com"], "once more"))
        .await;
    assert!(
        format!("{again:?}").contains("requester_blocked"),
        "{again:?}"
    );
}

/// The gateway serves HTTPS with a self-signed certificate. Its pairing link carries the
/// certificate's SHA-256 and the approver pins it: pairing, the stream and a decision work over
/// TLS. A link with another pin is refused at pairing; after the gateway restarts with a
/// different certificate (same key, data and address) the approver refuses to talk to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_certificate_is_pinned_at_pairing_and_a_different_one_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let (cert1, key1, pin1) = countersign_e2e::self_signed(certs.path(), "first");
    let (cert2, key2, pin2) = countersign_e2e::self_signed(certs.path(), "second");
    assert_ne!(pin1, pin2);
    let gw = TestGateway::start_with(|c| {
        c.tls_cert = Some(cert1.clone());
        c.tls_key = Some(key1.clone());
    })
    .await;
    let addr = gw.running.addr;
    let data_dir = gw.gw().config.data_dir.clone();
    let create = |gw: &std::sync::Arc<countersign_gateway::Gateway>, summary: &str| {
        let n = countersign_protocol::api::NewRequest {
            action: "deploy".into(),
            resource: "prod/api".into(),
            risk: None,
            summary: summary.into(),
            detail: String::new(),
            reason: String::new(),
            ttl_seconds: 300,
            approvers: vec!["alice@example.com".into()],
            min_approvals: 1,
            require_match: false,
        };
        countersign_gateway::approvals::create_request(gw, "ci-bot", n)
            .unwrap()
            .request
            .body
            .id
    };

    let link = gw.invite("alice@example.com");
    assert_eq!(link.gateway.scheme(), "https");
    assert_eq!(link.tls.as_deref(), Some(pin1.as_str()));
    let mut alice = Approver::new();
    alice.pair(&link).await;
    assert_eq!(
        alice.engine.gateways().unwrap()[0].tls_pin,
        Some(pin1.clone())
    );
    let first = create(gw.gw(), "over TLS");
    alice.engine.sync().await.unwrap();
    let out = alice
        .engine
        .approve(&first, None, &mut alice.auth)
        .await
        .unwrap();
    assert!(
        matches!(out.delivery, Delivery::Delivered { .. }),
        "{:?}",
        out.delivery
    );

    // A link that pins another certificate: pairing never starts.
    let mut wrong = gw.invite("bob@example.com");
    wrong.tls = Some(pin2.clone());
    let mut bob = Approver::new();
    let err = bob
        .engine
        .pair(&wrong, "bob's laptop", &mut bob.auth)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "gateway_unreachable", "{err}");
    assert!(
        err.to_string().contains("not the one pinned at pairing"),
        "{err}"
    );

    // The gateway comes back with another certificate: the approver will not talk to it.
    let TestGateway { running, dir, .. } = gw;
    running.shutdown().await;
    let running = reopen_gateway(
        &data_dir,
        addr,
        |c| {
            c.tls_cert = Some(cert2.clone());
            c.tls_key = Some(key2.clone());
        },
        |_| {},
    )
    .await;
    let second = create(&running.gateway, "after the certificate changed");
    let (reports, _) = alice.engine.sync().await.unwrap();
    let error = reports[0].error.clone().unwrap_or_default();
    assert!(error.contains("not the one pinned at pairing"), "{error}");
    assert!(
        alice.engine.show(&second).is_err(),
        "a request arrived past the pin"
    );
    running.shutdown().await;
    drop(dir);
}

/// No secret reaches a log or an output it does not belong in. The real binaries run a pairing,
/// a request and an approval with every log at `trace`; afterwards neither the gateway's log nor
/// anything the approver CLI or the requester printed contains the device key (hex or base64),
/// the requester token or the pairing code. Data files are private: the data directories are
/// 0700 and every file in them 0600 or stricter.
#[test]
fn no_secret_reaches_a_log_and_data_files_are_private() {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let gw_log = tmp.path().join("gateway.log");
    let gw_data = tmp.path().join("gateway");
    let gw = GatewayProcess::start_with_log(
        &gw_data,
        "trace",
        Stdio::from(std::fs::File::create(&gw_log).unwrap()),
    );
    let token = gw.admin(&["token", "create", "ci-bot"]);
    let link = gw.admin(&["invite", "alice@example.com"]);
    let code = countersign_protocol::PairingLink::parse(&link)
        .unwrap()
        .code;
    let alice = tmp.path().join("alice");
    let traced = |args: &[&str]| {
        Command::new(bin("countersign"))
            .arg("--data-dir")
            .arg(&alice)
            .args(args)
            .env("COUNTERSIGN_LOG", "trace")
            .output()
            .unwrap()
    };
    let mut said = String::new();
    let mut keep = |out: &std::process::Output| {
        assert!(out.status.success(), "{out:?}");
        said.push_str(&String::from_utf8_lossy(&out.stdout));
        said.push_str(&String::from_utf8_lossy(&out.stderr));
    };
    keep(&traced(&["--authenticator", "soft", "pair", &link]));
    let created = Command::new(bin("countersign-gateway"))
        .args(["request", "--gateway", gw.url.as_str(), "--token", &token])
        .args([
            "--action",
            "deploy",
            "--resource",
            "prod",
            "--summary",
            "logs",
        ])
        .args(["--approver", "alice@example.com", "--json"])
        .env("COUNTERSIGN_LOG", "trace")
        .output()
        .unwrap();
    keep(&created);
    let id = serde_json::from_slice::<serde_json::Value>(
        created.stdout.split(|b| *b == b'\n').next().unwrap(),
    )
    .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    keep(&traced(&["--authenticator", "soft", "approve", &id]));
    drop(gw);

    let seed = countersign_e2e::device_seed(&alice);
    let secrets = [
        ("device key (hex)", hex::encode(&seed)),
        (
            "device key (base64url)",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&seed),
        ),
        (
            "device key (base64)",
            base64::engine::general_purpose::STANDARD.encode(&seed),
        ),
        ("requester token", token.clone()),
        ("pairing code", code.clone()),
    ];
    let gateway_log = std::fs::read_to_string(&gw_log).unwrap();
    assert!(
        gateway_log.len() > 1000,
        "the gateway logged little: {gateway_log}"
    );
    for (what, secret) in &secrets {
        assert!(
            !gateway_log.contains(secret.as_str()),
            "{what} in the gateway's log"
        );
        assert!(
            !said.contains(secret.as_str()),
            "{what} in the approver's or requester's output"
        );
    }

    for dir in [&alice, &gw_data] {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if !entry.file_type().unwrap().is_file() {
                continue;
            }
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            // serving-url is the one public file: the address the gateway listens on.
            if entry.file_name() == "serving-url" {
                continue;
            }
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", entry.path().display());
        }
    }
}

/// The device key lives in the Secret Service when one answers on the session bus (`make test`
/// starts gnome-keyring on its private bus), and in an owner-only file when none does; the data
/// directory never holds the seed of a key kept in the Secret Service, and that key is the one
/// the gateway registers at pairing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_key_lives_in_the_secret_service_when_there_is_one() {
    use countersign_e2e::{device_seed, secret_service_account, secret_service_available};
    if !secret_service_available() {
        assert!(
            std::env::var_os("COUNTERSIGN_REQUIRE_SECRET_SERVICE").is_none(),
            "COUNTERSIGN_REQUIRE_SECRET_SERVICE is set but no Secret Service answers"
        );
        eprintln!("SKIPPED: no Secret Service on the session bus (make test starts one)");
        return;
    }
    let gw = TestGateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("approver");
    let link = gw.invite("alice@example.com").to_string();
    succeeded(&countersign(
        &data,
        &["--authenticator", "soft", "pair", &link],
    ));

    // In the Secret Service: no device.key, a private reference, the seed nowhere on disk.
    assert!(!data.join("device.key").exists());
    let account = secret_service_account(&data).expect("device-key.ref");
    assert_eq!(mode_of(&data.join("device-key.ref")), 0o600);
    let seed = device_seed(&data);
    assert_eq!(seed.len(), 32);
    for (name, bytes) in files_of(&data) {
        assert!(
            !bytes.windows(seed.len()).any(|w| w == seed.as_slice()),
            "{name} holds the device key seed"
        );
    }
    // The gateway registered exactly that key.
    let key = countersign_protocol::KeyPair::from_seed(&seed.clone().try_into().unwrap());
    let db = rusqlite::Connection::open(gw.dir.path().join("gateway/gateway.db")).unwrap();
    let registered: Vec<String> = db
        .prepare("SELECT public_key FROM devices")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(registered, vec![key.public().to_base64()]);
    // And it is found again by the next run.
    let out = countersign(&data, &["gateways"]);
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&format!(
            "device key: Secret Service item countersign/{account}"
        )),
        "{listed}"
    );

    // No Secret Service (no session bus at all): an owner-only file, and `secret-service`
    // insisted on is a clear error.
    let plain = dir.path().join("no-bus");
    succeeded(&without_bus(&plain, &["gateways"]));
    assert!(!plain.join("device-key.ref").exists());
    assert_eq!(mode_of(&plain.join("device.key")), 0o600);
    let insist = dir.path().join("insist");
    let out = without_bus(
        &insist,
        &["--json", "--key-store", "secret-service", "gateways"],
    );
    assert!(!out.status.success());
    assert_eq!(error_code(&out), "key_store_unavailable");
    assert!(!insist.join("device.key").exists(), "no silent fallback");
}

/// `countersign --data-dir DATA ARGS` with no session bus reachable (so no Secret Service).
fn without_bus(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("countersign"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .unwrap()
}

fn succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
