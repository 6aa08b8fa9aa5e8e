//! A man in the middle on the path the approver was paired through (issue 15, items 1 to 3),
//! against the real binaries: a forged stream frame cannot silence the approver, a replayed
//! genuine status cannot reopen a closed request, and an unsigned error answer is never taken
//! as a refusal. Each of these got through before protocol version 2.

use std::process::{Command, Stdio};

use countersign_protocol::PairingLink;
use countersign_test_support::mitm::{Mitm, SeenEvent};
use countersign_test_support::{bin, countersign, lines_of, wait_line, ChildGuard, GatewayProcess};

/// A gateway process, a proxy in front of it, and a requester token.
struct Path {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    gw: GatewayProcess,
    mitm: Mitm,
    token: String,
}

impl Path {
    async fn new() -> Path {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let gw = GatewayProcess::start(&dir.join("gateway"));
        let addr = format!("{}:{}", gw.url.host_str().unwrap(), gw.url.port().unwrap());
        let mitm = Mitm::start(addr.parse().unwrap()).await;
        let token = gw.admin(&["token", "create", "ci-bot"]);
        Path {
            _tmp: tmp,
            dir,
            gw,
            mitm,
            token,
        }
    }

    /// Pairs `approver` through the proxy: the link names the proxy as the gateway.
    fn pair(&self, approver: &str) -> std::path::PathBuf {
        let text = self.gw.admin(&["invite", approver]);
        let mut link = PairingLink::parse(&text).unwrap();
        link.gateway = self.mitm.url();
        let data = self.dir.join(approver);
        let out = countersign(
            &data,
            &["--authenticator", "soft", "pair", &link.to_string()],
        );
        assert!(out.status.success(), "{out:?}");
        data
    }

    /// Creates a request (directly at the gateway) and returns its id.
    fn request(&self, approvers: &[&str], min: u32, summary: &str) -> String {
        let mut cmd = Command::new(bin("countersign-gateway"));
        cmd.args([
            "request",
            "--gateway",
            self.gw.url.as_str(),
            "--token",
            &self.token,
        ])
        .args([
            "--action",
            "deploy",
            "--resource",
            "prod-api",
            "--summary",
            summary,
        ])
        .args(["--min-approvals", &min.to_string(), "--json"]);
        for a in approvers {
            cmd.args(["--approver", a]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["id"].as_str().unwrap().to_string()
    }
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The approver's audit log as (kind, detail) pairs.
fn audit(data: &std::path::Path) -> Vec<(String, serde_json::Value)> {
    ok(countersign(data, &["audit", "export"]))
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let e = v.get("entry")?;
            Some((e.get("kind")?.as_str()?.to_string(), e["detail"].clone()))
        })
        .collect()
}

fn state(data: &std::path::Path, id: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&ok(countersign(data, &["--json", "show", id]))).unwrap();
    v["state"].as_str().unwrap().to_string()
}

