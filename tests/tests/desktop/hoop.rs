//! One inbox across gateways in the real app: a hoop.dev gateway (the fake hoop server, from
//! hoop's source-level behaviour) connected from Settings beside a paired Countersign gateway.
//! A hoop review arrives as a native notification that names it unsigned, sits in the same
//! inbox as a signed request, filters by gateway, shows its hostile script made visible, and is
//! approved with the passkey: hoop receives APPROVED once, and the audit log keeps it.
//!
//! A hoop review has no countdown, so its screens can be entirely still: they are photographed
//! with `Desktop::screenshot_x`.

use countersign_test_support::hoop::{FakeHoop, HoopUser, NewReview};

use super::*;

const ALICE_TOKEN: &str = "hpk_alice_desktop";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the built desktop app, tauri-driver, Xvfb and a session bus: make desktop-e2e"]
async fn a_hoop_review_and_a_countersign_request_share_one_inbox_and_the_hoop_one_is_approved_with_the_passkey(
) {
    let notifications = TestServer::start_async()
        .await
        .expect("org.freedesktop.Notifications on the private session bus");
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let hoop = FakeHoop::start().await;
    let alice = HoopUser::new("auth0|alice", ALICE, &["sre"]);
    let bob = HoopUser::new("auth0|bob", BOB, &["dev"]);
    hoop.add_user(ALICE_TOKEN, &alice);

    let app_dir = tempfile::tempdir().unwrap();
    let app = Desktop::start(app_dir.path()).await;
    app.pair(&gw.invite(ALICE).to_string(), None).await;

    // ---- Settings: connect the hoop gateway with a token; a passkey is registered for it ----
    app.go("#/settings").await;
    app.settings_settled().await;
    app.click_button("Connect a hoop gateway").await;
    app.find("#hoop-url")
        .await
        .send_keys(hoop.url().as_str())
        .await
        .unwrap();
    app.find("#hoop-token")
        .await
        .send_keys(ALICE_TOKEN)
        .await
        .unwrap();
    app.screenshot_x("hoop-01-connect-form").await;
    app.click_xpath("//form[@aria-label='Connect a hoop gateway']//button[@type='submit']")
        .await;
    app.wait_text("reachable").await;
    app.wait_text("kept in").await;
    let settings = app.body_text().await;
    assert!(settings.contains(ALICE), "connected as alice:\n{settings}");
    assert!(
        !settings.contains(ALICE_TOKEN),
        "the token is never shown:\n{settings}"
    );
    app.screenshot_x("hoop-02-connected").await;

    // ---- a signed request and a hoop review, with a hostile script, arrive ----
    let signed = create(&requester, request("rotate", &[ALICE], Risk::High)).await;
    let mut new = NewReview::exec(
        &bob,
        "UPDATE accounts SET balance = 0 WHERE id = 7; -- \u{202E}1=1\u{200B}",
    );
    new.ai = Some((
        "high".into(),
        "Destructive write".into(),
        "Sets a balance to zero.".into(),
    ));
    let (_, review) = hoop.create(new);
    let note = notify_matching(&notifications, "the hoop review", |c| {
        c.summary.contains("hoop.exec on pgprod (postgres)")
    })
    .await;
    assert_eq!(
        note.summary,
        "Approve hoop.exec on pgprod (postgres)? (high risk)"
    );
    assert!(
        note.body
            .contains(&format!("{BOB} asks: Destructive write")),
        "{note:?}"
    );
    assert!(
        note.body.contains("Unsigned, from hoop at 127.0.0.1"),
        "the notification names it unsigned: {note:?}"
    );

    // ---- one inbox: both, the hoop one labelled unsigned ----
    app.go("#/inbox").await;
    app.wait_text("hoop · unsigned").await;
    app.wait_text("Rotate the reporting role's password").await;
    let inbox = app.body_text().await;
    assert!(
        inbox.contains("Pending\n2") || inbox.contains("Pending 2"),
        "{inbox}"
    );
    assert!(inbox.contains("no expiry"), "{inbox}");
    app.screenshot_x("hoop-03-one-inbox").await;

    // ---- filter by gateway: the hoop gateway alone ----
    app.click_xpath("//div[@aria-label='Filter by gateway']//label[contains(., '(hoop)')]")
        .await;
    let text = app
        .wait_until("the gateway filter to apply", |t| {
            !t.contains("Rotate the reporting role's password")
        })
        .await;
    assert!(text.contains("Destructive write"), "{text}");
    app.screenshot_x("hoop-04-filtered").await;

    // ---- the review: unsigned, its script's hidden characters made visible ----
    app.go(&format!("#/request/{review}")).await;
    app.wait_text("unsigned: fetched over plain HTTP from http://127.0.0.1:")
        .await;
    app.wait_text("\\u{202E}").await;
    app.wait_text("hoop's risk analysis").await;
    let screen = app.body_text().await;
    assert!(
        !screen.contains("✓ Signed"),
        "a hoop review never shows a Countersign gateway's badge:\n{screen}"
    );
    assert!(!screen.contains("I did not expect this"), "{screen}");
    app.screenshot_x("hoop-05-review").await;

    // ---- approve with the passkey: hoop has it once, and the audit log keeps it ----
    app.click_button("Approve").await;
    app.click_xpath("//form[@aria-label='Approve']//button[@type='submit']")
        .await;
    app.find(".passkey-card").await;
    app.screenshot_x("hoop-06-passkey").await;
    app.find(".result-approve").await;
    app.wait_text("hoop gives no receipt").await;
    assert_eq!(hoop.status(&review), "APPROVED");
    assert_eq!(
        hoop.groups(&review),
        vec![(
            "sre".to_owned(),
            "APPROVED".to_owned(),
            Some(ALICE.to_owned())
        )]
    );
    app.screenshot_x("hoop-07-approved").await;

    app.go("#/audit").await;
    app.wait_text("hoop.decision_sent").await;
    app.wait_text("hoop.connected").await;

    // The signed request is still pending, alone in the inbox now.
    assert_eq!(
        state_at_gateway(&requester, &signed).await,
        RequestState::Pending
    );
    // The filter is still on the hoop gateway, which has nothing left; all gateways again.
    app.go("#/inbox").await;
    app.wait_text("Nothing from this gateway").await;
    app.click_xpath("//div[@aria-label='Filter by gateway']//label[contains(., 'All gateways')]")
        .await;
    app.wait_text("Rotate the reporting role's password").await;
    app.screenshot("hoop-08-inbox-after").await;

    // ---- disconnect: the connection, its token and its count in the header go ----
    app.go("#/settings").await;
    app.settings_settled().await;
    app.click_button("Disconnect…").await;
    app.click_xpath("//div[@role='group']//button[normalize-space(.)='Disconnect']")
        .await;
    app.wait_gone("kept in").await;
    // The header counts the paired gateway alone again.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let header = app
            .client
            .execute(
                "return document.querySelector('.connection')?.getAttribute('title') ?? '';",
                vec![],
            )
            .await
            .unwrap();
        if header.as_str() == Some("1 gateway connected") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the header still counts the hoop connection: {header:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        std::fs::read_dir(app_dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("hoop-")),
        "the token file is deleted"
    );
    app.quit().await;
}
