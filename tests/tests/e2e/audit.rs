//! The local audit log against the checkpoint the gateway holds: a restored or wiped log is
//! detected as rolled back.

use countersign_approver::EngineEvent;
use countersign_test_support::{countersign, Approver, TestGateway};

/// A local audit log restored from an older copy, or wiped, still verifies on its own; against
/// the checkpoint the gateway holds for the device it is `rolled_back`. The engine reports it
/// (event and audit entry, once), and `countersign audit verify` exits non-zero naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_or_wiped_audit_log_is_detected_against_the_gateways_checkpoint() {
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let mut alice = Approver::new();
    alice.pair(&gw.invite("alice@example.com")).await;
    let receive = async |alice: &mut Approver, summary: &str| {
        requester
            .create(&gw.new_request(&["alice@example.com"], summary))
            .await
            .unwrap();
        alice.engine.sync().await.unwrap();
        alice.engine.audit_checkpoint(true).unwrap();
        let local = alice.engine.audit_verify().unwrap();
        let seq = local.entries;
        assert_eq!(local.checkpointed_through, Some(seq));
        let anchored = alice.engine.anchor_audit().await.unwrap();
        assert_eq!(anchored.len(), 1);
        assert_eq!(anchored[0].uploaded, Some(seq), "{anchored:?}");
        assert_eq!(anchored[0].damage, None);
        seq
    };

    let first = receive(&mut alice, "first deploy").await;
    let copy = alice.dir.path().join("old-copy.db");
    rusqlite::Connection::open(alice.data_dir().join("approver.db"))
        .unwrap()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    let second = receive(&mut alice, "second deploy").await;
    assert!(second > first);
    // The anchor is idempotent: nothing newer to upload, nothing wrong.
    let again = alice.engine.anchor_audit().await.unwrap();
    assert_eq!((again[0].held, again[0].uploaded), (Some(second), None));

    // Restored from the older copy: consistent in itself, behind the gateway.
    let mut alice = alice.reopen(|data| {
        for f in ["approver.db-wal", "approver.db-shm"] {
            let _ = std::fs::remove_file(data.join(f));
        }
        std::fs::copy(&copy, data.join("approver.db")).unwrap();
    });
    let local = alice.engine.audit_verify().unwrap();
    assert!(local.entries < second, "{local:?}");
    // Detected as rolled back; the detection is itself logged, so the log now forks from what
    // the gateway holds and stays detected on every later check.
    use countersign_protocol::audit::Damage;
    for expected in [Damage::RolledBack, Damage::Rewritten] {
        let found = alice.engine.anchor_audit().await.unwrap();
        assert_eq!(found[0].held, Some(second));
        assert_eq!(found[0].uploaded, None);
        assert_eq!(found[0].damage, Some(expected), "{found:?}");
    }
    let ev = alice
        .wait_for(|e| matches!(e, EngineEvent::AuditRolledBack { .. }))
        .await;
    let EngineEvent::AuditRolledBack { damage, .. } = ev else {
        unreachable!()
    };
    assert_eq!(damage, "rolled_back");
    let recorded = alice
        .engine
        .audit_entries()
        .unwrap()
        .into_iter()
        .filter(|(e, _)| e.kind == "audit.rolled_back")
        .count();
    assert_eq!(
        recorded, 1,
        "a detection is audited once per held checkpoint"
    );

    // Wiped: an empty log verifies, and is rolled back all the same.
    let alice = alice.reopen(|data| {
        let c = rusqlite::Connection::open(data.join("approver.db")).unwrap();
        c.execute_batch("DELETE FROM audit; DELETE FROM checkpoints;")
            .unwrap();
    });
    // The reopened engine's own shutdown checkpoint did not move the gateway's.
    let data = alice.data_dir();
    let Approver { engine, dir, .. } = alice;
    drop(engine);
    let local = countersign(&data, &["audit", "verify", "--local"]);
    assert!(local.status.success(), "{local:?}");
    let out = countersign(&data, &["--json", "audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("audit_chain_broken"), "{stdout}");
    assert!(stdout.contains("rolled_back"), "{stdout}");
    assert!(stdout.contains(&format!("entry {second}")), "{stdout}");
    drop(dir);
}
