//! The directory of people: separation of duties decided on the person across namespaces (a
//! requester token and an approver name that one entry links), a removed person's votes
//! refused, the administration of entries and groups (audited), and a directory kept in a file.

use countersign_gateway::directory::{self, DirectoryError, Entry};
use countersign_gateway::directory_admin as admin;
use countersign_gateway::tokens::{self, TokenAttributes};
use countersign_protocol::{RequestState, Verdict};
use countersign_test_support::{TestGateway, Uv, REQUESTER};

use crate::refusals::Refusals;
use crate::requests::Requests;

const ALICE: &str = "alice@example.com";

fn tokens_of(names: &[&str]) -> Entry {
    Entry {
        tokens: names.iter().map(|s| s.to_string()).collect(),
        ..Entry::default()
    }
}

fn audited(h: &TestGateway, kind: &str) -> Vec<serde_json::Value> {
    h.audit()
        .into_iter()
        .filter(|(e, _)| e.kind == kind)
        .map(|(e, _)| e.detail)
        .collect()
}

#[tokio::test]
async fn a_person_never_approves_their_own_request_under_another_name() {
    let h = TestGateway::start().await;
    let _alice = h.pair(ALICE).await;
    // The token that asks and the approver name are different strings, but one person.
    admin::link(h.gw(), ALICE, &tokens_of(&[REQUESTER])).unwrap();
    // The default policy refuses it by its rule; the gateway's own rule would anyway
    // (policy::the_gateway_refuses_self_approval_whatever_the_policy_says).
    let err = h.try_create(|_| {}).await.unwrap_err();
    assert_eq!(err.status, 403, "{err:?}");
    assert_eq!(err.code(), Some("policy_refused"), "{err:?}");
    assert!(err.text.contains("default.own_request"), "{}", err.text);

    // Linked after the request was made: the vote is refused for good.
    let other = TestGateway::start().await;
    let mut bob = other.pair("bob@example.com").await;
    let created = other.create(&["bob@example.com"], 1, false).await;
    admin::link(other.gw(), "bob@example.com", &tokens_of(&[REQUESTER])).unwrap();
    let (req, challenge) = bob.request_event(&other, &created.request.body.id).await;
    let err = bob
        .decide(
            &other,
            &req,
            Some(&challenge),
            Verdict::Approve,
            None,
            Uv::Yes,
        )
        .await
        .unwrap_err();
    other.expect_rejection(&err, "own_request");
    assert_eq!(
        other.view(&created.request.body.id).await.status.body.state,
        RequestState::Pending
    );
}

#[tokio::test]
async fn a_person_removed_from_the_directory_approves_nothing_and_is_asked_nothing() {
    let h = TestGateway::start().await;
    let mut alice = h.pair(ALICE).await;
    let created = h.create(&[ALICE], 1, false).await;
    assert_eq!(admin::remove(h.gw(), ALICE).unwrap(), ALICE);
    let (req, challenge) = alice.request_event(&h, &created.request.body.id).await;
    let err = alice
        .decide(&h, &req, Some(&challenge), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap_err();
    h.expect_rejection(&err, "not_eligible");
    assert!(
        err.text.contains("no longer in the gateway's directory"),
        "{}",
        err.text
    );
    let err = h
        .try_create(|n| n.summary = "another".into())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("policy_refused"), "{err:?}");
    assert!(
        err.text.contains("default.unknown_approver"),
        "{}",
        err.text
    );
    // An invite does not bring a removed person back; adding them again does.
    let refused = countersign_gateway::pairing::invite(h.gw(), ALICE, h.url.clone()).unwrap_err();
    assert_eq!(refused.code.as_str(), "unknown_approver");
    let back = admin::add_approver(h.gw(), ALICE, None, &Entry::default()).unwrap();
    assert_eq!(back.id, ALICE);
    let again = h.create(&[ALICE], 1, false).await;
    let (req, challenge) = alice.request_event(&h, &again.request.body.id).await;
    alice
        .decide(&h, &req, Some(&challenge), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap();
    let removed = audited(&h, "directory.person_removed");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["person"], ALICE);
}

