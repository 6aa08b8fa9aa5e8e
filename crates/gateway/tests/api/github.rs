//! GitHub deployment protection rules through the running gateway and a fake GitHub API on
//! loopback, written from GitHub's documented behaviour: it checks the App's RS256 JWT against
//! the App's public key, issues installation tokens, accepts a review only with one, and can
//! fail the first attempts or lose their answers, takes one review per run, and lists a run's
//! pending deployments. Covered: a bad webhook signature refused; approve and reject each
//! called back once, naming who decided; a redelivered event is the same request; a gateway
//! restart between the decision and the callback still calls back, once; and a callback
//! whose answer was lost is not sent again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use countersign_gateway::config::github::GithubConfig;
use countersign_gateway::config::Config;
use countersign_gateway::directory_admin as admin;
use countersign_protocol::Verdict;
use countersign_test_support::{eventually, Device, TestGateway, Uv};
use hmac::Mac as _;
use serde_json::{json, Value};

use crate::stages::approve;

const APP_ID: u64 = 4242;
const INSTALLATION: u64 = 45_123_987;
const SECRET: &[u8] = b"the App's webhook secret";
const RELEASE: &str = "rel@example.com";

const POLICY: &str = r#"package countersign

import rego.v1

result := {"allow": true, "rule": "github", "mode": "ask", "stages": [{"name": "release", "group": "release", "min": 1}]} if {
	input.request.action == "github.deploy"
} else := {"allow": false, "rule": "github.only", "message": "deployments only"}
"#;

fn fixtures() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github")
}

#[derive(Default)]
struct Api {
    tokens: Mutex<Vec<String>>,
    /// Callback attempts to fail (502) before accepting.
    fail: AtomicUsize,
    /// Reviews to apply and then answer 502, as if the answer were lost on the way back.
    lose: AtomicUsize,
    /// Accepted reviews: (run id, body).
    reviews: Mutex<Vec<(String, Value)>>,
    /// `GET .../pending_deployments` calls.
    pending_asked: AtomicUsize,
    refused_tokens: AtomicUsize,
}

fn bearer(h: &HeaderMap) -> String {
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned()
}

/// `POST /app/installations/{id}/access_tokens`: only for a valid App JWT.
async fn access_token(
    State(api): State<Arc<Api>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> (StatusCode, axum::Json<Value>) {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwt = bearer(&headers);
    let parts: Vec<&str> = jwt.split('.').collect();
    let key = app_public_key();
    let ok = parts.len() == 3 && {
        let sig = b64.decode(parts[2]).unwrap_or_default();
        let signed = format!("{}.{}", parts[0], parts[1]);
        let verified = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &key,
        )
        .verify(signed.as_bytes(), &sig)
        .is_ok();
        let header: Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap_or_default())
            .unwrap_or(Value::Null);
        let claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap_or_default())
            .unwrap_or(Value::Null);
        let (iat, exp) = (
            claims["iat"].as_i64().unwrap_or(0),
            claims["exp"].as_i64().unwrap_or(0),
        );
        verified
            && header["alg"] == "RS256"
            && claims["iss"].as_str().and_then(|s| s.parse::<u64>().ok()) == Some(APP_ID)
            && exp > iat
            && exp - iat <= 600
    };
    if !ok || id != INSTALLATION {
        api.refused_tokens.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "A JSON web token could not be decoded"})),
        );
    }
    let token = format!("ghs_{}", uuid::Uuid::new_v4().simple());
    api.tokens.lock().unwrap().push(token.clone());
    (
        StatusCode::CREATED,
        axum::Json(json!({"token": token, "expires_at": "2026-12-07T10:41:12Z"})),
    )
}

/// `POST /repos/{owner}/{repo}/actions/runs/{run}/deployment_protection_rule`.
async fn review(
    State(api): State<Arc<Api>>,
    Path((_owner, _repo, run)): Path<(String, String, String)>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> StatusCode {
    if !api.tokens.lock().unwrap().contains(&bearer(&headers)) {
        return StatusCode::UNAUTHORIZED;
    }
    if api
        .fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::BAD_GATEWAY;
    }
    if api.reviews.lock().unwrap().iter().any(|(r, _)| *r == run) {
        // GitHub takes one review per run and environment.
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    api.reviews.lock().unwrap().push((run, body));
    if api
        .lose
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::BAD_GATEWAY;
    }
    StatusCode::NO_CONTENT
}

