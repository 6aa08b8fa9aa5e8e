//! The operations endpoints over real loopback HTTP: `/healthz` and `/readyz` on both
//! listeners, `/metrics` on the operations listener only, with figures that follow what the
//! gateway did, and the drain at shutdown.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use countersign_protocol::{RequestState, Verdict};
use countersign_test_support::{TestGateway, Uv};

use super::requests::Requests;

fn with_operations(c: &mut countersign_gateway::config::Config) {
    c.operations_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
}

fn ops_url(h: &TestGateway, path: &str) -> String {
    let addr = h.running.operations_addr.expect("the operations listener");
    format!("http://{addr}{path}")
}

async fn metrics(h: &TestGateway) -> String {
    let resp = reqwest::get(ops_url(h, "/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    resp.text().await.unwrap()
}

/// The value of the sample `name` (with its labels, as written) in OpenMetrics `text`.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

#[tokio::test]
async fn healthz_and_readyz_answer_on_both_listeners_and_metrics_only_on_the_operations_one() {
    let h = TestGateway::start_with(with_operations).await;
    for base in [
        h.url.as_str().trim_end_matches('/').to_owned(),
        ops_url(&h, ""),
    ] {
        let alive = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(alive.status(), 200);
        let alive: serde_json::Value = alive.json().await.unwrap();
        assert_eq!(alive["alive"], true);
        let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
        assert_eq!(ready.status(), 200);
        let ready: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(ready["ready"], true, "{ready}");
        assert_eq!(ready["database"], true);
        assert_eq!(ready["schema"], ready["schema_wanted"]);
        assert_eq!(ready["problems"], serde_json::json!([]));
    }
    let api_metrics = reqwest::get(h.url.join("metrics").unwrap()).await.unwrap();
    assert_eq!(
        api_metrics.status(),
        404,
        "no figures on the public listener"
    );
    // Without `operations_listen` there is no operations listener at all.
    let plain = TestGateway::start().await;
    assert!(plain.running.operations_addr.is_none());
}

#[tokio::test]
async fn the_figures_follow_what_the_gateway_did() {
    let h = TestGateway::start_with(with_operations).await;
    let before = metrics(&h).await;
    assert_eq!(sample(&before, "countersign_streams_open"), 0.0);
    assert_eq!(
        sample(&before, "countersign_requests{state=\"pending\"}"),
        0.0
    );
    assert_eq!(sample(&before, "countersign_database_errors_total"), 0.0);
    assert_eq!(
        sample(&before, "countersign_leader"),
        1.0,
        "one gateway leads"
    );
    assert!(before.ends_with("# EOF\n"), "{before}");

    let mut alice = h.pair("alice@example.com").await;
    let mut stream = alice.open_stream(&h, 0).await;
    stream.until_ready().await;
    let created = h.create(&["alice@example.com"], 1, false).await;
    let other = h.create_with(|n| n.summary = "another".into()).await;
    let (_, pushed) = stream.next_event().await;
    assert!(countersign_test_support::request_id(&pushed).is_some());
    let during = metrics(&h).await;
    assert_eq!(sample(&during, "countersign_streams_open"), 1.0);
    assert_eq!(
        sample(&during, "countersign_requests{state=\"pending\"}"),
        2.0
    );
    assert!(sample(&during, "countersign_push_lag_seconds_count") >= 1.0);
    assert!(sample(&during, "countersign_events_pushed_total") >= 1.0);
    assert_eq!(
        sample(&during, "countersign_policy_evaluation_seconds_count"),
        2.0
    );

    let (req, challenge) = alice.request_event(&h, &created.request.body.id).await;
    alice
        .decide(&h, &req, Some(&challenge), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap();
    // A decision on a request that is no longer pending is refused, and timed as such.
    let refused = alice
        .decide(&h, &req, Some(&challenge), Verdict::Deny, None, Uv::Yes)
        .await;
    assert!(refused.is_err());
    let (req, _) = alice.request_event(&h, &other.request.body.id).await;
    assert_eq!(req.body.summary, "another");
    drop(stream);

    // The stream's task ends once the gateway notices the closed connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let m = metrics(&h).await;
        if sample(&m, "countersign_streams_open") == 0.0 || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sample(&after, "countersign_streams_open"), 0.0, "{after}");
    assert_eq!(
        sample(&after, "countersign_requests{state=\"approved\"}"),
        1.0
    );
    assert_eq!(
        sample(&after, "countersign_requests{state=\"pending\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "countersign_decision_duration_seconds_count{outcome=\"receipt\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "countersign_decision_duration_seconds_count{outcome=\"refused\"}"
        ),
        1.0
    );
    assert_eq!(sample(&after, "countersign_webhook_backlog"), 0.0);
    assert_eq!(
        view_state(&h, &created.request.body.id).await,
        RequestState::Approved
    );

    // A statement the database refuses is counted: a write on a read-only connection.
    let failed = h
        .gw()
        .store
        .read(|tx| tx.insert_event(1 << 40, "alice@example.com", "status", "{}", None));
    assert!(failed.is_err());
    let errors = metrics(&h).await;
    assert_eq!(sample(&errors, "countersign_database_errors_total"), 1.0);
}

async fn view_state(h: &TestGateway, id: &str) -> RequestState {
    h.view(id).await.status.body.state
}

#[tokio::test]
async fn shutdown_drains_first_then_closes_the_streams_and_answers_the_long_polls() {
    let h = TestGateway::start_with(|c| {
        with_operations(c);
        c.shutdown_drain_seconds = 1;
    })
    .await;
    let alice = h.pair("alice@example.com").await;
    let mut stream = alice.open_stream(&h, 0).await;
    stream.until_ready().await;
    let created = h.create(&["alice@example.com"], 1, false).await;
    let id = created.request.body.id.clone();
    // A requester waiting for the outcome, as `countersign-gateway request --wait` does.
    let requester = h.requester();
    let poll = tokio::spawn(async move {
        let started = Instant::now();
        let v = requester.get(&id, Duration::from_secs(30)).await;
        (v, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let ready_url = ops_url(&h, "/readyz");
    let TestGateway { running, dir, .. } = h;
    let started = Instant::now();
    let stopping = tokio::spawn(running.shutdown());

    // Draining: not ready, with the reason; the long poll is answered at once, still pending.
    let deadline = Instant::now() + Duration::from_secs(5);
    let draining = loop {
        let r = reqwest::get(&ready_url).await.unwrap();
        if r.status() == 503 {
            break r.json::<serde_json::Value>().await.unwrap();
        }
        assert!(Instant::now() < deadline, "/readyz never answered 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(draining["ready"], false);
    assert_eq!(draining["draining"], true);
    assert_eq!(draining["database"], true);
    let (view, waited) = poll.await.unwrap();
    let view = view.unwrap();
    assert_eq!(view.status.body.state, RequestState::Pending);
    assert!(
        waited < Duration::from_secs(10),
        "answered at the drain, not at its wait's end"
    );

    // The stream stays open through the drain, then ends, so the device reconnects elsewhere.
    let end = loop {
        match stream.next_message(Duration::from_secs(20)).await {
            Ok((event, _)) => assert_eq!(event, "request", "only the backlog's request"),
            Err(e) => break e.to_string(),
        }
    };
    assert_eq!(end, "the stream ended");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the streams closed only after the drain"
    );
    stopping.await.unwrap();
    drop(dir);
}
