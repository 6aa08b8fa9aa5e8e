//! Pairing while the engine runs: the new gateway is connected without a restart.

use countersign_approver::EngineEvent;
use countersign_test_support::{Approver, TestGateway};

/// A running engine connects a gateway paired after it started: the pairing wakes its run
/// loop, so no host has to stop and start anything (the desktop app used to restart its loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_paired_while_the_engine_runs_is_connected_at_once() {
    let gw = TestGateway::start().await;
    let mut alice = Approver::new();
    alice.start();
    alice.pair(&gw.invite("alice@example.com")).await;
    alice
        .wait_for(|e| matches!(e, EngineEvent::GatewayPaired { .. }))
        .await;
    alice
        .wait_for(|e| matches!(e, EngineEvent::ConnectionUp { .. }))
        .await;
    let created = gw
        .requester()
        .create(&gw.new_request(&["alice@example.com"], "after pairing"))
        .await
        .unwrap();
    alice.wait_received(&created.request.body.id).await;
    alice.stop().await;
}
