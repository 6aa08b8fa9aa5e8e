//! Several gateway replicas on one real PostgreSQL database (the test harness's server), in
//! this process, each on its own loopback port: what one replica commits reaches the devices
//! connected to another, in commit order; a device authorization is used once across them; a
//! quorum raced on two replicas is decided once; and event ids follow commit order even when
//! a later write would finish first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use countersign_protocol::api::paths;
use countersign_protocol::{DeviceAuth, RequestState, Verdict};
use countersign_test_support::postgres;
use countersign_test_support::{request_id, PairedGateway, TestGateway, Uv};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

async fn primary() -> TestGateway {
    let url = postgres::shared().database().unwrap();
    TestGateway::start_with(|c| c.database_url = Some(url)).await
}

#[tokio::test]
async fn a_request_created_through_one_replica_reaches_a_device_connected_to_another() {
    let r1 = primary().await;
    let r2 = r1.replica(|_| {}).await;
    assert_eq!(r1.gw().store.backend(), "postgres");
    assert_eq!(
        r1.gw().fingerprint,
        r2.gw().fingerprint,
        "one gateway identity"
    );
    let alice = r1.pair(ALICE).await;
    let mut on_r2 = alice.open_stream(&r2, 0).await;
    on_r2.until_ready().await;
    let mut on_r1 = alice.open_stream(&r1, 0).await;
    on_r1.until_ready().await;

    let first = r1
        .requester()
        .create(&r1.new_request(&[ALICE], "through replica 1"))
        .await
        .unwrap();
    let second = r2
        .requester()
        .create(&r1.new_request(&[ALICE], "through replica 2"))
        .await
        .unwrap();
    // Both streams see both requests, in the order they were committed, with the same ids.
    for stream in [&mut on_r1, &mut on_r2] {
        let (a, e1) = stream.next_event().await;
        let (b, e2) = stream.next_event().await;
        assert_eq!(request_id(&e1).as_deref(), Some(&*first.request.body.id));
        assert_eq!(request_id(&e2).as_deref(), Some(&*second.request.body.id));
        assert!(a < b, "ids in commit order: {a} then {b}");
    }
    // A device resuming on the other replica continues after its last event, with nothing
    // again.
    let head = on_r2.hello.as_ref().unwrap().body.head;
    let mut resumed = alice.open_stream(&r1, head + 2).await;
    assert!(resumed.until_ready().await.is_empty());
}

