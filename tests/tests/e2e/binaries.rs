//! The real binaries end to end: invite, pair, `request --wait`, `watch`, approve and deny with
//! the CLIs, and both audit chains verified.

use std::process::{Command, Stdio};

use countersign_test_support::{
    bin, countersign, lines_of, wait_exit, wait_line, ChildGuard, GatewayProcess,
};

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

/// `countersign --json list | head`: the reader of stdout goes away before the CLI writes, and
/// the command ends quietly (exit 0) instead of panicking on the broken pipe.
#[test]
fn a_closed_stdout_ends_the_cli_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("approver");
    for args in [&["--json", "list"][..], &["list", "--all"], &["gateways"]] {
        let mut child = Command::new(bin("countersign"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the CLI has opened its data directory, so its first line finds no
        // reader.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.status.success(), "{args:?} ends quietly: {stderr}");
        assert!(stderr.is_empty(), "{args:?} says nothing more: {stderr}");
    }
}

/// A look-alike resource (`prоd-db`, with a Cyrillic `о`) is flagged by `list`, and `approve`
/// shows the flagged field and, with no terminal to ask on, refuses until `--yes`.
#[test]
fn look_alikes_are_flagged_and_approve_asks_before_approving_one() {
    let tmp = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(&tmp.path().join("gateway"));
    let token = gw.admin(&["token", "create", "ci-bot"]);
    let link = gw.admin(&["invite", "alice@example.com"]);
    let alice = tmp.path().join("alice");
    let paired = countersign(&alice, &["--authenticator", "soft", "pair", &link]);
    assert!(paired.status.success(), "{paired:?}");

    let mut child = Command::new(bin("countersign-gateway"))
        .args(["request", "--gateway", gw.url.as_str(), "--token", &token])
        .args(["--action", "sql.exec", "--resource", "pr\u{043e}d-db"])
        .args(["--summary", "Rotate the keys", "--reason", "quarterly"])
        .args(["--approver", "alice@example.com", "--json", "--wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    let mut req = ChildGuard(child);
    let first: serde_json::Value = serde_json::from_str(&wait_line(&lines, "\"id\"")).unwrap();
    let id = first["id"].as_str().unwrap().to_string();

    let list = countersign(&alice, &["list"]);
    assert!(list.status.success(), "{list:?}");
    let listed = String::from_utf8_lossy(&list.stdout);
    let row = listed
        .lines()
        .find(|l| l.contains(&id))
        .expect("the request is listed");
    assert!(
        row.contains("⚠ hidden or look-alike characters in resource"),
        "{row}"
    );

    // No terminal (the test's stdin is not one): refused, the flagged field shown.
    let refused = countersign(&alice, &["--authenticator", "soft", "approve", &id]);
    assert!(!refused.status.success(), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("resource: pr\u{043e}d-db"), "{said}");
    assert!(said.contains("no terminal to confirm on"), "{said}");
    assert!(
        req.0.try_wait().unwrap().is_none(),
        "nothing was sent: the requester still waits"
    );

    let approved = countersign(
        &alice,
        &["--authenticator", "soft", "approve", &id, "--yes"],
    );
    assert!(approved.status.success(), "{approved:?}");
    assert_eq!(wait_exit(&mut req.0), 0, "approved at the gateway");
}

/// The gateway binary's directory and policy commands: an approver added with groups and
/// identities, listed as JSON lines; the shipped default policy passes `policy test`, and a
/// policy that reads the system clock or fails its own test is refused with exit code 1.
#[test]
fn the_gateway_binary_keeps_the_directory_and_checks_policies() {
    let tmp = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(&tmp.path().join("gateway"));
    let added = gw.admin(&[
        "approver",
        "add",
        "alice@example.com",
        "--person",
        "alice",
        "--group",
        "dba",
        "--group",
        "managers",
        "--token",
        "alice-ci",
    ]);
    assert_eq!(
        added,
        "added alice  approvers alice@example.com  groups dba,managers  tokens alice-ci"
    );
    gw.admin(&[
        "approver",
        "set-groups",
        "alice@example.com",
        "--group",
        "dba",
    ]);
    let listed = gw.admin(&["approver", "list", "--json"]);
    let entry: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(entry["groups"], serde_json::json!(["dba"]));
    assert_eq!(entry["tokens"], serde_json::json!(["alice-ci"]));
    let token = gw.admin(&[
        "token", "create", "deploy", "--team", "ops", "--env", "prod",
    ]);
    assert!(token.starts_with("cst_"));
    let tokens = gw.admin(&["token", "list", "--json"]);
    assert!(
        tokens.contains(r#""team":"ops","environments":["prod"]"#),
        "{tokens}"
    );

    let policy = |args: &[&str]| {
        Command::new(bin("countersign-gateway"))
            .arg("--data-dir")
            .arg(&gw.data_dir)
            .args(args)
            .output()
            .unwrap()
    };
    // The shipped default and every example of docs/policy.md pass their own tests.
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policy");
    let mut examples = 0;
    for f in std::fs::read_dir(&docs).unwrap() {
        let path = f.unwrap().path();
        if path.extension().is_none_or(|e| e != "rego") {
            continue;
        }
        let out = policy(&["policy", "test", path.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{}: {out:?}", path.display());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["ok"], true);
        assert!(
            report["tests"].as_array().unwrap().len() >= 3,
            "{}: every example tests itself",
            path.display()
        );
        examples += 1;
    }
    assert_eq!(
        examples, 7,
        "the default and the six examples of docs/policy.md"
    );

    // `explain`: the input the policy sees (the token's person, from the directory) and what
    // it answers.
    let request = tmp.path().join("request.json");
    std::fs::write(
        &request,
        r#"{"action": "deploy", "resource": "prod/api", "risk": "high", "summary": "Roll out",
            "ttl_seconds": 600, "approvers": ["alice@example.com"], "min_approvals": 1}"#,
    )
    .unwrap();
    let explain = |requester: &str, extra: &[&str]| {
        let mut args = vec![
            "policy",
            "explain",
            "--request",
            request.to_str().unwrap(),
            "--requester",
            requester,
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = policy(&args);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let own = explain("alice-ci", &[]);
    assert_eq!(own["input"]["requester"]["person"], "alice");
    assert_eq!(own["outcome"]["result"]["allow"], false);
    assert_eq!(own["outcome"]["result"]["rule"], "default.own_request");
    let other = explain("deploy", &[]);
    assert_eq!(other["input"]["requester"]["team"], "ops");
    assert_eq!(
        other["outcome"]["result"]["rule"],
        "default.named_approvers"
    );
    let hours = docs.join("business-hours.rego");
    let saturday = explain(
        "deploy",
        &[
            "--policy",
            hours.to_str().unwrap(),
            "--at",
            "2026-01-03T10:00:00+01:00",
        ],
    );
    assert_eq!(saturday["input"]["time"]["unix"], 1_767_430_800);
    assert_eq!(saturday["outcome"]["result"]["allow"], false);

    let clock = tmp.path().join("clock.rego");
    std::fs::write(
        &clock,
        "package countersign\n\nimport rego.v1\n\nresult := {\"allow\": time.now_ns() > 0, \"rule\": \"r\", \"message\": \"m\"}\n",
    )
    .unwrap();
    let out = policy(&["policy", "check", clock.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reads the system clock"),
        "{out:?}"
    );
    let failing = tmp.path().join("failing.rego");
    std::fs::write(
        &failing,
        "package countersign\n\nimport rego.v1\n\nresult := {\"allow\": false, \"rule\": \"r\", \"message\": \"m\"}\n\ntest_allows if { result.allow }\n",
    )
    .unwrap();
    // `check` compiles it; `test` runs the test that fails.
    assert!(policy(&["policy", "check", failing.to_str().unwrap()])
        .status
        .success());
    let out = policy(&["policy", "test", failing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FAILED  test_allows"),
        "{out:?}"
    );
}

/// After approval, with the real binaries: `request --break-glass` is approved at once where
/// the policy lets the requester, `countersign ack` acknowledges it; an approval lasting 15
/// minutes is revoked with `countersign revoke` (the passkey), another by the operator with
/// `countersign-gateway revoke`, and the approver's device shows who revoked each.
#[test]
fn break_glass_acknowledgement_and_revocation_with_the_real_binaries() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy.rego");
    std::fs::write(
        &policy,
        r#"package countersign

import rego.v1

result := {"allow": true, "rule": "break_glass_oncall", "mode": "break_glass",
	"stages": [{"name": "sre", "group": "sre", "min": 1}]} if input.request.break_glass
else := {"allow": true, "rule": "sre_review", "grant_seconds": 900,
	"stages": [{"name": "sre", "group": "sre", "min": 1}]}
"#,
    )
    .unwrap();
    let config = tmp.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!("policy_file = {:?}\n", policy.to_str().unwrap()),
    )
    .unwrap();
    let gw = GatewayProcess::start_with_config(&tmp.path().join("gateway"), &config);
    let token = gw.admin(&["token", "create", "dana-ci"]);
    let link = gw.admin(&["invite", "alice@example.com"]);
    let alice = tmp.path().join("alice");
    let soft = |args: &[&str]| {
        let mut all = vec!["--authenticator", "soft"];
        all.extend_from_slice(args);
        countersign(&alice, &all)
    };
    assert!(soft(&["pair", &link]).status.success());
    gw.admin(&[
        "approver",
        "set-groups",
        "alice@example.com",
        "--group",
        "sre",
    ]);

    let request = |extra: &[&str]| {
        let out = Command::new(bin("countersign-gateway"))
            .args(["request", "--gateway", gw.url.as_str(), "--token", &token])
            .args(["--action", "deploy", "--resource", "prod/api"])
            .args(["--reason", "API down, INC-2291"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        (
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let shown = |id: &str| {
        let out = countersign(&alice, &["--json", "show", id]);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };

    let (glass, said) = request(&["--break-glass", "--summary", "restart the API"]);
    assert!(said.contains("approved by breaking glass"), "{said}");
    assert_eq!(shown(&glass)["needs_acknowledgement"], true);
    let acked = countersign(&alice, &["ack", &glass]);
    assert!(acked.status.success(), "{acked:?}");
    assert!(String::from_utf8_lossy(&acked.stdout).contains("acknowledged"));
    let after = shown(&glass);
    assert_eq!(after["needs_acknowledgement"], false);
    assert_eq!(after["grant"]["acknowledged_by"], "alice@example.com");

    for by_operator in [false, true] {
        let (id, _) = request(&["--summary", if by_operator { "second" } else { "first" }]);
        let approved = soft(&["approve", &id]);
        assert!(approved.status.success(), "{approved:?}");
        if by_operator {
            let said = gw.admin(&["revoke", &id, "--reason", "wrong ticket"]);
            assert!(said.contains("is revoked"), "{said}");
        } else {
            let revoked = soft(&["revoke", &id, "--reason", "wrong cluster"]);
            assert!(revoked.status.success(), "{revoked:?}");
        }
        let grant = shown(&id)["grant"].clone();
        let by = if by_operator {
            "admin"
        } else {
            "alice@example.com"
        };
        // The operator's revocation was written by another process: the device hears of it
        // when its stream next connects, as `show` does.
        assert_eq!(grant["revoked_by"], by, "{grant}");
    }
}
