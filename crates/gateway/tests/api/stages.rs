//! Stages of approval decided by the policy, through the real HTTP API: "1 of dba AND 1 of
//! managers", with distinct people by default (a person in both groups satisfies one stage
//! alone, and a later approval moves them), a policy that allows one person for both, the
//! requester's own person never asked even when in a group, narrowing accepted and widening
//! refused, the gateway's own rule against self-approval whatever the policy says, votes from
//! outside the stages refused, and an undefined helper failing closed. The fixture also breaks
//! glass (action `incident`) and grants approvals for 300 s (action `granted`), for `grants`.

use countersign_gateway::directory::Entry;
use countersign_gateway::directory_admin as admin;
use countersign_protocol::{RequestState, StageProgress, Verdict};
use countersign_test_support::{Device, TestGateway, Uv, REQUESTER};

use crate::refusals::Refusals;
use crate::requests::Requests;

const HEAD: &str = "package countersign\n\nimport rego.v1\n\n";

/// "1 of dba AND 1 of managers"; the action `lenient` lets one person count for both, the
/// action `named` lists who the requester named, `own` names the requester's own person.
const TWO_STAGES: &str = r#"
stages := [{"name": "dba", "group": "dba", "min": 1}, {"name": "managers", "group": "managers", "min": 1}]

# A helper undefined for the action "broken": the result that uses it is undefined (there is no
# `default` to fall back on), and the gateway fails closed.
distinct := input.request.action != "lenient" if input.request.action != "broken"

result := {"allow": true, "rule": "incident", "mode": "break_glass", "stages": [{"name": "dba", "group": "dba", "min": 1}]} if {
	input.request.action == "incident"
} else := {"allow": true, "rule": "granted", "mode": "ask", "stages": stages, "grant_seconds": 300} if {
	input.request.action == "granted"
} else := {"allow": true, "rule": "own", "mode": "ask", "stages": [{"name": "approvers", "approvers": ["rita@example.com"], "min": 1}]} if {
	input.request.action == "own"
} else := {"allow": true, "rule": "auto_read", "mode": "auto"} if {
	input.request.action == "read"
} else := {"allow": true, "rule": "auto_read_prod", "mode": "auto", "risk": "high"} if {
	input.request.action == "read-prod"
} else := {"allow": true, "rule": "two_stages", "mode": "ask", "stages": stages, "distinct_people": distinct}

test_two_stages if {
	r := result with input as {"request": {"action": "deploy"}}
	count(r.stages) == 2
	r.distinct_people
}
"#;

pub(crate) struct Org {
    pub(crate) h: TestGateway,
    _dir: tempfile::TempDir,
    pub(crate) ann: Device,
    pub(crate) bob: Device,
    pub(crate) carl: Device,
    pub(crate) dave: Device,
    pub(crate) rita: Device,
}

pub(crate) const ANN: &str = "ann@example.com";
pub(crate) const BOB: &str = "bob@example.com";
const CARL: &str = "carl@example.com";
const DAVE: &str = "dave@example.com";
const RITA: &str = "rita@example.com";

impl Org {
    /// A request naming nobody, so the policy's stages say who approves it; its id.
    pub(crate) async fn routed_by_policy(&self) -> String {
        self.h
            .create_with(|n| n.approvers.clear())
            .await
            .request
            .body
            .id
    }
}

/// Ann is a DBA and a manager, Bob a DBA, Carl a manager, Dave in no group; Rita is a DBA and
/// the requester token is hers.
pub(crate) async fn org() -> Org {
    org_with(|_| {}).await
}

