//! Shared pieces: statistics, figure lines with PASS/FAIL, the machine description, the bench
//! gateway configuration, pairing a device over HTTP and reading an SSE stream.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use countersign_protocol::api::paths;
use countersign_protocol::sse::{SseItem, SseParser};
use countersign_protocol::{
    DeviceAuth, KeyPair, PairChallenge, PairFinish, PairStart, Paired, PairingLink, Signed,
    PROTOCOL_VERSION,
};
use url::Url;
use webauthn_authenticator_rs::softtoken::SoftToken;
use webauthn_authenticator_rs::WebauthnAuthenticator;

/// Percentiles of a set of durations (nearest rank).
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub n: usize,
    pub min: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

impl Stats {
    pub fn of(samples: &[Duration]) -> Result<Stats> {
        if samples.is_empty() {
            bail!("no samples");
        }
        let mut s = samples.to_vec();
        s.sort();
        let rank = |p: f64| -> Duration {
            let r = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
            s[r - 1]
        };
        let total: Duration = s.iter().sum();
        Ok(Stats {
            n: s.len(),
            min: s[0],
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: s[s.len() - 1],
            mean: total / s.len() as u32,
        })
    }

    pub fn line(&self) -> String {
        format!(
            "n={} min {} p50 {} p90 {} p99 {} max {} mean {}",
            self.n,
            ms(self.min),
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            ms(self.mean)
        )
    }
}

pub fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v < 1.0 {
        format!("{:.3} ms", v)
    } else {
        format!("{:.2} ms", v)
    }
}

/// One figure with its target, as printed and as collected for `all`.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: &'static str,
    pub value: String,
    pub target: String,
    /// None: informational, no target was set.
    pub pass: Option<bool>,
}

impl Figure {
    pub fn print(&self) {
        let verdict = match self.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "INFO",
        };
        println!(
            "RESULT {:<14} {:<44} target: {:<40} {verdict}",
            self.name, self.value, self.target
        );
    }
}

/// `nproc`, the CPU model and the rustc version, printed before every run.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rustc unknown".into());
    let build = if cfg!(debug_assertions) {
        "DEBUG build (figures not representative)"
    } else {
        "release build"
    };
    format!(
        "nproc {cores}; CPU {model}; {rustc}; {build}; load average {}",
        load_average()
    )
}

/// The 1, 5 and 15 minute load averages: other work on the machine disturbs every figure.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The gateway configuration every benchmark uses: loopback, port 0, a rate limit high enough
/// for thousands of requests a minute. Durability settings are the gateway's own.
pub fn bench_config(data_dir: PathBuf) -> countersign_gateway::Config {
    countersign_gateway::Config {
        name: "bench gateway".into(),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir,
        rate_limit_per_minute: 100_000_000,
        ..countersign_gateway::Config::default()
    }
}

/// A request to `approvers`, with a summary that differs per `n` so nothing collapses.
pub fn new_request(approvers: Vec<String>, n: usize) -> countersign_protocol::api::NewRequest {
    countersign_protocol::api::NewRequest {
        action: "deploy.production".into(),
        resource: "service/api".into(),
        risk: None,
        summary: format!("Benchmark request #{n}"),
        detail: "Roll out build 1234 to production.".into(),
        reason: "benchmark".into(),
        ttl_seconds: 3600,
        approvers,
        min_approvals: 1,
        require_match: false,
    }
}

/// Reads an HTTP answer as JSON, or fails with the gateway's error body.
pub async fn answer<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T> {
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if !status.is_success() {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&bytes));
    }
    serde_json::from_slice(&bytes).with_context(|| format!("decoding a {status} answer"))
}

/// A device paired through the public HTTP API, with its software authenticator.
pub struct Device {
    pub key: KeyPair,
    pub id: String,
    pub approver: String,
    pub token: SoftToken,
    pub origin: Url,
}