/// `GET /repos/{owner}/{repo}/actions/runs/{run}/pending_deployments`: the fixture's
/// environment while no review of the run was applied, then none.
async fn pending_deployments(
    State(api): State<Arc<Api>>,
    Path((_owner, _repo, run)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> (StatusCode, axum::Json<Value>) {
    if !api.tokens.lock().unwrap().contains(&bearer(&headers)) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Bad credentials"})),
        );
    }
    api.pending_asked.fetch_add(1, Ordering::SeqCst);
    if api.reviews.lock().unwrap().iter().any(|(r, _)| *r == run) {
        return (StatusCode::OK, axum::Json(json!([])));
    }
    let waiting = json!([{
        "environment": {"id": 161_088_068, "node_id": "MDExOkVudmlyb25tZW50MTYxMDg4MDY4", "name": "production", "url": "https://api.github.com/repos/octo-org/web/environments/production", "html_url": "https://github.com/octo-org/web/deployments/activity_log?environments_filter=production"},
        "wait_timer": 0,
        "wait_timer_started_at": null,
        "current_user_can_approve": false,
        "reviewers": []
    }]);
    (StatusCode::OK, axum::Json(waiting))
}

fn app_public_key() -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let der =
        rustls::pki_types::PrivatePkcs1KeyDer::from_pem_file(fixtures().join("test-app-key.pem"))
            .unwrap();
    let pair = ring::signature::RsaKeyPair::from_der(der.secret_pkcs1_der()).unwrap();
    pair.public().as_ref().to_vec()
}

async fn fake_github() -> (Arc<Api>, SocketAddr) {
    let api = Arc::new(Api::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/app/installations/{id}/access_tokens",
            axum::routing::post(access_token),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run}/deployment_protection_rule",
            axum::routing::post(review),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run}/pending_deployments",
            axum::routing::get(pending_deployments),
        )
        .with_state(api.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (api, addr)
}

struct Setup {
    h: TestGateway,
    rel: Device,
    api: Arc<Api>,
    api_addr: SocketAddr,
    _keys: tempfile::TempDir,
    secret: std::path::PathBuf,
    policy: std::path::PathBuf,
}

fn configure(
    c: &mut Config,
    api_addr: SocketAddr,
    secret: &std::path::Path,
    policy: &std::path::Path,
) {
    c.policy_file = Some(policy.to_path_buf());
    c.webhook_poll_ms = 50;
    c.github = Some(GithubConfig {
        app_id: APP_ID,
        private_key_file: fixtures().join("test-app-key.pem"),
        webhook_secret_file: secret.to_path_buf(),
        api_url: format!("http://{api_addr}/").parse().unwrap(),
        grant_seconds: 3600,
        ttl_seconds: 0,
    });
}