#[tokio::test]
async fn a_device_authorization_used_on_one_replica_is_refused_on_another() {
    let r1 = primary().await;
    let r2 = r1.replica(|_| {}).await;
    let alice = r1.pair(ALICE).await;
    let header = DeviceAuth::create(&alice.key, &alice.id, "GET", paths::STREAM, r1.now())
        .unwrap()
        .to_header();
    let open = |base: &url::Url| {
        reqwest::Client::new()
            .get(base.join(paths::STREAM).unwrap())
            .header("authorization", header.clone())
            .header("accept", "text/event-stream")
            .send()
    };
    let first = open(&r1.url).await.unwrap();
    assert_eq!(first.status(), 200);
    let again = open(&r2.url).await.unwrap();
    assert_eq!(again.status(), 401);
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "replayed_device_auth");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_approvals_of_a_two_of_two_request_at_once_on_two_replicas_decide_it_once() {
    let r1 = primary().await;
    let r2 = r1.replica(|_| {}).await;
    for round in 0..5 {
        let mut alice = r1.pair(ALICE).await;
        let mut bob = r1.pair(BOB).await;
        let mut new = r1.new_request(&[ALICE, BOB], &format!("2 of 2, round {round}"));
        new.min_approvals = 2;
        let created = r1.requester().create(&new).await.unwrap();
        let id = created.request.body.id.clone();
        let (ra, ca) = alice.request_event(&r1, &id).await;
        let (rb, cb) = bob.request_event(&r2, &id).await;
        let (a, b) = tokio::join!(
            alice.decide(&r1, &ra, Some(&ca), Verdict::Approve, None, Uv::Yes),
            bob.decide(&r2, &rb, Some(&cb), Verdict::Approve, None, Uv::Yes),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        a.verify(&r1.gateway_key()).unwrap();
        b.verify(&r1.gateway_key()).unwrap();
        let view = r2.requester().get(&id, Duration::ZERO).await.unwrap();
        assert_eq!(view.status.body.state, RequestState::Approved);
        assert_eq!(view.status.body.votes.len(), 2, "each vote once");
        // One receipt says approved: the vote that completed the quorum.
        let finals = [&a, &b]
            .iter()
            .filter(|r| r.body.request_state == RequestState::Approved)
            .count();
        assert_eq!(finals, 1, "the quorum was decided once: {a:?} {b:?}");
        // Two accepted decisions, one of which closed the request.
        let accepted: Vec<String> = r1
            .audit()
            .iter()
            .filter(|(e, _)| e.kind == "decision.accepted" && e.request_id.as_deref() == Some(&*id))
            .map(|(e, _)| e.detail["request_state"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(accepted.len(), 2);
        assert_eq!(
            accepted.iter().filter(|s| *s == "approved").count(),
            1,
            "{accepted:?}"
        );
    }
    assert!(countersign_protocol::audit::verify_chain(r1.audit()).is_ok());
}

/// A write that numbers an event and is slow to commit on one replica, and a quicker one
/// started meanwhile on another: the quicker waits for the write lock, so it is numbered after
/// and committed after, and every replica's hub publishes the two in that order. (Without the
/// lock a reader of `seq > last` could pass the slow one's id before it committed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_that_would_finish_first_is_numbered_and_published_after_the_one_before_it() {
    let r1 = primary().await;
    let r2 = r1.replica(|_| {}).await;
    let mut hub1 = r1.gw().hub.subscribe();
    let mut hub2 = r2.gw().hub.subscribe();
    let write = |gw: std::sync::Arc<countersign_gateway::gateway::Gateway>, hold: Duration| {
        tokio::task::spawn_blocking(move || {
            gw.store
                .write(|tx| -> Result<_, countersign_gateway::error::StoreError> {
                    let id = tx.next_event_id()?;
                    tx.insert_event(id, "nobody@example.com", "status", "{}", None)?;
                    std::thread::sleep(hold);
                    Ok((id, Instant::now()))
                })
                .unwrap()
        })
    };
    let slow = write(r1.gw().clone(), Duration::from_millis(400));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let quick = write(r2.gw().clone(), Duration::ZERO);
    let (slow_id, slow_done) = slow.await.unwrap();
    let (quick_id, quick_done) = quick.await.unwrap();
    assert!(slow_id < quick_id, "{slow_id} < {quick_id}");
    assert!(
        slow_done < quick_done,
        "the quick write waited for the slow one's commit"
    );
    // The writes publish through the store's own table, so they may reach the hub in one read.
    for hub in [&mut hub1, &mut hub2] {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let p = tokio::time::timeout(Duration::from_secs(5), hub.recv())
                .await
                .expect("published")
                .unwrap();
            if p.approver == "nobody@example.com" {
                seen.push(p.seq);
            }
        }
        assert_eq!(seen, vec![slow_id, quick_id]);
    }
}

/// PostgreSQL restarted: the writes refused meanwhile are errors, and the gateway works again
/// once it is back (its pool, its publisher and its leader's connection reconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_works_again_after_postgresql_restarts() {
    let mut pg = postgres::Postgres::start().unwrap();
    let url = pg.database().unwrap();
    let h = TestGateway::start_with(|c| c.database_url = Some(url)).await;
    let alice = h.pair(ALICE).await;
    let requester = h.requester();
    requester
        .create(&h.new_request(&[ALICE], "before"))
        .await
        .unwrap();
    pg.stop().unwrap();
    assert!(requester
        .create(&h.new_request(&[ALICE], "while down"))
        .await
        .is_err());
    pg.run().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        match tokio::time::timeout(
            Duration::from_secs(5),
            requester.create(&h.new_request(&[ALICE], "after")),
        )
        .await
        {
            Ok(Ok(c)) => break c,
            Ok(Err(e)) => assert!(Instant::now() < deadline, "still refused: {e}"),
            Err(_) => panic!("a write hung after the restart"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stream = alice.open_stream(&h, 0).await;
    let backlog = stream.until_ready().await;
    assert!(backlog
        .iter()
        .any(|(_, e)| request_id(e).as_deref() == Some(&*after.request.body.id)));
    let leader = Instant::now() + Duration::from_secs(10);
    while !h.gw().store.is_leader() {
        assert!(Instant::now() < leader, "no leader after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A request sent once to a group (more addressees than `prechallenge_max`) reaches the group's
/// members on every replica as the same single event.
#[tokio::test]
async fn a_request_to_a_group_reaches_its_members_on_every_replica_as_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("dba.rego");
    std::fs::write(
        &policy,
        "package countersign\n\nimport rego.v1\n\nresult := {\"allow\": true, \"rule\": \"dba\", \
         \"mode\": \"ask\", \"stages\": [{\"name\": \"dba\", \"group\": \"dba\", \"min\": 1}]}\n",
    )
    .unwrap();
    let url = postgres::shared().database().unwrap();
    let p = policy.clone();
    let r1 = TestGateway::start_with(move |c| {
        c.database_url = Some(url);
        c.policy_file = Some(p);
        c.prechallenge_max = 1;
    })
    .await;
    let r2 = r1.replica(|c| c.policy_file = Some(policy)).await;
    let alice = r1.pair(ALICE).await;
    let bob = r1.pair(BOB).await;
    for who in [ALICE, BOB] {
        countersign_gateway::directory_admin::set_groups(r1.gw(), who, &["dba".into()]).unwrap();
    }
    // The memberships are stated before the next request is routed: a first request states
    // them, so that the streams below already hold them.
    r1.requester()
        .create(&r1.new_request(&[], "states the memberships"))
        .await
        .unwrap();
    let mut on_r2 = alice.open_stream(&r2, 0).await;
    on_r2.until_ready().await;
    let mut on_r1 = bob.open_stream(&r1, 0).await;
    on_r1.until_ready().await;

    let created = r1
        .requester()
        .create(&r1.new_request(&[], "to the dba group"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for stream in [&mut on_r1, &mut on_r2] {
        let (id, e) = stream.next_event().await;
        assert_eq!(request_id(&e).as_deref(), Some(&*created.request.body.id));
        ids.push(id);
    }
    assert_eq!(
        ids[0], ids[1],
        "one event for both members, on both replicas"
    );
}
