//! A request to more approvers than `prechallenge_max` is sent once to its audience, the groups
//! of its stages, rather than once per member (docs/protocol.md 3.12): one signed envelope, one
//! event id, one stored row, whoever receives it, live from the hub or from the backlog.

use countersign_gateway::directory_admin as admin;
use countersign_protocol::{Audience, Event, Signed, StreamEvent, Verdict};
use countersign_test_support::{request_id, Device, EventStream, PairedGateway, Uv};
use std::time::Duration;

use crate::requests::Requests;
use crate::stages::{org_with, Org};

/// The envelopes a device's stream holds about request `id`, read from its backlog (the
/// events after `last`) up to the `ready` marker.
async fn envelopes(o: &Org, d: &Device, id: &str) -> Vec<Signed<Event>> {
    let mut s = d.open_stream(&o.h, 0).await;
    let mut out = Vec::new();
    loop {
        let (event, data) = s.next_message(Duration::from_secs(10)).await.unwrap();
        match event.as_str() {
            "ready" => return out,
            "hello" => {}
            _ => {
                let e: Signed<Event> = serde_json::from_str(&data).unwrap();
                e.verify(&o.h.gateway_key()).unwrap();
                let about = match &e.body.payload {
                    StreamEvent::Status { status } => Some(status.body.request_id.clone()),
                    other => request_id(other),
                };
                if about.as_deref() == Some(id) {
                    out.push(e);
                }
            }
        }
    }
}

/// The next live event that is not a membership statement (those come when the directory
/// changed, before the next request is routed).
async fn next_live(s: &mut EventStream) -> (u64, StreamEvent) {
    loop {
        let (id, e) = s.next_event().await;
        if !matches!(e, StreamEvent::Membership { .. }) {
            return (id, e);
        }
    }
}

fn kinds(envelopes: &[Signed<Event>]) -> Vec<&'static str> {
    envelopes.iter().map(|e| e.body.payload.kind()).collect()
}

/// Three addressees above a maximum of two: the request and each status are one envelope to
/// the groups `dba` and `managers`, the same id and bytes for Ann (live), Bob and Carl (from
/// the backlog). Dave, in no group, and Rita, whose request it is, get nothing of it. When Dave
/// joins `managers` he is reached through his new membership, and may decide.
#[tokio::test]
async fn a_request_to_many_is_one_event_to_its_groups() {
    let mut o = org_with(|c| c.prechallenge_max = 2).await;
    o.ann.drain(&o.h).await;
    let mut live = o.ann.open_stream(&o.h, o.ann.last_event).await;
    live.until_ready().await;

    let id = o.routed_by_policy().await;
    let (seq, event) = next_live(&mut live).await;
    assert_eq!(request_id(&event).as_deref(), Some(id.as_str()));

    let bob = envelopes(&o, &o.bob, &id).await;
    let carl = envelopes(&o, &o.carl, &id).await;
    assert_eq!(kinds(&bob), ["request"]);
    assert_eq!(bob[0].body.id, seq, "one event, the same id for everyone");
    assert_eq!(
        bob[0].body.audience,
        Audience {
            approvers: vec![],
            groups: vec!["dba".into(), "managers".into()],
            all: false,
        }
    );
    assert_eq!(
        serde_json::to_string(&bob[0]).unwrap(),
        serde_json::to_string(&carl[0]).unwrap()
    );
    assert!(
        envelopes(&o, &o.dave, &id).await.is_empty(),
        "Dave is in no group"
    );
    assert!(
        envelopes(&o, &o.rita, &id).await.is_empty(),
        "Rita asked: her own person's devices are not addressed"
    );

    // Bob approves (his challenge on demand): one status event, live to Ann.
    let (req, _) = o.bob.request_event(&o.h, &id).await;
    let ch = o.bob.ask_challenge(&o.h, &req).await.unwrap();
    o.bob
        .decide(&o.h, &req, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap();
    let (status_seq, status) = next_live(&mut live).await;
    assert!(matches!(status, StreamEvent::Status { .. }), "{status:?}");
    assert_eq!(
        kinds(&envelopes(&o, &o.carl, &id).await),
        ["request", "status"]
    );
    assert_eq!(
        envelopes(&o, &o.carl, &id).await[1].body.id,
        status_seq,
        "the status too is one event"
    );

    // Dave joins managers: his membership says so before anything later, and the request's
    // events now reach him, as they would a member from the start.
    admin::set_groups(o.h.gw(), "dave@example.com", &["managers".into()]).unwrap();
    // The gateway states memberships before it routes the next request.
    o.h.create_with(|n| {
        n.approvers.clear();
        n.summary = "after Dave joined".into();
    })
    .await;
    next_live(&mut live).await;
    let (req, _) = o.dave.request_event(&o.h, &id).await;
    assert_eq!(o.dave.membership.clone().unwrap().body.groups, ["managers"]);
    let ch = o.dave.ask_challenge(&o.h, &req).await.unwrap();
    let r = o
        .dave
        .decide(&o.h, &req, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap();
    assert_eq!(
        r.body.request_state,
        countersign_protocol::RequestState::Approved
    );
    // Ann's live stream has the final status, once.
    let (_, last) = next_live(&mut live).await;
    assert!(matches!(last, StreamEvent::Status { .. }), "{last:?}");
}

/// Stored once: the gateway's `events` table holds one row for the request, however many
/// members its groups have.
#[tokio::test]
async fn a_request_to_many_is_stored_once() {
    let o = org_with(|c| c.prechallenge_max = 2).await;
    let id = o.routed_by_policy().await;
    let db = countersign_test_support::rewrite::RawDb::of(&o.h.gw().config);
    let rows = db.count(&format!(
        "SELECT count(*) FROM events WHERE kind = 'request' AND data LIKE '%{id}%'"
    ));
    assert_eq!(rows, 1);
}
