//! Outgoing webhooks through the real gateway and a loopback receiver that checks each
//! body's HMAC: created and decided events with a summary and a link (never the detail unless
//! configured), a Slack-format destination with its own filter, delivery once the receiver is
//! back after being down, and nothing lost or sent twice across a gateway restart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use countersign_gateway::config::webhooks::{WebhookConfig, WebhookFormat};
use countersign_gateway::config::Config;
use countersign_test_support::{eventually, TestGateway};
use hmac::Mac as _;
use serde_json::Value;

use crate::requests::Requests;
use crate::stages::approve;

const SECRET: &[u8] = b"a shared secret of the ops team";
const ALICE: &str = "alice@example.com";

#[derive(Default)]
struct Received {
    /// Every accepted POST: (delivery id, event, body), in order.
    posts: Vec<(String, String, Value)>,
    /// Attempts refused while down.
    refused: usize,
}

#[derive(Clone)]
struct Receiver {
    log: Arc<Mutex<Received>>,
    down: Arc<AtomicBool>,
    addr: SocketAddr,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    if r.down.load(Ordering::SeqCst) {
        r.log.lock().unwrap().refused += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (id, event, ts, sig) = (
        h("x-countersign-delivery"),
        h("x-countersign-event"),
        h("x-countersign-timestamp"),
        h("x-countersign-signature-256"),
    );
    if !sig.is_empty() {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(format!("{ts}.{body}").as_bytes());
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        if sig != want {
            return StatusCode::UNAUTHORIZED;
        }
    }
    let v: Value = serde_json::from_str(&body).unwrap();
    r.log.lock().unwrap().posts.push((id, event, v));
    StatusCode::NO_CONTENT
}

async fn receiver() -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let r = Receiver {
        log: Arc::default(),
        down: Arc::default(),
        addr: listener.local_addr().unwrap(),
    };
    let app = axum::Router::new()
        .route("/ops", axum::routing::post(hook))
        .route("/slack", axum::routing::post(hook))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    r
}

impl Receiver {
    fn posts(&self) -> Vec<(String, String, Value)> {
        self.log.lock().unwrap().posts.clone()
    }

    /// Waits until `n` posts arrived.
    async fn wait_for(&self, n: usize) -> Vec<(String, String, Value)> {
        let what = format!("{n} webhooks arriving");
        eventually(&what, || Some(self.posts()).filter(|p| p.len() >= n)).await
    }
}

fn configure(c: &mut Config, r: &Receiver, secret: &std::path::Path) {
    c.webhook_poll_ms = 50;
    c.webhooks = vec![
        WebhookConfig {
            name: "ops".into(),
            url: format!("http://{}/ops", r.addr).parse().unwrap(),
            secret_file: Some(secret.to_path_buf()),
            format: WebhookFormat::Json,
            events: Vec::new(),
            actions: Vec::new(),
            requesters: Vec::new(),
            include_detail: false,
        },
        WebhookConfig {
            name: "slack".into(),
            url: format!("http://{}/slack", r.addr).parse().unwrap(),
            secret_file: None,
            format: WebhookFormat::Slack,
            events: vec!["request.decided".into()],
            actions: vec!["sql.*".into()],
            requesters: Vec::new(),
            include_detail: false,
        },
    ];
}

/// A receiver, and a gateway sending to it with the ops secret (in the directory returned).
async fn started() -> (Receiver, TestGateway, tempfile::TempDir, std::path::PathBuf) {
    let r = receiver().await;
    let keys = tempfile::tempdir().unwrap();
    let secret = secret_file(keys.path());
    let h = TestGateway::start_with(|c| configure(c, &r, &secret)).await;
    (r, h, keys, secret)
}

fn secret_file(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("ops.secret");
    std::fs::write(&p, [SECRET, b"\n"].concat()).unwrap();
    p
}

