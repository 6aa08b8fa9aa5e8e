//! After approval, in the app. Dana breaks glass: Alice, an SRE, is told after the fact, the
//! inbox asks her to acknowledge it, and her acknowledgement reaches the gateway. Then Alice
//! approves a request whose approval lasts 15 minutes and revokes it with her passkey before
//! it is used; the requester sees the revocation.

use countersign_gateway::directory_admin as admin;

use super::*;

const POLICY: &str = r#"package countersign

import rego.v1

result := {
	"allow": true,
	"rule": "break_glass_oncall",
	"mode": "break_glass",
	"stages": [{"name": "sre", "group": "sre", "min": 1}],
} if {
	input.request.break_glass
} else := {
	"allow": true,
	"rule": "sre_review",
	"stages": [{"name": "sre", "group": "sre", "min": 1}],
	"grant_seconds": 900,
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the built desktop app, tauri-driver, Xvfb and a session bus: make desktop-e2e"]
async fn a_broken_glass_is_acknowledged_and_an_approval_revoked_in_the_app() {
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = policy_dir.path().join("break-glass.rego");
    std::fs::write(&policy, POLICY).unwrap();
    let gw = TestGateway::start_with(move |c| c.policy_file = Some(policy)).await;
    let requester = gw.requester();
    let app_dir = tempfile::tempdir().unwrap();
    let app = Desktop::start(app_dir.path()).await;
    app.pair(&gw.invite(ALICE).to_string(), None).await;
    admin::set_groups(gw.gw(), ALICE, &["sre".into()]).unwrap();

    let mut glass = request("restart", &[], Risk::High);
    glass.break_glass = true;
    glass.reason = "API down after the config change, INC-2291".into();
    let id = create(&requester, glass).await;
    app.wait_text("glass broken · acknowledge").await;
    app.client
        .execute(&format!("window.location.hash = '#/request/{id}';"), vec![])
        .await
        .unwrap();
    app.wait_text("GLASS BROKEN").await;
    app.wait_text("INC-2291").await;
    app.screenshot("16-break-glass").await;
    app.click_button("Acknowledge").await;
    app.wait_text("Acknowledged by alice@example.com").await;
    let grant = requester
        .get(&id, Duration::ZERO)
        .await
        .unwrap()
        .status
        .body
        .grant
        .unwrap();
    assert_eq!(grant.acknowledged_by.as_deref(), Some(ALICE));
    app.screenshot("17-break-glass-acknowledged").await;

    let id = create(&requester, request("rotate", &[], Risk::High)).await;
    app.client
        .execute(&format!("window.location.hash = '#/request/{id}';"), vec![])
        .await
        .unwrap();
    app.click_button("Approve").await;
    app.click_xpath("//form[@aria-label='Approve']//button[@type='submit']")
        .await;
    app.find(".result-approve").await;
    wait_state_at_gateway(
        &requester,
        &id,
        RequestState::Approved,
        PATIENCE,
        "Alice's approval never reached the gateway",
    )
    .await;
    app.click_button("Revoke my approval").await;
    app.find("#revoke-reason")
        .await
        .send_keys("Wrong database: this was meant for staging")
        .await
        .unwrap();
    app.click_button("Revoke with your passkey").await;
    app.wait_text("Revoked by alice@example.com").await;
    let grant = requester
        .get(&id, Duration::ZERO)
        .await
        .unwrap()
        .status
        .body
        .grant
        .unwrap();
    assert_eq!(grant.revoked_by.as_deref(), Some(ALICE));
    app.screenshot("18-approval-revoked").await;
    app.quit().await;
}
