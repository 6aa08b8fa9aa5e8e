//! A gateway whose log changed history, seen from the app. The app witnesses the gateway's
//! log checkpoints as they are pushed (its cosignature reaches the gateway); then the gateway's
//! database is rewritten consistently and the gateway signs the rewritten log. The app refuses
//! that checkpoint and says so: a notification in the window, and the gateway marked in
//! Settings.

use countersign_gateway::tlog;
use countersign_test_support::rewrite::rewrite_gateway_log;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the built desktop app, tauri-driver, Xvfb and a session bus: make desktop-e2e"]
async fn the_app_says_when_a_gateway_log_changed_history() {
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let app_dir = tempfile::tempdir().unwrap();
    let app = Desktop::start(app_dir.path()).await;
    app.pair(&gw.invite(ALICE).to_string(), None).await;
    create(&requester, request("restart", &[ALICE], Risk::Low)).await;
    app.wait_text("Restart the API after the config change")
        .await;

    // The gateway signs a checkpoint; the app witnesses it and its cosignature arrives.
    let (size, _) = tlog::checkpoint(gw.gw()).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while gw
        .gw()
        .store
        .read(|tx| tx.cosignatures_of(size))
        .unwrap()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the app never co-signed the checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Whoever runs the gateway rewrites where the request points, and re-signs the log.
    let changed = rewrite_gateway_log(&gw.gw().config.data_dir.join("gateway.db"), |e| {
        (e.kind == "request.created").then(|| {
            let mut e = e.clone();
            e.detail["resource"] = "staging/api".into();
            e
        })
    });
    assert_eq!(changed, 1);
    gw.gw().store.write(|tx| tx.log_backfill()).unwrap();
    tlog::checkpoint(gw.gw()).unwrap();
    app.wait_text("This gateway's log changed history").await;
    app.screenshot("22-log-changed-history").await;
    app.client
        .execute("window.location.hash = '#/settings';", vec![])
        .await
        .unwrap();
    app.wait_text("its log was forked").await;
    app.screenshot("23-settings-log-changed-history").await;
}
