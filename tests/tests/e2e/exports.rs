//! A complete approver export, with the real binaries: `countersign audit verify` anchors the
//! device's checkpoint at its gateway and keeps the gateway's signed acknowledgement, and
//! `countersign audit export` ends with it. `countersign verify-export` and the Python
//! verifier accept the export; cut back below the acknowledged checkpoint (the later entries
//! and checkpoints removed, as someone hiding what the device did since would), both refuse
//! it, and without the acknowledgement both refuse it when a gateway's is required.

use countersign_test_support::{countersign, GatewayProcess};

use crate::common::{conformance, fingerprint_of, said};

#[test]
fn an_export_cut_back_below_the_acknowledged_checkpoint_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(&tmp.path().join("gateway"));
    let link = gw.admin(&["invite", "alice@example.com"]);
    let gw_fp = fingerprint_of(&link);
    let alice = tmp.path().join("alice");
    let out = countersign(&alice, &["--authenticator", "soft", "pair", &link]);
    assert!(out.status.success(), "{}", said(&out));

    // An early export: its last checkpoint is the point the export is later cut back to.
    let early = countersign(&alice, &["audit", "export"]);
    assert!(early.status.success(), "{}", said(&early));
    let early = String::from_utf8(early.stdout).unwrap();
    let cut_at = early
        .lines()
        .filter(|l| l.starts_with("{\"entry\""))
        .count();

    // More happens; the device anchors its newest checkpoint and keeps the acknowledgement.
    for _ in 0..3 {
        assert!(countersign(&alice, &["sync"]).status.success());
    }
    let out = countersign(&alice, &["audit", "verify"]);
    assert!(out.status.success(), "{}", said(&out));
    let file = tmp.path().join("export.jsonl");
    let out = countersign(&alice, &["audit", "export", "-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", said(&out));
    let full = std::fs::read_to_string(&file).unwrap();
    let ack: serde_json::Value = serde_json::from_str(
        full.lines()
            .find(|l| l.starts_with("{\"ack\""))
            .expect("the export carries the gateway's acknowledgement"),
    )
    .unwrap();
    let acked = ack["ack"]["body"]["seq"].as_u64().unwrap() as usize;
    assert!(acked > cut_at, "acknowledged {acked}, cut at {cut_at}");
    let device_fp = ack["ack"]["body"]["signer"].as_str().unwrap().to_owned();

    let verify = |path: &std::path::Path, gateway: bool| {
        let mut args = vec![
            "verify-export",
            path.to_str().unwrap(),
            "--device",
            &device_fp,
        ];
        if gateway {
            args.extend(["--gateway", &gw_fp]);
        }
        let rust = countersign(&alice, &args);
        let mut py = vec!["approver-export", path.to_str().unwrap(), &device_fp];
        if gateway {
            py.push(&gw_fp);
        }
        let python = conformance(&py, "");
        (rust, python)
    };
    let (rust, python) = verify(&file, true);
    assert!(rust.status.success(), "{}", said(&rust));
    assert!(said(&rust).contains(&format!("acknowledged its checkpoint at entry {acked}")));
    assert!(python.status.success(), "{}", said(&python));

    // Cut back to the early export's entries and checkpoints, the acknowledgement kept.
    let lines: Vec<&str> = full.lines().collect();
    let mut cut: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("{\"entry\""))
        .take(cut_at)
        .copied()
        .collect();
    for l in lines.iter().filter(|l| l.starts_with("{\"checkpoint\"")) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["checkpoint"]["body"]["seq"].as_u64().unwrap() as usize <= cut_at {
            cut.push(l);
        }
    }
    let with_ack: Vec<&str> = cut
        .iter()
        .copied()
        .chain(lines.iter().filter(|l| l.starts_with("{\"ack\"")).copied())
        .collect();
    let cut_file = tmp.path().join("cut.jsonl");
    std::fs::write(&cut_file, with_ack.join("\n") + "\n").unwrap();
    let (rust, python) = verify(&cut_file, false);
    assert!(!rust.status.success(), "{}", said(&rust));
    assert!(said(&rust).contains("cut back"), "{}", said(&rust));
    assert_eq!(python.status.code(), Some(1), "{}", said(&python));
    assert!(said(&python).contains("cut back"), "{}", said(&python));

    // The acknowledgement removed too: the cut-back export verifies on its own, but not
    // when the gateway's acknowledgement is required.
    std::fs::write(&cut_file, cut.join("\n") + "\n").unwrap();
    let (rust, python) = verify(&cut_file, false);
    assert!(rust.status.success(), "{}", said(&rust));
    assert!(python.status.success(), "{}", said(&python));
    let (rust, python) = verify(&cut_file, true);
    assert!(!rust.status.success(), "{}", said(&rust));
    assert!(
        said(&rust).contains("no acknowledgement"),
        "{}",
        said(&rust)
    );
    assert_eq!(python.status.code(), Some(1), "{}", said(&python));
}
