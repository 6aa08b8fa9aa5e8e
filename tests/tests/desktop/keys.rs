//! The desktop app with a security key. The key is test-support's fake CTAP2 key, served on the
//! development key socket (`COUNTERSIGN_AUTHENTICATOR=dev-key`), so every PIN, touch, cancel
//! and key swap crosses the same CTAP2 code in the agent as a key over USB would; the window
//! asks the key's questions and the test answers them as a person would, by typing and clicking.

use countersign_approver::security_key::DEV_KEY_SOCKET_FILE;
use countersign_test_support::fido::{FakeKey, KeyConfig, KeySocket, Presence, PIN_RETRIES};

use super::*;

/// Where the agent of a data directory looks for the development key.
fn key_socket(data_dir: &Path) -> PathBuf {
    data_dir.join(DEV_KEY_SOCKET_FILE)
}

impl Desktop {
    async fn start_with_dev_key(data_dir: &Path) -> Desktop {
        Desktop::start_with(
            data_dir,
            &[("COUNTERSIGN_AUTHENTICATOR", std::ffi::OsStr::new("dev-key"))],
        )
        .await
    }

    /// On the welcome screen: pastes `link` and asks to register the passkey.
    async fn register_with(&self, link: &str) {
        self.wait_text("Welcome to Countersign").await;
        self.find("#pair-link").await.send_keys(link).await.unwrap();
        self.click_button("Register a passkey").await;
    }

    /// Types `pin` into the key's PIN dialog and unlocks.
    async fn enter_pin(&self, pin: &str) {
        self.find("#key-pin").await.send_keys(pin).await.unwrap();
        self.click_button("Unlock").await;
    }

    async fn open_request(&self, id: &str) {
        self.client
            .execute(&format!("window.location.hash = '#/request/{id}';"), vec![])
            .await
            .unwrap();
        self.wait_hash(&format!("#/request/{id}")).await;
    }

    async fn start_approving(&self) {
        self.click_button("Approve").await;
        self.click_xpath("//form[@aria-label='Approve']//button[@type='submit']")
            .await;
        self.find(".passkey-card").await;
    }
}

/// A new key without a PIN is never used unverified: pairing says why and offers to set a PIN
/// (entered twice); the passkey is then registered with it. Approving asks the PIN in the
/// window, masked; a wrong one is counted down on the key and shown with the tries left; Cancel
/// during "Touch your security key" stops the ceremony on the key and counts nothing; then the
/// right PIN and a touch approve.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the built desktop app, tauri-driver, Xvfb and a session bus: make desktop-e2e"]
async fn a_security_key_gets_a_pin_then_asks_it_and_a_touch_in_the_window_with_cancel() {
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let app_dir = tempfile::tempdir().unwrap();
    let key = FakeKey::new(KeyConfig {
        pin: None,
        ..KeyConfig::with_pin("unused")
    });
    let _socket = KeySocket::serve(key.clone(), &key_socket(app_dir.path())).unwrap();
    let app = Desktop::start_with_dev_key(app_dir.path()).await;

    // ---- pairing with a key that has no PIN: refused before the link's one-time code is
    // spent, explained, and a PIN offered ----
    app.wait_text("Development mode — a test key on a local socket")
        .await;
    app.register_with(&gw.invite(ALICE).to_string()).await;
    app.wait_text("uv_unavailable").await;
    assert_eq!(key.credential_count(), 0, "nothing registered unverified");
    app.screenshot("14-key-without-pin").await;
    app.click_button("Set a PIN on the key").await;
    app.find("#new-pin").await.send_keys("2468").await.unwrap();
    app.find("#new-pin-again")
        .await
        .send_keys("2468")
        .await
        .unwrap();
    app.screenshot("15-new-pin").await;
    app.click_button("Set PIN").await;
    app.wait_text("The key has a PIN now").await;
    assert!(key.has_pin(), "the key took the PIN");

    // ---- the same link, again: the key's PIN dialog, masked ----
    app.click_button("Register a passkey").await;
    let field = app.find("#key-pin").await;
    assert_eq!(
        field.attr("type").await.unwrap().as_deref(),
        Some("password")
    );
    app.screenshot("16-pin-at-pairing").await;
    app.enter_pin("2468").await;
    app.wait_text("Paired with").await;
    app.wait_hash("#/inbox").await;
    assert_eq!(key.credential_count(), 1);

    // ---- approving: a wrong PIN is counted down and shown ----
    let id = create(&requester, request("rotate", &[ALICE], Risk::High)).await;
    app.wait_text("Rotate the reporting role's password").await;
    app.open_request(&id).await;
    app.wait_text("ALTER ROLE reporting WITH PASSWORD 'REDACTED';")
        .await;
    app.start_approving().await;
    app.enter_pin("0000").await;
    app.wait_text("Wrong PIN.").await;
    let left = PIN_RETRIES - 1;
    app.wait_text(&format!("{left} tries left.")).await;
    assert_eq!(key.pin_retries(), left);
    let shown = app
        .client
        .execute("return document.getElementById('key-pin').value;", vec![])
        .await
        .unwrap();
    assert_eq!(shown, "", "the PIN field was cleared once sent");
    app.screenshot("17-wrong-pin").await;

    // ---- the right PIN, then "Touch your security key" and Cancel ----
    key.set_presence(Presence::Ignore);
    app.enter_pin("2468").await;
    app.wait_text("Touch your security key.").await;
    app.screenshot("18-touch").await;
    app.click_button("Cancel").await;
    app.wait_text("Approval failed").await;
    app.wait_text("ceremony_cancelled").await;
    assert_eq!(
        state_at_gateway(&requester, &id).await,
        RequestState::Pending,
        "a cancelled ceremony approves nothing"
    );
    assert_eq!(
        key.pin_retries(),
        PIN_RETRIES,
        "the right PIN reset the count"
    );

    // ---- back to the decision: PIN and touch approve ----
    key.set_presence(Presence::Touch);
    app.click_button("Back to the decision").await;
    app.start_approving().await;
    app.enter_pin("2468").await;
    app.find(".result-approve").await;
    wait_state_at_gateway(
        &requester,
        &id,
        RequestState::Approved,
        PATIENCE,
        "the approval with the security key never reached the gateway",
    )
    .await;
    app.screenshot("19-approved-with-key").await;
    app.quit().await;
}

