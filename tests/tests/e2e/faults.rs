//! Network faults between approver and gateway (latency, resets, truncation, half-open silence)
//! lose and duplicate nothing.

use std::time::Duration;

use countersign_approver::{DeliveryState, ListFilter};
use countersign_test_support::{Approver, TestGateway};

/// Between the approver and the gateway, a fault-injecting proxy adds latency, resets
/// connections, goes silent without closing (half-open) and truncates responses, while requests
/// are created and decisions made. Nothing is lost: every request reaches the engine and every
/// decision reaches the gateway. Nothing is duplicated: each once. The half-open stream is
/// detected by the keep-alive timeout, 2.5 keep-alive intervals (2.5 s here), plus the
/// reconnect backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_between_approver_and_gateway_lose_and_duplicate_nothing() {
    use countersign_test_support::{Fault, FaultProxy};
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
    let gateway_audit = gw.audit();
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
