//! What an approval grants, through the real HTTP API: break-glass approved at once with a
//! reason and only when the requester asked, its eligible approvers told after the fact (the
//! requester's own person and people outside its stages not), acknowledged once for everyone;
//! and the grant window of an approval, revocable before it ends and never after, by the
//! administrator or by an approver who approved it, with a challenge issued on demand.

use countersign_protocol::{Mode, RequestState, StreamEvent, Verdict};
use countersign_test_support::Uv;

use crate::refusals::Refusals;
use crate::requests::Requests;
use crate::stages::{approve, org, ANN, BOB};

fn incident(n: &mut countersign_protocol::api::NewRequest) {
    n.approvers.clear();
    n.action = "incident".into();
    n.break_glass = true;
    n.reason = "settlement stuck, INC-2291".into();
}

#[tokio::test]
async fn break_glass_is_approved_at_once_told_after_the_fact_and_acknowledged_once() {
    let mut o = org().await;
    let created = o.h.create_with(incident).await;
    let req = created.request.clone();
    let id = req.body.id.clone();
    assert_eq!(req.body.mode, Mode::BreakGlass);
    let status = o.h.view(&id).await.status.body;
    assert_eq!((status.state, status.seq), (RequestState::Approved, 1));
    let grant = status.grant.expect("an approved request has a grant");
    assert_eq!(grant.acknowledged_by, None);
    let audited: Vec<_> =
        o.h.audit()
            .into_iter()
            .filter(|(e, _)| e.kind == "request.break_glass")
            .map(|(e, _)| e.detail)
            .collect();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["reason"], "settlement stuck, INC-2291");
    assert_eq!(audited[0]["approvers"], serde_json::json!([ANN, BOB]));

    // The DBAs are told: the request without a challenge, then its approved status.
    let events = o.ann.drain(&o.h).await;
    assert!(matches!(&events[0].1, StreamEvent::Request { challenge, .. } if challenge.is_null()));
    assert!(
        matches!(&events[1].1, StreamEvent::Status { status } if status.body.state == RequestState::Approved)
    );
    // Carl is no DBA; Rita, a DBA, asked for it herself.
    assert!(o.carl.drain(&o.h).await.is_empty());
    assert!(o.rita.drain(&o.h).await.is_empty());
    // Nothing is left to decide.
    let err = o
        .bob
        .decide(&o.h, &req, None, Verdict::Deny, None, Uv::Yes)
        .await
        .unwrap_err();
    o.h.expect_rejection(&err, "request_closed");

    // Carl was not told, so he has nothing to acknowledge.
    let err = o
        .carl
        .acknowledge(&o.h, &req, "ack-carl")
        .await
        .unwrap_err();
    assert_eq!(
        (err.status, err.code()),
        (404, Some("unknown_ack_request")),
        "{err:?}"
    );
    // Ann acknowledges: one status change, pushed to Bob too.
    let after = o.ann.acknowledge(&o.h, &req, "ack-ann").await.unwrap().body;
    assert_eq!(after.seq, 2);
    let g = after.grant.clone().unwrap();
    assert_eq!(g.acknowledged_by.as_deref(), Some(ANN));
    assert_eq!(after.votes, status.votes, "only the grant changes");
    let pushed = o.bob.status_event(&o.h, &id).await.body;
    assert_eq!(pushed, after);
    // Bob's acknowledgement, and Ann's again, change nothing.
    assert_eq!(
        o.bob.acknowledge(&o.h, &req, "ack-bob").await.unwrap().body,
        after
    );
    assert_eq!(
        o.ann.acknowledge(&o.h, &req, "ack-ann").await.unwrap().body,
        after
    );
    let acks: Vec<_> =
        o.h.audit()
            .into_iter()
            .filter(|(e, _)| e.kind == "request.acknowledged")
            .map(|(e, _)| (e.detail["approver"].clone(), e.detail["first"].clone()))
            .collect();
    assert_eq!(
        acks,
        vec![(ANN.into(), true.into()), (BOB.into(), false.into())]
    );
}

