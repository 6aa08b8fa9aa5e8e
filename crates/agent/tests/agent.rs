//! The agent binary end to end, with no window: a gateway in this process, the real
//! `countersign-agent` on a private session bus (`make test` runs the tests under
//! `dbus-run-session`) with the recording notification server, and this test as the window,
//! speaking the socket protocol through `countersign_agent::client`.
//!
//! The window program is a script that records how it was started, so the test sees what a
//! notification click and the tray's activation ask for while no window is open.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use countersign_agent::client::{self, Pushed};
use countersign_ipc::agent::Command as Call;
use countersign_ipc::{ErrorCode, ListKind, RequestSummary, UiEvent};
use countersign_notifications::test_server::{Record, TestServer};
use countersign_test_support::TestGateway;

const ALICE: &str = "alice@example.com";
const PATIENCE: Duration = Duration::from_secs(20);

struct Agent {
    child: Child,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent_program() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_countersign-agent"))
}

/// A stand-in for the window program: appends its arguments to `log`, one launch per line.
fn window_recorder(dir: &Path, log: &Path) -> PathBuf {
    let script = dir.join("window.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"launched $*\" >> '{}'\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn start_agent(data_dir: &Path, window: &Path) -> Agent {
    let child = Command::new(agent_program())
        .env("COUNTERSIGN_DATA_DIR", data_dir)
        .env("COUNTERSIGN_AUTHENTICATOR", "soft")
        .env("COUNTERSIGN_SOFT_TOUCH_MS", "0")
        .env("COUNTERSIGN_KEY_STORE", "file")
        .env("COUNTERSIGN_DESKTOP", window)
        .env("COUNTERSIGN_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Agent { child }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn next_event(
    pushed: &mut tokio::sync::mpsc::UnboundedReceiver<Pushed>,
    want: impl Fn(&Pushed) -> bool,
) -> Pushed {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let p = pushed
                .recv()
                .await
                .expect("the agent closed the connection");
            if want(&p) {
                return p;
            }
        }
    })
    .await
    .expect("the agent never pushed it")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_serves_a_window_notifies_and_starts_the_window_on_a_click() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "no session bus: run under dbus-run-session (make test)"
    );
    let notifications = TestServer::start_async().await.unwrap();
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let launches = dir.path().join("launches.log");
    let window = window_recorder(dir.path(), &launches);
    let agent = start_agent(&data_dir, &window);

    // ---- a window connects (the agent runs already, so nothing is started) ----
    // The program given would be started if no agent answered; it does not exist, so the
    // connection is to the agent running already.
    wait_for("the agent's socket", || {
        data_dir.join("agent.sock").exists()
    });
    let (win, mut pushed) = client::connect(&data_dir, Path::new("/nonexistent/agent"))
        .await
        .unwrap();
    assert_eq!(win.hello().pid, agent.child.id());
    let mode = std::fs::metadata(data_dir.join("agent.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is owner-only");

    // ---- pair through the socket, as the window's form does ----
    let link = gw.invite(ALICE).to_string();
    let paired = win.call(Call::Pair { link }).await.unwrap();
    let paired: serde_json::Value = serde_json::from_str(paired.get()).unwrap();
    assert_eq!(paired["approver"], ALICE);
    next_event(&mut pushed, |p| {
        matches!(p, Pushed::Event(UiEvent::Connection { up: true, .. }))
    })
    .await;

    // ---- a request arrives: pushed with its row, listed, notified ----
    let created = requester
        .create(&gw.new_request(&[ALICE], "Restart the API"))
        .await
        .unwrap();
    let id = created.request.body.id.clone();
    let arrived = next_event(&mut pushed, |p| {
        matches!(p, Pushed::Event(UiEvent::RequestReceived { .. }))
    })
    .await;
    match arrived {
        Pushed::Event(UiEvent::RequestReceived {
            request_id,
            summary: Some(row),
        }) => {
            assert_eq!(request_id, id);
            assert_eq!(row.summary.raw, "Restart the API");
        }
        other => panic!("not an arrival with its row: {other:?}"),
    }
    let listed = win
        .call(Call::ListRequests {
            kind: ListKind::Pending,
        })
        .await
        .unwrap();
    let listed: Vec<RequestSummary> = serde_json::from_str(listed.get()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    let s = notifications.clone();
    let note = tokio::task::spawn_blocking(move || {
        s.wait_until(PATIENCE, |log| {
            log.iter().any(|r| matches!(r, Record::Notify(_)))
        });
        s.calls().into_iter().next().expect("a notification")
    })
    .await
    .unwrap();
    assert!(note.summary.contains("prod/api"), "{}", note.summary);

    // ---- a refusal is an error with its code, and the agent stays up ----
    let err = win
        .call(Call::GetRequest {
            id: "no-such-request".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownRequest);

    // ---- with a window open, "Review" on the notification shows it on the request ----
    notifications
        .invoke_action_async(note.id, "review")
        .await
        .unwrap();
    match next_event(&mut pushed, |p| matches!(p, Pushed::Show { .. })).await {
        Pushed::Show { request_id } => assert_eq!(request_id.as_deref(), Some(id.as_str())),
        _ => unreachable!(),
    }
    assert!(!launches.exists(), "no second window is started");

    // ---- the window closes; a click now starts the window program on the request ----
    drop(win);
    drop(pushed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    notifications
        .invoke_action_async(note.id, "review")
        .await
        .unwrap();
    let want = format!("launched countersign://request/{id}");
    wait_for("the window's launch", || {
        std::fs::read_to_string(&launches).is_ok_and(|t| t.lines().any(|l| l == want))
    });

    // ---- the tray: a StatusNotifierItem whose title counts the pending request ----
    let bus = zbus::Connection::session().await.unwrap();
    let item = format!("org.kde.StatusNotifierItem-{}-1", agent.child.id());
    let proxy: zbus::Proxy<'_> = zbus::proxy::Builder::new(&bus)
        .destination(item.as_str())
        .path("/StatusNotifierItem")
        .interface("org.kde.StatusNotifierItem")
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        // Read fresh each time (the tray counts at most every 2 s).
        let title: String = proxy.get_property("Title").await.unwrap_or_default();
        if title == "Countersign (1)" {
            break;
        }
        assert!(Instant::now() < deadline, "the tray shows {title:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // ---- Quit through the socket: every window is told, the agent ends, its socket goes ----
    let (win, mut pushed) = client::connect(&data_dir, Path::new("/nonexistent/agent"))
        .await
        .unwrap();
    // Its own answer may be overtaken by the agent closing the connection; the push is what
    // a window acts on.
    let _ = win.call(Call::Quit).await;
    next_event(&mut pushed, |p| matches!(p, Pushed::Quit)).await;
    let mut agent = agent;
    let status = tokio::task::spawn_blocking(move || agent.child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "the agent quits cleanly: {status}");
    assert!(!data_dir.join("agent.sock").exists());
}

/// A socket in the data directory that another user owns is never spoken to: the window says
/// whose it is instead of connecting (or starting an agent beside it).
#[tokio::test]
async fn a_window_refuses_a_socket_another_user_owns() {
    if !countersign_test_support::running_as_root() {
        eprintln!("skipped: giving a file to another user needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let _listener = tokio::net::UnixListener::bind(&socket).unwrap();
    std::os::unix::fs::chown(&socket, Some(4242), Some(4242)).unwrap();
    let err = match client::connect(dir.path(), Path::new("/nonexistent/agent")).await {
        Ok(_) => panic!("connected to a socket of uid 4242"),
        Err(e) => e,
    };
    assert!(
        matches!(err, client::ClientError::ForeignSocket { owner: 4242, .. }),
        "{err}"
    );
}
