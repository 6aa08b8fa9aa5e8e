//! Desktop notifications against a real (private) session bus and the recording test server.
//!
//! Run with `dbus-run-session -- cargo test -p countersign-notifications`. Without a session bus
//! every test here fails with a message saying so.
// Tests may read the real time; the wall-clock ban (clippy.toml) is for the product.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use countersign_notifications::test_server::{NotifyCall, Record, TestServer, CLOSED_DISMISSED};
use countersign_notifications::{DesktopNotifier, NotifierOptions, RequestFacts, ReviewCallback};
use countersign_protocol::{ApprovalRequest, KeyPair, RequestState, Risk, Signed};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);
const DETAIL_SECRET: &str = "PGPASSWORD=hunter2";
const REASON_TEXT: &str = "REASON-NOT-SHOWN";

/// The tests share one session bus and one well-known name: they run one at a time, each with
/// the server's records cleared.
static BUS: Mutex<Option<TestServer>> = Mutex::new(None);

struct Harness {
    guard: MutexGuard<'static, Option<TestServer>>,
}

impl Harness {
    fn server(&mut self) -> TestServer {
        if self.guard.is_none() {
            *self.guard = Some(TestServer::start().unwrap_or_else(|e| {
                panic!(
                    "cannot own org.freedesktop.Notifications on the session bus ({e}); run the \
                     tests on a private bus: dbus-run-session -- cargo test -p countersign-notifications"
                )
            }));
        }
        let server = self.guard.clone().unwrap();
        server.reset();
        server
    }
}

fn bus() -> Harness {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        panic!(
            "DBUS_SESSION_BUS_ADDRESS is not set: these tests need a private session bus. \
             Run them as: dbus-run-session -- cargo test -p countersign-notifications"
        );
    }
    Harness {
        guard: BUS.lock().unwrap_or_else(|p| p.into_inner()),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Req<'a> {
    id: &'a str,
    requester: &'a str,
    action: &'a str,
    resource: &'a str,
    risk: Risk,
    summary: &'a str,
}

impl Default for Req<'_> {
    fn default() -> Self {
        Req {
            id: "req-1",
            requester: "ci-bot",
            action: "sql.exec",
            resource: "prod-db",
            risk: Risk::High,
            summary: "Drop the sessions table",
        }
    }
}

/// What the desktop shell hands the notifier for a real request signed by a gateway key, whose
/// detail and reason must never reach a notification. (The passkey challenge cannot: it is in
/// the inbox row, and `RequestFacts` has no field for it.)
fn item(r: Req<'_>) -> RequestFacts {
    let key = KeyPair::generate();
    let t = now();
    let body = ApprovalRequest {
        v: 1,
        id: r.id.into(),
        gateway: "gw-fingerprint".into(),
        action: r.action.into(),
        resource: r.resource.into(),
        risk: r.risk,
        summary: r.summary.into(),
        detail: format!("psql -c 'DROP TABLE sessions' # {DETAIL_SECRET}"),
        requester: r.requester.into(),
        reason: REASON_TEXT.into(),
        created_at: t,
        not_before: t,
        expires_at: t + 300,
        approvers: vec!["alice@example.com".into()],
        min_approvals: 1,
        match_required: false,
        deny_needs_passkey: false,
        stages: vec![],
        mode: countersign_protocol::Mode::Ask,
        distinct_people: true,
        requester_person: None,
        policy: None,
        grant_seconds: None,
        windows: vec![],
    };
    let request = Signed::sign(&key, body).unwrap();
    RequestFacts::from_request("gw-fingerprint", &request.body)
}

fn notifier(options: NotifierOptions) -> (DesktopNotifier, Receiver<String>) {
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let on_review: ReviewCallback = Arc::new(move |id| {
        let _ = tx.lock().unwrap().send(id);
    });
    (DesktopNotifier::start(options, on_review).unwrap(), rx)
}

fn options() -> NotifierOptions {
    NotifierOptions {
        close_delay: Duration::from_millis(200),
        ..NotifierOptions::with_clock(Arc::new(now))
    }
}

fn one_call(server: &TestServer, n: &DesktopNotifier) -> NotifyCall {
    assert!(n.flush(WAIT));
    let calls = server.wait_for_calls(1, WAIT);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    calls.into_iter().next().unwrap()
}