/// Pairs one device: `/v1/pair/start`, a passkey registration with a `SoftToken`,
/// `/v1/pair/finish`, and checks the signed confirmation.
pub async fn pair_http(http: &reqwest::Client, link: &PairingLink, name: &str) -> Result<Device> {
    let key = KeyPair::generate();
    let start = PairStart {
        v: PROTOCOL_VERSION,
        code: link.code.clone(),
        device_key: key.public(),
        device_name: name.into(),
    };
    let resp = http
        .post(link.gateway.join(paths::PAIR_START)?)
        .json(&start)
        .send()
        .await?;
    let challenge: PairChallenge = answer(resp).await?;
    if challenge.gateway_key.fingerprint() != link.fingerprint {
        bail!("the gateway key does not match the pairing link");
    }
    let origin = Url::parse(&challenge.webauthn_origin)?;
    let (mut token, _) = SoftToken::new(true).map_err(|e| anyhow!("soft token: {e:?}"))?;
    let credential = token
        .do_registration(origin.clone(), serde_json::from_value(challenge.creation)?)
        .map_err(|e| anyhow!("passkey registration: {e:?}"))?;
    let finish = Signed::sign(
        &key,
        PairFinish {
            v: PROTOCOL_VERSION,
            pairing_id: challenge.pairing_id.clone(),
            device_key: key.public(),
            credential: serde_json::to_value(&credential)?,
        },
    )?;
    let resp = http
        .post(link.gateway.join(paths::PAIR_FINISH)?)
        .json(&finish)
        .send()
        .await?;
    let paired: Signed<Paired> = answer(resp).await?;
    paired.verify(&challenge.gateway_key)?;
    Ok(Device {
        key,
        id: paired.body.device_id.clone(),
        approver: paired.body.approver.clone(),
        token,
        origin,
    })
}

/// Seconds since the epoch, as the gateway's clock reads it.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An open `GET /v1/stream` for one device.
pub struct SseStream {
    resp: reqwest::Response,
    parser: SseParser,
    queue: VecDeque<SseItem>,
}

impl SseStream {
    pub async fn open(
        http: &reqwest::Client,
        base: &Url,
        key: &KeyPair,
        device_id: &str,
    ) -> Result<SseStream> {
        let auth = DeviceAuth::create(key, device_id, "GET", paths::STREAM, unix_now())?;
        let resp = http
            .get(base.join(paths::STREAM)?)
            .header("authorization", auth.to_header())
            .header("accept", "text/event-stream")
            .send()
            .await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            bail!("stream refused: HTTP {status}: {body}");
        }
        Ok(SseStream {
            resp,
            parser: SseParser::new(),
            queue: VecDeque::new(),
        })
    }

    /// The next event (comments skipped): `(event name, data)`.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<(String, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(item) = self.queue.pop_front() {
                if let SseItem::Event { event, data, .. } = item {
                    return Ok((event, data));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.resp.chunk())
                .await
                .map_err(|_| anyhow!("the stream went quiet"))??
                .ok_or_else(|| anyhow!("the stream ended"))?;
            self.queue.extend(
                self.parser
                    .feed(&chunk)
                    .map_err(|e| anyhow!("bad SSE: {e}"))?,
            );
        }
    }
}

/// Process CPU time (user + system) of `pid` ("self" for this process) from /proc.
pub fn cpu_time(pid: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unreadable /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15 -> indexes 11, 12.
    let ticks: u64 = f
        .get(11)
        .zip(f.get(12))
        .and_then(|(u, s)| Some(u.parse::<u64>().ok()? + s.parse::<u64>().ok()?))
        .ok_or_else(|| anyhow!("unreadable CPU times in /proc/{pid}/stat"))?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// The soft limit on open files, from /proc/self/limits.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The Cargo target directory this binary was built into (`<target>/<profile>/countersign-bench`).
pub fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("cannot tell the target directory from {}", exe.display()))
}
