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

/// A request addressed to more approvers than the gateway's `prechallenge_max` comes without a
/// challenge: the engine asks for one when its person approves, and the approval is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_asks_for_its_challenge_when_the_request_came_without_one() {
    let gw = TestGateway::start_with(|c| c.prechallenge_max = 1).await;
    let names = ["a@example.com", "b@example.com"];
    let mut approvers = Vec::new();
    for n in names {
        let mut a = Approver::new();
        a.pair(&gw.invite(n)).await;
        approvers.push(a);
    }
    let created = gw
        .requester()
        .create(&gw.new_request(&names, "two addressees, challenges on demand"))
        .await
        .unwrap();
    let id = created.request.body.id.clone();
    let a = &mut approvers[0];
    a.engine.sync().await.unwrap();
    assert!(a.engine.show(&id).unwrap().challenge.is_null());
    let out = a.engine.approve(&id, None, &mut a.auth).await.unwrap();
    assert!(
        matches!(&out.delivery, Delivery::Delivered { receipt } if receipt.body.request_state == RequestState::Approved),
        "{:?}",
        out.delivery
    );
}
