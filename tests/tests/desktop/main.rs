//! The real desktop app, end to end: the built `countersign-desktop` binary under a virtual
//! display, driven through WebDriver (`tauri-driver` in front of `WebKitWebDriver`), against a
//! gateway this test starts, with a recording notification server on a private session bus.
//!
//! These tests need the desktop binary, `tauri-driver`, an X display and a session bus, so they
//! are `#[ignore]`d in a plain `cargo test`; `make desktop-e2e` builds the app and runs them as
//!
//! ```text
//! xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- \
//!     cargo test -p countersign-e2e --test desktop -- --ignored --test-threads=1
//! ```
//!
//! Screenshots of each step go to `COUNTERSIGN_SCREENSHOTS` (default `target/desktop-e2e`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use countersign_e2e::webdriver::Driver;
use countersign_e2e::{bin, reopen_gateway, AgentGuard, Approver, TestGateway};
use countersign_gateway::client::RequesterClient;
use countersign_notifications::test_server::{NotifyCall, Record, TestServer};
use countersign_protocol::api::NewRequest;
use countersign_protocol::{RequestState, Risk};
use fantoccini::{Client, Locator};

mod agent;
mod grants;
mod hoop;
mod keys;
mod refusals;
mod stages;
mod witness;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
/// How long anything the UI or the gateway does may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(20);
/// The development-mode "touch" pause: long enough to photograph the passkey prompt.
const TOUCH_MS: &str = "2500";

fn screenshots_dir() -> PathBuf {
    let dir = std::env::var_os("COUNTERSIGN_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // target/debug/countersign-desktop -> target/desktop-e2e
            let exe = bin("countersign-desktop");
            exe.parent().unwrap().parent().unwrap().join("desktop-e2e")
        });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The app, started by `tauri-driver` with its own data directory and development mode.
struct Desktop {
    client: Client,
    _driver: Driver,
    /// The background agent the window started; it outlives the window, not the test.
    agent: AgentGuard,
    data_dir: PathBuf,
    shots: PathBuf,
}

impl Desktop {
    async fn start(data_dir: &Path) -> Desktop {
        Desktop::start_with(data_dir, &[]).await
    }

    /// The app with more environment, e.g. `COUNTERSIGN_PAIR_LINK` for the development pairing
    /// at start-up that `make demo` uses.
    async fn start_with(data_dir: &Path, extra: &[(&str, &std::ffi::OsStr)]) -> Desktop {
        assert!(
            std::env::var_os("DISPLAY").is_some(),
            "no X display: run under xvfb-run (make desktop-e2e)"
        );
        assert!(
            std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
            "no session bus: run under dbus-run-session (make desktop-e2e)"
        );
        let app = bin("countersign-desktop");
        let data_dir_os = data_dir.as_os_str();
        // The app inherits tauri-driver's environment.
        let mut env: Vec<(&str, &std::ffi::OsStr)> = vec![
            ("COUNTERSIGN_DATA_DIR", data_dir_os),
            ("COUNTERSIGN_AUTHENTICATOR", "soft".as_ref()),
            ("COUNTERSIGN_SOFT_TOUCH_MS", TOUCH_MS.as_ref()),
            // The key store has its own test (e2e); here a file, so that no Secret Service
            // is activated on the test bus (it would wait for a password prompt).
            ("COUNTERSIGN_KEY_STORE", "file".as_ref()),
            ("COUNTERSIGN_LOG", "info".as_ref()),
        ];
        env.extend_from_slice(extra);
        let driver = Driver::start(&env, true).await.unwrap();
        let (client, _) = driver.session(&app).await.unwrap();
        Desktop {
            client,
            _driver: driver,
            agent: AgentGuard {
                data_dir: data_dir.to_owned(),
            },
            data_dir: data_dir.to_owned(),
            shots: screenshots_dir(),
        }
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
    }

