//! Test support for cross-crate scenarios: a gateway (in process on port 0, or the real binary
//! as a child process), approver engines in temporary data directories with the software
//! authenticator, and the paths of the built binaries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use countersign_approver::{Engine, EngineEvent, SoftAuthenticator};
use countersign_gateway::client::RequesterClient;
use countersign_gateway::{Config, Gateway, Running};
use countersign_protocol::api::NewRequest;
use countersign_protocol::PairingLink;
use tokio::sync::{broadcast, watch};
use url::Url;

pub mod webdriver;

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

/// A gateway running in this process on a free loopback port.
pub struct TestGateway {
    pub running: Running,
    pub url: Url,
    pub token: String,
    /// Holds the gateway's data directory; dropping it deletes the directory.
    pub dir: tempfile::TempDir,
}

impl TestGateway {
    pub async fn start() -> TestGateway {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("gateway"),
            listen: "127.0.0.1:0".parse().unwrap(),
            keepalive_seconds: 1,
            expiry_sweep_ms: 100,
            rate_limit_per_minute: 10_000,
            ..Config::default()
        };
        f(&mut config);
        let gw = Gateway::open(config).unwrap();
        let token = countersign_gateway::tokens::create(&gw, "ci-bot").unwrap();
        let running = countersign_gateway::serve(gw).await.unwrap();
        let url = running.url();
        TestGateway {
            running,
            url,
            token,
            dir,
        }
    }

    pub fn gw(&self) -> &Arc<Gateway> {
        &self.running.gateway
    }

    pub fn invite(&self, approver: &str) -> PairingLink {
        countersign_gateway::pairing::invite(self.gw(), approver, self.url.clone()).unwrap()
    }

    pub fn requester(&self) -> RequesterClient {
        RequesterClient::new(self.url.clone(), self.token.clone()).unwrap()
    }

    pub fn new_request(&self, approvers: &[&str], summary: &str) -> NewRequest {
        NewRequest {
            action: "deploy".into(),
            resource: "prod/api".into(),
            risk: None,
            summary: summary.into(),
            detail: format!("kubectl rollout restart deploy/api # {summary}"),
            reason: "release".into(),
            ttl_seconds: 300,
            approvers: approvers.iter().map(|s| s.to_string()).collect(),
            min_approvals: 1,
            require_match: false,
        }
    }
}

/// A gateway opened again over `data_dir` on `addr` (a restart), with the test settings; `tweak`
/// adjusts the config, `before_serve` the gateway (e.g. to move its clock) before it serves.
pub async fn reopen_gateway(
    data_dir: &Path,
    addr: std::net::SocketAddr,
    tweak: impl FnOnce(&mut Config),
    before_serve: impl FnOnce(&Gateway),
) -> Running {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        listen: addr,
        keepalive_seconds: 1,
        ..Config::default()
    };
    tweak(&mut config);
    let gw = Gateway::open(config).unwrap();
    before_serve(&gw);
    countersign_gateway::serve(gw).await.unwrap()
}

/// An approver engine in its own data directory, with the software authenticator.
pub struct Approver {
    pub engine: Engine,
    pub auth: SoftAuthenticator,
    pub events: broadcast::Receiver<EngineEvent>,
    pub dir: tempfile::TempDir,
    stop: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Approver {
    pub fn new() -> Approver {
        Self::open_in(tempfile::tempdir().unwrap())
    }

    /// Opens the engine and the software authenticator in `<dir>/approver`.
    fn open_in(dir: tempfile::TempDir) -> Approver {
        let data = dir.path().join("approver");
        let engine = Engine::open(&data).unwrap();
        let auth = SoftAuthenticator::open(&data.join("soft-authenticator.cbor")).unwrap();
        let events = engine.subscribe();
        Approver {
            engine,
            auth,
            events,
            dir,
            stop: None,
        }
    }

    pub async fn pair(&mut self, link: &PairingLink) {
        self.engine
            .pair(link, "e2e test device", &mut self.auth)
            .await
            .unwrap();
    }

    /// The engine's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("approver")
    }

    /// Closes the engine (it must not be running), lets `between` change the closed data
    /// directory, and opens it again.
    pub fn reopen(self, between: impl FnOnce(&Path)) -> Approver {
        assert!(self.stop.is_none(), "stop the engine before reopening it");
        let data = self.data_dir();
        let Approver { engine, dir, .. } = self;
        drop(engine);
        between(&data);
        Self::open_in(dir)
    }

    /// Starts the engine's connectors and outbox in the background.
    pub fn start(&mut self) {
        let (tx, rx) = watch::channel(false);
        let engine = self.engine.clone();
        let task = tokio::spawn(async move {
            let _ = engine.run(rx).await;
        });
        self.stop = Some((tx, task));
    }

