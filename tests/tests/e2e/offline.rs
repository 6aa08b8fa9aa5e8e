//! Disconnected and down: requests created while the engine is away arrive once, a decision made
//! while the gateway is down is delivered once when it returns, and one whose request expired
//! meanwhile is reported as expired.

use std::time::Duration;

use countersign_approver::{Delivery, DeliveryState, EngineEvent, ListFilter};
use countersign_protocol::RequestState;
use countersign_test_support::{reopen_gateway, Approver, TestGateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_created_while_disconnected_arrive_once_after_reconnect() {
    let gw = TestGateway::start().await;
    let mut alice = Approver::new();
    alice.pair(&gw.invite("alice@example.com")).await;
    alice.start();
    let requester = gw.requester();
    let first = requester
        .create(&gw.new_request(&["alice@example.com"], "before"))
        .await
        .unwrap();
    alice.wait_received(&first.request.body.id).await;
    alice.stop().await;

    let mut ids = Vec::new();
    for i in 0..3 {
        let c = requester
            .create(&gw.new_request(&["alice@example.com"], &format!("while away {i}")))
            .await
            .unwrap();
        ids.push(c.request.body.id);
    }
    alice.start();
    for id in &ids {
        alice.wait_received(id).await;
    }
    // Reconnect once more: nothing is delivered again.
    alice.stop().await;
    alice.start();
    alice
        .wait_for(|e| matches!(e, EngineEvent::ConnectionUp { .. }))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.stop().await;

    let inbox = alice.engine.list(ListFilter::All).unwrap();
    assert_eq!(inbox.len(), 4);
    let entries = alice.engine.audit_entries().unwrap();
    for id in ids.iter().chain(std::iter::once(&first.request.body.id)) {
        let received = entries
            .iter()
            .filter(|(e, _)| e.kind == "request.received" && e.request_id.as_deref() == Some(id))
            .count();
        assert_eq!(received, 1, "{id} received {received} times");
    }
    alice.engine.audit_verify().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_made_while_the_gateway_is_down_is_delivered_once_when_it_returns() {
    let gw = TestGateway::start().await;
    let addr = gw.running.addr;
    let data_dir = gw.gw().config.data_dir.clone();
    let token = gw.token.clone();
    let mut alice = Approver::new();
    alice.pair(&gw.invite("alice@example.com")).await;
    let requester = gw.requester();
    let created = requester
        .create(&gw.new_request(&["alice@example.com"], "offline approval"))
        .await
        .unwrap();
    let id = created.request.body.id.clone();
    alice.engine.sync().await.unwrap();
    assert_eq!(alice.engine.show(&id).unwrap().state, RequestState::Pending);

    // The gateway goes away; the approver still decides from its store.
    let TestGateway { running, dir, .. } = gw;
    running.shutdown().await;
    let outcome = alice
        .engine
        .approve(&id, None, &mut alice.auth)
        .await
        .unwrap();
    assert!(
        matches!(outcome.delivery, Delivery::Queued { .. }),
        "{:?}",
        outcome.delivery
    );

    // It comes back on the same address and data; the outbox delivers exactly once.
    let running = reopen_gateway(&data_dir, addr, |_| {}, |_| {}).await;
    let report = alice.engine.flush_due(true).await.unwrap();
    assert_eq!(report.delivered, 1, "{report:?}");
    let again = alice.engine.flush_due(true).await.unwrap();
    assert_eq!(again.delivered, 0);
    let client = countersign_gateway::client::RequesterClient::new(running.url(), token).unwrap();
    let view = client.wait_final(&id).await.unwrap();
    assert_eq!(view.status.body.state, RequestState::Approved);
    let accepted = running
        .gateway
        .store
        .read(countersign_gateway::store::audit_entries)
        .unwrap()
        .into_iter()
        .filter(|(e, _)| e.kind == "decision.accepted")
        .count();
    assert_eq!(accepted, 1);
    running.shutdown().await;
    dir.close().unwrap();
}

/// A decision queued while the gateway was down, for a request that expired meanwhile, is
/// refused as expired: the user sees why (the outbox row and the refusal event), and both audit
/// logs record it. It is never counted as delivered.
#[tokio::test]
async fn a_queued_decision_whose_request_expired_meanwhile_is_reported_as_expired() {
    let gw = TestGateway::start().await;
    let addr = gw.running.addr;
    let data_dir = gw.gw().config.data_dir.clone();
    let mut alice = Approver::new();
    alice.pair(&gw.invite("alice@example.com")).await;
    let created = gw
        .requester()
        .create(&gw.new_request(&["alice@example.com"], "expires while queued"))
        .await
        .unwrap();
    let id = created.request.body.id.clone();
    alice.engine.sync().await.unwrap();

    let TestGateway { running, dir, .. } = gw;
    running.shutdown().await;
    let outcome = alice
        .engine
        .approve(&id, None, &mut alice.auth)
        .await
        .unwrap();
    assert!(matches!(outcome.delivery, Delivery::Queued { .. }));

    // The gateway returns ten minutes later: past the request's 300 s time to live.
    let running = reopen_gateway(&data_dir, addr, |_| {}, |g| g.clock.shift(600)).await;
    let mut events = alice.engine.subscribe();
    let report = alice.engine.flush_due(true).await.unwrap();
    assert_eq!((report.delivered, report.refused), (0, 1), "{report:?}");
    let row = alice.engine.outbox().unwrap().remove(0);
    assert_eq!(row.state, DeliveryState::Refused);
    assert!(
        row.last_error
            .as_deref()
            .unwrap_or("")
            .starts_with("request_expired"),
        "{row:?}"
    );
    let refused = loop {
        match events.try_recv() {
            Ok(countersign_approver::EngineEvent::DecisionRefused { code, .. }) => break code,
            Ok(_) => continue,
            Err(e) => panic!("no refusal event: {e:?}"),
        }
    };
    assert_eq!(refused, "request_expired");
    let audited = alice
        .engine
        .audit_entries()
        .unwrap()
        .into_iter()
        .any(|(e, _)| e.kind == "decision.refused" && e.detail["code"] == "request_expired");
    assert!(audited, "the refusal is not in the approver's audit log");
    let gateway_audit = running
        .gateway
        .store
        .read(countersign_gateway::store::audit_entries)
        .unwrap();
    assert!(gateway_audit
        .iter()
        .any(|(e, _)| e.kind == "decision.rejected" && e.detail["code"] == "request_expired"));
    assert!(!gateway_audit
        .iter()
        .any(|(e, _)| e.kind == "decision.accepted"));
    running.shutdown().await;
    dir.close().unwrap();
}