    async fn find_xpath(&self, xpath: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::XPath(xpath))
            .await
            .unwrap_or_else(|e| panic!("{xpath} did not appear: {e}"))
    }

    /// Clicks the element `xpath` finds (waiting for it).
    async fn click_xpath(&self, xpath: &str) {
        self.find_xpath(xpath).await.click().await.unwrap();
    }

    /// Clicks the button whose text contains `label`.
    async fn click_button(&self, label: &str) {
        self.click_xpath(&format!(
            "//button[contains(normalize-space(.), '{label}')]"
        ))
        .await;
    }

    /// Waits until the page's text contains `needle`.
    async fn wait_text(&self, needle: &str) {
        self.wait_until(&format!("the window to show {needle:?}"), |t| {
            t.contains(needle)
        })
        .await;
    }

    /// Waits until the page's text no longer contains `needle`.
    async fn wait_gone(&self, needle: &str) {
        self.wait_until(&format!("{needle:?} to leave the window"), |t| {
            !t.contains(needle)
        })
        .await;
    }

    /// Waits until the page's text satisfies `done`, and returns that text; fails with `what`
    /// and what the window shows after [`PATIENCE`].
    async fn wait_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = self.body_text().await;
            if done(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "waited in vain for {what}; the window shows:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until Settings has loaded the paired gateways' passkeys, which push the cards
    /// below them down: after it, nothing moves a button there. (This device's passkey row,
    /// not its text, which other cards' paragraphs also have.)
    async fn settings_settled(&self) {
        self.find(".passkey-row .tag").await;
        self.wait_gone("Asking the gateway").await;
    }

    /// What the page renders as text (`innerText`: laid-out text only, nothing hidden). The
    /// WebDriver "element text" of WebKitWebDriver drops text in some grid cells, so the page's
    /// own view of itself is asked instead.
    async fn body_text(&self) -> String {
        self.client
            .execute("return document.body.innerText;", vec![])
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    async fn hash(&self) -> String {
        self.client
            .execute("return window.location.hash;", vec![])
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn wait_hash(&self, want: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let h = self.hash().await;
            if h == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the window is at {h:?}, not {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves what the window shows now (after a moment for the last change to paint).
    async fn screenshot(&self, name: &str) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Navigates the page to `hash` (`#/inbox`, `#/request/<id>`, ...).
    async fn go(&self, hash: &str) {
        self.client
            .execute(&format!("window.location.hash = '{hash}';"), vec![])
            .await
            .unwrap();
    }

    /// Saves the whole virtual screen, as X has it (`import -window root`), after a moment for
    /// the last change to paint. WebKitWebDriver's own screenshot waits for the page's next
    /// rendering update, which a page with nothing animated or counting down never has (its
    /// session then hangs); pages like that are photographed this way.
    async fn screenshot_x(&self, name: &str) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let path = self.shots.join(format!("{name}.png"));
        let status = tokio::process::Command::new("import")
            .args(["-window", "root"])
            .arg(&path)
            .status()
            .await
            .expect("ImageMagick's import (scripts/deps.sh installs it)");
        assert!(status.success(), "import -window root {}", path.display());
        let png = std::fs::read(&path).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
    }

    /// A second launch of the app with `link`: the running instance takes it over.
    fn second_launch(&self, link: &str) {
        let status = Command::new(bin("countersign-desktop"))
            .arg(link)
            .env("COUNTERSIGN_DATA_DIR", &self.data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "the second launch exits once it handed over {link}"
        );
    }
}

fn request(id_hint: &str, approvers: &[&str], risk: Risk) -> NewRequest {
    let (action, resource, summary, detail) = match id_hint {
        "rotate" => (
            "sql.exec",
            "prod-db",
            "Rotate the reporting role's password",
            "ALTER ROLE reporting WITH PASSWORD 'REDACTED';",
        ),
        "restart" => (
            "deploy",
            "prod/api",
            "Restart the API after the config change",
            "kubectl -n prod rollout restart deploy/api",
        ),
        _ => (
            "kubectl.exec",
            "prod/payments-7f9c",
            "Open a shell in a payments pod",
            "kubectl -n prod exec -it payments-7f9c -- /bin/sh",
        ),
    };
    NewRequest {
        action: action.into(),
        resource: resource.into(),
        risk: Some(risk),
        summary: summary.into(),
        detail: detail.into(),
        reason: format!("{summary} (ticket OPS-{})", summary.len()),
        ttl_seconds: 600,
        approvers: approvers.iter().map(|s| s.to_string()).collect(),
        min_approvals: 1,
        require_match: false,
        break_glass: false,
    }
}

/// Waits (on a blocking thread) until the server has a `Notify` matching `pred`, and returns the
/// latest such call; `what` names it in the failure message.
async fn notify_matching(
    server: &TestServer,
    what: &str,
    pred: impl Fn(&NotifyCall) -> bool + Send + Sync + 'static,
) -> NotifyCall {
    let s = server.clone();
    let pred = std::sync::Arc::new(pred);
    let p = pred.clone();
    let calls = tokio::task::spawn_blocking(move || {
        s.wait_until(PATIENCE, |log| {
            log.iter().any(|r| matches!(r, Record::Notify(c) if p(c)))
        });
        s.calls()
    })
    .await
    .unwrap();
    calls
        .iter()
        .rev()
        .find(|c| pred(c))
        .cloned()
        .unwrap_or_else(|| panic!("no notification about {what:?}; the server saw {calls:#?}"))
}

/// Creates `new` at the gateway; its id.
async fn create(requester: &RequesterClient, new: NewRequest) -> String {
    requester
        .create(&new)
        .await
        .unwrap()
        .request
        .body
        .id
        .clone()
}

/// Waits until the gateway says `id` is in `state`; `why` is the failure message.
async fn wait_state_at_gateway(
    requester: &RequesterClient,
    id: &str,
    state: RequestState,
    patience: Duration,
    why: &str,
) {
    let deadline = Instant::now() + patience;
    while state_at_gateway(requester, id).await != state {
        assert!(Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn state_at_gateway(requester: &RequesterClient, id: &str) -> RequestState {
    requester
        .get(id, Duration::ZERO)
        .await
        .unwrap()
        .status
        .body
        .state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the built desktop app, tauri-driver, Xvfb and a session bus: make desktop-e2e"]
async fn pair_receive_review_approve_deny_and_audit_in_the_real_app() {
    let notifications = TestServer::start_async()
        .await
        .expect("org.freedesktop.Notifications on the private session bus");
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let mut bob = Approver::new();
    bob.pair(&gw.invite(BOB)).await;
    bob.start();

    let app_dir = tempfile::tempdir().unwrap();
    let app = Desktop::start(app_dir.path()).await;

    // ---- first run: pair by pasting the link, register the development-mode passkey ----
    app.pair(&gw.invite(ALICE).to_string(), Some("01-pairing"))
        .await;

    // ---- a pushed request: in the inbox, and one native notification ----
    let rotate = create(&requester, request("rotate", &[ALICE], Risk::High)).await;
    let note = notify_matching(&notifications, "prod-db", |c| c.summary.contains("prod-db")).await;
    assert_eq!(note.summary, "Approve sql.exec on prod-db? (high risk)");
    assert!(
        note.body
            .starts_with("ci-bot asks: Rotate the reporting role's password\nExpires in"),
        "{}",
        note.body
    );
    assert_eq!(note.urgency, Some(2), "high risk is critical urgency");
    assert_eq!(note.action_keys(), vec!["default", "review"]);
    assert_eq!(note.app_name, "Countersign");
    app.find(".request-row").await;
    app.wait_text("Rotate the reporting role's password").await;
    app.screenshot("02-inbox").await;

    // ---- forged actions decide nothing: "approve" is no action of ours, 4242 is no id ----
    notifications
        .emit_action_invoked_async(None, note.id, "approve")
        .await
        .unwrap();
    notifications
        .emit_action_invoked_async(None, 4242, "review")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.hash().await,
        "#/inbox",
        "a forged action navigates nowhere"
    );
    assert_eq!(
        state_at_gateway(&requester, &rotate).await,
        RequestState::Pending
    );

    // ---- "Review" on the notification opens exactly that request ----
    notifications
        .invoke_action_async(note.id, "review")
        .await
        .unwrap();
    app.wait_hash(&format!("#/request/{rotate}")).await;
    app.wait_text("ALTER ROLE reporting WITH PASSWORD 'REDACTED';")
        .await;
    app.screenshot("03-detail").await;
    assert_eq!(
        state_at_gateway(&requester, &rotate).await,
        RequestState::Pending
    );

    // ---- approve: the keyboard opens the form, the passkey prompt shows, the gateway agrees ----
    app.find(".decision-panel").await;
    app.click_button("Approve").await;
    app.click_xpath("//form[@aria-label='Approve']//button[@type='submit']")
        .await;
    app.find(".passkey-card").await;
    app.wait_text("Confirm with your passkey").await;
    app.screenshot("04-passkey").await;
    app.find(".result-approve").await;
    app.wait_text("Receipt").await;
    app.screenshot("05-approved").await;
    wait_state_at_gateway(
        &requester,
        &rotate,
        RequestState::Approved,
        PATIENCE,
        "the gateway never marked it approved",
    )
    .await;
    // The notification of a request decided here is updated in place, then closed.
    notify_matching(&notifications, "Approved: sql.exec on prod-db", move |c| {
        c.replaces_id == note.id && c.summary.starts_with("Approved:")
    })
    .await;

    // ---- decided elsewhere: Bob approves; Alice's notification changes in place ----
    let restart = create(&requester, request("restart", &[ALICE, BOB], Risk::Medium)).await;
    let first = notify_matching(&notifications, "prod/api", |c| {
        c.summary == "Approve deploy on prod/api? (medium risk)"
    })
    .await;
    assert_eq!(first.urgency, Some(1), "medium risk is normal urgency");
    bob.wait_received(&restart).await;
    bob.engine
        .approve(&restart, None, &mut bob.auth)
        .await
        .unwrap();
    let first_id = first.id;
    // A burst from one requester shares one notification, so the update is recognised by its
    // text and the id it replaces: the notification that announced the request.
    let updated = notify_matching(&notifications, "Approved: deploy on prod/api", move |c| {
        c.replaces_id == first_id && c.summary == "Approved: deploy on prod/api"
    })
    .await;
    assert_eq!(updated.id, first.id, "updated in place, not a new one");
    assert!(
        updated.body.contains("Nothing left to decide."),
        "{}",
        updated.body
    );

    // ---- a deep link to a request navigates (and decides nothing) ----
    let exec = create(&requester, request("exec", &[ALICE], Risk::High)).await;
    notify_matching(&notifications, "prod/payments-7f9c", |c| {
        c.summary.contains("prod/payments-7f9c")
    })
    .await;
    app.second_launch(&format!("countersign://request/{exec}"));
    app.wait_hash(&format!("#/request/{exec}")).await;
    app.wait_text("kubectl -n prod exec -it payments-7f9c -- /bin/sh")
        .await;
    assert_eq!(
        state_at_gateway(&requester, &exec).await,
        RequestState::Pending
    );

    // ---- hostile deep links are refused with a message ----
    app.second_launch("countersign://approve/everything");
    app.wait_text("Link refused").await;
    app.screenshot("06-link-refused").await;
    assert_eq!(
        app.hash().await,
        format!("#/request/{exec}"),
        "a refused link navigates nowhere"
    );

    // ---- deny with a reason ----
    app.click_button("Deny").await;
    app.find("#deny-reason")
        .await
        .send_keys("Not during the payments freeze")
        .await
        .unwrap();
    app.click_xpath("//form[@aria-label='Deny']//button[@type='submit']")
        .await;
    app.find(".result-deny").await;
    wait_state_at_gateway(
        &requester,
        &exec,
        RequestState::Denied,
        PATIENCE,
        "the gateway never marked it denied",
    )
    .await;
    app.screenshot("07-denied").await;

    // ---- the audit view: both decisions, and a verified chain ----
    app.click_xpath("//nav[@aria-label='Main']//a[contains(., 'Audit log')]")
        .await;
    app.wait_hash("#/audit").await;
    app.find(".audit-list").await;
    app.click_button("Verify chain").await;
    app.wait_text("Chain intact.").await;
    let audit = app.body_text().await;
    assert!(
        audit.contains(rotate.as_str()),
        "the audit view names {rotate}"
    );
    assert!(audit.contains(exec.as_str()), "the audit view names {exec}");
    for verdict in ["\"approve\"", "\"deny\""] {
        assert!(
            audit.contains(verdict),
            "the audit view shows the {verdict} decision"
        );
    }
    assert!(
        audit.contains("Not during the payments freeze"),
        "the denial's reason is audited"
    );
    app.screenshot("08-audit").await;

    app.quit().await;
    bob.stop().await;
}

impl Desktop {
    /// Ends the session, the window and the agent (and waits until they are gone).
    async fn quit(self) {
        let Desktop {
            client,
            _driver,
            agent,
            ..
        } = self;
        let _ = client.close().await;
        tokio::task::spawn_blocking(move || {
            drop(_driver);
            drop(agent);
        })
        .await
        .unwrap();
    }

    /// First run: pastes the pairing link, registers the development-mode passkey and goes to
    /// the inbox.
    async fn pair(&self, link: &str, screenshot: Option<&str>) {
        self.wait_text("Welcome to Countersign").await;
        self.wait_text("Development mode").await;
        self.find("#pair-link").await.send_keys(link).await.unwrap();
        if let Some(name) = screenshot {
            self.screenshot(name).await;
        }
        self.click_button("Register a passkey").await;
        self.wait_text("Paired with").await;
        self.wait_hash("#/inbox").await;
    }
}

/// What `make demo` does: the development pairing at start-up (`COUNTERSIGN_PAIR_LINK`). The
/// page loads on the welcome form while the passkey is registered; once the pairing commits
/// the window shows the inbox (it used to stay on the welcome form), and the new gateway's
/// stream connects without a restart of anything: a request made afterwards arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the built desktop app, tauri-driver, Xvfb and a session bus: make desktop-e2e"]
async fn a_pairing_that_finishes_while_the_app_is_open_shows_the_inbox() {
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let app_dir = tempfile::tempdir().unwrap();
    let link = gw.invite(ALICE).to_string();
    let app = Desktop::start_with(
        app_dir.path(),
        &[("COUNTERSIGN_PAIR_LINK", std::ffi::OsStr::new(&link))],
    )
    .await;
    app.wait_text("Paired with").await;
    app.wait_hash("#/inbox").await;
    let text = app.body_text().await;
    assert!(
        !text.contains("Welcome to Countersign"),
        "the welcome form is gone once paired; the window shows:\n{text}"
    );
    app.find(".inbox").await;
    app.screenshot("00-paired-at-start-up").await;
    create(&requester, request("rotate", &[ALICE], Risk::High)).await;
    app.wait_text("Rotate the reporting role's password").await;
    app.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the built desktop app, tauri-driver, Xvfb and a session bus: make desktop-e2e"]
async fn the_app_opens_offline_and_sends_a_queued_approval_when_the_gateway_returns() {
    let gw = TestGateway::start().await;
    let addr = gw.running.addr;
    let gw_data = gw.gw().config.data_dir.clone();
    let token = gw.token.clone();
    let requester = gw.requester();
    let app_dir = tempfile::tempdir().unwrap();
    let app = Desktop::start(app_dir.path()).await;
    app.pair(&gw.invite(ALICE).to_string(), None).await;
    let id = create(&requester, request("restart", &[ALICE], Risk::High)).await;
    app.wait_text("Restart the API after the config change")
        .await;
    app.quit().await;

    // The gateway goes away; the app starts again from its own store.
    let TestGateway { running, dir, .. } = gw;
    running.shutdown().await;
    let app = Desktop::start(app_dir.path()).await;
    app.wait_text("Restart the API after the config change")
        .await;
    app.wait_text("Offline").await;
    app.screenshot("09-offline-inbox").await;

    // Approving still works: signed, kept and shown as queued.
    app.client
        .execute(&format!("window.location.hash = '#/request/{id}';"), vec![])
        .await
        .unwrap();
    app.wait_text("kubectl -n prod rollout restart deploy/api")
        .await;
    app.click_button("Approve").await;
    app.click_xpath("//form[@aria-label='Approve']//button[@type='submit']")
        .await;
    app.wait_text("queued: gateway unreachable").await;
    app.screenshot("10-queued").await;

    // The gateway returns on the same address: the decision goes out once, and the view says so.
    let running = reopen_gateway(&gw_data, addr, |_| {}, |_| {}).await;
    let requester = RequesterClient::new(running.url(), token).unwrap();
    wait_state_at_gateway(
        &requester,
        &id,
        RequestState::Approved,
        Duration::from_secs(60),
        "the queued approval never reached the gateway",
    )
    .await;
    app.wait_text("Receipt from the gateway").await;
    app.screenshot("11-delivered").await;
    app.quit().await;
    running.shutdown().await;
    drop(dir);
}
