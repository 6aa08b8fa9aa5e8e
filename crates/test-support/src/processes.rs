//! The built binaries and child processes: where `cargo` put a workspace binary, a child killed
//! when dropped, the real gateway binary serving on a free port, the approver CLI run once, and
//! reading what a child prints.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use url::Url;

/// The path of a binary built from this workspace (`cargo test --workspace` builds the binaries
/// of every package that has integration tests, which both binary crates have).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// The conformance tests' Python: `conformance-venv` under the target directory, beside the
/// profile directories of the running test binary.
pub fn conformance_python() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test>-<hash> -> target
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .unwrap();
    let py = target.join("conformance-venv/bin/python3");
    assert!(
        py.exists(),
        "{} is missing: run `bash scripts/deps.sh --with-lints` (it installs the Python \
         packages of the conformance and mail tests)",
        py.display()
    );
    py
}

/// A child process killed when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The background agent (`countersign-agent`) that a desktop window started for `data_dir`:
/// the window runs it as a child, but WebKit's driver puts the window in a process group of
/// its own, so ending the driver's group does not end the agent. Dropping this ends it, found
/// by the pid it wrote into the data directory's lock file.
pub struct AgentGuard {
    pub data_dir: PathBuf,
}

impl AgentGuard {
    /// The agent's pid, when one holds the data directory now.
    pub fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir.join("lock")).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains("countersign-agent")
            .then_some(pid)
    }

    /// Ends the agent (SIGTERM, then SIGKILL after 5 s) and waits until it is gone.
    pub fn stop(&self) {
        let Some(pid) = self.pid() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

impl Drop for AgentGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The real gateway binary serving on a free loopback port.
pub struct GatewayProcess {
    pub child: ChildGuard,
    pub data_dir: PathBuf,
    pub url: Url,
    /// The configuration file it was started with, which `admin` passes on too.
    pub config: Option<PathBuf>,
}

impl GatewayProcess {
    pub fn start(data_dir: &Path) -> GatewayProcess {
        Self::start_with_log(data_dir, "warn", Stdio::inherit())
    }

    /// Starts the gateway with `COUNTERSIGN_LOG=<filter>`, its log going to `stderr`.
    pub fn start_with_log(data_dir: &Path, filter: &str, stderr: Stdio) -> GatewayProcess {
        Self::start_configured(data_dir, None, filter, stderr)
    }

    /// Starts the gateway with the configuration file `config`.
    pub fn start_with_config(data_dir: &Path, config: &Path) -> GatewayProcess {
        Self::start_configured(data_dir, Some(config), "warn", Stdio::inherit())
    }

    /// Stops the gateway (killed, as a crash would), runs `between` on its data directory, and
    /// starts it again on the same address and data.
    pub fn restart_with(self, between: impl FnOnce(&Path)) -> GatewayProcess {
        let GatewayProcess {
            child,
            data_dir,
            url,
            config,
        } = self;
        drop(child);
        let _ = std::fs::remove_file(data_dir.join("serving-url"));
        between(&data_dir);
        let listen = format!(
            "{}:{}",
            url.host_str().unwrap_or("127.0.0.1"),
            url.port().unwrap_or(0)
        );
        Self::start_on(
            &data_dir,
            config.as_deref(),
            "warn",
            Stdio::inherit(),
            &listen,
        )
    }

    fn start_configured(
        data_dir: &Path,
        config: Option<&Path>,
        filter: &str,
        stderr: Stdio,
    ) -> GatewayProcess {
        Self::start_on(data_dir, config, filter, stderr, "127.0.0.1:0")
    }

    fn start_on(
        data_dir: &Path,
        config: Option<&Path>,
        filter: &str,
        stderr: Stdio,
        listen: &str,
    ) -> GatewayProcess {
        let mut cmd = Command::new(bin("countersign-gateway"));
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let child = cmd
            .args(["--data-dir"])
            .arg(data_dir)
            .args(["serve", "--listen", listen])
            .env("COUNTERSIGN_LOG", filter)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let child = ChildGuard(child);
        let url_file = data_dir.join("serving-url");
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            if let Ok(s) = std::fs::read_to_string(&url_file) {
                if let Ok(u) = Url::parse(s.trim()) {
                    break u;
                }
            }
            assert!(Instant::now() < deadline, "gateway did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        GatewayProcess {
            child,
            data_dir: data_dir.to_owned(),
            url,
            config: config.map(Path::to_owned),
        }
    }

    /// Runs `countersign-gateway --data-dir <dir> <args>` and returns its stdout.
    pub fn admin(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(bin("countersign-gateway"));
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        let out = cmd
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "countersign-gateway {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

/// Runs `countersign --data-dir <data> <args>` (the approver CLI) to the end.
pub fn countersign(data: &Path, args: &[&str]) -> Output {
    Command::new(bin("countersign"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

/// The `code` of a `--json` error answer of the approver CLI.
pub fn error_code(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| {
            v["error"]["code"]
                .as_str()
                .or(v["error_code"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no error code in {stdout}"))
}

/// Reads a child's stdout lines on a thread.
pub fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line containing `needle` within 20 s.
pub fn wait_line(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line containing {needle}"));
        if line.contains(needle) {
            return line;
        }
    }
}

/// The exit code of `child`, which must end within 30 s (-1 when a signal ended it).
pub fn wait_exit(child: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "request did not finish");
        // Polled: a std child has no exit notification to wait on with a deadline.
        std::thread::sleep(Duration::from_millis(50));
    }
}