#[tokio::test]
async fn created_and_decided_requests_are_told_signed_with_a_link_and_no_detail() {
    let (r, h, _keys, _) = started().await;
    let mut alice = h.pair(ALICE).await;
    let created = h.create(&[ALICE], 1, false).await;
    let id = created.request.body.id.clone();
    let posts = r.wait_for(1).await;
    let (delivery, event, body) = &posts[0];
    assert_eq!(event, "request.created");
    assert_eq!(body["delivery_id"], delivery.as_str());
    assert_eq!(body["request"]["id"], id.as_str());
    assert_eq!(body["request"]["state"], "pending");
    assert_eq!(
        body["request"]["link"],
        format!("countersign://request/{id}")
    );
    assert_eq!(body["gateway"]["fingerprint"], h.gw().fingerprint.as_str());
    assert!(
        body["request"].get("detail").is_none(),
        "no detail unless configured"
    );
    assert!(!body.to_string().contains("kubectl rollout"), "{body}");

    approve(&mut alice, &h, &id).await;
    let posts = r.wait_for(3).await;
    let decided: Vec<_> = posts
        .iter()
        .filter(|(_, e, _)| e == "request.decided")
        .collect();
    assert_eq!(decided.len(), 2, "one for ops, one for Slack: {posts:?}");
    let ops = decided
        .iter()
        .find(|(_, _, b)| b.get("v").is_some())
        .unwrap();
    assert_eq!(ops.2["request"]["state"], "approved");
    assert_eq!(ops.2["approved_by"], serde_json::json!([ALICE]));
    let slack = decided
        .iter()
        .find(|(_, _, b)| b.get("text").is_some())
        .unwrap();
    let text = slack.2["text"].as_str().unwrap();
    assert!(text.contains(&format!("was approved by {ALICE}")), "{text}");
    assert!(
        text.contains(&format!("<countersign://request/{id}|Open in Countersign>")),
        "{text}"
    );
    // Every delivery id once.
    let mut ids: Vec<_> = posts.iter().map(|(d, _, _)| d.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), posts.len());
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_everything_once_across_a_gateway_restart() {
    let (r, h, _keys, secret) = started().await;
    let _alice = h.pair(ALICE).await;
    // One delivered before anything goes wrong.
    h.create(&[ALICE], 1, false).await;
    r.wait_for(1).await;

    // The receiver goes down; a request is made; its delivery is tried and refused.
    r.down.store(true, Ordering::SeqCst);
    let second = h
        .create_with(|n| {
            n.approvers = vec![ALICE.into()];
            n.summary = "second".into();
        })
        .await;
    eventually("a refused attempt", || {
        (r.log.lock().unwrap().refused > 0).then_some(())
    })
    .await;

    // The gateway stops and starts again over its data; the receiver comes back.
    let (r2, secret2) = (r.clone(), secret.clone());
    let h = h
        .restart(
            move |c| configure(c, &r2, &secret2),
            |gw| {
                r.down.store(false, Ordering::SeqCst);
                // Past the retry's backoff.
                gw.clock.shift(5)
            },
        )
        .await;
    let posts = r.wait_for(2).await;
    assert_eq!(posts[1].2["request"]["id"], second.request.body.id.as_str());
    // A third request after the restart: told once, and nothing before it again.
    h.create_with(|n| {
        n.approvers = vec![ALICE.into()];
        n.summary = "third".into();
    })
    .await;
    let posts = r.wait_for(3).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let posts_after = r.posts();
    assert_eq!(posts_after.len(), 3, "{posts_after:?}");
    let mut per_id = BTreeMap::new();
    for (d, _, _) in &posts {
        *per_id.entry(d.clone()).or_insert(0) += 1;
    }
    assert!(per_id.values().all(|n| *n == 1), "{per_id:?}");
}

#[tokio::test]
async fn destinations_configured_again_start_at_the_head_not_with_what_happened_meanwhile() {
    let (r, h, _keys, secret) = started().await;
    let _alice = h.pair(ALICE).await;
    h.create(&[ALICE], 1, false).await;
    r.wait_for(1).await;
    // A while without destinations: a request is made, and nobody is told.
    let h = h.restart(|_| {}, |_| {}).await;
    h.create_with(|n| n.summary = "while nobody listened".into())
        .await;

    // Configured again: only what happens from now on is sent.
    let (r2, secret2) = (r.clone(), secret.clone());
    let h = h
        .restart(move |c| configure(c, &r2, &secret2), |_| {})
        .await;
    h.create_with(|n| n.summary = "after".into()).await;
    let posts = r.wait_for(2).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(r.posts().len(), 2, "{:?}", r.posts());
    assert_eq!(posts[1].2["request"]["summary"], "after");
}
