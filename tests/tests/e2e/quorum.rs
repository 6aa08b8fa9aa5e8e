//! Quorum across engines: two of three approve, one deny closes the request, and the approver
//! left over is told it is settled.

use std::time::Duration;

use countersign_approver::{Delivery, DeliveryState, EngineEvent};
use countersign_protocol::RequestState;
use countersign_test_support::{Approver, TestGateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_two_of_three_and_one_deny_decides_at_once() {
    let gw = TestGateway::start().await;
    let names = ["a@example.com", "b@example.com", "c@example.com"];
    let mut approvers = Vec::new();
    for n in names {
        let mut a = Approver::new();
        a.pair(&gw.invite(n)).await;
        a.start();
        approvers.push(a);
    }
    let requester = gw.requester();
    let mut new = gw.new_request(&names, "two of three");
    new.min_approvals = 2;
    let created = requester.create(&new).await.unwrap();
    let id = created.request.body.id.clone();
    for a in approvers.iter_mut() {
        a.wait_received(&id).await;
    }
    let [a, b, c] = &mut approvers[..] else {
        unreachable!()
    };
    let first = a.engine.approve(&id, None, &mut a.auth).await.unwrap();
    assert!(
        matches!(
            first.delivery,
            Delivery::Delivered { .. }
                | Delivery::Settled {
                    state: DeliveryState::Delivered
                }
        ),
        "{:?}",
        first.delivery
    );
    assert_eq!(
        requester
            .get(&id, Duration::ZERO)
            .await
            .unwrap()
            .status
            .body
            .state,
        RequestState::Pending
    );
    b.engine.approve(&id, None, &mut b.auth).await.unwrap();
    let view = requester.wait_final(&id).await.unwrap();
    assert_eq!(view.status.body.state, RequestState::Approved);
    assert_eq!(view.status.body.approvals, 2);
    // The third approver is told it is settled.
    c.wait_for(|e| {
        matches!(e, EngineEvent::StatusChanged { request_id, state: RequestState::Approved, .. } if *request_id == id)
    })
    .await;

    let mut new = gw.new_request(&names, "one deny closes it");
    new.min_approvals = 2;
    let created = requester.create(&new).await.unwrap();
    let id = created.request.body.id.clone();
    a.wait_received(&id).await;
    c.wait_received(&id).await;
    a.engine.approve(&id, None, &mut a.auth).await.unwrap();
    c.engine.deny(&id, "not during the freeze").await.unwrap();
    let view = requester.wait_final(&id).await.unwrap();
    assert_eq!(view.status.body.state, RequestState::Denied);
    for a in approvers.iter_mut() {
        a.stop().await;
    }
}