/// Settings lists the passkeys the gateway holds for this approver, and adds a backup key: the
/// registered key proves the approver first, the window then asks for the new key, and the
/// new key (swapped in on the socket, as a person swaps keys in the USB port) is registered.
/// The last passkey cannot be removed; a backup can.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the built desktop app, tauri-driver, Xvfb and a session bus: make desktop-e2e"]
async fn settings_adds_a_backup_key_and_removes_a_passkey() {
    let gw = TestGateway::start().await;
    let app_dir = tempfile::tempdir().unwrap();
    let first = FakeKey::new(KeyConfig::with_pin("1357"));
    let backup = FakeKey::new(KeyConfig {
        aaguid: *b"countersign-bkup",
        ..KeyConfig::with_pin("8642")
    });
    let socket = KeySocket::serve(first.clone(), &key_socket(app_dir.path())).unwrap();
    let app = Desktop::start_with_dev_key(app_dir.path()).await;
    app.register_with(&gw.invite(ALICE).to_string()).await;
    app.enter_pin("1357").await;
    app.wait_hash("#/inbox").await;

    app.client
        .execute("window.location.hash = '#/settings';", vec![])
        .await
        .unwrap();
    app.wait_text("Your only passkey here").await;
    app.wait_text("this device").await;

    // ---- the backup key: the registered key first, then the new one ----
    app.click_button("Add a backup key").await;
    app.enter_pin("1357").await;
    app.wait_text("Now unplug it, plug in the new key").await;
    app.screenshot("20-next-key").await;
    drop(socket);
    let _socket = KeySocket::serve(backup.clone(), &key_socket(app_dir.path())).unwrap();
    app.click_button("Continue").await;
    app.enter_pin("8642").await;
    let deadline = Instant::now() + PATIENCE;
    while app
        .client
        .find_all(Locator::Css(".passkey-row"))
        .await
        .unwrap()
        .len()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the backup key never showed in the list"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        backup.credential_count(),
        1,
        "the new key holds the new passkey"
    );
    assert_eq!(first.credential_count(), 1);
    let text = app.body_text().await;
    assert!(!text.contains("Your only passkey here"), "{text}");
    app.screenshot("21-two-passkeys").await;

    // ---- removing the backup: a second click, then the gateway's list of one ----
    app.click_xpath("(//li[contains(@class,'passkey-row')])[2]//button[contains(., 'Remove')]")
        .await;
    app.click_button("Remove it").await;
    app.wait_text("Your only passkey here").await;
    app.quit().await;
}
