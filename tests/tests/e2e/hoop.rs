//! hoop.dev connections against the fake hoop gateway (`countersign_test_support::hoop`,
//! written from hoop's source): connecting checks the token with hoop and keeps it owner-only,
//! never in the database or the audit log; a bad token stores nothing; the CLI connects with
//! the token on standard input and lists the connection with its kind; and hoop's answers to
//! decisions are sorted into typed errors (self-approval, not eligible, already decided, its
//! 500 for an unknown id), with the group rules of hoop's source.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

use countersign_approver::hoop::api::{HoopClient, HoopError, HoopVerdict};
use countersign_approver::{Engine, EngineError};
use countersign_test_support::bin;
use countersign_test_support::hoop::{FakeHoop, HoopUser, NewReview};
use zeroize::Zeroizing;

const ALICE_TOKEN: &str = "hpk_alice_0123456789abcdef";

fn alice() -> HoopUser {
    HoopUser::new("auth0|alice", "alice@example.com", &["sre", "dba"])
}

fn bob() -> HoopUser {
    HoopUser::new("auth0|bob", "bob@example.com", &["dev"])
}

/// Connects `engine` to `hoop` as Alice, with the software authenticator.
async fn connect(engine: &Engine, hoop: &FakeHoop) -> countersign_approver::hoop::HoopConnection {
    engine
        .connect_hoop(
            hoop.url(),
            Zeroizing::new(ALICE_TOKEN.into()),
            &mut soft(engine),
        )
        .await
        .unwrap()
}

/// Runs `engine` in the background until the sender is told to stop.
fn run_engine(
    engine: &Engine,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), EngineError>>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let engine = engine.clone();
    (stop, tokio::spawn(async move { engine.run(stopped).await }))
}

/// The development software authenticator of `engine`'s data directory.
fn soft(engine: &Engine) -> countersign_approver::SoftAuthenticator {
    countersign_approver::SoftAuthenticator::open(
        &engine.data_dir().join("soft-authenticator.cbor"),
    )
    .unwrap()
}

fn client(hoop: &FakeHoop, token: &str) -> HoopClient {
    HoopClient::new(
        reqwest::Client::new(),
        hoop.url(),
        Zeroizing::new(token.to_owned()),
    )
}

#[tokio::test]
async fn connecting_checks_the_token_with_hoop_and_keeps_it_owner_only() {
    let hoop = FakeHoop::start().await;
    hoop.add_user(ALICE_TOKEN, &alice());
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).unwrap();

    // A token hoop does not know: refused, and nothing kept.
    let bad = engine
        .connect_hoop(
            hoop.url(),
            Zeroizing::new("hpk_wrong".into()),
            &mut soft(&engine),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            bad,
            EngineError::Hoop(HoopError::Unauthorized { status: 401, .. })
        ),
        "{bad:?}"
    );
    assert_eq!(bad.code(), "hoop_unauthorized");
    assert!(engine.hoop_connections().unwrap().is_empty());

    let c = engine
        .connect_hoop(
            hoop.url(),
            Zeroizing::new(format!("{ALICE_TOKEN}\n")),
            &mut soft(&engine),
        )
        .await
        .unwrap();
    assert_eq!(c.user.email, "alice@example.com");
    assert_eq!(c.user.id, "auth0|alice");
    assert_eq!(c.user.groups, vec!["sre", "dba"]);
    assert_eq!(engine.hoop_connections().unwrap(), vec![c.clone()]);
    assert_eq!(engine.hoop_connection("127.0.0.1").unwrap().id, c.id);
    // The kept token is what the connection calls hoop with.
    let me = engine.hoop_client(&c).unwrap().userinfo().await.unwrap();
    assert_eq!(me, c.user);

    // The token is in an owner-only file of its own, and nowhere else.
    let token_file = dir.path().join(format!("hoop-{}.token", c.id));
    let meta = std::fs::metadata(&token_file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), ALICE_TOKEN);
    let audit = engine.audit_entries().unwrap();
    let connected = audit
        .iter()
        .find(|(e, _)| e.kind == "hoop.connected")
        .unwrap();
    assert_eq!(connected.0.detail["user"]["email"], "alice@example.com");
    for (e, _) in &audit {
        assert!(!e.detail.to_string().contains(ALICE_TOKEN));
    }
    drop(engine);
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let f = f.unwrap().path();
        if f != token_file && f.is_file() {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !bytes
                    .windows(ALICE_TOKEN.len())
                    .any(|w| w == ALICE_TOKEN.as_bytes()),
                "the token is in {}",
                f.display()
            );
        }
    }

    // Removed: the row and the token go.
    let engine = Engine::open(dir.path()).unwrap();
    engine.disconnect_hoop(&c.id[..8]).unwrap();
    assert!(engine.hoop_connections().unwrap().is_empty());
    assert!(!token_file.exists());
}