    /// Stops the connectors and waits for them to end.
    pub async fn stop(&mut self) {
        if let Some((tx, task)) = self.stop.take() {
            let _ = tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Waits (up to 20 s) for an event matching `pred`, returning it.
    pub async fn wait_for(&mut self, mut pred: impl FnMut(&EngineEvent) -> bool) -> EngineEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("timed out waiting for an engine event")
                .expect("event channel closed");
            if pred(&ev) {
                return ev;
            }
        }
    }

    pub async fn wait_received(&mut self, request_id: &str) {
        let id = request_id.to_string();
        self.wait_for(
            move |e| matches!(e, EngineEvent::RequestReceived { request_id, .. } if *request_id == id),
        )
        .await;
    }
}

impl Default for Approver {
    fn default() -> Self {
        Self::new()
    }
}

/// A child process killed when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real gateway binary serving on a free loopback port.
pub struct GatewayProcess {
    pub child: ChildGuard,
    pub data_dir: PathBuf,
    pub url: Url,
}

impl GatewayProcess {
    pub fn start(data_dir: &Path) -> GatewayProcess {
        Self::start_with_log(data_dir, "warn", Stdio::inherit())
    }

    /// Starts the gateway with `COUNTERSIGN_LOG=<filter>`, its log going to `stderr`.
    pub fn start_with_log(data_dir: &Path, filter: &str, stderr: Stdio) -> GatewayProcess {
        let child = Command::new(bin("countersign-gateway"))
            .args(["--data-dir"])
            .arg(data_dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("COUNTERSIGN_LOG", filter)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let child = ChildGuard(child);
        let url_file = data_dir.join("serving-url");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let url = loop {
            if let Ok(s) = std::fs::read_to_string(&url_file) {
                if let Ok(u) = Url::parse(s.trim()) {
                    break u;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gateway did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        GatewayProcess {
            child,
            data_dir: data_dir.to_owned(),
            url,
        }
    }

    /// Runs `countersign-gateway --data-dir <dir> <args>` and returns its stdout.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(bin("countersign-gateway"))
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

/// What [`FaultProxy`] does to the bytes passing through it, from the moment it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Hold each chunk this long before forwarding it.
    Latency(Duration),
    /// Reset every connection (RST) at its next chunk.
    Reset,
    /// Half-open: keep every connection open but forward nothing, in either direction, and send
    /// no FIN. Only a keep-alive timeout can tell.
    Silence,
    /// Forward half of the next chunk from the gateway, then close the connection (a truncated
    /// response or stream).
    Truncate,
}

/// A fault-injecting TCP proxy in the test process, between an approver and a gateway.
pub struct FaultProxy {
    pub addr: std::net::SocketAddr,
    fault: Arc<std::sync::Mutex<Fault>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    injected: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: std::net::SocketAddr) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fault = Arc::new(std::sync::Mutex::new(Fault::None));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let injected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (f, a, i) = (fault.clone(), accepted.clone(), injected.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, f.clone(), i.clone()));
            }
        });
        FaultProxy {
            addr,
            fault,
            accepted,
            injected,
            task,
        }
    }

    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}/", self.addr)).unwrap()
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Faults injected so far (one per chunk reset, silenced, truncated or delayed).
    pub fn injected(&self) -> usize {
        self.injected.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    mut client: tokio::net::TcpStream,
    mut server: tokio::net::TcpStream,
    fault: Arc<std::sync::Mutex<Fault>>,
    injected: Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let count = || injected.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut cbuf = vec![0u8; 16 * 1024];
    let mut sbuf = vec![0u8; 16 * 1024];
    loop {
        let (read, from_gateway) = tokio::select! {
            r = client.read(&mut cbuf) => (r, false),
            r = server.read(&mut sbuf) => (r, true),
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = client.shutdown().await;
                let _ = server.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        let now = *fault.lock().unwrap();
        match now {
            Fault::None => {}
            Fault::Latency(d) => {
                count();
                tokio::time::sleep(d).await;
            }
            Fault::Reset => {
                count();
                // SO_LINGER 0 makes close send RST. (Tokio deprecates set_linger because a
                // non-zero linger blocks the thread on drop; a zero linger does not.)
                #[allow(deprecated)]
                {
                    let _ = client.set_linger(Some(Duration::ZERO));
                    let _ = server.set_linger(Some(Duration::ZERO));
                }
                return;
            }
            Fault::Silence => {
                count();
                // Swallow everything from now on; never write, never close.
                loop {
                    let r = tokio::select! {
                        r = client.read(&mut cbuf) => r,
                        r = server.read(&mut sbuf) => r,
                    };
                    if matches!(r, Ok(0) | Err(_)) {
                        // A peer gave up; keep the other side open, as a dead path would.
                        std::future::pending::<()>().await;
                    }
                }
            }
            Fault::Truncate if from_gateway => {
                count();
                let _ = client.write_all(&sbuf[..n / 2]).await;
                let _ = client.shutdown().await;
                return;
            }
            Fault::Truncate => {}
        }
        let written = if from_gateway {
            client.write_all(&sbuf[..n]).await
        } else {
            server.write_all(&cbuf[..n]).await
        };
        if written.is_err() {
            return;
        }
    }
}

/// True when this process runs as root (it may mount file systems).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Runs a mount-type command; its error output is the reason it could not.
fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A small tmpfs mounted on a fresh directory, so a test can fill the disk for real. Mounting
/// needs root (CI runs the suite as root); otherwise `mount` says why it cannot. Unmounted on
/// drop.
pub struct SmallDisk {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(bytes: u64) -> Result<SmallDisk, String> {
        if !running_as_root() {
            return Err("mounting a tmpfs needs root".into());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let size = format!("size={bytes}");
        run(
            "mount",
            &["-t", "tmpfs", "-o", &size, "tmpfs", path.to_str().unwrap()],
        )?;
        Ok(SmallDisk { path, _dir: dir })
    }

    /// Fills the disk with a file until the kernel says it is full (ENOSPC), then shrinks the
    /// file so that `free` bytes remain. Returns the file, to delete when space should return.
    pub fn fill_leaving(&self, free: u64) -> PathBuf {
        use std::io::Write;
        let p = self.path.join("filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let chunk = vec![0xA5u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(free)).unwrap();
        f.sync_all().unwrap();
        p
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Makes a directory read-only until dropped: as root a read-only bind mount over it (root
/// ignores permission bits), otherwise permission bits (directories 0500, files 0400). Says why
/// when neither is possible (root without the right to mount).
pub struct ReadOnly {
    path: PathBuf,
    mounted: bool,
    modes: Vec<(PathBuf, u32)>,
}

impl ReadOnly {
    pub fn apply(path: &Path) -> Result<ReadOnly, String> {
        use std::os::unix::fs::PermissionsExt;
        let p = path.to_str().unwrap();
        if running_as_root() {
            run("mount", &["--bind", p, p])?;
            let ro = ReadOnly {
                path: path.to_path_buf(),
                mounted: true,
                modes: Vec::new(),
            };
            run("mount", &["-o", "remount,bind,ro", p])?;
            return Ok(ro);
        }
        let mut modes = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.push(path.to_path_buf());
        for e in entries {
            let meta = std::fs::metadata(&e).unwrap();
            modes.push((e.clone(), meta.permissions().mode()));
            let ro = if meta.is_dir() { 0o500 } else { 0o400 };
            std::fs::set_permissions(&e, std::fs::Permissions::from_mode(ro)).unwrap();
        }
        Ok(ReadOnly {
            path: path.to_path_buf(),
            mounted: false,
            modes,
        })
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.mounted {
            let _ = Command::new("umount").arg(&self.path).status();
        }
        for (p, mode) in self.modes.iter().rev() {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode));
        }
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files into `dir`
/// under `name`: (certificate path, key path, lowercase hex SHA-256 of the certificate).
pub fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    use sha2::Digest as _;
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
    let pin = hex::encode(sha2::Sha256::digest(cert.der().as_ref()));
    (cert_path, key_path, pin)
}

/// The device key seed of an approver data directory, wherever it is kept: `device.key`, or the
/// Secret Service item `device-key.ref` names.
pub fn device_seed(data_dir: &Path) -> Vec<u8> {
    if let Ok(seed) = std::fs::read(data_dir.join(countersign_approver::DEVICE_KEY_FILE)) {
        return seed;
    }
    let account = secret_service_account(data_dir)
        .expect("the data directory has neither device.key nor device-key.ref");
    keyring::Entry::new(countersign_approver::SECRET_SERVICE_NAME, &account)
        .unwrap()
        .get_secret()
        .unwrap()
}

/// The Secret Service account `device-key.ref` names, if the key lives there.
pub fn secret_service_account(data_dir: &Path) -> Option<String> {
    let text =
        std::fs::read_to_string(data_dir.join(countersign_approver::DEVICE_KEY_REF_FILE)).ok()?;
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("secret-service"));
    lines.next().map(str::to_owned)
}

/// True when a Secret Service answers on the session bus (a lookup of an item that does not
/// exist says "no entry" rather than failing).
pub fn secret_service_available() -> bool {
    match keyring::Entry::new("countersign-test-probe", "probe").and_then(|e| e.get_secret()) {
        Ok(_) | Err(keyring::Error::NoEntry) => true,
        Err(_) => false,
    }
}
