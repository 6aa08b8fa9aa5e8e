//! The window and the background agent are two processes: closing the window ends the window's
//! process, and the agent keeps the stream, so a request that arrives meanwhile is notified,
//! and the next window (connecting to the same agent, not starting another) shows it.

use super::*;

impl Desktop {
    /// Closes the window as its close button does; the agent stays and is returned.
    async fn close_window(self) -> AgentGuard {
        let Desktop {
            client,
            _driver,
            agent,
            ..
        } = self;
        let _ = client.close_window().await;
        let _ = client.close().await;
        tokio::task::spawn_blocking(move || drop(_driver))
            .await
            .unwrap();
        agent
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the built desktop app, tauri-driver, Xvfb and a session bus: make desktop-e2e"]
async fn closing_the_window_leaves_the_agent_notifying_and_the_next_window_shows_what_arrived() {
    let notifications = TestServer::start_async()
        .await
        .expect("org.freedesktop.Notifications on the private session bus");
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let app_dir = tempfile::tempdir().unwrap();
    let app = Desktop::start(app_dir.path()).await;
    app.pair(&gw.invite(ALICE).to_string(), None).await;
    let agent = app.agent.pid().expect("an agent holds the data directory");

    // ---- the window closes: no window process is left, the agent runs on ----
    let guard = app.close_window().await;
    let deadline = Instant::now() + PATIENCE;
    while windows_of(app_dir.path()) > 0 {
        assert!(
            Instant::now() < deadline,
            "the window's process did not exit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(guard.pid(), Some(agent), "the agent outlives its window");

    // ---- a request arrives with no window: the agent notifies ----
    create(&requester, request("restart", &[ALICE], Risk::High)).await;
    notify_matching(&notifications, "prod/api", |c| {
        c.summary.contains("prod/api")
    })
    .await;

    // ---- the next window connects to the same agent and shows it ----
    let app = Desktop::start(app_dir.path()).await;
    app.wait_text("Restart the API after the config change")
        .await;
    app.wait_text("Connected").await;
    assert_eq!(app.agent.pid(), Some(agent), "no second agent was started");
    app.screenshot("14-reopened-window").await;
    app.quit().await;
    drop(guard);
}

/// Window processes (`countersign-desktop`) running on `data_dir`, from their environment.
fn windows_of(data_dir: &Path) -> usize {
    let want = format!("COUNTERSIGN_DATA_DIR={}", data_dir.display());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .flatten()
        .filter(|p| {
            let exe = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let environ = std::fs::read(p.path().join("environ")).unwrap_or_default();
            String::from_utf8_lossy(&exe).contains("countersign-desktop")
                && environ.split(|&b| b == 0).any(|kv| kv == want.as_bytes())
        })
        .count()
}
