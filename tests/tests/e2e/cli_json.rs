//! The command line's `--json` output against its documented schemas (docs/cli/, JSON Schema
//! 2020-12), with the real binaries: every command's real output, successes and failures, is
//! checked by the maintained Python `jsonschema` validator (tests/conformance/check_cli_json.py).

use std::path::Path;
use std::process::{Command, Output};

use countersign_test_support::hoop::{FakeHoop, HoopUser};
use countersign_test_support::{bin, countersign, GatewayProcess};

use crate::common::{fingerprint_of, python, said};

/// Checks `out`'s standard output against `docs/cli/<schema>.schema.json`.
fn matches(out: &Output, schema: &str, dir: &Path) {
    let file = dir.join(format!("{schema}-{}.jsonl", rand::random::<u32>()));
    std::fs::write(&file, &out.stdout).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let checked = Command::new(python())
        .arg(root.join("tests/conformance/check_cli_json.py"))
        .arg(root.join(format!("docs/cli/{schema}.schema.json")))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{schema}: {}\noutput:\n{}",
        said(&checked),
        said(out)
    );
}

#[test]
fn every_json_output_matches_its_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let gw = GatewayProcess::start(&dir.join("gateway"));
    let token = gw.admin(&["token", "create", "ci-bot"]);
    let link = gw.admin(&["invite", "alice@example.com"]);
    let fp = fingerprint_of(&link);
    let alice = dir.join("alice");
    let run = |args: &[&str]| {
        let mut all = vec!["--json", "--authenticator", "soft"];
        all.extend_from_slice(args);
        countersign(&alice, &all)
    };
    let ok = |args: &[&str], schema: &str| {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {}", said(&out));
        matches(&out, schema, dir);
        out
    };
    ok(&["pair", &link], "pair");

    let request = |summary: &str| -> (String, String) {
        let out = Command::new(bin("countersign-gateway"))
            .args(["request", "--gateway", gw.url.as_str(), "--token", &token])
            .args([
                "--action",
                "deploy",
                "--resource",
                "prod",
                "--summary",
                summary,
            ])
            .args([
                "--approver",
                "alice@example.com",
                "--require-match",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", said(&out));
        let v: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap())
                .unwrap();
        (
            v["id"].as_str().unwrap().to_owned(),
            v["match_code"].as_str().unwrap().to_owned(),
        )
    };
    let (approved, code) = request("deploy v42");
    let (denied, _) = request("deploy v43");
    let (reported, _) = request("deploy v44");
    ok(&["sync"], "sync");
    ok(&["list"], "request");
    ok(&["show", &approved], "request");
    ok(&["approve", &approved, "--match-code", &code], "decided");
    ok(&["deny", &denied, "--reason", "change freeze"], "decided");
    ok(&["report", &reported], "report");
    ok(&["list", "--all"], "request");
    ok(&["gateways"], "gateways");
    // A hoop gateway beside it: both kinds of line.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hoop = rt.block_on(FakeHoop::start());
    hoop.add_user(
        "hpk_alice",
        &HoopUser::new("auth0|alice", "alice@example.com", &["sre"]),
    );
    let token = dir.join("hoop.token");
    std::fs::write(&token, "hpk_alice\n").unwrap();
    let hoop_url = hoop.url().to_string();
    let connect = [
        "connect",
        "hoop",
        "--url",
        &hoop_url,
        "--token-file",
        token.to_str().unwrap(),
    ];
    ok(&connect, "gateways");
    let both = ok(&["gateways"], "gateways");
    let kinds: Vec<String> = String::from_utf8_lossy(&both.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
        .collect();
    assert_eq!(kinds, [r#""countersign""#, r#""hoop""#]);
    ok(&["audit", "verify"], "audit-verify");
    ok(&["passkey", "list"], "passkey-list");

    let bundle = dir.join("bundle.json");
    let out = countersign(
        &alice,
        &["evidence", &approved, "-o", bundle.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", said(&out));
    ok(
        &[
            "verify-evidence",
            bundle.to_str().unwrap(),
            "--gateway",
            &fp,
        ],
        "verify-evidence",
    );
    let bad = dir.join("bad.json");
    let text = std::fs::read_to_string(&bundle).unwrap();
    std::fs::write(&bad, text.replacen("deploy v42", "deploy v666", 1)).unwrap();
    let out = run(&["verify-evidence", bad.to_str().unwrap(), "--gateway", &fp]);
    assert!(!out.status.success());
    matches(&out, "verify-evidence", dir);

    let export = dir.join("export.jsonl");
    let out = countersign(&alice, &["audit", "export", "-o", export.to_str().unwrap()]);
    assert!(out.status.success(), "{}", said(&out));
    ok(
        &["verify-export", export.to_str().unwrap()],
        "verify-export",
    );
    let text = std::fs::read_to_string(&export).unwrap();
    let cut: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(&export, cut.join("\n")).unwrap();
    let out = run(&["verify-export", export.to_str().unwrap()]);
    assert!(!out.status.success());
    matches(&out, "verify-export", dir);

    let out = run(&["show", "no-such-request"]);
    assert!(!out.status.success());
    matches(&out, "error", dir);
}
