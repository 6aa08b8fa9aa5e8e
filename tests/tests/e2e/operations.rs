//! The gateway binary as an operator runs it: JSON log lines on request, the operations
//! listener, and SIGTERM as a graceful shutdown that drains first and exits 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use countersign_test_support::{bin, wait_exit, ChildGuard};

/// The next stderr line of the gateway that is the JSON log object whose `message` is `msg`.
fn json_line(rx: &mpsc::Receiver<String>, msg: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line {msg:?}"));
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v.get(key).is_some(), "no {key} in {line}");
        }
        if v["message"] == msg {
            return v;
        }
    }
}

#[test]
fn json_logs_the_operations_listener_and_sigterm_drains_then_exits_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("countersign-gateway"))
        .arg("--data-dir")
        .arg(tmp.path().join("gateway"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("COUNTERSIGN_LOG", "info")
        .env("COUNTERSIGN_LOG_FORMAT", "json")
        .env("COUNTERSIGN_OPERATIONS_LISTEN", "127.0.0.1:0")
        .env("COUNTERSIGN_SHUTDOWN_DRAIN_SECONDS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut child = ChildGuard(child);

    let listening = json_line(&rx, "countersign gateway listening");
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["target"], "countersign_gateway");
    assert!(listening["url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    assert_eq!(listening["fingerprint"].as_str().unwrap().len(), 64);
    let ops = listening["operations"].as_str().unwrap().to_owned();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let get = |path: &str| {
        let url = format!("http://{ops}{path}");
        rt.block_on(async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    assert_eq!(get("/readyz").0, 200);
    let (_, metrics) = get("/metrics");
    assert!(metrics.contains("countersign_streams_open 0"), "{metrics}");

    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let draining = json_line(
        &rx,
        "draining: /readyz answers 503, the streams close after",
    );
    assert_eq!(draining["seconds"], 1);
    let (status, why) = get("/readyz");
    assert_eq!(status, 503, "{why}");
    assert_eq!(wait_exit(&mut child.0), 0, "SIGTERM is a clean exit");
}

/// deploy/systemd/countersign-gateway.service is a unit systemd accepts as written (no unknown
/// key, no bad value: `systemd-analyze verify` warns and still exits 0, so its output must be
/// empty), run against the built binary, and its sandbox rates "OK" or better in
/// `systemd-analyze security` (exposure at most 2.0 of 10).
#[test]
fn the_systemd_unit_verifies_and_is_locked_down() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/systemd/countersign-gateway.service"),
    )
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/countersign-gateway "));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("countersign-gateway.service");
    let gateway = bin("countersign-gateway");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/countersign-gateway", gateway.to_str().unwrap()),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package; scripts/deps.sh installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(verify.status.success() && said.trim().is_empty(), "{said}");
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(security.status.success(), "exposure above 2.0:\n{report}");
    assert!(report.contains("Overall exposure level"), "{report}");
}

/// deploy/haproxy/haproxy.cfg, the sample of docs/operations.md, is a configuration HAProxy
/// accepts (with a certificate of the test's own in place of the operator's), and checks the
/// replicas' `/readyz`.
#[test]
fn the_sample_haproxy_configuration_is_valid() {
    let sample = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy/haproxy.cfg"),
    )
    .unwrap();
    assert!(sample.contains("option httpchk GET /readyz"));
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = countersign_test_support::tls::self_signed(dir.path(), "countersign");
    let pem = dir.path().join("countersign.pem");
    let both = format!(
        "{}{}",
        std::fs::read_to_string(cert).unwrap(),
        std::fs::read_to_string(key).unwrap()
    );
    std::fs::write(&pem, both).unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        sample.replace("/etc/haproxy/countersign.pem", pem.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("haproxy")
        .args(["-c", "-q", "-f"])
        .arg(&cfg)
        .output()
        .expect("haproxy (Debian's haproxy package; scripts/deps.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
