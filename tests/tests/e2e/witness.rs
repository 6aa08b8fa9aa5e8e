//! Approvers as witnesses of the gateway's log, with the real binaries. A paired approver
//! verifies each log checkpoint its gateway pushes against the one it witnessed before (with a
//! consistency proof for a larger tree), co-signs it, and the gateway's evidence bundles carry
//! the cosignature, which both verifiers check. Then whoever runs the gateway stops it,
//! rewrites a denial in its database into an approval, recomputes the chain and lets the
//! gateway rebuild and re-sign its log: consistent in itself, and the gateway's own
//! `audit verify` passes. The approver catches it at the next checkpoint: `countersign sync`
//! and `countersign gateways` say "this gateway's log changed history", the audit log records
//! it, and `countersign verify-evidence` and `countersign evidence` fail on a bundle cut from
//! the rewritten log.

use std::process::Command;

use countersign_test_support::rewrite::rewrite_gateway_log;
use countersign_test_support::{bin, countersign, GatewayProcess};

use crate::common::{conformance, fingerprint_of, json_lines, said};

#[test]
fn a_paired_approver_witnesses_the_log_and_catches_a_rewrite() {
    let tmp = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(&tmp.path().join("gateway"));
    let token = gw.admin(&["token", "create", "ci-bot"]);
    let link = gw.admin(&["invite", "alice@example.com"]);
    let fp = fingerprint_of(&link);
    let alice = tmp.path().join("alice");
    let out = countersign(&alice, &["--authenticator", "soft", "pair", &link]);
    assert!(out.status.success(), "{}", said(&out));

    let out = Command::new(bin("countersign-gateway"))
        .args(["request", "--gateway", gw.url.as_str(), "--token", &token])
        .args(["--action", "deploy", "--resource", "prod"])
        .args(["--summary", "deploy v42", "--approver", "alice@example.com"])
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let id = json_lines(&out)[0]["id"].as_str().unwrap().to_owned();
    let out = countersign(&alice, &["deny", &id, "--reason", "change freeze"]);
    assert!(out.status.success(), "{}", said(&out));

    // The gateway signs a checkpoint over the denial (its checkpointer does so every ten
    // seconds; `audit export` signs one now), and the approver witnesses it at its next sync.
    gw.admin(&[
        "audit",
        "export",
        "-o",
        tmp.path().join("log.jsonl").to_str().unwrap(),
    ]);
    let out = countersign(&alice, &["sync"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(!said(&out).contains("WARNING"), "{}", said(&out));
    let out = countersign(&alice, &["--json", "gateways"]);
    let listed = &json_lines(&out)[0];
    let witnessed = listed["log"]["newest"]["size"].as_u64().unwrap();
    assert!(witnessed >= 4, "{listed}");
    assert!(listed["log"]["history_changed"].is_null(), "{listed}");

    // The gateway's bundle carries alice's device as a witness, and both verifiers check its
    // cosignature.
    let bundle_file = tmp.path().join("before.json");
    gw.admin(&["evidence", &id, "-o", bundle_file.to_str().unwrap()]);
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle_file).unwrap()).unwrap();
    let device_id = listed["device_id"].as_str().unwrap();
    assert_eq!(
        bundle["log"]["witnesses"][0]["body"]["device_id"], device_id,
        "{}",
        bundle["log"]
    );
    let out = countersign(
        &alice,
        &[
            "verify-evidence",
            bundle_file.to_str().unwrap(),
            "--gateway",
            &fp,
        ],
    );
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("cosigned by device(s) "),
        "{}",
        said(&out)
    );
    assert!(
        said(&out).contains("this device witnessed the checkpoint"),
        "{}",
        said(&out)
    );
    let key = bundle["gateway_key"].as_str().unwrap();
    let out = conformance(&["evidence", bundle_file.to_str().unwrap(), &fp], key);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("1 witness(es)"), "{}", said(&out));

    // The operator rewrites the denial into an approval while the gateway is stopped, and
    // lets it rebuild its tree and sign the rewritten log when it starts.
    let gw = gw.restart_with(|dir| {
        let changed = rewrite_gateway_log(&dir.join("gateway.db"), |e| {
            (e.kind == "decision.accepted").then(|| {
                let mut e = e.clone();
                e.detail["verdict"] = "approve".into();
                e
            })
        });
        assert_eq!(changed, 1);
    });
    assert!(gw.admin(&["audit", "verify"]).contains("matches the tree"));
    gw.admin(&[
        "audit",
        "export",
        "-o",
        tmp.path().join("log2.jsonl").to_str().unwrap(),
    ]);

    // The approver refuses the new checkpoint and says so.
    let out = countersign(&alice, &["sync"]);
    assert!(
        said(&out).contains("WARNING: This gateway's log changed history"),
        "{}",
        said(&out)
    );
    let out = countersign(&alice, &["gateways"]);
    assert!(
        said(&out).contains("This gateway's log changed history"),
        "{}",
        said(&out)
    );
    let out = countersign(&alice, &["--json", "gateways"]);
    let listed = &json_lines(&out)[0];
    assert_eq!(
        listed["log"]["history_changed"]["damage"], "forked",
        "{listed}"
    );
    assert_eq!(listed["log"]["newest"]["size"].as_u64(), Some(witnessed));
    let out = countersign(&alice, &["audit", "export"]);
    assert!(out.status.success(), "{}", said(&out));
    let kinds: Vec<String> = json_lines(&out)
        .iter()
        .filter_map(|e| e["entry"]["kind"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "log.history_changed").count(),
        1,
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "log.witnessed"), "{kinds:?}");

    // A bundle cut from the rewritten log verifies on the gateway's signature alone, and
    // shows the forged approval; on the device that witnessed the log it fails.
    let forged = tmp.path().join("after.json");
    gw.admin(&["evidence", &id, "-o", forged.to_str().unwrap()]);
    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(&forged).unwrap()).unwrap();
    let entries = b["log"]["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["entry"]["detail"]["verdict"] == "approve"),
        "{entries:?}"
    );
    let out = countersign(
        &alice,
        &[
            "verify-evidence",
            forged.to_str().unwrap(),
            "--gateway",
            &fp,
        ],
    );
    assert!(!out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("changed history"), "{}", said(&out));
    let out = countersign(&alice, &["evidence", &id]);
    assert!(!out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("changed history"), "{}", said(&out));
}