fn assert_no_secrets(call: &NotifyCall) {
    let all = format!(
        "{} {} {:?} {:?}",
        call.summary, call.body, call.actions, call.hints
    );
    for secret in [DETAIL_SECRET, REASON_TEXT, "DROP TABLE"] {
        assert!(!all.contains(secret), "{secret:?} leaked into {all}");
    }
}

#[test]
fn a_pushed_request_raises_one_notification() {
    let mut bus = bus();
    let server = bus.server();
    let cases = [
        (Risk::Low, 0u8, "low"),
        (Risk::Medium, 1, "medium"),
        (Risk::High, 2, "high"),
        (Risk::Critical, 2, "critical"),
    ];
    for (risk, urgency, word) in cases {
        server.reset();
        let (n, _rx) = notifier(options());
        n.request_arrived(item(Req {
            risk,
            ..Req::default()
        }));
        let call = one_call(&server, &n);
        assert_eq!(call.app_name, "Countersign");
        assert_eq!(call.replaces_id, 0);
        assert_eq!(
            call.summary,
            format!("Approve sql.exec on prod-db? ({word} risk)")
        );
        assert_eq!(
            call.body,
            "ci-bot asks: Drop the sessions table\nExpires in 5 min"
        );
        assert_eq!(call.actions, ["default", "Review", "review", "Review"]);
        assert_eq!(call.urgency, Some(urgency), "{risk:?}");
        assert_eq!(call.expire_timeout, -1);
        assert_no_secrets(&call);
    }
}

#[test]
fn review_and_default_actions_open_the_request() {
    let mut bus = bus();
    let server = bus.server();
    let (n, rx) = notifier(options());
    n.request_arrived(item(Req::default()));
    let call = one_call(&server, &n);
    for key in ["review", "default"] {
        server.invoke_action(call.id, key).unwrap();
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), "req-1", "action {key}");
    }
    assert!(rx.recv_timeout(QUIET).is_err());
    // Opening the app decides nothing and changes nothing on screen.
    assert_eq!(server.log().len(), 1, "{:#?}", server.log());
}

#[test]
fn forged_or_unknown_actions_do_nothing() {
    let mut bus = bus();
    let server = bus.server();
    let (n, rx) = notifier(options());
    n.request_arrived(item(Req {
        id: "target",
        requester: "alice",
        ..Req::default()
    }));
    n.request_arrived(item(Req {
        id: "control",
        requester: "bob",
        ..Req::default()
    }));
    assert!(n.flush(WAIT));
    let calls = server.wait_for_calls(2, WAIT);
    let (target, control) = (calls[0].id, calls[1].id);
    let listener = calls[0].sender.clone();

    let forger = zbus::block_on(zbus::Connection::session()).unwrap();
    let forge = |dest: Option<&str>, id: u32, key: &str| {
        zbus::block_on(forger.emit_signal(
            dest,
            "/org/freedesktop/Notifications",
            "org.freedesktop.Notifications",
            "ActionInvoked",
            &(id, key),
        ))
        .unwrap();
    };
    // From the server itself: an id we never showed, and keys we never offered.
    server.emit_action_invoked(None, 9_999, "review").unwrap();
    server.emit_action_invoked(None, 0, "default").unwrap();
    for key in ["approve", "deny", "", "Review", "review "] {
        server.invoke_action(target, key).unwrap();
    }
    // From another program on the bus, broadcast and addressed to the listener: the right id
    // and key, but not the notification server.
    forge(None, target, "review");
    forge(Some(&listener), target, "default");
    std::thread::sleep(QUIET);
    assert!(rx.try_recv().is_err(), "a forged action reached the shell");

    // A genuine click still works afterwards.
    server.invoke_action(control, "review").unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "control");
    assert!(rx.recv_timeout(QUIET).is_err());
    // Nothing was decided or changed.
    assert_eq!(server.calls().len(), 2);
    assert!(server.closes().is_empty());
}