// The CLI runs as a child that the test waits for: the fake hoop is served by other threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_connects_with_the_token_on_standard_input_and_lists_its_kind() {
    let hoop = FakeHoop::start().await;
    hoop.add_user(ALICE_TOKEN, &alice());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("alice");
    let url = hoop.url().to_string();
    let mut child = Command::new(bin("countersign"))
        .args(["--data-dir", data.to_str().unwrap(), "--key-store", "file"])
        .args(["--authenticator", "soft"])
        .args(["connect", "hoop", "--url", &url, "--token-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{ALICE_TOKEN}\n").as_bytes())
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("as:          alice@example.com"), "{said}");
    assert!(said.contains("hoop signs nothing"), "{said}");
    assert!(!said.contains(ALICE_TOKEN));

    let listed = countersign_test_support::countersign(&data, &["--json", "gateways"]);
    assert!(listed.status.success());
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&listed.stdout).trim()).unwrap();
    assert_eq!(line["kind"], "hoop");
    assert_eq!(line["user"]["email"], "alice@example.com");
    assert_eq!(line["url"], url.as_str());

    // A review arrives; the CLI lists it, approves one and rejects another, with the passkey.
    let (_, first) = hoop.create(NewReview::exec(&bob(), "DELETE FROM carts;"));
    let (_, second) = hoop.create(NewReview::exec(&bob(), "DROP TABLE carts;"));
    let cli = |args: &[&str]| {
        let mut all = vec!["--authenticator", "soft", "--key-store", "file"];
        all.extend_from_slice(args);
        countersign_test_support::countersign(&data, &all)
    };
    let listed = cli(&["list"]);
    let listed_text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed_text.contains(&format!("{first}  hoop     pending")),
        "{listed_text}"
    );
    let approved = cli(&["approve", &first]);
    let said_approved = String::from_utf8_lossy(&approved.stdout);
    assert!(approved.status.success(), "{said_approved}");
    assert!(
        said_approved.contains("approved in hoop (with software (development mode"),
        "{said_approved}"
    );
    let rejected = cli(&["deny", &second, "--reason", "not during the freeze"]);
    assert!(
        rejected.status.success(),
        "{}",
        String::from_utf8_lossy(&rejected.stderr)
    );
    assert_eq!(hoop.status(&first), "APPROVED");
    assert_eq!(hoop.status(&second), "REJECTED");
    let again = cli(&["approve", &first]);
    assert!(!again.status.success());

    // No token given: a usage error, before anything is asked of hoop.
    let calls = hoop.state.calls.load(std::sync::atomic::Ordering::SeqCst);
    let none = countersign_test_support::countersign(&data, &["connect", "hoop", "--url", &url]);
    assert_eq!(none.status.code(), Some(2));
    assert_eq!(
        hoop.state.calls.load(std::sync::atomic::Ordering::SeqCst),
        calls
    );
}

