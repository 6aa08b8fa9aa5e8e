//! The desktop app's figures: cold start to first paint, idle memory and CPU, push to the
//! `Notify` call, and the inbox with 10,000 pending requests. It runs the built app (a release
//! build, what the `.deb` ships) against an in-process gateway, on the display and session bus
//! it is given, with the recording notification server standing in for the desktop's:
//!
//! ```text
//! xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- \
//!     cargo run --release -p countersign-bench -- desktop
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use countersign_gateway::client::RequesterClient;
use countersign_notifications::test_server::{Record, TestServer};
use countersign_protocol::api::NewRequest;
use countersign_test_support::processes::AgentGuard;
use countersign_test_support::webdriver::{epoch_ms, Driver};
use countersign_test_support::{ChildGuard, TestGateway};
use fantoccini::Client;

use crate::common::{bench_config, cpu_time, ms, rss_kib, Figure, Stats};

pub struct Options {
    /// The app binary (default: the release build).
    pub app: PathBuf,
    /// Cold starts to time.
    pub starts: usize,
    /// Requests pushed one at a time for the push-to-Notify figure.
    pub pushes: usize,
    /// Pending requests in the inbox for the interactivity figure.
    pub inbox: usize,
    /// Seconds of idle CPU measurement.
    pub idle_seconds: u64,
}

const APPROVER: &str = "alice@example.com";

/// tauri-driver with the development-mode settings (and `data_dir`) for the app it starts.
async fn driver(data_dir: &Path) -> Result<Driver> {
    Driver::start(
        &[
            ("COUNTERSIGN_DATA_DIR", data_dir.as_os_str()),
            ("COUNTERSIGN_AUTHENTICATOR", "soft".as_ref()),
            ("COUNTERSIGN_KEY_STORE", "file".as_ref()),
        ],
        false,
    )
    .await
}

/// Polls `script` (which returns null until it has its answer) for up to `patience`.
async fn poll(client: &Client, script: &str, patience: Duration) -> Result<serde_json::Value> {
    let deadline = Instant::now() + patience;
    loop {
        let v = client
            .execute(script, vec![])
            .await
            .map_err(|e| anyhow!("{e}"))?;
        if !v.is_null() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("no answer within {patience:?} from: {script}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The absolute time (ms since the epoch) of the page's first contentful paint, by the Paint
/// Timing API.
const FIRST_PAINT: &str = "const p = performance.getEntriesByType('paint')\
    .find(e => e.name === 'first-contentful-paint');\
    return p ? performance.timeOrigin + p.startTime : null;";

/// Launch (the WebDriver "new session" that starts the app) until its first contentful paint,
/// `starts` times, each with a new data directory (the first-run screen).
async fn cold_start(o: &Options) -> Result<Vec<Figure>> {
    let mut samples = Vec::new();
    for _ in 0..o.starts {
        let dir = tempfile::tempdir()?;
        // The window starts the background agent; it goes when this start's figure is taken.
        let _agent = AgentGuard {
            data_dir: dir.path().to_owned(),
        };
        let driver = driver(dir.path()).await?;
        // From the session request that started the app (a refused attempt starts nothing).
        let (client, launched) = driver.session(&o.app).await?;
        let painted = poll(&client, FIRST_PAINT, Duration::from_secs(30))
            .await?
            .as_f64()
            .ok_or_else(|| anyhow!("the paint time is not a number"))?;
        samples.push(Duration::from_secs_f64(
            ((painted - launched) / 1000.0).max(0.0),
        ));
        let _ = client.close().await;
    }
    let s = Stats::of(&samples)?;
    println!("cold start to first paint: {}", s.line());
    Ok(vec![Figure {
        name: "cold-start",
        value: format!(
            "p50 {} max {} ({} starts)",
            ms(s.p50),
            ms(s.max),
            samples.len()
        ),
        target: "≤ 1 s to first paint under Xvfb (median)".into(),
        pass: Some(s.p50 <= Duration::from_secs(1)),
    }])
}

/// `pid` and every process below it.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok());
            if let Some(pp) = ppid {
                parents.push((p, pp));
            }
        }
    }
    let mut tree = BTreeSet::from([pid]);
    loop {
        let before = tree.len();
        for (p, pp) in &parents {
            if tree.contains(pp) {
                tree.insert(*p);
            }
        }
        if tree.len() == before {
            return tree.into_iter().collect();
        }
    }
}

fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The app started directly (as a user would), paired through the development pairing link:
/// the window, and the background agent it starts (a child of the window, ended with it).
struct RunningApp {
    child: ChildGuard,
    _agent: AgentGuard,
    log: PathBuf,
}

impl RunningApp {
    async fn start(app: &Path, data_dir: &Path, link: Option<&str>) -> Result<RunningApp> {
        let log = data_dir.with_extension("log");
        let mut cmd = Command::new(app);
        cmd.env("COUNTERSIGN_DATA_DIR", data_dir)
            .env("COUNTERSIGN_AUTHENTICATOR", "soft")
            .env("COUNTERSIGN_KEY_STORE", "file")
            .env("COUNTERSIGN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        if let Some(l) = link {
            cmd.env("COUNTERSIGN_PAIR_LINK", l);
        }
        let child = ChildGuard(
            cmd.spawn()
                .with_context(|| format!("starting {}", app.display()))?,
        );
        Ok(RunningApp {
            child,
            _agent: AgentGuard {
                data_dir: data_dir.to_owned(),
            },
            log,
        })
    }

    async fn wait_log(&self, needle: &str, patience: Duration) -> Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            if std::fs::read_to_string(&self.log)
                .map(|t| t.contains(needle))
                .unwrap_or(false)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the app never logged {needle:?} (see {})",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Idle memory (RSS and PSS of the app and its WebKit processes) and CPU over `idle_seconds`,
/// with the app paired, connected and showing its inbox.
async fn idle(o: &Options, running: &RunningApp) -> Result<Vec<Figure>> {
    // Let start-up work (pairing, the first sync, WebKit's own warm-up) finish.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let pids = process_tree(running.child.0.id());
    for p in &pids {
        println!(
            "  process {p} {}: RSS {} KiB, PSS {} KiB",
            comm(*p),
            rss_kib(&p.to_string()).unwrap_or(0),
            pss_kib(*p)
        );
    }
    let rss: u64 = pids
        .iter()
        .filter_map(|p| rss_kib(&p.to_string()).ok())
        .sum();
    let pss: u64 = pids.iter().map(|p| pss_kib(*p)).sum();
    let cpu = |pids: &[u32]| -> Duration {
        pids.iter()
            .filter_map(|p| cpu_time(&p.to_string()).ok())
            .sum()
    };
    let before = cpu(&pids);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(o.idle_seconds)).await;
    let wall = t0.elapsed();
    let used = cpu(&process_tree(running.child.0.id())).saturating_sub(before);
    let percent = used.as_secs_f64() / wall.as_secs_f64() * 100.0;
    println!(
        "idle: RSS {} MiB, PSS {} MiB, CPU {:.3} s over {:.0} s",
        rss / 1024,
        pss / 1024,
        used.as_secs_f64(),
        wall.as_secs_f64()
    );
    Ok(vec![
        Figure {
            name: "idle-memory",
            value: format!(
                "RSS {:.0} MiB, PSS {:.0} MiB ({} processes)",
                rss as f64 / 1024.0,
                pss as f64 / 1024.0,
                pids.len()
            ),
            target: "≤ 120 MB, app plus its WebKit processes".into(),
            // RSS counts shared libraries once per process; PSS divides them fairly.
            pass: Some(pss as f64 * 1024.0 <= 120e6),
        },
        Figure {
            name: "idle-cpu",
            value: format!(
                "{percent:.2} % of one core over {:.0} s",
                wall.as_secs_f64()
            ),
            target: "≤ 0.5 % over 60 s".into(),
            pass: Some(percent <= 0.5),
        },
    ])
}

