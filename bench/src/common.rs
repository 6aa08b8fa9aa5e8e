//! The benchmarks' own shared pieces: statistics, figure lines with PASS/FAIL, the machine
//! description, the bench gateway configuration and process counters from /proc. Gateways,
//! paired devices and SSE streams come from the shared test harness (countersign-test-support).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};

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
        break_glass: false,
    }
}

/// Seconds since the epoch, as the gateway's clock reads it.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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
/// Raises this process's soft open-files limit as the gateway does at start (its children
/// inherit it), and fails with what to do when that is below `wanted`.
pub fn raise_open_files(wanted: u64) -> Result<()> {
    countersign_gateway::server::raise_open_files();
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    if soft < wanted {
        bail!(
            "the open-files limit is {soft}; {wanted} are needed: raise the hard limit (for \
             example `ulimit -Hn {wanted}` as root, or LimitNOFILE) and run again"
        );
    }
    Ok(())
}

/// The Cargo target directory this binary was built into (`<target>/<profile>/countersign-bench`).
pub fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("cannot tell the target directory from {}", exe.display()))
}
