//! A decision the gateway refuses reaches the page as the refusal it is: a mistyped match code
//! shows the gateway's code with the hint for it, and the request can be decided again.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the built desktop app, tauri-driver, Xvfb and a session bus: make desktop-e2e"]
async fn a_wrong_match_code_is_refused_with_its_hint_and_the_request_can_be_approved_again() {
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let app_dir = tempfile::tempdir().unwrap();
    let app = Desktop::start(app_dir.path()).await;
    app.pair(&gw.invite(ALICE).to_string(), None).await;

    let mut new = request("rotate", &[ALICE], Risk::High);
    new.require_match = true;
    let created = requester.create(&new).await.unwrap();
    let id = created.request.body.id.clone();
    let code = created.match_code.expect("a match code for the requester");
    let wrong = if code == "000000" { "111111" } else { "000000" };

    app.client
        .execute(&format!("window.location.hash = '#/request/{id}';"), vec![])
        .await
        .unwrap();
    app.wait_text("ALTER ROLE reporting WITH PASSWORD 'REDACTED';")
        .await;

    // ---- the wrong code: the gateway's refusal, its code and what to do about it ----
    app.click_button("Approve").await;
    app.find("#match-code")
        .await
        .send_keys(wrong)
        .await
        .unwrap();
    app.click_xpath("//form[@aria-label='Approve']//button[@type='submit']")
        .await;
    app.wait_text("Approval failed").await;
    app.wait_text("wrong_match_code").await;
    app.wait_text("Check the code the requester sees and try again.")
        .await;
    app.screenshot("12-wrong-match-code").await;
    assert_eq!(
        state_at_gateway(&requester, &id).await,
        RequestState::Pending,
        "a refused approval counts for nothing"
    );

    // ---- back to the decision: the right code this time is approved ----
    app.click_button("Back to the decision").await;
    app.wait_text("The gateway refused your last decision")
        .await;
    app.click_button("Approve").await;
    app.find("#match-code")
        .await
        .send_keys(&code)
        .await
        .unwrap();
    app.click_xpath("//form[@aria-label='Approve']//button[@type='submit']")
        .await;
    app.find(".result-approve").await;
    wait_state_at_gateway(
        &requester,
        &id,
        RequestState::Approved,
        PATIENCE,
        "the second approval, with the right code, never reached the gateway",
    )
    .await;
    app.screenshot("13-approved-after-refusal").await;
    app.quit().await;
}