#[tokio::test]
async fn approvers_groups_and_identities_are_administered_and_audited() {
    let h = TestGateway::start().await;
    let gw = h.gw();
    let links = Entry {
        groups: vec!["managers".into(), "dba".into(), "dba".into()],
        tokens: vec!["alice-ci".into()],
        kubernetes: vec!["alice".into()],
        github: vec!["alice-gh".into()],
        hoop: vec![ALICE.into()],
        ..Entry::default()
    };
    let added = admin::add_approver(gw, ALICE, Some("alice"), &links).unwrap();
    assert_eq!(added.id, "alice");
    assert_eq!(added.approvers, vec![ALICE]);
    assert_eq!(added.groups, vec!["dba", "managers"], "sorted, once each");
    assert_eq!(added.kubernetes, vec!["alice"]);
    // Once in the directory; an identity is one person's only.
    assert!(matches!(
        admin::add_approver(gw, ALICE, None, &Entry::default()),
        Err(DirectoryError::AlreadyListed { .. })
    ));
    let taken = admin::add_approver(gw, "bob@example.com", None, &tokens_of(&["alice-ci"]));
    assert!(
        matches!(&taken, Err(DirectoryError::IdentityTaken { kind: "token", person, .. }) if person == "alice"),
        "{taken:?}"
    );
    assert!(
        admin::list(gw)
            .unwrap()
            .iter()
            .all(|e| e.id != "bob@example.com"),
        "a refused add leaves nothing behind"
    );
    assert!(matches!(
        admin::add_approver(gw, "carol with spaces", None, &Entry::default()),
        Err(DirectoryError::InvalidName { .. })
    ));
    let changed = admin::set_groups(gw, ALICE, &["oncall".into()]).unwrap();
    assert_eq!(changed.groups, vec!["oncall"]);
    assert!(matches!(
        admin::set_groups(gw, "nobody@example.com", &[]),
        Err(DirectoryError::UnknownApprover(_))
    ));
    let listed = admin::list(gw).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0], changed);
    let hash = directory::hash(&listed).unwrap();
    assert_eq!(hash.len(), 64);
    assert_eq!(directory::hash(&admin::list(gw).unwrap()).unwrap(), hash);

    // The invite binds the device to the entry: the pairing's approver is Alice's person.
    let invited = h.invite(ALICE);
    assert!(!invited.code.is_empty());
    let invites = audited(&h, "pairing.invited");
    assert_eq!(invites.last().unwrap()["person"], "alice");
    assert_eq!(audited(&h, "directory.person_added").len(), 1);
    let change = &audited(&h, "directory.person_changed")[0];
    assert_eq!(
        change["groups_before"],
        serde_json::json!(["dba", "managers"])
    );
    assert_eq!(change["entry"]["groups"], serde_json::json!(["oncall"]));
}

#[tokio::test]
async fn requester_tokens_carry_a_team_and_environments() {
    let h = TestGateway::start().await;
    let attributes = TokenAttributes {
        team: Some("payments".into()),
        environments: vec!["prod".into(), "staging".into(), "prod".into()],
    };
    let token = tokens::create_with(h.gw(), "payments-ci", &attributes).unwrap();
    assert!(token.starts_with(tokens::TOKEN_PREFIX));
    let listed = tokens::list(h.gw()).unwrap();
    let t = listed.iter().find(|t| t.name == "payments-ci").unwrap();
    assert_eq!(t.attributes.team.as_deref(), Some("payments"));
    assert_eq!(t.attributes.environments, vec!["prod", "staging"]);
    let bad = TokenAttributes {
        team: Some("two words".into()),
        environments: Vec::new(),
    };
    assert_eq!(
        tokens::create_with(h.gw(), "x", &bad)
            .unwrap_err()
            .code
            .as_str(),
        "invalid_name"
    );
    let created = &audited(&h, "token.created");
    assert!(created
        .iter()
        .any(|d| d["name"] == "payments-ci" && d["team"] == "payments"));
}

#[tokio::test]
async fn a_directory_file_is_the_only_source_and_a_change_to_it_applies_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.toml");
    std::fs::write(
        &file,
        r#"
[[people]]
id = "alice"
approvers = ["alice@example.com"]
groups = ["dba", "managers"]
tokens = ["alice-ci"]

[[people]]
id = "bob"
approvers = ["bob@example.com"]
groups = ["dba"]
"#,
    )
    .unwrap();
    let config_file = file.clone();
    let h = TestGateway::start_with(move |c| c.directory_file = Some(config_file)).await;
    let listed = admin::list(h.gw()).unwrap();
    assert_eq!(
        listed.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec!["alice", "bob"]
    );
    assert_eq!(listed[0].tokens, vec!["alice-ci"]);
    assert_eq!(audited(&h, "directory.loaded").len(), 1);
    // The commands that change the directory are refused; an invite outside it too.
    assert!(matches!(
        admin::set_groups(h.gw(), "bob@example.com", &[]),
        Err(DirectoryError::ManagedByFile(_))
    ));
    let refused = countersign_gateway::pairing::invite(h.gw(), "carol@example.com", h.url.clone())
        .unwrap_err();
    assert_eq!(refused.code.as_str(), "unknown_approver");
    h.pair("bob@example.com").await;

    // Bob leaves the file, Alice's groups change: applied when the gateway opens again, and the
    // same file a second time changes nothing.
    std::fs::write(
        &file,
        r#"{"people": [{"id": "alice", "approvers": ["alice@example.com"], "groups": ["managers"]}]}"#,
    )
    .unwrap();
    let json = dir.path().join("people.json");
    std::fs::rename(&file, &json).unwrap();
    let mut config = h.gw().config.clone();
    config.directory_file = Some(json.clone());
    let TestGateway {
        running, dir: data, ..
    } = h;
    running.shutdown().await;
    let gw = countersign_gateway::Gateway::open(config.clone()).unwrap();
    let listed = admin::list(&gw).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].groups, vec!["managers"]);
    assert!(listed[0].tokens.is_empty());
    drop(gw);
    let gw = countersign_gateway::Gateway::open(config.clone()).unwrap();
    let loads = gw
        .store
        .read(countersign_gateway::store::audit_entries)
        .unwrap()
        .into_iter()
        .filter(|(e, _)| e.kind == "directory.loaded")
        .count();
    assert_eq!(loads, 2, "an unchanged file is not loaded again");
    drop(gw);

    // A broken file refuses to start, naming the problem.
    std::fs::write(&json, r#"{"people": [{"id": "a"}, {"id": "a"}]}"#).unwrap();
    let e = countersign_gateway::Gateway::open(config).err().unwrap();
    assert!(e.to_string().contains("listed twice"), "{e}");
    drop(data);
}
