//! Mail through the real gateway and a real SMTP server (aiosmtpd, `smtp_sink.py`): an approver
//! whose device holds no stream is mailed when the grace period ends, and one whose device
//! does is not; the requester hears the outcome; a mail carries a summary and a link, hidden
//! characters made visible, never the detail; a mail server that was down gets every mail
//! once across a gateway restart; the digest lists a period's requests once.

use std::collections::BTreeSet;
use std::time::Duration;

use countersign_gateway::config::email::EmailConfig;
use countersign_gateway::config::Config;
use countersign_gateway::directory::Entry;
use countersign_gateway::directory_admin;
use countersign_test_support::smtp::{unused_port, SmtpSink};
use countersign_test_support::{eventually, TestGateway, REQUESTER};

use crate::requests::Requests;
use crate::stages::approve;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
/// Bob's address in the directory, which wins over his approver name.
const BOB_MAIL: &str = "bob.builder@example.org";
/// The person whose requester token is [`REQUESTER`], and her address.
const CAROL: &str = "carol@example.com";
const CAROL_MAIL: &str = "carol.requests@example.org";
const GRACE: u64 = 30;

fn configure(c: &mut Config, port: u16) {
    c.webhook_poll_ms = 50;
    c.email = Some(EmailConfig {
        smtp_url: format!("smtp://127.0.0.1:{port}").parse().unwrap(),
        password_file: None,
        from: "Countersign <countersign@example.com>".into(),
        approvers: true,
        grace_seconds: GRACE,
        requesters: true,
        digest_to: Vec::new(),
        digest_seconds: 3600,
    });
}

/// How many deliveries wait to be sent or retried.
fn waiting(h: &TestGateway) -> u64 {
    h.gw().store.read(|c| c.deliveries_waiting()).unwrap()
}

#[tokio::test]
async fn an_approver_with_no_device_connected_is_mailed_after_the_grace_and_the_requester_hears_the_outcome(
) {
    let sink = SmtpSink::start(None);
    let h = TestGateway::start_with(|c| configure(c, sink.port)).await;
    let mut alice = h.pair(ALICE).await;
    let _bob = h.pair(BOB).await;
    let email = |names: &[&str]| Entry {
        email: names.iter().map(|n| n.to_string()).collect(),
        ..Entry::default()
    };
    directory_admin::link(h.gw(), BOB, &email(&[BOB_MAIL])).unwrap();
    let carol = Entry {
        tokens: vec![REQUESTER.into()],
        ..email(&[CAROL_MAIL])
    };
    directory_admin::add_approver(h.gw(), CAROL, None, &carol).unwrap();
    // Alice's device holds a stream; Bob's does not.
    let stream = alice.open_stream(&h, 0).await;

    let created = h
        .create_with(|n| {
            n.approvers = vec![ALICE.into(), BOB.into()];
            n.summary = "Drop the \u{202E}elbat snoisses".into();
        })
        .await;
    let id = created.request.body.id.clone();
    // Within the grace period nobody is mailed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.mails().is_empty(), "{:#?}", sink.mails());
    assert_eq!(waiting(&h), 2, "one mail each for Alice and Bob, due later");

    h.gw().clock.shift(GRACE as i64 + 1);
    let mails = sink.wait_for(1).await;
    eventually("both approver mails handled", || {
        (waiting(&h) == 0).then_some(())
    })
    .await;
    let mails_now = sink.mails();
    assert_eq!(mails_now.len(), 1, "Alice is connected: {mails_now:#?}");
    let m = &mails[0];
    assert_eq!(m.to, vec![BOB_MAIL.to_owned()]);
    assert_eq!(m.from, "countersign@example.com");
    let subject = m.header("subject").unwrap();
    assert!(subject.starts_with("Approval asked"), "{subject}");
    let body = m.body();
    assert!(
        body.contains(&format!("countersign://request/{id}")),
        "{body}"
    );
    assert!(body.contains("\\u{202E}"), "the override is shown: {body}");
    assert!(!body.contains('\u{202E}'), "{body}");
    assert!(!body.contains("DROP TABLE"), "no detail: {body}");
    assert!(body.contains("cannot approve or deny"), "{body}");
    let message_id = m.header("message-id").unwrap();
    assert!(message_id.ends_with("@example.com>"), "{message_id}");

    // Alice approves: the requester's person is told.
    drop(stream);
    approve(&mut alice, &h, &id).await;
    let mails = sink.wait_for(2).await;
    let outcome = &mails[1];
    assert_eq!(outcome.to, vec![CAROL_MAIL.to_owned()]);
    let subject = outcome.header("subject").unwrap();
    assert!(subject.starts_with("Request approved"), "{subject}");
    assert!(
        outcome.body().contains(&format!("was approved by {ALICE}")),
        "{}",
        outcome.body()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.mails().len(), 2, "{:#?}", sink.mails());
}