#[tokio::test]
async fn hoops_refusals_are_typed_and_its_group_rules_hold() {
    let hoop = FakeHoop::start().await;
    hoop.add_user(ALICE_TOKEN, &alice());
    hoop.add_user("hpk_bob", &bob());
    let alice_c = client(&hoop, ALICE_TOKEN);
    let bob_c = client(&hoop, "hpk_bob");

    // Bob asks; Alice (sre and dba) may decide, Bob may not approve his own.
    let mut two_groups = NewReview::exec(&bob(), "DELETE FROM invoices WHERE id = 7;");
    two_groups.groups = vec!["sre".into(), "dba".into()];
    let (session, review) = hoop.create(two_groups);
    let pending = alice_c.pending("alice@example.com").await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, session);
    assert!(
        pending[0].script.is_none(),
        "hoop lists sessions without their script"
    );
    let full = alice_c.session(&session).await.unwrap();
    assert_eq!(
        full.script.unwrap().data,
        "DELETE FROM invoices WHERE id = 7;"
    );
    assert_eq!(
        bob_c
            .decide(&review, HoopVerdict::Approve, "")
            .await
            .unwrap_err(),
        HoopError::SelfApproval
    );
    // Someone in none of its groups is not eligible.
    hoop.add_user(
        "hpk_carol",
        &HoopUser::new("auth0|carol", "carol@example.com", &["dev"]),
    );
    let mut other = NewReview::exec(&alice(), "SELECT 1;");
    other.groups = vec!["sre".into()];
    let (_, alices_own) = hoop.create(other);
    assert_eq!(
        client(&hoop, "hpk_carol")
            .decide(&alices_own, HoopVerdict::Approve, "")
            .await
            .unwrap_err(),
        HoopError::NotEligible
    );

    // Alice approves for both her groups at once: every group is approved.
    let r = alice_c
        .decide(&review, HoopVerdict::Approve, "")
        .await
        .unwrap();
    assert_eq!(r.status, "APPROVED");
    assert_eq!((r.approved_groups(), r.needed()), (2, 2));
    assert_eq!(alice_c.review(&review).await.unwrap().status, "APPROVED");
    // Rejected in hoop's UI afterwards: final.
    hoop.decide_as(&alice(), &review, "REJECTED").unwrap();
    assert!(matches!(
        alice_c
            .decide(&review, HoopVerdict::Approve, "")
            .await
            .unwrap_err(),
        HoopError::AlreadyDecided { .. }
    ));
    // An unknown id: hoop's 500.
    assert_eq!(
        alice_c
            .decide(
                "6d1f3a2e-0000-4000-8000-000000000000",
                HoopVerdict::Reject,
                "no"
            )
            .await
            .unwrap_err(),
        HoopError::UnknownReview("6d1f3a2e-0000-4000-8000-000000000000".into())
    );
    // A rejection keeps its reason.
    let (_, third) = hoop.create(NewReview::exec(&bob(), "DROP TABLE audit;"));
    let r = alice_c
        .decide(&third, HoopVerdict::Reject, "not in production")
        .await
        .unwrap();
    assert_eq!(r.status, "REJECTED");
    assert_eq!(r.rejection_reason.as_deref(), Some("not in production"));
}

/// Records what the engine asks to be notified of.
#[derive(Default)]
struct Notices(std::sync::Mutex<Vec<String>>);

impl countersign_approver::Notifier for Notices {
    fn hoop_review_arrived(&self, _connection: &str, review_id: &str) {
        self.0.lock().unwrap().push(review_id.to_owned());
    }
}

