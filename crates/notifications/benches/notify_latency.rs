//! Push to `Notify` latency: from `DesktopNotifier::request_arrived` to the test notification server
//! recording the `Notify` call, one request at a time, over a private session bus.
//!
//!     dbus-run-session -- cargo bench -p countersign-notifications --bench notify_latency
//!
//! `NOTIFY_LATENCY_REQUESTS` sets the number of requests (default 1000, at least 500 are
//! meaningful for the p99). Prints p50, p90, p99 and max in milliseconds.
// A benchmark measures real time: the wall-clock ban (clippy.toml) is for the product.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use countersign_notifications::test_server::TestServer;
use countersign_notifications::{DesktopNotifier, NotifierOptions, RequestFacts};
use countersign_protocol::{ApprovalRequest, KeyPair, Risk, Signed};

fn item(key: &KeyPair, i: usize, now: i64) -> RequestFacts {
    let body = ApprovalRequest {
        v: 1,
        id: format!("bench-{i}"),
        gateway: "gw".into(),
        action: "sql.exec".into(),
        resource: "prod-db".into(),
        risk: Risk::High,
        summary: format!("Benchmark request {i}"),
        detail: "SELECT 1;".into(),
        // One requester each: every request raises a notification of its own.
        requester: format!("requester-{i}"),
        reason: "bench".into(),
        created_at: now,
        not_before: now,
        expires_at: now + 3600,
        approvers: vec!["alice@example.com".into()],
        min_approvals: 1,
        match_required: false,
        deny_needs_passkey: false,
        stages: vec![],
        mode: countersign_protocol::Mode::Ask,
        distinct_people: true,
        requester_person: None,
        policy: None,
        grant_seconds: None,
        windows: vec![],
    };
    let request = Signed::sign(key, body).unwrap();
    RequestFacts::from_request("gw", &request.body)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1e3
}

fn main() {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        eprintln!(
            "notify_latency needs a private session bus: \
             dbus-run-session -- cargo bench -p countersign-notifications --bench notify_latency"
        );
        std::process::exit(2);
    }
    let n: usize = std::env::var("NOTIFY_LATENCY_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let server = TestServer::start().expect("own org.freedesktop.Notifications");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let options = NotifierOptions::with_clock(Arc::new(move || now));
    let notifier = DesktopNotifier::start(options, Arc::new(|_| {})).unwrap();
    let key = KeyPair::generate();
    let items: Vec<RequestFacts> = (0..n).map(|i| item(&key, i, now)).collect();

    // Warm up the connection and the server.
    for it in items.iter().take(20) {
        notifier.request_arrived(it.clone());
    }
    assert_eq!(server.wait_for_calls(20, Duration::from_secs(10)).len(), 20);
    server.reset();

    let mut latencies = Vec::with_capacity(n);
    for (i, it) in items.iter().enumerate().skip(20) {
        let start = Instant::now();
        notifier.request_arrived(it.clone());
        let calls = server.wait_for_calls(i - 19, Duration::from_secs(10));
        let call = calls.last().expect("a Notify call");
        latencies.push(call.received_at.duration_since(start));
    }
    latencies.sort_unstable();
    println!(
        "push to Notify over {} requests: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
}
