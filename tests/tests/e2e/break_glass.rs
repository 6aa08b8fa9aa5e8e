//! Break-glass from the engines: two approvers are told after the fact, the request asks for
//! their attention (in the pending list, with a notification-worthy state) until one of them
//! acknowledges it, and the acknowledgement reaches the other through her stream; and an
//! approval revoked from the engine within its grant window.

use std::sync::{Arc, Mutex};

use countersign_approver::{InboxItem, Notifier};
use countersign_gateway::directory_admin as admin;
use countersign_protocol::{Mode, RequestState};
use countersign_test_support::{Approver, TestGateway};

const POLICY: &str = r#"package countersign

import rego.v1

result := {
	"allow": true,
	"rule": "break_glass_oncall",
	"message": "",
	"mode": "break_glass",
	"stages": [{"name": "sre", "group": "sre", "min": 1}],
} if input.request.break_glass

test_breaks_glass if result.mode == "break_glass" with input as {"request": {"break_glass": true}}
"#;

/// What the engine told its notifier: arrivals and resolutions, in order.
#[derive(Default)]
struct Told(Mutex<Vec<String>>);

impl Notifier for Told {
    fn request_arrived(&self, item: &InboxItem) {
        self.0
            .lock()
            .unwrap()
            .push(format!("arrived {}", item.id()));
    }
    fn request_resolved(&self, request_id: &str, state: RequestState) {
        self.0
            .lock()
            .unwrap()
            .push(format!("resolved {request_id} {}", state.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_glass_asks_for_attention_until_one_approver_acknowledges_it() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("break-glass.rego");
    std::fs::write(&policy, POLICY).unwrap();
    let gw = TestGateway::start_with(move |c| c.policy_file = Some(policy)).await;
    let (mut ann, mut bob) = (Approver::new(), Approver::new());
    ann.pair(&gw.invite("ann@example.com")).await;
    bob.pair(&gw.invite("bob@example.com")).await;
    let (ann_told, bob_told) = (Arc::new(Told::default()), Arc::new(Told::default()));
    ann.engine.set_notifier(ann_told.clone());
    bob.engine.set_notifier(bob_told.clone());
    for a in ["ann@example.com", "bob@example.com"] {
        admin::set_groups(gw.gw(), a, &["sre".into()]).unwrap();
    }
    let mut new = gw.new_request(&[], "restart the settlement worker");
    new.break_glass = true;
    new.reason = "settlement stuck, INC-2291".into();
    let created = gw.requester().create(&new).await.unwrap();
    let id = created.request.body.id.clone();
    assert_eq!(created.request.body.mode, Mode::BreakGlass);

    for a in [&ann, &bob] {
        a.engine.sync().await.unwrap();
        let item = a.engine.show(&id).unwrap();
        assert_eq!(item.state, RequestState::Approved);
        assert!(item.needs_acknowledgement());
        let pending = a.engine.list(Default::default()).unwrap();
        assert!(pending.iter().any(|i| i.id() == id), "asks for attention");
    }
    // Why: the gateway's signed statement of her groups names sre.
    let why = ann.engine.show(&id).unwrap().why_asked();
    assert!(
        why.iter()
            .any(|w| w.contains("you are in group sre, as the gateway's membership statement")),
        "{why:?}"
    );
    assert_eq!(why.len(), 1, "{why:?}");
    // Told of it, and its notification stays: the approved status resolves nothing yet.
    assert_eq!(*ann_told.0.lock().unwrap(), vec![format!("arrived {id}")]);
    // Nothing to decide: a decision is refused here, before it is signed.
    assert!(ann.engine.deny(&id, "no").await.is_err());

    let item = ann.engine.acknowledge(&id).await.unwrap();
    let grant = item.grant.clone().unwrap();
    assert_eq!(grant.acknowledged_by.as_deref(), Some("ann@example.com"));
    assert!(!item.needs_acknowledgement());
    assert!(!ann
        .engine
        .list(Default::default())
        .unwrap()
        .iter()
        .any(|i| i.id() == id));
    // Bob hears of it on his stream, and his own acknowledgement changes nothing.
    bob.engine.sync().await.unwrap();
    let resolved = format!("resolved {id} approved");
    assert_eq!(ann_told.0.lock().unwrap().last(), Some(&resolved));
    assert_eq!(bob_told.0.lock().unwrap().last(), Some(&resolved));
    assert!(!bob.engine.show(&id).unwrap().needs_acknowledgement());
    let again = bob.engine.acknowledge(&id).await.unwrap();
    assert_eq!(again.grant, item.grant);
    let kinds: Vec<String> = ann
        .engine
        .audit_entries()
        .unwrap()
        .into_iter()
        .map(|(e, _)| e.kind)
        .collect();
    assert!(kinds.contains(&"ack.sent".to_string()), "{kinds:?}");
}

const GRANTED: &str = r#"package countersign

import rego.v1

result := {
	"allow": true,
	"rule": "granted",
	"stages": [{"name": "sre", "group": "sre", "min": 1}],
	"grant_seconds": 600,
}

test_grants if result.grant_seconds == 600
"#;

/// Revoking from the engine: a challenge asked for now, the passkey, a signed receipt; the
/// revoked grant reaches the engine on its stream, and a second revocation is refused here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_revokes_an_approval_from_the_engine_within_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("granted.rego");
    std::fs::write(&policy, GRANTED).unwrap();
    let gw = TestGateway::start_with(move |c| c.policy_file = Some(policy)).await;
    let mut ann = Approver::new();
    ann.pair(&gw.invite("ann@example.com")).await;
    admin::set_groups(gw.gw(), "ann@example.com", &["sre".into()]).unwrap();
    let created = gw
        .requester()
        .create(&gw.new_request(&[], "rotate the payment keys"))
        .await
        .unwrap();
    let id = created.request.body.id.clone();
    ann.engine.sync().await.unwrap();
    ann.engine.approve(&id, None, &mut ann.auth).await.unwrap();
    ann.engine.sync().await.unwrap();
    let grant = ann.engine.show(&id).unwrap().grant.unwrap();
    assert!(grant.is_live(ann.engine.now()), "{grant:?}");

    let receipt = ann
        .engine
        .revoke(&id, "wrong cluster", &mut ann.auth)
        .await
        .unwrap();
    assert_eq!(receipt.body.verdict, countersign_protocol::Verdict::Revoke);
    ann.engine.sync().await.unwrap();
    let item = ann.engine.show(&id).unwrap();
    assert_eq!(item.state, RequestState::Approved);
    let grant = item.grant.unwrap();
    assert_eq!(grant.revoked_by.as_deref(), Some("ann@example.com"));
    // The requester (and an integration with its token) sees the revocation.
    let view = gw
        .requester()
        .get(&id, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(view.status.body.grant, Some(grant));
    let again = ann.engine.revoke(&id, "twice", &mut ann.auth).await;
    assert!(again.is_err(), "{again:?}");
    let kinds: Vec<String> = ann
        .engine
        .audit_entries()
        .unwrap()
        .into_iter()
        .map(|(e, _)| e.kind)
        .collect();
    assert!(kinds.contains(&"approval.revoked".to_string()), "{kinds:?}");
}