#[test]
fn a_request_resolved_elsewhere_is_updated_in_place_then_closed() {
    let mut bus = bus();
    let server = bus.server();
    let cases = [
        (RequestState::Approved, "Approved: sql.exec on prod-db"),
        (RequestState::Denied, "Denied: sql.exec on prod-db"),
        (RequestState::Expired, "Expired: sql.exec on prod-db"),
        (RequestState::Withdrawn, "Withdrawn: sql.exec on prod-db"),
    ];
    for (state, summary) in cases {
        server.reset();
        let (n, rx) = notifier(options());
        n.request_arrived(item(Req::default()));
        let first = one_call(&server, &n);
        n.request_resolved("req-1", state);
        assert!(server.wait_until(WAIT, |log| log.len() == 3), "{state:?}");
        let log = server.log();
        let Record::Notify(update) = &log[1] else {
            panic!("expected the update first: {log:#?}");
        };
        assert_eq!(update.replaces_id, first.id);
        assert_eq!(update.id, first.id);
        assert_eq!(update.summary, summary);
        assert_eq!(
            update.body,
            "ci-bot asked: Drop the sessions table\nNothing left to decide."
        );
        assert_eq!(update.urgency, Some(0));
        assert_eq!(update.actions, ["default", "Open"]);
        assert_eq!(
            update.hints.get("transient").map(String::as_str),
            Some("true")
        );
        assert_no_secrets(update);
        let Record::Close { id, .. } = &log[2] else {
            panic!("expected a close: {log:#?}");
        };
        assert_eq!(*id, first.id);
        assert!(server.open_ids().is_empty());
        // Closed means forgotten: a late click on it opens nothing.
        server
            .emit_action_invoked(None, first.id, "default")
            .unwrap();
        assert!(rx.recv_timeout(QUIET).is_err());
    }
}

#[test]
fn the_close_waits_for_the_delay_after_the_update() {
    let mut bus = bus();
    let server = bus.server();
    let (n, _rx) = notifier(NotifierOptions {
        close_delay: Duration::from_millis(500),
        ..NotifierOptions::with_clock(Arc::new(now))
    });
    n.request_arrived(item(Req::default()));
    one_call(&server, &n);
    n.request_resolved("req-1", RequestState::Approved);
    assert!(server.wait_until(WAIT, |log| log.len() == 3));
    let log = server.log();
    let updated_at = match &log[1] {
        Record::Notify(c) => c.received_at,
        other => panic!("{other:?}"),
    };
    // The close is recorded after the update; measure from the update to now as an upper bound
    // and check the lower bound with the delay itself.
    assert!(Instant::now().duration_since(updated_at) >= Duration::from_millis(450));
    // Pending-state "resolutions" and unknown requests change nothing.
    server.reset();
    n.request_resolved("req-1", RequestState::Approved);
    n.request_resolved("unknown", RequestState::Denied);
    assert!(n.flush(WAIT));
    std::thread::sleep(QUIET);
    assert!(server.log().is_empty(), "{:#?}", server.log());
}

#[test]
fn a_burst_from_one_requester_collapses_into_one_notification() {
    let mut bus = bus();
    let server = bus.server();
    let (n, rx) = notifier(options());
    let ids = ["b1", "b2", "b3", "b4", "b5"];
    for (i, id) in ids.iter().enumerate() {
        n.request_arrived(item(Req {
            id,
            risk: if i == 1 { Risk::Critical } else { Risk::Low },
            summary: &format!("request number {}", i + 1),
            ..Req::default()
        }));
    }
    let calls = server.wait_for_calls(5, WAIT);
    assert_eq!(calls.len(), 5, "{calls:#?}");
    let first = calls[0].id;
    assert_eq!(calls[0].replaces_id, 0);
    for (i, c) in calls.iter().enumerate().skip(1) {
        assert_eq!(c.replaces_id, first, "update {i} in place");
        assert_eq!(c.id, first);
        assert_eq!(c.summary, format!("ci-bot: {} requests waiting", i + 1));
    }
    let last = &calls[4];
    assert_eq!(
        last.body,
        "Newest: sql.exec on prod-db (low risk): request number 5\nExpires in 5 min"
    );
    assert_eq!(last.urgency, Some(2), "urgency of the riskiest waiting");
    assert_eq!(server.open_ids(), [first]);

    // Review opens the newest waiting request.
    server.invoke_action(first, "review").unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "b5");
    // One resolved: the notification now counts the rest and Review opens the new newest.
    n.request_resolved("b5", RequestState::Denied);
    let calls = server.wait_for_calls(6, WAIT);
    assert_eq!(calls[5].replaces_id, first);
    assert_eq!(calls[5].summary, "ci-bot: 4 requests waiting");
    server.invoke_action(first, "default").unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "b4");
    // Down to one: back to the single-request text.
    for id in ["b1", "b2", "b3"] {
        n.request_resolved(id, RequestState::Expired);
    }
    let calls = server.wait_for_calls(9, WAIT);
    assert_eq!(calls[8].summary, "Approve sql.exec on prod-db? (low risk)");
    assert_eq!(calls[8].replaces_id, first);

    // Another requester gets a notification of its own.
    n.request_arrived(item(Req {
        id: "other",
        requester: "deploy-bot",
        ..Req::default()
    }));
    let calls = server.wait_for_calls(10, WAIT);
    assert_eq!(calls[9].replaces_id, 0);
    assert_ne!(calls[9].id, first);
    assert!(server.closes().is_empty());
}