fn polling_engine(dir: &std::path::Path) -> Engine {
    Engine::open_with(
        dir,
        countersign_approver::EngineOptions {
            hoop_poll: std::time::Duration::from_millis(100),
            ..Default::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_new_review_arrives_within_a_poll_and_follows_what_hoops_ui_decides() {
    let hoop = FakeHoop::start().await;
    hoop.add_user(ALICE_TOKEN, &alice());
    let carol = HoopUser::new("auth0|carol", "carol@example.com", &["sre"]);
    let dir = tempfile::tempdir().unwrap();
    let engine = polling_engine(dir.path());
    let notices = std::sync::Arc::new(Notices::default());
    engine.set_notifier(notices.clone());
    connect(&engine, &hoop).await;
    let (stop, running) = run_engine(&engine);

    // A hostile script: an override that reverses what follows, and a zero-width space.
    let mut new = NewReview::exec(
        &bob(),
        "UPDATE accounts SET balance = 0; -- \u{202E}1=1\u{200B}",
    );
    new.ai = Some((
        "high".into(),
        "Destructive write".into(),
        "Sets every balance to zero.".into(),
    ));
    let (_, review) = hoop.create(new);
    let notice = countersign_test_support::eventually("the review notified", || {
        notices.0.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(notice, review);
    let notice = engine.hoop_item(&review).unwrap().unwrap();
    assert_eq!(notice.action(), "hoop.exec");
    assert_eq!(notice.resource(), "pgprod (postgres)");
    assert_eq!(notice.risk(), Some(countersign_protocol::Risk::High));
    assert_eq!(notice.summary(), "Destructive write");
    assert!(
        notice
            .provenance()
            .starts_with("unsigned: fetched over plain HTTP from http://127.0.0.1:"),
        "{}",
        notice.provenance()
    );
    let items = engine.hoop_items(false).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].requester(), "bob@example.com");
    assert!(
        items[0].detail().contains('\u{202E}'),
        "stored exactly as hoop sent it"
    );
    assert_eq!(
        items[0].session.ai_analysis.as_ref().unwrap().risk_level,
        "high"
    );

    // Decided in hoop's UI by someone else: the inbox follows at the next poll.
    hoop.decide_as(&carol, &review, "APPROVED").unwrap();
    countersign_test_support::eventually("the approval seen", || {
        engine.hoop_items(false).unwrap().is_empty().then_some(())
    })
    .await;
    let all = engine.hoop_items(true).unwrap();
    assert_eq!(all[0].review.status, "APPROVED");
    let _ = stop.send(true);
    running.await.unwrap().unwrap();
    let audit = engine.audit_entries().unwrap();
    let status = audit
        .iter()
        .find(|(e, _)| e.kind == "hoop.review_status")
        .unwrap();
    assert_eq!(status.0.detail["status"], "APPROVED");
    assert_eq!(status.0.detail["groups"][0]["by"], "carol@example.com");
    let received = audit
        .iter()
        .find(|(e, _)| e.kind == "hoop.review_received")
        .unwrap();
    assert_eq!(received.0.detail["signed"], false);
    assert_eq!(notices.0.lock().unwrap().len(), 1, "notified once");
    drop(engine);

    // The CLI shows it escaped, and says where it came from.
    let data = dir.path();
    let out = countersign_test_support::countersign(data, &["--offline", "show", &review[..8]]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("\\u{202E}1=1\\u{200B}"), "{shown}");
    assert!(!shown.contains('\u{202E}'), "{shown}");
    assert!(
        shown.contains("unsigned: fetched over plain HTTP"),
        "{shown}"
    );
    assert!(shown.contains("WARNING"), "{shown}");
    assert!(
        shown.contains("hoop's risk  high: Destructive write"),
        "{shown}"
    );
    let listed = countersign_test_support::countersign(data, &["--offline", "list", "--all"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("approved  hoop.exec on pgprod (postgres) by bob@example.com"),
        "{listed}"
    );
}

#[tokio::test]
async fn a_hoop_that_cannot_be_reached_holds_up_no_other() {
    let mut down = FakeHoop::start().await;
    down.add_user(ALICE_TOKEN, &alice());
    let up = FakeHoop::start().await;
    up.add_user(ALICE_TOKEN, &alice());
    let dir = tempfile::tempdir().unwrap();
    let engine = polling_engine(dir.path());
    let mut events = engine.subscribe();
    let gone = engine
        .connect_hoop(
            down.url(),
            Zeroizing::new(ALICE_TOKEN.into()),
            &mut soft(&engine),
        )
        .await
        .unwrap();
    engine
        .connect_hoop(
            up.url(),
            Zeroizing::new(ALICE_TOKEN.into()),
            &mut soft(&engine),
        )
        .await
        .unwrap();
    down.stop().await;
    let (stop, running) = run_engine(&engine);
    let (_, review) = up.create(NewReview::exec(&bob(), "SELECT 1;"));
    countersign_test_support::eventually("the reachable hoop's review", || {
        (engine.hoop_items(false).unwrap().len() == 1).then_some(())
    })
    .await;
    assert_eq!(engine.hoop_items(false).unwrap()[0].id(), review);
    // The other connection said it is down.
    let mut down_seen = false;
    while let Ok(e) = events.try_recv() {
        if let countersign_approver::EngineEvent::ConnectionDown { gateway, error } = e {
            down_seen |= gateway == gone.id && error.contains("could not be reached");
        }
    }
    assert!(down_seen);
    // `sync` reports it, and still polls the other.
    let _ = stop.send(true);
    running.await.unwrap().unwrap();
    let (reports, _) = engine.sync().await.unwrap();
    let bad = reports.iter().find(|r| r.gateway == gone.id).unwrap();
    assert_eq!(bad.error_code.as_deref(), Some("hoop_unreachable"));
    assert!(reports
        .iter()
        .any(|r| r.gateway != gone.id && r.error.is_none()));
    // Its health is kept, for `countersign gateways`; the other's is good.
    let (since, error) = engine.hoop_health(&gone.id).unwrap().unreachable.unwrap();
    assert!(error.contains("could not be reached"), "{error}");
    let others: Vec<_> = engine
        .hoop_connections()
        .unwrap()
        .into_iter()
        .filter(|c| c.id != gone.id)
        .collect();
    assert!(engine
        .hoop_health(&others[0].id)
        .unwrap()
        .unreachable
        .is_none());

    // Back again: its token is refused now (the key was revoked in hoop).
    down.start_again().await;
    down.add_user("hpk_someone_else", &bob());
    down.remove_token(ALICE_TOKEN);
    let (reports, _) = engine.sync().await.unwrap();
    let bad = reports.iter().find(|r| r.gateway == gone.id).unwrap();
    assert_eq!(bad.error_code.as_deref(), Some("hoop_unauthorized"));
    let (still_since, error) = engine.hoop_health(&gone.id).unwrap().unreachable.unwrap();
    assert_eq!(still_since, since, "failing since the first failure");
    assert!(error.contains("refused the token"), "{error}");
    drop(engine);
    let listed = countersign_test_support::countersign(dir.path(), &["gateways"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("health: ok"), "{listed}");
    assert!(
        listed.contains("health: cannot be polled since"),
        "{listed}"
    );
}

/// An engine connected to `hoop` as Alice, with the review `new` waiting for her in its inbox.
async fn with_review(hoop: &FakeHoop, dir: &std::path::Path, new: NewReview) -> (Engine, String) {
    hoop.add_user(ALICE_TOKEN, &alice());
    let engine = Engine::open(dir).unwrap();
    connect(&engine, hoop).await;
    let (_, review) = hoop.create(new);
    engine.sync().await.unwrap();
    assert_eq!(engine.hoop_items(false).unwrap().len(), 1);
    (engine, review)
}

fn puts(hoop: &FakeHoop) -> usize {
    hoop.state.puts.load(std::sync::atomic::Ordering::SeqCst)
}

fn audited(engine: &Engine, kind: &str) -> Vec<serde_json::Value> {
    engine
        .audit_entries()
        .unwrap()
        .into_iter()
        .filter(|(e, _)| e.kind == kind)
        .map(|(e, _)| e.detail)
        .collect()
}

#[tokio::test]
async fn an_approval_is_confirmed_with_the_passkey_signed_and_delivered_once() {
    use countersign_approver::hoop::decide::{HoopDelivery, DOMAIN};
    let hoop = FakeHoop::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (engine, review) = with_review(
        &hoop,
        dir.path(),
        NewReview::exec(&bob(), "DELETE FROM carts;"),
    )
    .await;
    let out = engine
        .decide_hoop(&review[..8], HoopVerdict::Approve, "", &mut soft(&engine))
        .await
        .unwrap();
    assert_eq!(
        out.delivery,
        HoopDelivery::Delivered {
            status: "APPROVED".into()
        }
    );
    assert_eq!(hoop.status(&review), "APPROVED");
    assert_eq!(puts(&hoop), 1);
    // Signed by the device key, over the script shown.
    engine
        .device_public_key()
        .verify(DOMAIN, &out.decision.body, &out.decision.signature)
        .unwrap();
    assert_eq!(
        out.decision.body.script_sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            b"DELETE FROM carts;"
        ))
    );
    assert_eq!(audited(&engine, "hoop.decision_made").len(), 1);
    assert_eq!(
        audited(&engine, "hoop.decision_sent")[0]["status"],
        "APPROVED"
    );
    // Nothing is sent again, and a second decision is refused here.
    engine.sync().await.unwrap();
    assert_eq!(puts(&hoop), 1);
    assert!(engine.hoop_items(false).unwrap().is_empty());
    let again = engine
        .decide_hoop(&review, HoopVerdict::Reject, "no", &mut soft(&engine))
        .await
        .unwrap_err();
    assert!(
        matches!(again, EngineError::RequestNotPending { .. }),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_lost_answer_is_read_back_and_not_sent_again() {
    use countersign_approver::hoop::decide::HoopDelivery;
    let hoop = FakeHoop::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (engine, review) =
        with_review(&hoop, dir.path(), NewReview::exec(&bob(), "VACUUM FULL;")).await;
    hoop.state
        .lose_answers
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let out = engine
        .decide_hoop(&review, HoopVerdict::Approve, "", &mut soft(&engine))
        .await
        .unwrap();
    assert!(
        matches!(out.delivery, HoopDelivery::Queued { .. }),
        "{out:?}"
    );
    assert_eq!(hoop.status(&review), "APPROVED", "hoop applied it");
    engine.sync().await.unwrap();
    assert_eq!(puts(&hoop), 1, "read back, not sent again");
    let sent = audited(&engine, "hoop.decision_sent");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["found_applied"], true);
}

#[tokio::test]
async fn a_hoop_restart_delays_a_decision_and_one_decided_in_hoops_ui_meanwhile_is_not_sent() {
    use countersign_approver::hoop::decide::HoopDelivery;
    let mut hoop = FakeHoop::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut two = NewReview::exec(&bob(), "TRUNCATE sessions;");
    two.groups = vec!["sre".into()];
    let (engine, first) = with_review(&hoop, dir.path(), two).await;
    let (_, second) = hoop.create(NewReview::exec(&bob(), "TRUNCATE carts;"));
    engine.sync().await.unwrap();

    // hoop goes down: both decisions are kept.
    hoop.stop().await;
    for (id, verdict) in [
        (&first, HoopVerdict::Approve),
        (&second, HoopVerdict::Reject),
    ] {
        let out = engine
            .decide_hoop(id, verdict, "not now", &mut soft(&engine))
            .await
            .unwrap();
        assert!(
            matches!(out.delivery, HoopDelivery::Queued { .. }),
            "{out:?}"
        );
    }
    // Meanwhile Carol approves the second one in hoop's web UI.
    let carol = HoopUser::new("auth0|carol", "carol@example.com", &["sre"]);
    hoop.decide_as(&carol, &second, "APPROVED").unwrap();
    hoop.start_again().await;
    engine.flush_hoop(true).await.unwrap();
    assert_eq!(hoop.status(&first), "APPROVED");
    assert_eq!(
        hoop.status(&second),
        "APPROVED",
        "not rejected after Carol approved"
    );
    assert_eq!(puts(&hoop), 1, "the first sent once, the second never");
    let superseded = audited(&engine, "hoop.decision_superseded");
    assert_eq!(superseded.len(), 1);
    assert_eq!(superseded[0]["by"][0], "carol@example.com");
    let (_, state, _) = engine.hoop_decision(&second).unwrap().unwrap();
    assert_eq!(state, "superseded");
}

#[tokio::test]
async fn hoops_refusal_is_a_sentence_and_its_code_is_audited() {
    use countersign_approver::hoop::decide::HoopDelivery;
    let hoop = FakeHoop::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Alice's own review, in her group: hoop does not let her approve it.
    let (engine, review) =
        with_review(&hoop, dir.path(), NewReview::exec(&alice(), "SELECT 1;")).await;
    let out = engine
        .decide_hoop(&review, HoopVerdict::Approve, "", &mut soft(&engine))
        .await
        .unwrap();
    match &out.delivery {
        HoopDelivery::Refused { code, message } => {
            assert_eq!(code, "hoop_self_approval");
            assert!(message.contains("your own review"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        audited(&engine, "hoop.decision_refused")[0]["code"],
        "hoop_self_approval"
    );
    assert_eq!(hoop.status(&review), "PENDING");
}
