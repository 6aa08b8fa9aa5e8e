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
        .connect_hoop(hoop.url(), Zeroizing::new("hpk_wrong".into()))
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
        .connect_hoop(hoop.url(), Zeroizing::new(format!("{ALICE_TOKEN}\n")))
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

#[tokio::test]
async fn the_cli_connects_with_the_token_on_standard_input_and_lists_its_kind() {
    let hoop = FakeHoop::start().await;
    hoop.add_user(ALICE_TOKEN, &alice());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("alice");
    let url = hoop.url().to_string();
    let mut child = Command::new(bin("countersign"))
        .args(["--data-dir", data.to_str().unwrap(), "--key-store", "file"])
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