/// The other way to hide what happened: the log cut back to fewer entries than a device
/// witnessed (its newest entries deleted, the rest left as it was). The device refuses the
/// smaller tree as a rollback.
#[test]
fn a_paired_approver_catches_a_log_cut_back() {
    let tmp = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(&tmp.path().join("gateway"));
    let token = gw.admin(&["token", "create", "ci-bot"]);
    let link = gw.admin(&["invite", "alice@example.com"]);
    let alice = tmp.path().join("alice");
    assert!(
        countersign(&alice, &["--authenticator", "soft", "pair", &link])
            .status
            .success()
    );
    for summary in ["deploy v1", "deploy v2", "deploy v3"] {
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
            .args(["--approver", "alice@example.com"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", said(&out));
    }
    gw.admin(&[
        "audit",
        "export",
        "-o",
        tmp.path().join("log.jsonl").to_str().unwrap(),
    ]);
    assert!(countersign(&alice, &["sync"]).status.success());
    let out = countersign(&alice, &["--json", "gateways"]);
    let witnessed = json_lines(&out)[0]["log"]["newest"]["size"]
        .as_u64()
        .unwrap();

    // The newest six entries deleted while the gateway is stopped; the tree rebuilt from the
    // rest and signed again when it starts.
    let gw = gw.restart_with(|dir| {
        let db = rusqlite::Connection::open(dir.join("gateway.db")).unwrap();
        db.execute("DELETE FROM audit WHERE seq > ?1", [witnessed as i64 - 6])
            .unwrap();
        db.execute_batch(
            "DELETE FROM log_hashes; DELETE FROM log_checkpoints; \
             DELETE FROM log_cosignatures; DELETE FROM events WHERE approver = '*';",
        )
        .unwrap();
    });
    gw.admin(&[
        "audit",
        "export",
        "-o",
        tmp.path().join("log2.jsonl").to_str().unwrap(),
    ]);
    let out = countersign(&alice, &["sync"]);
    assert!(
        said(&out).contains("its log was rolled back"),
        "{}",
        said(&out)
    );
    let out = countersign(&alice, &["--json", "gateways"]);
    let listed = &json_lines(&out)[0];
    assert_eq!(
        listed["log"]["history_changed"]["damage"], "rolled_back",
        "{listed}"
    );
    assert_eq!(listed["log"]["newest"]["size"].as_u64(), Some(witnessed));
}