async fn setup() -> Setup {
    let (api, api_addr) = fake_github().await;
    let keys = tempfile::tempdir().unwrap();
    let secret = keys.path().join("github.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let policy = keys.path().join("github.rego");
    std::fs::write(&policy, POLICY).unwrap();
    let (s, p) = (secret.clone(), policy.clone());
    let h = TestGateway::start_with(move |c| configure(c, api_addr, &s, &p)).await;
    let rel = h.pair(RELEASE).await;
    admin::set_groups(h.gw(), RELEASE, &["release".to_string()]).unwrap();
    Setup {
        h,
        rel,
        api,
        api_addr,
        _keys: keys,
        secret,
        policy,
    }
}

impl Setup {
    /// The fixture event, its callback pointed at the fake API.
    fn event(&self) -> Vec<u8> {
        let text =
            std::fs::read_to_string(fixtures().join("deployment_protection_rule.json")).unwrap();
        text.replace(
            "https://api.github.com/",
            &format!("http://{}/", self.api_addr),
        )
        .into_bytes()
    }

    async fn deliver(&self, body: &[u8], delivery: &str, key: &[u8]) -> (u16, Value) {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(body);
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let r = reqwest::Client::new()
            .post(self.h.url.join("github/webhook").unwrap())
            .header("content-type", "application/json")
            .header("x-github-event", "deployment_protection_rule")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", sig)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn reviews(&self, n: usize) -> Vec<(String, Value)> {
        let what = format!("{n} reviews arriving");
        eventually(&what, || {
            Some(self.api.reviews.lock().unwrap().clone()).filter(|r| r.len() >= n)
        })
        .await
    }

    fn audited(&self, kind: &str) -> usize {
        self.h.audited(kind)
    }
}

#[tokio::test]
async fn an_approved_deployment_is_called_back_once_and_a_redelivery_is_the_same_request() {
    let mut s = setup().await;
    let (status, answer) = s
        .deliver(&s.event(), "72d3162e-cc78-11e3-81ab-4c9367dc0958", SECRET)
        .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["request_id"].as_str().unwrap().to_owned();
    let (again, same) = s
        .deliver(&s.event(), "72d3162e-cc78-11e3-81ab-4c9367dc0958", SECRET)
        .await;
    assert_eq!(
        (again, same["request_id"].as_str()),
        (200, Some(id.as_str()))
    );

    let (req, _) = s.rel.request_event(&s.h, &id).await;
    assert_eq!(req.body.action, "github.deploy");
    assert_eq!(req.body.requester, "github:octocat");
    assert_eq!(req.body.resource, "octo-org/web/production");
    for fact in [
        "ref: main",
        "sha: 2f4c9a1b7e3d5f60812a9c4b3d2e1f0a9b8c7d6e",
        "run: https://github.com/octo-org/web/actions/runs/9876543210",
    ] {
        assert!(req.body.detail.contains(fact), "{}", req.body.detail);
    }
    approve(&mut s.rel, &s.h, &id).await;
    let reviews = s.reviews(1).await;
    assert_eq!(reviews[0].0, "9876543210");
    assert_eq!(reviews[0].1["environment_name"], "production");
    assert_eq!(reviews[0].1["state"], "approved");
    let comment = reviews[0].1["comment"].as_str().unwrap();
    assert!(
        comment.contains(RELEASE) && comment.contains(&id),
        "{comment}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(s.api.reviews.lock().unwrap().len(), 1, "called back once");
    assert_eq!(s.audited("github.requested"), 1);
    assert_eq!(s.audited("github.called_back"), 1);
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_a_denial_is_a_rejection() {
    let mut s = setup().await;
    let (status, answer) = s.deliver(&s.event(), "d-1", b"not the secret").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (401, Some("bad_webhook_signature"))
    );
    assert_eq!(s.audited("github.requested"), 0);
    assert_eq!(s.audited("github.refused"), 1);
    // A callback outside the configured API is refused too.
    let elsewhere = String::from_utf8(s.event()).unwrap().replace(
        &format!("http://{}/", s.api_addr),
        "https://attacker.example/",
    );
    let (status, answer) = s.deliver(elsewhere.as_bytes(), "d-2", SECRET).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_github_event"))
    );

    let (_, answer) = s.deliver(&s.event(), "d-3", SECRET).await;
    let id = answer["request_id"].as_str().unwrap().to_owned();
    let (req, ch) = s.rel.request_event(&s.h, &id).await;
    s.rel
        .decide(&s.h, &req, Some(&ch), Verdict::Deny, None, Uv::Yes)
        .await
        .unwrap();
    let reviews = s.reviews(1).await;
    assert_eq!(reviews[0].1["state"], "rejected");
    assert!(reviews[0].1["comment"]
        .as_str()
        .unwrap()
        .contains(&format!("Denied in Countersign by {RELEASE}")));
}

#[tokio::test]
async fn a_gateway_restart_between_the_decision_and_the_callback_still_calls_back_once() {
    let mut s = setup().await;
    // GitHub fails every callback for now.
    s.api.fail.store(usize::MAX, Ordering::SeqCst);
    let (_, answer) = s.deliver(&s.event(), "d-restart", SECRET).await;
    let id = answer["request_id"].as_str().unwrap().to_owned();
    approve(&mut s.rel, &s.h, &id).await;
    eventually("a callback tried", || {
        (s.api.fail.load(Ordering::SeqCst) < usize::MAX).then_some(())
    })
    .await;

    let (sec, pol, api_addr, api) = (
        s.secret.clone(),
        s.policy.clone(),
        s.api_addr,
        s.api.clone(),
    );
    let h =
        s.h.restart(
            move |c| configure(c, api_addr, &sec, &pol),
            // GitHub recovers after two more failures.
            |_| api.fail.store(2, Ordering::SeqCst),
        )
        .await;
    let s = Setup { h, ..s };
    // Each retry waits its backoff on the gateway's clock.
    for _ in 0..6 {
        s.h.gw().clock.shift(20);
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    let reviews = s.reviews(1).await;
    assert_eq!(reviews[0].1["state"], "approved");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(s.api.reviews.lock().unwrap().len(), 1, "called back once");
    assert_eq!(s.audited("github.called_back"), 1);
    assert_eq!(
        s.api.refused_tokens.load(Ordering::SeqCst),
        0,
        "every JWT verified"
    );
}

#[tokio::test]
async fn a_callback_whose_answer_was_lost_is_not_sent_again() {
    let mut s = setup().await;
    // GitHub applies the first review, but its answer does not come back.
    s.api.lose.store(1, Ordering::SeqCst);
    let (_, answer) = s.deliver(&s.event(), "d-lost", SECRET).await;
    let id = answer["request_id"].as_str().unwrap().to_owned();
    approve(&mut s.rel, &s.h, &id).await;
    s.reviews(1).await;
    // The gateway saw a failure; past its backoff it asks GitHub first and sends nothing.
    s.h.gw().clock.shift(5);
    eventually("the retry seeing the run no longer waiting", || {
        (s.audited("github.no_longer_waiting") == 1).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(s.api.reviews.lock().unwrap().len(), 1, "one review");
    assert_eq!(s.api.pending_asked.load(Ordering::SeqCst), 1);
    assert_eq!(s.audited("github.called_back"), 0);
}
