//! A two-stage request in the app: "1 of dba AND 1 of managers" from the gateway's policy. Bob,
//! a DBA, approves first from another device; the app shows each stage's progress, why Alice
//! was asked (she is a manager) and the constraints, and her approval completes the request.

use countersign_gateway::directory_admin as admin;
use countersign_protocol::Verdict;
use countersign_test_support::Uv;

use super::*;

const POLICY: &str = r#"package countersign

import rego.v1

result := {
	"allow": true,
	"rule": "peer_and_manager",
	"mode": "ask",
	"stages": [{"name": "dba", "group": "dba", "min": 1}, {"name": "managers", "group": "managers", "min": 1}],
	"grant_seconds": 900,
	"windows": ["weekdays 08:00-18:00 Europe/Berlin"],
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the built desktop app, tauri-driver, Xvfb and a session bus: make desktop-e2e"]
async fn a_two_stage_request_shows_each_stages_progress_and_why_you_were_asked() {
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = policy_dir.path().join("peer-and-manager.rego");
    std::fs::write(&policy, POLICY).unwrap();
    let gw = TestGateway::start_with(move |c| c.policy_file = Some(policy)).await;
    let requester = gw.requester();
    let app_dir = tempfile::tempdir().unwrap();
    let app = Desktop::start(app_dir.path()).await;
    app.pair(&gw.invite(ALICE).to_string(), None).await;
    let mut bob = gw.pair(BOB).await;
    admin::set_groups(gw.gw(), ALICE, &["managers".into()]).unwrap();
    admin::set_groups(gw.gw(), BOB, &["dba".into()]).unwrap();

    // The requester names nobody: the policy says who.
    let id = create(&requester, request("restart", &[], Risk::High)).await;
    let (req, challenge) = bob.request_event(&gw, &id).await;
    let receipt = bob
        .decide(&gw, &req, Some(&challenge), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap();
    assert_eq!(receipt.body.request_state, RequestState::Pending);

    app.client
        .execute(&format!("window.location.hash = '#/request/{id}';"), vec![])
        .await
        .unwrap();
    app.wait_text("kubectl -n prod rollout restart deploy/api")
        .await;
    app.wait_text("dba 1/1 ✓ · managers 0/1").await;
    app.wait_text("counts for dba").await;
    app.wait_text("you are in group managers, as the gateway's membership statement")
        .await;
    app.wait_text("15 min from approval, for the action to start")
        .await;
    app.wait_text("weekdays 08:00-18:00 Europe/Berlin").await;
    app.screenshot("14-two-stages").await;

    app.click_button("Approve").await;
    app.click_xpath("//form[@aria-label='Approve']//button[@type='submit']")
        .await;
    app.find(".result-approve").await;
    // The gateway's receipt names each stage's progress after Alice's approval.
    app.wait_text("dba 1/1 ✓ · managers 1/1 ✓").await;
    wait_state_at_gateway(
        &requester,
        &id,
        RequestState::Approved,
        PATIENCE,
        "Alice's approval for the managers stage never completed the request",
    )
    .await;
    app.screenshot("15-two-stages-approved").await;
    app.quit().await;
}