fn request(n: usize, resource: String) -> NewRequest {
    NewRequest {
        action: "deploy".into(),
        resource,
        risk: None,
        summary: format!("Benchmark request #{n}"),
        detail: "helm upgrade api charts/api --namespace prod".into(),
        reason: "benchmark".into(),
        ttl_seconds: 3600,
        approvers: vec![APPROVER.into()],
        min_approvals: 1,
        require_match: false,
        break_glass: false,
    }
}

/// From the gateway call that creates a request until the app's `Notify` call for it reaches
/// the notification server, one request at a time.
async fn push_to_notify(
    o: &Options,
    server: &TestServer,
    requester: &RequesterClient,
) -> Result<Vec<Figure>> {
    let mut samples = Vec::new();
    for n in 0..o.pushes {
        // Unique, and never a prefix of another at the character after it: the single
        // notification says "on bench/00012? (", a collapsed one "Newest: ... bench/00012 (".
        let resource = format!("bench/{n:05}");
        let single = format!("{resource}?");
        let newest = format!("{resource} (");
        let t0 = Instant::now();
        requester.create(&request(n, resource)).await?;
        let s = server.clone();
        let got = tokio::task::spawn_blocking(move || {
            let hit = |r: &Record| match r {
                Record::Notify(c)
                    if c.received_at >= t0
                        && (c.summary.contains(&single) || c.body.contains(&newest)) =>
                {
                    Some(c.received_at)
                }
                _ => None,
            };
            s.wait_until(Duration::from_secs(10), |log| {
                log.iter().any(|r| hit(r).is_some())
            });
            s.log().iter().find_map(hit)
        })
        .await?;
        let at = got.ok_or_else(|| anyhow!("no Notify for request {n} within 10 s"))?;
        samples.push(at.duration_since(t0));
    }
    let s = Stats::of(&samples)?;
    println!("push to Notify: {}", s.line());
    Ok(vec![Figure {
        name: "push-notify",
        value: format!(
            "p50 {} p99 {} ({} requests)",
            ms(s.p50),
            ms(s.p99),
            samples.len()
        ),
        target: "p99 ≤ 50 ms".into(),
        pass: Some(s.p99 <= Duration::from_millis(50)),
    }])
}

/// Measures, inside the page, how long a key press (↓) and a scroll jump in the pending list
/// take until the frame after the change is painted.
const INTERACT: &str = r#"
const done = arguments[arguments.length - 1];
(async () => {
  const list = document.querySelector('[role="listbox"]');
  if (!list) { done({ error: "no list" }); return; }
  list.focus();
  // The next frame after the change: requestAnimationFrame, then a task after it (the frame
  // has been handed to the compositor by then).
  const frame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const keys = [], scrolls = [];
  for (let i = 0; i < 60; i++) {
    const t = performance.now();
    list.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }));
    await frame();
    keys.push(performance.now() - t);
  }
  for (let i = 0; i < 40; i++) {
    const t = performance.now();
    list.scrollTop = ((i * 7919) % 100) / 100 * (list.scrollHeight - list.clientHeight);
    list.dispatchEvent(new Event("scroll"));
    await frame();
    scrolls.push(performance.now() - t);
  }
  const rows = document.querySelectorAll('[role="option"]').length;
  done({ keys, scrolls, rows });
})();
"#;

