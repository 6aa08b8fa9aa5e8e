//! A real HAProxy (Debian's `haproxy`) in front of gateway replicas on loopback, configured as
//! docs/operations.md's sample: HTTP mode, round robin, `/readyz` health checks, and timeouts
//! long enough for the devices' event streams. Checks run every 200 ms here, so a dead replica
//! leaves the rotation quickly.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use url::Url;

/// A running HAProxy; dropping it stops it.
pub struct Haproxy {
    _dir: tempfile::TempDir,
    child: Child,
    pub url: Url,
}

/// The configuration: `listen` in front of `servers`.
pub fn config(listen: SocketAddr, servers: &[SocketAddr]) -> String {
    let mut cfg = format!(
        "global\n    maxconn 4096\n\n\
         defaults\n    mode http\n    timeout connect 1s\n    timeout client 1h\n    \
         timeout server 1h\n    timeout tunnel 1h\n    option redispatch\n    retries 2\n\n\
         frontend countersign\n    bind {listen}\n    default_backend gateways\n\n\
         backend gateways\n    balance roundrobin\n    option httpchk GET /readyz\n    \
         http-check expect status 200\n    default-server inter 200ms fall 1 rise 1\n"
    );
    for (i, s) in servers.iter().enumerate() {
        cfg.push_str(&format!("    server gateway{} {s} check\n", i + 1));
    }
    cfg
}

impl Haproxy {
    /// Starts HAProxy on a free loopback port in front of `servers`, and waits until it
    /// accepts connections.
    pub fn start(servers: &[SocketAddr]) -> Result<Haproxy> {
        let listen = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config(listen, servers))?;
        let check = Command::new("haproxy")
            .args(["-c", "-q", "-f"])
            .arg(&path)
            .output()
            .context("haproxy (Debian's haproxy package; scripts/deps.sh installs it)")?;
        if !check.status.success() {
            bail!("haproxy -c: {}", String::from_utf8_lossy(&check.stderr));
        }
        let log = dir.path().join("haproxy.log");
        let mut child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(listen).is_err() {
            if Instant::now() > deadline || child.try_wait()?.is_some() {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                let _ = child.kill();
                bail!("haproxy did not listen on {listen}: {said}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Haproxy {
            _dir: dir,
            child,
            url: Url::parse(&format!("http://{listen}/"))?,
        })
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
