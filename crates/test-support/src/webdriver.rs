//! The desktop app through WebDriver: `tauri-driver` (in front of WebKitWebDriver) started on
//! free loopback ports, and a session that launches the app. Shared by the desktop end-to-end
//! test and the desktop benchmark.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use fantoccini::{Client, ClientBuilder};

/// tauri-driver in its own process group: dropping it ends the group, so the WebKitWebDriver
/// and the app it started go too (one app instance may run per session bus).
pub struct Driver {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
        // A moment for the app to let go of its single-instance name and data directory.
        std::thread::sleep(Duration::from_millis(500));
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Milliseconds since the epoch (the clock the page's `performance.timeOrigin` uses).
// The page's clock is the real one, so this reads the real one too (clippy.toml bans it in the
// product, which reads time through its clocks).
#[allow(clippy::disallowed_methods)]
pub fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

impl Driver {
    /// Starts tauri-driver (`TAURI_DRIVER`, else from PATH) with `env` added to what the app it
    /// launches inherits, and waits until it listens. Its stderr goes to ours when `verbose`.
    pub async fn start(env: &[(&str, &std::ffi::OsStr)], verbose: bool) -> Result<Driver> {
        let port = free_port()?;
        let native = free_port()?;
        let program = std::env::var_os("TAURI_DRIVER").unwrap_or_else(|| "tauri-driver".into());
        let mut cmd = Command::new(&program);
        cmd.args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(if verbose {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| {
            format!("starting {program:?} (cargo install tauri-driver --locked)")
        })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let driver = Driver { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("tauri-driver did not listen on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(driver)
    }

    /// A WebDriver session, which launches `app`; also when (ms since the epoch) the request
    /// that launched it was sent. tauri-driver accepts connections a moment before it can reach
    /// the WebKitWebDriver behind it: a refused request launches nothing and is sent again.
    pub async fn session(&self, app: &Path) -> Result<(Client, f64)> {
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), serde_json::json!("wry"));
        caps.insert(
            "tauri:options".into(),
            serde_json::json!({ "application": app.to_string_lossy() }),
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let sent = epoch_ms();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://{}", self.addr))
                .await
            {
                Ok(c) => return Ok((c, sent)),
                Err(e) if attempt < 5 => {
                    eprintln!("WebDriver session attempt {attempt} failed ({e}); trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(anyhow!("no WebDriver session with the app: {e}")),
            }
        }
    }
}