#[test]
fn collapsing_stops_after_the_window() {
    let mut bus = bus();
    let server = bus.server();
    let (n, _rx) = notifier(NotifierOptions {
        collapse_window: Duration::from_millis(200),
        ..NotifierOptions::with_clock(Arc::new(now))
    });
    n.request_arrived(item(Req {
        id: "w1",
        ..Req::default()
    }));
    one_call(&server, &n);
    std::thread::sleep(Duration::from_millis(300));
    n.request_arrived(item(Req {
        id: "w2",
        ..Req::default()
    }));
    let calls = server.wait_for_calls(2, WAIT);
    assert_eq!(
        calls[1].replaces_id, 0,
        "outside the window: a new notification"
    );
    assert_ne!(calls[0].id, calls[1].id);
}

#[test]
fn markup_and_hidden_characters_arrive_escaped() {
    let mut bus = bus();
    let server = bus.server();
    let long = "x".repeat(500);
    let cases: &[(Req<'_>, &str, &str)] = &[
        (
            Req {
                resource: "<b>prod</b>&db",
                summary: "<a href='https://evil'>click</a>",
                ..Req::default()
            },
            "Approve sql.exec on &lt;b&gt;prod&lt;/b&gt;&amp;db? (high risk)",
            "ci-bot asks: &lt;a href='https://evil'&gt;click&lt;/a&gt;\nExpires in 5 min",
        ),
        (
            Req {
                resource: "prod-db\u{202E}gpj.exe",
                summary: "safe\u{200B}looking\u{2066}text\u{2069}\nsecond line",
                ..Req::default()
            },
            "Approve sql.exec on prod-db\\u{202E}gpj.exe? (high risk)",
            "ci-bot asks: safe\\u{200B}looking\\u{2066}text\\u{2069}\\u{A}second line\nExpires in 5 min\n⚠ Hidden or look-alike characters: check in the app",
        ),
        (
            Req {
                // Cyrillic а in a Latin word: flagged (UTS #39 mixed script), not altered.
                resource: "db.pаypal.com",
                ..Req::default()
            },
            "Approve sql.exec on db.pаypal.com? (high risk)",
            "ci-bot asks: Drop the sessions table\nExpires in 5 min\n⚠ Hidden or look-alike characters: check in the app",
        ),
        (
            Req {
                summary: &long,
                ..Req::default()
            },
            "Approve sql.exec on prod-db? (high risk)",
            // 119 characters and the marker
            "",
        ),
    ];
    for (i, (req, summary, body)) in cases.iter().enumerate() {
        server.reset();
        let (n, _rx) = notifier(options());
        n.request_arrived(item(Req {
            id: req.id,
            requester: req.requester,
            action: req.action,
            resource: req.resource,
            risk: req.risk,
            summary: req.summary,
        }));
        let call = one_call(&server, &n);
        assert_eq!(call.summary, *summary, "case {i}");
        if body.is_empty() {
            let want = format!("ci-bot asks: {}…\nExpires in 5 min", "x".repeat(119));
            assert_eq!(call.body, want, "case {i}");
        } else {
            assert_eq!(call.body, *body, "case {i}");
        }
    }
}

#[test]
fn pause_and_off_suppress_new_notifications() {
    let mut bus = bus();
    let server = bus.server();
    // The engine's clock, frozen: the pause boundary is exact.
    let t = now();
    let (n, _rx) = notifier(NotifierOptions {
        clock: Arc::new(move || t),
        ..NotifierOptions::with_clock(Arc::new(now))
    });
    let cases: &[(&str, Option<i64>, bool, bool)] = &[
        ("paused for an hour", Some(t + 3600), true, false),
        ("paused until the next second", Some(t + 1), true, false),
        ("pause ends now", Some(t), true, true),
        ("pause long over", Some(t - 3600), true, true),
        ("pause lifted", None, true, true),
        ("turned off", None, false, false),
        ("turned off and paused", Some(t + 60), false, false),
        ("turned on again", None, true, true),
    ];
    for (i, (what, until, enabled, shown)) in cases.iter().enumerate() {
        server.reset();
        n.set_paused_until(*until);
        n.set_enabled(*enabled);
        assert_eq!(n.paused_until(), *until);
        assert_eq!(n.is_enabled(), *enabled);
        // Distinct requesters: no collapsing between cases.
        let requester = format!("requester-{i}");
        n.request_arrived(item(Req {
            id: &format!("p{i}"),
            requester: &requester,
            ..Req::default()
        }));
        assert!(n.flush(WAIT));
        if *shown {
            assert_eq!(server.wait_for_calls(1, WAIT).len(), 1, "{what}");
        } else {
            std::thread::sleep(Duration::from_millis(100));
            assert!(server.calls().is_empty(), "{what}");
        }
    }
}

#[test]
fn a_dismissed_notification_is_forgotten() {
    let mut bus = bus();
    let server = bus.server();
    let (n, rx) = notifier(options());
    n.request_arrived(item(Req {
        id: "d1",
        ..Req::default()
    }));
    let call = one_call(&server, &n);
    server.close(call.id, CLOSED_DISMISSED).unwrap();
    std::thread::sleep(QUIET);
    server
        .emit_action_invoked(Some(&call.sender), call.id, "review")
        .unwrap();
    assert!(rx.recv_timeout(QUIET).is_err());
    // The next request from the same requester gets a fresh notification, and resolving the
    // dismissed one shows nothing.
    n.request_resolved("d1", RequestState::Approved);
    n.request_arrived(item(Req {
        id: "d2",
        ..Req::default()
    }));
    let calls = server.wait_for_calls(2, WAIT);
    assert_eq!(calls[1].replaces_id, 0);
    assert_eq!(calls[1].summary, "Approve sql.exec on prod-db? (high risk)");
    assert!(n.flush(WAIT));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.calls().len(), 2);
}