/// `countersign --json watch` for `data`, and its output lines.
fn watch(data: &std::path::Path) -> (ChildGuard, std::sync::mpsc::Receiver<String>) {
    let mut child = ChildGuard(
        Command::new(bin("countersign"))
            .arg("--data-dir")
            .arg(data)
            .args(["--json", "watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = lines_of(&mut child.0);
    (child, lines)
}

/// Item 1: one forged frame with a huge id used to become the resume point, after which every
/// genuine event was dropped as already seen. Now it is refused and audited, the resume point
/// stays, and the next request still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_stream_frame_does_not_silence_the_approver() {
    let p = Path::new().await;
    let alice = p.pair("alice@example.com");
    let (mut w, lines) = watch(&alice);
    let first = p.request(&["alice@example.com"], 1, "first deploy");
    wait_line(&lines, &first);

    p.mitm.inject(
        b"id: 9000000000000000000\nevent: request\ndata: {\"type\":\"request\",\"request\":{\"body\":{},\"signature\":\"\"},\"challenge\":{}}\n\n"
            .to_vec(),
    );
    let second = p.request(&["alice@example.com"], 1, "second deploy");
    wait_line(&lines, &second);
    w.0.kill().unwrap();
    let _ = w.0.wait();

    let audited = audit(&alice);
    let refused: Vec<_> = audited
        .iter()
        .filter(|(k, _)| k == "stream.frame_rejected")
        .collect();
    assert_eq!(refused.len(), 1, "{audited:?}");
    assert_eq!(refused[0].1["reason"], "undecodable");
    // The resume point is the genuine event's, never the forged id.
    // One JSON line per paired gateway.
    let gateways: serde_json::Value =
        serde_json::from_str(&ok(countersign(&alice, &["--json", "gateways"]))).unwrap();
    let resume = gateways["last_event_id"].as_u64().unwrap();
    assert!(resume > 0 && resume < 1000, "{gateways}");
    ok(countersign(&alice, &["sync"]));
    let sent = p.mitm.last_event_ids();
    assert_eq!(
        sent.last().unwrap().as_deref(),
        Some(resume.to_string().as_str())
    );
    assert!(sent
        .iter()
        .all(|s| s.as_deref() != Some("9000000000000000000")));
    ok(countersign(&alice, &["audit", "verify", "--local"]));
}

/// Item 2: a 2-of-2 request that bob approved and alice denied. Replaying the genuine "pending,
/// 1 of 2" status (under a fresh SSE id, or in a full resync the attacker forces by stripping
/// `Last-Event-ID`) used to show it pending again. Now the replay is refused and the resync's
/// older statuses are stale: the request stays denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_status_does_not_reopen_a_closed_request() {
    let p = Path::new().await;
    let alice = p.pair("alice@example.com");
    let bob = p.pair("bob@example.com");
    let id = p.request(
        &["alice@example.com", "bob@example.com"],
        2,
        "two-person deploy",
    );
    ok(countersign(&alice, &["sync"]));
    ok(countersign(&bob, &["sync"]));
    ok(countersign(
        &bob,
        &["--authenticator", "soft", "approve", &id],
    ));
    ok(countersign(&alice, &["sync"]));
    assert_eq!(state(&alice, &id), "pending");
    // The genuine status alice received: pending, one approval of two.
    let pending: SeenEvent = p
        .mitm
        .seen()
        .into_iter()
        .rfind(|e| e.event == "status" && e.data.contains("\"approvals\":1"))
        .unwrap();
    ok(countersign(&alice, &["deny", &id, "--reason", "not today"]));
    assert_eq!(state(&alice, &id), "denied");

    // Replayed live under a fresh SSE id (once the stream is live: a request arrived on it).
    let (mut w, lines) = watch(&alice);
    let live = p.request(&["alice@example.com"], 1, "before the replay");
    wait_line(&lines, &live);
    let mut replay = pending.clone();
    replay.id = Some("999999".into());
    p.mitm.inject(replay.to_sse());
    let marker = p.request(&["alice@example.com"], 1, "after the replay");
    wait_line(&lines, &marker);
    w.0.kill().unwrap();
    let _ = w.0.wait();
    assert_eq!(state(&alice, &id), "denied");

    // A full resync forced by stripping the resume point: every old status comes again.
    p.mitm.strip_last_event_id(true);
    ok(countersign(&alice, &["sync"]));
    assert_eq!(state(&alice, &id), "denied");

    let audited = audit(&alice);
    let kinds: Vec<&str> = audited.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        audited
            .iter()
            .any(|(k, d)| k == "stream.frame_rejected" && d["reason"] == "id_mismatch"),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"stream.resync"), "{kinds:?}");
    assert!(
        audited
            .iter()
            .any(|(k, d)| k == "status.stale" && d["state"] == "pending"),
        "{kinds:?}"
    );
    ok(countersign(&alice, &["audit", "verify", "--local"]));
}

/// Item 3: an unsigned `409 request_closed` from the middle used to be recorded as a final
/// refusal, with the attacker's sentence shown, while the gateway never saw the denial. Now it
/// is "not delivered yet": the decision stays queued, the sentence is never shown, and it is
/// delivered once the path is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unsigned_refusal_is_never_final() {
    let p = Path::new().await;
    let alice = p.pair("alice@example.com");
    let id = p.request(&["alice@example.com"], 1, "deploy");
    ok(countersign(&alice, &["sync"]));
    p.mitm.answer_decisions(Some((
        409,
        r#"{"error":{"code":"request_closed","message":"The request is already approved."}}"#,
    )));
    let out = countersign(&alice, &["--json", "deny", &id, "--reason", "no"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("already approved"), "{text}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["delivery"]["delivery"], "queued", "{v}");
    assert_eq!(p.mitm.decisions(), (1, 0));
    let shown = ok(countersign(&alice, &["--json", "show", &id]));
    assert!(!shown.contains("already approved"), "{shown}");
    assert!(shown.contains("queued"), "{shown}");
    let kinds: Vec<String> = audit(&alice).into_iter().map(|(k, _)| k).collect();
    assert!(kinds.contains(&"decision.made".to_string()), "{kinds:?}");
    assert!(
        !kinds.contains(&"decision.refused".to_string()),
        "{kinds:?}"
    );

    // The path is clean again: the queued denial reaches the gateway.
    p.mitm.answer_decisions(None);
    ok(countersign(&alice, &["sync"]));
    assert_eq!(p.mitm.decisions().1, 1);
    assert_eq!(state(&alice, &id), "denied");
    let client =
        countersign_gateway::client::RequesterClient::new(p.gw.url.clone(), p.token.clone())
            .unwrap();
    let view = client.get(&id, std::time::Duration::ZERO).await.unwrap();
    assert_eq!(
        view.status.body.state,
        countersign_protocol::RequestState::Denied
    );
}