/// The inbox with `inbox` pending requests: created while the app is closed, so it starts,
/// fetches the backlog over its stream and shows them; then key presses and scroll jumps.
async fn big_inbox(
    o: &Options,
    requester: &RequesterClient,
    data_dir: &Path,
    offset: usize,
) -> Result<Vec<Figure>> {
    let t0 = Instant::now();
    for n in 0..o.inbox {
        requester
            .create(&request(offset + n, format!("inbox/{n:05}")))
            .await?;
    }
    println!("created {} requests in {}", o.inbox, ms(t0.elapsed()));
    let _agent = AgentGuard {
        data_dir: data_dir.to_owned(),
    };
    let driver = driver(data_dir).await?;
    let (client, launched) = driver.session(&o.app).await?;
    // The hint under the list says how many there are.
    let want = format!(
        "return document.body.innerText.includes('{} requests') ? true : null;",
        o.inbox + o.pushes
    );
    poll(&client, &want, Duration::from_secs(600)).await?;
    let loaded = Duration::from_secs_f64(((epoch_ms() - launched) / 1000.0).max(0.0));
    println!("backlog of {} shown after {}", o.inbox, ms(loaded));
    let v = client
        .execute_async(INTERACT, vec![])
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let _ = client.close().await;
    let series = |k: &str| -> Result<Vec<Duration>> {
        v.get(k)
            .and_then(|a| a.as_array())
            .ok_or_else(|| anyhow!("no {k} in {v}"))?
            .iter()
            .map(|x| {
                x.as_f64()
                    .map(|m| Duration::from_secs_f64(m / 1000.0))
                    .ok_or_else(|| anyhow!("not a number in {k}"))
            })
            .collect()
    };
    let keys = Stats::of(&series("keys")?)?;
    let scrolls = Stats::of(&series("scrolls")?)?;
    let rows = v.get("rows").and_then(|r| r.as_u64()).unwrap_or(0);
    println!("key ↓ to painted frame: {}", keys.line());
    println!("scroll jump to painted frame: {}", scrolls.line());
    println!("rows in the DOM: {rows} of {}", o.inbox + o.pushes);
    // "Interactive": each input answered within 100 ms (RAIL's response budget).
    let budget = Duration::from_millis(100);
    Ok(vec![
        Figure {
            name: "inbox-load",
            value: format!(
                "{} pending shown {} after launch",
                o.inbox + o.pushes,
                ms(loaded)
            ),
            target: "informational (backlog fetched, verified, stored)".into(),
            pass: None,
        },
        Figure {
            name: "inbox-input",
            value: format!(
                "key p99 {}, scroll p99 {}, {rows} rows in DOM",
                ms(keys.p99),
                ms(scrolls.p99)
            ),
            target: "interactive: every input painted ≤ 100 ms".into(),
            pass: Some(keys.p99 <= budget && scrolls.p99 <= budget),
        },
    ])
}

pub async fn run(o: Options) -> Result<Vec<Figure>> {
    if std::env::var_os("DISPLAY").is_none()
        || std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none()
    {
        bail!("needs an X display and a session bus: run under xvfb-run and dbus-run-session");
    }
    if !o.app.exists() {
        bail!(
            "{} is missing: build the app first (make deb, or cargo build --release --manifest-path src-tauri/Cargo.toml)",
            o.app.display()
        );
    }
    let mut figures = cold_start(&o).await?;

    let server = TestServer::start_async()
        .await
        .context("taking org.freedesktop.Notifications on the session bus")?;
    let dir = tempfile::tempdir()?;
    let gateway = TestGateway::serve(bench_config(dir.path().join("gateway")), dir).await?;
    let link = gateway.invite(APPROVER);
    let requester = gateway.requester();

    // The app's data directory sits beside the gateway's, and goes with it.
    let data_dir = gateway.dir.path().join("approver");
    std::fs::create_dir_all(&data_dir)?;
    let app = RunningApp::start(&o.app, &data_dir, Some(&link.to_string())).await?;
    app.wait_log("development pairing done", Duration::from_secs(30))
        .await?;
    figures.extend(idle(&o, &app).await?);
    figures.extend(push_to_notify(&o, &server, &requester).await?);
    // The window and its agent: the backlog below is created while neither runs.
    drop(app);
    // The single-instance lock and the data-directory lock go with the processes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    figures.extend(big_inbox(&o, &requester, &data_dir, o.pushes).await?);
    Ok(figures)
}