#[test]
fn a_failing_notification_server_is_not_fatal() {
    // A failing server rather than none: with no owner, the bus would try to D-Bus-activate
    // the machine's own notification daemon.
    let mut bus = bus();
    let server = bus.server();
    server.set_failing(true);
    let (n, _rx) = notifier(NotifierOptions {
        close_delay: Duration::ZERO,
        ..NotifierOptions::with_clock(Arc::new(now))
    });
    n.request_arrived(item(Req::default()));
    n.request_resolved("req-1", RequestState::Approved);
    assert!(n.flush(WAIT), "the notifier keeps working after bus errors");
    assert!(server.log().is_empty());
    // And works again once the server does.
    server.set_failing(false);
    n.request_arrived(item(Req {
        id: "after",
        ..Req::default()
    }));
    let calls = server.wait_for_calls(1, WAIT);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].replaces_id, 0);
    // A close that fails is logged and forgotten too.
    server.set_failing(true);
    n.request_resolved("after", RequestState::Denied);
    assert!(n.flush(WAIT));
}

#[test]
fn the_test_server_speaks_the_spec_to_notify_rust() {
    let mut bus = bus();
    let server = bus.server();
    let caps = notify_rust::get_capabilities().unwrap();
    for c in ["actions", "body", "body-markup"] {
        assert!(caps.iter().any(|x| x == c), "{caps:?}");
    }
    let info = notify_rust::get_server_information().unwrap();
    assert_eq!(info.name, "countersign-test-server");
    assert_eq!(info.spec_version, "1.2");
    let handle = notify_rust::Notification::new()
        .appname("plain notify-rust")
        .summary("hello")
        .urgency(notify_rust::Urgency::Critical)
        .show()
        .unwrap();
    let calls = server.wait_for_calls(1, WAIT);
    assert_eq!(calls[0].app_name, "plain notify-rust");
    assert_eq!(calls[0].urgency, Some(2));
    assert_eq!(calls[0].id, handle.id());
    handle.close();
    assert!(server.wait_until(WAIT, |log| log.len() == 2));
    assert_eq!(server.closes(), [calls[0].id]);
}