#[tokio::test]
async fn a_mail_server_that_was_down_gets_each_mail_once_across_a_gateway_restart() {
    let port = unused_port();
    let h = TestGateway::start_with(|c| configure(c, port)).await;
    h.pair(BOB).await;
    h.create_with(|n| n.approvers = vec![BOB.into()]).await;
    // Stored due at the end of the grace period, which is then moved past.
    eventually("the mail stored", || (waiting(&h) == 1).then_some(())).await;
    h.gw().clock.shift(GRACE as i64 + 1);
    // The mail is tried, and fails: nothing listens.
    eventually("a failed attempt", || {
        h.gw()
            .store
            .read(|c| c.deliveries_due(i64::MAX, 10))
            .unwrap()
            .iter()
            .any(|d| d.attempts > 0)
            .then_some(())
    })
    .await;

    // The gateway stops; the mail server comes up; the gateway starts again over its data.
    let mut sink = None;
    let h = h
        .restart(
            |c| configure(c, port),
            |gw| {
                sink = Some(SmtpSink::start(Some(port)));
                // Past the grace and the retry's backoff.
                gw.clock.shift(GRACE as i64 + 10)
            },
        )
        .await;
    let sink = sink.unwrap();
    sink.wait_for(1).await;
    eventually("the mail recorded sent", || {
        (waiting(&h) == 0).then_some(())
    })
    .await;
    // A second request after the restart: mailed once, and the first not again.
    h.create_with(|n| {
        n.approvers = vec![BOB.into()];
        n.summary = "second".into();
    })
    .await;
    eventually("the mail stored", || (waiting(&h) == 1).then_some(())).await;
    h.gw().clock.shift(GRACE as i64 + 1);
    let mails = sink.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.mails().len(), 2, "{:#?}", sink.mails());
    assert!(mails[1].header("subject").unwrap().contains("second"));
    let ids: BTreeSet<_> = mails.iter().map(|m| m.header("message-id")).collect();
    assert_eq!(ids.len(), 2);
}

#[tokio::test]
async fn the_digest_lists_the_requests_of_its_period_once() {
    let sink = SmtpSink::start(None);
    let h = TestGateway::start_with(|c| {
        configure(c, sink.port);
        let e = c.email.as_mut().unwrap();
        e.approvers = false;
        e.requesters = false;
        e.digest_to = vec!["ops@example.com".into(), "audit@example.com".into()];
    })
    .await;
    let mut alice = h.pair(ALICE).await;
    // The first look starts the schedule: history is not sent.
    eventually("the digest schedule started", || {
        h.gw().store.read(|c| c.digest_last()).unwrap()
    })
    .await;
    let first = h
        .create_with(|n| n.summary = "rotate the signing key".into())
        .await;
    h.create_with(|n| {
        n.summary = "restart the ledger".into();
        // Still pending two periods on.
        n.ttl_seconds = 4 * 3600;
    })
    .await;
    approve(&mut alice, &h, &first.request.body.id).await;
    h.gw().clock.shift(3601);
    let mails = sink.wait_for(2).await;
    let to: BTreeSet<_> = mails.iter().flat_map(|m| m.to.clone()).collect();
    assert_eq!(
        to,
        BTreeSet::from(["ops@example.com".into(), "audit@example.com".into()])
    );
    let subject = mails[0].header("subject").unwrap();
    assert!(subject.ends_with("2 requests, 1 pending"), "{subject}");
    let body = mails[0].body();
    assert!(body.contains("[approved] rotate the signing key"), "{body}");
    assert!(body.contains("[pending] restart the ledger"), "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.mails().len(), 2, "one digest per period");

    // The next period: only the request still pending.
    h.gw().clock.shift(3601);
    let mails = sink.wait_for(4).await;
    let subject = mails[2].header("subject").unwrap();
    assert!(subject.ends_with("1 request, 1 pending"), "{subject}");
    assert!(!mails[2].body().contains("rotate the signing key"));
}