#[tokio::test]
async fn break_glass_needs_a_reason_and_a_requester_who_asked() {
    let o = org().await;
    let err =
        o.h.try_create(|n| {
            incident(n);
            n.reason = "  ".into();
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.status, err.code()),
        (400, Some("reason_required")),
        "{err:?}"
    );
    // The policy breaks glass for the action, but the requester did not ask to.
    let err =
        o.h.try_create(|n| {
            incident(n);
            n.break_glass = false;
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("policy_refused"), "{err:?}");
    assert!(err.text.contains("did not ask"), "{}", err.text);
    // Asking to break glass where the policy does not: the policy's stages ask as usual.
    let created =
        o.h.create_with(|n| {
            n.approvers.clear();
            n.break_glass = true;
        })
        .await;
    assert_eq!(created.request.body.mode, Mode::Ask);
    let refused =
        o.h.audit()
            .into_iter()
            .filter(|(e, _)| e.kind == "request.policy_refused")
            .count();
    assert_eq!(refused, 2);
}

#[tokio::test]
async fn an_approval_is_revocable_within_its_grant_window_only() {
    use countersign_gateway::lifecycle::revoke;
    let mut o = org().await;
    let granted = |summary: &'static str| {
        move |n: &mut countersign_protocol::api::NewRequest| {
            n.approvers.clear();
            n.action = "granted".into();
            n.summary = summary.into();
        }
    };
    let id = o.h.create_with(granted("first")).await.request.body.id;
    // Still pending: there is nothing to revoke.
    let err = revoke(o.h.gw(), &id, "admin", "").unwrap_err();
    assert_eq!(err.code.as_str(), "not_revocable");
    approve(&mut o.bob, &o.h, &id).await;
    let r = approve(&mut o.carl, &o.h, &id).await;
    assert_eq!(r.request_state, RequestState::Approved);
    let approved = o.h.view(&id).await.status.body;
    let grant = approved.grant.clone().unwrap();
    assert_eq!(grant.expires_at, Some(r.accepted_at + 300));
    assert!(grant.is_live(r.accepted_at));

    let revoked = revoke(o.h.gw(), &id, "admin", "wrong ticket").unwrap().body;
    assert_eq!(revoked.seq, approved.seq + 1);
    assert_eq!(revoked.state, RequestState::Approved, "the state is final");
    let g = revoked.grant.clone().unwrap();
    assert_eq!(g.revoked_by.as_deref(), Some("admin"));
    assert!(!g.is_live(r.accepted_at));
    // The requester (and any integration holding its token) sees it, and so do the approvers.
    assert_eq!(o.h.view(&id).await.status.body, revoked);
    assert_eq!(o.bob.status_event(&o.h, &id).await.body, revoked);
    let err = revoke(o.h.gw(), &id, "admin", "").unwrap_err();
    assert_eq!(err.code.as_str(), "not_revocable");
    assert!(err.message.contains("revoked already"), "{}", err.message);
    assert!(o
        .h
        .audit()
        .iter()
        .any(|(e, _)| e.kind == "request.revoked" && e.detail["reason"] == "wrong ticket"));

    // After the window the approval has lapsed: nothing to revoke. The clock is shifted.
    let id = o.h.create_with(granted("second")).await.request.body.id;
    approve(&mut o.bob, &o.h, &id).await;
    approve(&mut o.carl, &o.h, &id).await;
    o.h.running.gateway.clock.shift(301);
    let err = revoke(o.h.gw(), &id, "admin", "").unwrap_err();
    assert!(err.message.contains("window has passed"), "{}", err.message);
}

#[tokio::test]
async fn an_approver_revokes_their_own_approval_with_a_challenge_issued_on_demand() {
    let mut o = org().await;
    let id =
        o.h.create_with(|n| {
            n.approvers.clear();
            n.action = "granted".into();
        })
        .await
        .request
        .body
        .id;
    let (req, _) = o.bob.request_event(&o.h, &id).await;
    // Pending: a fresh challenge replaces the pre-issued one, which no longer verifies.
    let (_, pre_issued) = o.carl.request_event(&o.h, &id).await;
    let fresh = o.carl.ask_challenge(&o.h, &req).await.unwrap();
    let err = o
        .carl
        .decide(
            &o.h,
            &req,
            Some(&pre_issued),
            Verdict::Approve,
            None,
            Uv::Yes,
        )
        .await
        .unwrap_err();
    o.h.expect_rejection(&err, "assertion_not_for_this_request");
    approve(&mut o.bob, &o.h, &id).await;
    o.carl
        .decide(&o.h, &req, Some(&fresh), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap();
    assert_eq!(
        o.h.view(&id).await.status.body.state,
        RequestState::Approved
    );

    // Ann approved nothing: no challenge to revoke with, and no revocation.
    let err = o.ann.ask_challenge(&o.h, &req).await.unwrap_err();
    assert_eq!(err.code(), Some("not_revocable"), "{err:?}");
    // The approver's challenge was spent approving: a revocation without a new one is refused.
    let (_, spent) = o.bob.request_event(&o.h, &id).await;
    let err = o
        .bob
        .decide(&o.h, &req, Some(&spent), Verdict::Revoke, None, Uv::Yes)
        .await
        .unwrap_err();
    o.h.expect_rejection(&err, "assertion_replayed");
    // With a challenge issued now, Bob revokes: a signed receipt, one status change.
    let ch = o.bob.ask_challenge(&o.h, &req).await.unwrap();
    let receipt = o
        .bob
        .decide(&o.h, &req, Some(&ch), Verdict::Revoke, None, Uv::Yes)
        .await
        .unwrap()
        .body;
    assert_eq!(receipt.verdict, Verdict::Revoke);
    assert_eq!(receipt.request_state, RequestState::Approved);
    let status = o.h.view(&id).await.status.body;
    assert_eq!(status.seq, receipt.status_seq);
    let g = status.grant.clone().unwrap();
    assert_eq!(g.revoked_by.as_deref(), Some(BOB));
    assert_eq!(status.votes.len(), 2, "a revocation is no vote");
    assert_eq!(o.carl.status_event(&o.h, &id).await.body, status);
    // Once revoked, nothing more to revoke, by anyone.
    let err = o.carl.ask_challenge(&o.h, &req).await.unwrap_err();
    assert_eq!(err.code(), Some("not_revocable"), "{err:?}");
    assert!(o
        .h
        .audit()
        .iter()
        .any(|(e, _)| e.kind == "request.revoked" && e.detail["by"] == BOB));
    assert_eq!(
        o.h.audit()
            .iter()
            .filter(|(e, _)| e.kind == "challenge.issued")
            .count(),
        2
    );
}
