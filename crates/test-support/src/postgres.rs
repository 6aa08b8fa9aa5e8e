//! A real PostgreSQL server for the tests, from Debian's packages (`postgresql-15`): `initdb`
//! into a temporary directory, then `postgres` on a free loopback port with its Unix socket in
//! that directory, as an unprivileged user (PostgreSQL refuses to run as root, so a root test
//! run starts it as `nobody`). Each test takes a database of its own ([`Postgres::database`]).
//!
//! [`shared`] is one server for the whole test binary, started on first use and stopped, with
//! its directory removed, by a watchdog once the test process has ended (however it ended);
//! [`Postgres::start`] is a server of the test's own, for tests that restart or kill it,
//! stopped when it is dropped.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The uid and gid a root test run starts the server as (`nobody`, `nogroup`).
const NOBODY: (u32, u32) = (65534, 65534);

/// A running PostgreSQL server; dropping it stops the server and removes its directory.
pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

/// The directory of PostgreSQL's programs: `COUNTERSIGN_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<major>/bin` (Debian's layout).
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("COUNTERSIGN_PG_BIN") {
        return Ok(PathBuf::from(d));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (/usr/lib/postgresql); scripts/deps.sh installs it")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((major, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .context("no /usr/lib/postgresql/<major>/bin/postgres")
}

fn as_root() -> bool {
    crate::running_as_root()
}

/// A command that runs as the server's user.
fn command(program: &Path) -> Command {
    let mut c = Command::new(program);
    if as_root() {
        c.uid(NOBODY.0).gid(NOBODY.1);
    }
    c
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Postgres {
    /// Initialises a cluster in a new temporary directory and starts its server.
    pub fn start() -> Result<Postgres> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("countersign-pg")
            .tempdir()?;
        if as_root() {
            // The server's user must reach and own its directory.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
            std::os::unix::fs::chown(dir.path(), Some(NOBODY.0), Some(NOBODY.1))?;
        }
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .args(["--locale=C"])
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut pg = Postgres {
            dir,
            port: free_port()?,
            child: None,
        };
        pg.run()?;
        Ok(pg)
    }

    /// Starts the server on the cluster (again, after [`Postgres::stop`] or
    /// [`Postgres::kill`]), on the same port, and waits until it accepts connections.
    pub fn run(&mut self) -> Result<()> {
        let bin = bin_dir()?;
        let log = std::fs::File::create(self.dir.path().join("server.log"))?;
        if as_root() {
            std::os::unix::fs::chown(
                self.dir.path().join("server.log"),
                Some(NOBODY.0),
                Some(NOBODY.1),
            )?;
        }
        let child = command(&bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            // Room for many gateways' pools in one test binary.
            .args(["-c", "max_connections=400", "-c", "shared_buffers=32MB"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting postgres")?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let bin = bin_dir()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!("postgres exited ({status}): {}", self.log());
                }
            }
            if Instant::now() > deadline {
                bail!("postgres did not accept connections: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` as the superuser over TCP.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a new, empty database with a unique name and returns its URL.
    pub fn database(&self) -> Result<String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "countersign_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        self.psql(&format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Runs one SQL command with `psql` on the `postgres` database and returns its output
    /// (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> Result<String> {
        let out = Command::new(bin_dir()?.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-c", sql])
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!("psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Stops the server cleanly (a fast shutdown: connections are ended, everything committed
    /// is on disk).
    pub fn stop(&mut self) -> Result<()> {
        let out = command(&bin_dir()?.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["stop", "-m", "fast", "-w"])
            .output()?;
        if !out.status.success() {
            bail!("pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
        }
        if let Some(mut c) = self.child.take() {
            c.wait()?;
        }
        Ok(())
    }

    /// Kills the server's postmaster with SIGKILL, as a crash would; its children end on their
    /// own once they notice.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

/// One server for the whole test binary, started on first use.
pub fn shared() -> &'static Postgres {
    static SHARED: OnceLock<Postgres> = OnceLock::new();
    SHARED.get_or_init(|| {
        let pg = Postgres::start().unwrap_or_else(|e| panic!("PostgreSQL: {e:#}"));
        pg.stop_when_this_process_ends();
        pg
    })
}

impl Postgres {
    /// A static is never dropped, and the test harness exits without destructors: a watchdog
    /// process stops the server (a fast shutdown) and removes its directory once this process
    /// is gone, so that no test run leaves a server behind.
    fn stop_when_this_process_ends(&self) {
        let Some(server) = self.child.as_ref().map(Child::id) else {
            return;
        };
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(
                "while kill -0 \"$0\" 2>/dev/null; do sleep 1; done; \
                 kill -INT \"$1\"; while kill -0 \"$1\" 2>/dev/null; do sleep 0.2; done; \
                 rm -rf \"$2\"",
            )
            .arg(std::process::id().to_string())
            .arg(server.to_string())
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(e) = watchdog {
            eprintln!("warning: no watchdog for the shared PostgreSQL server: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_starts_keeps_what_was_committed_across_a_restart_and_a_kill() {
        let mut pg = Postgres::start().unwrap();
        let url = pg.database().unwrap();
        let db = url.rsplit('/').next().unwrap().to_owned();
        assert_ne!(pg.database().unwrap(), url, "each database is new");
        let q = |pg: &Postgres, sql: &str| {
            let out = Command::new(bin_dir().unwrap().join("psql"))
                .args([
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    &pg.url(&db),
                ])
                .args(["-c", sql])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        q(&pg, "CREATE TABLE t(v BIGINT); INSERT INTO t VALUES (1)");
        pg.stop().unwrap();
        pg.run().unwrap();
        q(&pg, "INSERT INTO t VALUES (2)");
        pg.kill().unwrap();
        pg.run().unwrap();
        assert_eq!(q(&pg, "SELECT sum(v) FROM t"), "3");
        assert_eq!(pg.psql("SELECT current_user").unwrap(), "postgres");
    }
}