pub(crate) async fn org_with(tweak: impl FnOnce(&mut countersign_gateway::config::Config)) -> Org {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("two-stages.rego");
    std::fs::write(&policy, format!("{HEAD}{TWO_STAGES}")).unwrap();
    let h = TestGateway::start_with(move |c| {
        c.policy_file = Some(policy);
        tweak(c);
    })
    .await;
    let groups = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut devices = Vec::new();
    for (name, g) in [
        (ANN, groups(&["dba", "managers"])),
        (BOB, groups(&["dba"])),
        (CARL, groups(&["managers"])),
        (DAVE, groups(&[])),
        (RITA, groups(&["dba"])),
    ] {
        let d = h.pair(name).await;
        admin::set_groups(h.gw(), name, &g).unwrap();
        devices.push(d);
    }
    admin::link(
        h.gw(),
        RITA,
        &Entry {
            tokens: vec![REQUESTER.into()],
            ..Entry::default()
        },
    )
    .unwrap();
    let mut it = devices.into_iter();
    let mut next = || it.next().unwrap();
    Org {
        ann: next(),
        bob: next(),
        carl: next(),
        dave: next(),
        rita: next(),
        h,
        _dir: dir,
    }
}

pub(crate) fn progress(name: &str, approvals: u32, satisfied: bool) -> StageProgress {
    StageProgress {
        name: name.into(),
        approvals,
        min: 1,
        satisfied,
    }
}

