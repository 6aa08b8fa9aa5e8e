//! Crash consistency: the deciding child is SIGKILLed at seeded points; no acknowledged decision
//! is lost and each is delivered once.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use countersign_approver::{DeliveryState, ListFilter};
use countersign_test_support::{Approver, ChildGuard, TestGateway};

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
    let audit = gw.audit();
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
