//! Storage faults on a real file system: a full disk and a read-only data directory give clear
//! errors and lose or change nothing.

use countersign_approver::ListFilter;
use countersign_protocol::RequestState;
use countersign_test_support::{
    countersign, error_code, files_of, ReadOnly, SmallDisk, TestGateway,
};

/// Pairs a fresh engine in `data` with `gw` and closes it.
async fn pair_in(data: &std::path::Path, gw: &TestGateway) {
    let engine = countersign_approver::Engine::open(data).unwrap();
    let mut auth =
        countersign_approver::SoftAuthenticator::open(&data.join("soft-authenticator.cbor"))
            .unwrap();
    engine
        .pair(&gw.invite("alice@example.com"), "storage test", &mut auth)
        .await
        .unwrap();
}

/// The data directory on a small tmpfs that the test fills for real (ENOSPC). Streaming requests
/// in and deciding then fail with `storage_full`; nothing already stored is lost and nothing is
/// half-written. Once space returns, every request arrives exactly once, the undecided request
/// is decided normally, and the chain verifies. Needs root to mount the tmpfs (CI runs as root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gives_a_clear_error_and_loses_nothing() {
    let disk = match SmallDisk::mount(16 << 20) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED a_full_disk_gives_a_clear_error_and_loses_nothing: {why}");
            return;
        }
    };
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let data = disk.path.join("approver");
    pair_in(&data, &gw).await;
    let mut ids = Vec::new();
    for i in 0..60 {
        let c = requester
            .create(&gw.new_request(&["alice@example.com"], &format!("disk {i}")))
            .await
            .unwrap();
        ids.push(c.request.body.id.clone());
    }
    // The first requests arrive while there is room.
    let first = countersign(&data, &["--json", "sync"]);
    assert!(first.status.success(), "{first:?}");
    for i in 60..120 {
        let c = requester
            .create(&gw.new_request(&["alice@example.com"], &format!("disk {i}")))
            .await
            .unwrap();
        ids.push(c.request.body.id.clone());
    }

    let filler = disk.fill_leaving(96 << 10);
    let full = countersign(&data, &["--json", "sync"]);
    assert_eq!(full.status.code(), Some(1), "{full:?}");
    assert_eq!(error_code(&full), "storage_full", "{full:?}");
    let decide = countersign(
        &data,
        &[
            "--json",
            "--offline",
            "--authenticator",
            "soft",
            "approve",
            &ids[0],
        ],
    );
    assert_eq!(decide.status.code(), Some(1), "{decide:?}");
    assert_eq!(error_code(&decide), "storage_full", "{decide:?}");
    let message = String::from_utf8_lossy(&decide.stdout);
    assert!(
        message.contains("disk holding the data directory is full"),
        "{message}"
    );
    println!(
        "full disk, sync: {}",
        String::from_utf8_lossy(&full.stdout).trim()
    );
    println!("full disk, approve: {}", message.trim());

    std::fs::remove_file(filler).unwrap();
    let again = countersign(&data, &["--json", "sync"]);
    assert!(again.status.success(), "{again:?}");
    let engine = countersign_approver::Engine::open(&data).unwrap();
    let inbox = engine.list(ListFilter::All).unwrap();
    let mut stored: Vec<String> = inbox.iter().map(|i| i.id().to_owned()).collect();
    stored.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(stored, want, "every request exactly once");
    // The failed approval left nothing behind: no decision, no outbox row, nothing at the gateway.
    assert!(engine.show(&ids[0]).unwrap().decision.is_none());
    assert!(engine.outbox().unwrap().is_empty());
    let entries = engine.audit_entries().unwrap();
    let received = entries
        .iter()
        .filter(|(e, _)| e.kind == "request.received")
        .count();
    assert_eq!(received, ids.len());
    assert!(entries.iter().all(|(e, _)| e.kind != "decision.made"));
    drop(engine);
    let decide = countersign(
        &data,
        &["--json", "--authenticator", "soft", "approve", &ids[0]],
    );
    assert!(decide.status.success(), "{decide:?}");
    let view = requester.wait_final(&ids[0]).await.unwrap();
    assert_eq!(view.status.body.state, RequestState::Approved);
    let verify = countersign(&data, &["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
}

/// A read-only data directory (a read-only bind mount as root, permission bits otherwise):
/// reading, syncing and deciding each fail with `storage_read_only`, and not one byte of the
/// directory changes. Made writable again, everything works and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_data_directory_gives_a_clear_error_and_changes_nothing() {
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("approver");
    pair_in(&data, &gw).await;
    let created = requester
        .create(&gw.new_request(&["alice@example.com"], "read-only"))
        .await
        .unwrap();
    let id = created.request.body.id.clone();
    assert!(countersign(&data, &["sync"]).status.success());
    let before = files_of(&data);

    let ro = match ReadOnly::apply(&data) {
        Ok(ro) => ro,
        Err(why) => {
            eprintln!(
                "SKIPPED a_read_only_data_directory_gives_a_clear_error_and_changes_nothing: {why}"
            );
            return;
        }
    };
    for args in [
        vec!["--json", "--offline", "list"],
        vec!["--json", "sync"],
        vec!["--json", "--authenticator", "soft", "approve", &id],
    ] {
        let out = countersign(&data, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert_eq!(error_code(&out), "storage_read_only", "{args:?}: {out:?}");
        let message = String::from_utf8_lossy(&out.stdout);
        assert!(message.contains("cannot be written"), "{message}");
        assert!(message.contains(data.to_str().unwrap()), "{message}");
        println!("read-only, {}: {}", args[args.len() - 1], message.trim());
    }
    drop(ro);
    assert_eq!(
        files_of(&data),
        before,
        "a refused run changed the data directory"
    );

    let decide = countersign(&data, &["--authenticator", "soft", "approve", &id]);
    assert!(decide.status.success(), "{decide:?}");
    assert!(countersign(&data, &["audit", "verify"]).status.success());
}