pub(crate) async fn approve(
    d: &mut Device,
    h: &TestGateway,
    id: &str,
) -> countersign_protocol::Receipt {
    let (req, ch) = d.request_event(h, id).await;
    d.decide(h, &req, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap()
        .body
}

#[tokio::test]
async fn peer_and_manager_one_approval_leaves_it_pending_and_the_second_approves() {
    let mut o = org().await;
    let created = o.h.create_with(|n| n.approvers.clear()).await;
    let body = &created.request.body;
    let id = body.id.clone();
    assert_eq!(body.stages.len(), 2);
    assert!(
        body.stages.iter().all(|s| s.group.is_some()),
        "by group, never by member"
    );
    assert_eq!(body.policy.as_ref().unwrap().rule, "two_stages");
    assert_eq!(body.requester_person.as_deref(), Some(RITA));
    assert!(body.approvers.is_empty() && body.min_approvals == 0);

    let r = approve(&mut o.bob, &o.h, &id).await;
    assert_eq!(r.request_state, RequestState::Pending);
    assert_eq!(
        r.stages,
        vec![progress("dba", 1, true), progress("managers", 0, false)]
    );
    let r = approve(&mut o.carl, &o.h, &id).await;
    assert_eq!(r.request_state, RequestState::Approved);
    let status = o.h.view(&id).await.status.body;
    assert_eq!(status.state, RequestState::Approved);
    assert_eq!(
        status.stages,
        vec![progress("dba", 1, true), progress("managers", 1, true)]
    );
    let credited: Vec<_> = status
        .votes
        .iter()
        .map(|v| (v.approver.as_str(), v.person.as_deref(), v.stages.clone()))
        .collect();
    assert_eq!(
        credited,
        vec![(BOB, Some(BOB), vec![0]), (CARL, Some(CARL), vec![1])]
    );
    // The requester's own person, a DBA, was never asked; Dave, in no group, neither.
    assert!(o.rita.drain(&o.h).await.is_empty());
    assert!(o.dave.drain(&o.h).await.is_empty());
}

#[tokio::test]
async fn a_person_in_both_groups_does_not_satisfy_both_stages_alone() {
    let mut o = org().await;
    let id = o.routed_by_policy().await;
    let r = approve(&mut o.ann, &o.h, &id).await;
    assert_eq!(r.request_state, RequestState::Pending, "Ann counts once");
    assert_eq!(
        r.stages,
        vec![progress("dba", 1, true), progress("managers", 0, false)]
    );
    // Bob can only fill "dba": Ann's approval moves to "managers" and both stages are met.
    let r = approve(&mut o.bob, &o.h, &id).await;
    assert_eq!(r.request_state, RequestState::Approved);
    let votes = o.h.view(&id).await.status.body.votes;
    let moved: Vec<_> = votes
        .iter()
        .map(|v| (v.approver.as_str(), v.stages.clone()))
        .collect();
    assert_eq!(moved, vec![(ANN, vec![1]), (BOB, vec![0])]);

    // A policy may allow one person for both stages explicitly.
    let id =
        o.h.create_with(|n| {
            n.approvers.clear();
            n.action = "lenient".into();
        })
        .await
        .request
        .body
        .id;
    let r = approve(&mut o.ann, &o.h, &id).await;
    assert_eq!(r.request_state, RequestState::Approved);
    assert_eq!(o.h.view(&id).await.status.body.votes[0].stages, vec![0, 1]);
}

#[tokio::test]
async fn a_vote_from_outside_the_stages_is_refused() {
    let mut o = org().await;
    let id = o.routed_by_policy().await;
    let (req, _) = o.bob.request_event(&o.h, &id).await;
    // Dave is in no group and was never asked; he decides on what he learnt elsewhere.
    let err = o
        .dave
        .decide(&o.h, &req, None, Verdict::Deny, None, Uv::Yes)
        .await
        .unwrap_err();
    o.h.expect_rejection(&err, "not_eligible");
    // Rita is a DBA, but the request is hers.
    let err = o
        .rita
        .decide(&o.h, &req, None, Verdict::Deny, None, Uv::Yes)
        .await
        .unwrap_err();
    o.h.expect_rejection(&err, "own_request");
    // Bob leaves the dba group before he votes: refused, whatever he was sent.
    admin::set_groups(o.h.gw(), BOB, &[]).unwrap();
    let (req, ch) = o.bob.request_event(&o.h, &id).await;
    let err = o
        .bob
        .decide(&o.h, &req, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap_err();
    o.h.expect_rejection(&err, "not_eligible");
    assert_eq!(o.h.view(&id).await.status.body.state, RequestState::Pending);
}

#[tokio::test]
async fn the_requester_may_narrow_but_never_widen() {
    let mut o = org().await;
    // Naming Carl narrows "managers" to him; "dba" stays the group.
    let created = o.h.create_with(|n| n.approvers = vec![CARL.into()]).await;
    let stages = &created.request.body.stages;
    assert_eq!(stages[0].group.as_deref(), Some("dba"));
    assert_eq!(
        stages[1].approvers.as_deref(),
        Some(&[CARL.to_string()][..])
    );
    assert_eq!(stages[1].group, None);
    // Ann, a manager, is no longer asked for "managers", but still for "dba".
    approve(&mut o.ann, &o.h, &created.request.body.id).await;
    // Raising the quorum is narrowing too: two of each.
    let err =
        o.h.try_create(|n| {
            n.approvers.clear();
            n.min_approvals = 3;
            n.summary = "three of each".into();
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("policy_refused"), "{err:?}");
    assert!(err.text.contains("needs 3 approvals"), "{}", err.text);

    // Narrowing both stages to Ann alone: one person cannot fill both.
    let err =
        o.h.try_create(|n| {
            n.approvers = vec![ANN.into()];
            n.summary = "ann alone".into();
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("policy_refused"), "{err:?}");
    assert!(err.text.contains("cannot all be met"), "{}", err.text);

    // Widening: Dave is in no stage.
    let err =
        o.h.try_create(|n| {
            n.approvers = vec![DAVE.into()];
            n.summary = "widen".into();
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("widening_refused"), "{err:?}");
    assert!(
        err.text.contains("two_stages"),
        "names the rule: {}",
        err.text
    );
    let refused: Vec<_> =
        o.h.audit()
            .into_iter()
            .filter(|(e, _)| e.kind == "request.policy_refused")
            .map(|(e, _)| e.detail)
            .collect();
    assert!(refused
        .iter()
        .any(|d| d["code"] == "widening_refused" && d["rule"] == "two_stages"));
}

#[tokio::test]
async fn the_gateway_refuses_self_approval_whatever_the_policy_says() {
    let o = org().await;
    // The policy names Rita as the approver of Rita's own request.
    let err =
        o.h.try_create(|n| {
            n.approvers.clear();
            n.action = "own".into();
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("own_request"), "{err:?}");
}

#[tokio::test]
async fn an_undefined_helper_fails_closed() {
    let o = org().await;
    let err =
        o.h.try_create(|n| {
            n.approvers.clear();
            n.action = "broken".into();
        })
        .await
        .unwrap_err();
    assert_eq!(err.status, 503, "{err:?}");
    assert_eq!(err.code(), Some("policy_error"), "{err:?}");
    assert!(
        o.h.audit().iter().any(|(e, _)| e.kind == "policy.error"),
        "audited"
    );
}

#[tokio::test]
async fn auto_approval_is_recorded_and_refused_above_the_ceiling() {
    use countersign_protocol::{Mode, Risk};
    let mut o = org().await;
    let read = |risk: Risk| {
        move |n: &mut countersign_protocol::api::NewRequest| {
            n.approvers.clear();
            n.action = "read".into();
            n.risk = Some(risk);
            n.summary = format!("read at {}", risk.as_str());
        }
    };
    let created = o.h.create_with(read(Risk::Low)).await;
    let body = &created.request.body;
    assert_eq!(body.mode, Mode::Auto);
    assert_eq!(body.policy.as_ref().unwrap().rule, "auto_read");
    let status = o.h.view(&body.id).await.status.body;
    assert_eq!((status.state, status.seq), (RequestState::Approved, 1));
    assert!(
        status.votes.is_empty(),
        "approved by the policy, not by a vote"
    );
    assert!(
        status.grant.is_some(),
        "an auto-approval grants like any approval"
    );
    let audited: Vec<_> =
        o.h.audit()
            .into_iter()
            .filter(|(e, _)| e.kind == "request.auto_approved")
            .map(|(e, _)| e.detail)
            .collect();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["rule"], "auto_read");
    assert_eq!(audited[0]["ceiling"], "low");
    // Nobody is asked about it.
    assert!(o.ann.drain(&o.h).await.is_empty());

    // Above the gateway's ceiling the policy's answer is refused, whatever it says.
    let err = o.h.try_create(read(Risk::Medium)).await.unwrap_err();
    assert_eq!(err.code(), Some("policy_refused"), "{err:?}");
    assert!(err.text.contains("ceiling"), "{}", err.text);
    // The risk checked is the higher of the requester's claim and the policy's judgement.
    let err =
        o.h.try_create(|n| {
            read(Risk::Low)(n);
            n.action = "read-prod".into();
        })
        .await
        .unwrap_err();
    assert!(err.text.contains("this high risk request"), "{}", err.text);

    // A gateway that allows auto-approval up to high risk.
    let o = org_with(|c| {
        c.auto_approve_max_risk = countersign_gateway::config::AutoApproveCeiling::High;
    })
    .await;
    let created = o.h.create_with(read(Risk::High)).await;
    assert_eq!(created.request.body.mode, Mode::Auto);
    let err = o.h.try_create(read(Risk::Critical)).await.unwrap_err();
    assert_eq!(err.code(), Some("policy_refused"), "{err:?}");
}

/// Above `prechallenge_max` addressees, no challenge is issued at creation: each approver asks
/// for one when they decide. An assertion over no challenge of this request is `no_challenge`,
/// a denial needs none, and the stages complete as usual.
#[tokio::test]
async fn a_request_to_more_approvers_than_prechallenge_max_issues_challenges_on_demand() {
    let mut o = org_with(|c| c.prechallenge_max = 2).await;
    let id = o.routed_by_policy().await;
    let (req, challenge) = o.bob.request_event(&o.h, &id).await;
    assert!(
        challenge.is_null(),
        "three addressees, above the maximum of two"
    );
    let audited =
        o.h.audit()
            .into_iter()
            .find(|(e, _)| e.kind == "request.created")
            .unwrap()
            .0
            .detail;
    assert_eq!(audited["challenges"], "on demand");

    // An assertion over another request's challenge is no challenge of this one.
    let other =
        o.h.create_with(|n| {
            n.approvers.clear();
            n.summary = "another".into();
        })
        .await
        .request;
    let elsewhere = o.bob.ask_challenge(&o.h, &other).await.unwrap();
    let err = o
        .bob
        .decide(
            &o.h,
            &req,
            Some(&elsewhere),
            Verdict::Approve,
            None,
            Uv::Yes,
        )
        .await
        .unwrap_err();
    o.h.expect_rejection(&err, "no_challenge");

    let ch = o.bob.ask_challenge(&o.h, &req).await.unwrap();
    let r = o
        .bob
        .decide(&o.h, &req, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap()
        .body;
    assert_eq!(r.request_state, RequestState::Pending);
    // Bob has decided: no second challenge for him.
    let err = o.bob.ask_challenge(&o.h, &req).await.unwrap_err();
    assert_eq!(err.code(), Some("already_decided"), "{err:?}");
    let ch = o.carl.ask_challenge(&o.h, &req).await.unwrap();
    let r = o
        .carl
        .decide(&o.h, &req, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap()
        .body;
    assert_eq!(r.request_state, RequestState::Approved);
    // Dave is in no stage and Rita asked: neither gets a challenge.
    let err = o.dave.ask_challenge(&o.h, &req).await.unwrap_err();
    assert_eq!(err.code(), Some("unknown_request"), "{err:?}");
    let err = o.rita.ask_challenge(&o.h, &req).await.unwrap_err();
    assert_eq!(err.code(), Some("unknown_request"), "{err:?}");
}

/// An approval that cannot count (its only stage is met, and moving nobody frees a place) is
/// refused and not recorded, so a status lists only approvals that count; one that can count
/// by moving an earlier one is taken.
#[tokio::test]
async fn an_approval_that_cannot_count_is_refused_and_not_recorded() {
    let mut o = org().await;
    admin::set_groups(o.h.gw(), DAVE, &["dba".into()]).unwrap();
    let id = o.routed_by_policy().await;
    approve(&mut o.bob, &o.h, &id).await;
    let (req, ch) = o.dave.request_event(&o.h, &id).await;
    let err = o
        .dave
        .decide(&o.h, &req, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap_err();
    o.h.expect_rejection(&err, "approval_not_needed");
    assert_eq!(o.h.view(&id).await.status.body.votes.len(), 1);
    // Ann is a DBA and a manager: she counts for managers.
    let r = approve(&mut o.ann, &o.h, &id).await;
    assert_eq!(r.request_state, RequestState::Approved);
}

/// Each approver's devices get the gateway's signed statement of their person and groups, and
/// a new one (the next `seq`) when the directory changes, before a request routed with the
/// change; one removed from the directory is told they are nobody.
#[tokio::test]
async fn approvers_are_told_their_groups_in_signed_membership_statements() {
    let mut o = org().await;
    o.h.create_with(|n| n.approvers.clear()).await;
    o.ann.drain(&o.h).await;
    let first = o.ann.membership.clone().expect("a membership statement");
    first
        .verify(&countersign_test_support::PairedGateway::gateway_key(&o.h))
        .unwrap();
    assert_eq!(first.body.approver, ANN);
    assert_eq!(first.body.person.as_deref(), Some(ANN));
    assert_eq!(
        first.body.groups,
        vec!["dba".to_string(), "managers".into()]
    );

    admin::set_groups(o.h.gw(), ANN, &["dba".into()]).unwrap();
    admin::remove(o.h.gw(), DAVE).unwrap();
    o.h.create_with(|n| {
        n.approvers.clear();
        n.summary = "after the change".into();
    })
    .await;
    o.ann.drain(&o.h).await;
    let second = o.ann.membership.clone().unwrap().body;
    assert_eq!(second.seq, first.body.seq + 1);
    assert_eq!(second.groups, vec!["dba".to_string()]);
    o.dave.drain(&o.h).await;
    let dave = o.dave.membership.clone().unwrap().body;
    assert_eq!((dave.person, dave.groups), (None, Vec::<String>::new()));
    // Bob's groups did not change: no new statement for him.
    o.bob.drain(&o.h).await;
    let bob_seq = o.bob.membership.clone().unwrap().body.seq;
    o.h.create_with(|n| {
        n.approvers.clear();
        n.summary = "nothing changed".into();
    })
    .await;
    o.bob.drain(&o.h).await;
    assert_eq!(o.bob.membership.clone().unwrap().body.seq, bob_seq);
}
