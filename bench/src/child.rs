//! The gateway in a child process (this binary re-executed with the hidden `gateway-child`
//! subcommand), so that its CPU time and memory can be read from /proc/<pid> apart from the
//! load generator's.
//!
//! Protocol: the child prints one JSON line `{"url", "token"}` once it serves, then answers each
//! stdin line `invite <approver> <count>` with `count` pairing links and a line `end`, and
//! `group <group> <approver>...` by putting those approvers' people in the group (and stating
//! their memberships, and loading the policy with the new directory) with a line `end`. It
//! shuts down when stdin closes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use countersign_protocol::PairingLink;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use url::Url;

use countersign_test_support::start_serving;

use crate::common::bench_config;

/// Runs in the child: serve until stdin closes.
pub async fn run(
    data_dir: PathBuf,
    policy: Option<PathBuf>,
    database_url: Option<String>,
) -> Result<()> {
    let mut config = bench_config(data_dir);
    config.policy_file = policy;
    config.database_url = database_url;
    let (running, token) = start_serving(config).await?;
    let url = running.url();
    println!(
        "{}",
        serde_json::json!({"url": url.as_str(), "token": token})
    );
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        // The store is used from blocking threads, as the gateway's own handlers do: the
        // PostgreSQL engine awaits its statements on the calling thread.
        let gw = running.gateway.clone();
        let url = url.clone();
        let answer = tokio::task::spawn_blocking(move || command(&gw, &url, &line)).await??;
        println!("{answer}");
    }
    running.shutdown().await;
    Ok(())
}

/// One command line's answer lines.
fn command(gw: &countersign_gateway::Gateway, url: &Url, line: &str) -> Result<String> {
    let parts: Vec<&str> = line.split_whitespace().collect();
    let mut out = Vec::new();
    match parts.as_slice() {
        ["invite", approver, count] => {
            let count: usize = count.parse()?;
            for _ in 0..count {
                let link = countersign_gateway::pairing::invite(gw, approver, url.clone())?;
                out.push(link.to_string());
            }
            out.push("end".into());
        }
        ["group", group, approvers @ ..] => {
            let groups = [group.to_string()];
            for a in approvers {
                countersign_gateway::directory_admin::set_groups(gw, a, &groups)?;
            }
            // What the next request would otherwise do first: not part of its figure.
            countersign_gateway::reload::ensure_current(gw)?;
            out.push("end".into());
        }
        ["stats"] => out.push(serde_json::to_string(&gw.store.stats())?),
        _ => out.push("error unknown command".into()),
    }
    Ok(out.join("\n"))
}

/// The parent's handle on a child gateway.
pub struct ChildGateway {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    pub url: Url,
    pub token: String,
    pub pid: String,
    dir: Arc<tempfile::TempDir>,
}

impl ChildGateway {
    /// Starts a child gateway whose data directory is a new directory under `parent`
    /// (the system temporary directory if `None`).
    pub async fn start(parent: Option<&Path>) -> Result<ChildGateway> {
        Self::start_with(parent, None, None).await
    }

    /// [`ChildGateway::start`], routing by the policy file `policy` if one is given, and keeping
    /// its data in the PostgreSQL database `database_url` if one is given.
    pub async fn start_with(
        parent: Option<&Path>,
        policy: Option<&Path>,
        database_url: Option<&str>,
    ) -> Result<ChildGateway> {
        let dir = Arc::new(match parent {
            Some(p) => tempfile::tempdir_in(p)?,
            None => tempfile::tempdir()?,
        });
        Self::spawn(dir, policy, database_url).await
    }

    /// Another replica of this gateway: a child with the same data directory (its key) and
    /// database, which must be PostgreSQL.
    pub async fn replica(&self, policy: Option<&Path>, database_url: &str) -> Result<ChildGateway> {
        Self::spawn(self.dir.clone(), policy, Some(database_url)).await
    }

    async fn spawn(
        dir: Arc<tempfile::TempDir>,
        policy: Option<&Path>,
        database_url: Option<&str>,
    ) -> Result<ChildGateway> {
        let exe = std::env::current_exe()?;
        let mut command = tokio::process::Command::new(exe);
        command
            .arg("gateway-child")
            .arg("--data-dir")
            .arg(dir.path().join("gateway"));
        if let Some(p) = policy {
            command.arg("--policy").arg(p);
        }
        if let Some(url) = database_url {
            command.arg("--database-url").arg(url);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the child gateway")?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the child gateway exited at once"))?
            .to_string();
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no child stdout"))?;
        let mut stdout = BufReader::new(stdout).lines();
        let first = stdout
            .next_line()
            .await?
            .ok_or_else(|| anyhow!("the child gateway exited before serving"))?;
        let v: serde_json::Value = serde_json::from_str(&first)?;
        let url = Url::parse(v["url"].as_str().unwrap_or_default())?;
        let token = v["token"].as_str().unwrap_or_default().to_owned();
        Ok(ChildGateway {
            child,
            stdin,
            stdout,
            url,
            token,
            pid,
            dir,
        })
    }

    /// Sends one command line to the child.
    async fn send(&mut self, command: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("child stdin closed"))?;
        stdin.write_all(format!("{command}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    /// The child's next answer line; an `error ...` line is an error.
    async fn reply(&mut self) -> Result<String> {
        let line = self
            .stdout
            .next_line()
            .await?
            .ok_or_else(|| anyhow!("the child gateway exited"))?;
        if line.starts_with("error") {
            bail!("child gateway: {line}");
        }
        Ok(line)
    }

    pub async fn invites(&mut self, approver: &str, count: usize) -> Result<Vec<PairingLink>> {
        self.send(&format!("invite {approver} {count}")).await?;
        let mut out = Vec::with_capacity(count);
        loop {
            let line = self.reply().await?;
            if line == "end" {
                break;
            }
            out.push(PairingLink::parse(&line)?);
        }
        Ok(out)
    }

    /// Puts the people of `approvers` in `group`.
    pub async fn group(&mut self, group: &str, approvers: &[String]) -> Result<()> {
        self.send(&format!("group {group} {}", approvers.join(" ")))
            .await?;
        let line = self.reply().await?;
        if line != "end" {
            bail!("child gateway: unexpected answer {line:?}");
        }
        Ok(())
    }

    /// The gateway store's writer counters (see `countersign_gateway::store::StoreStats`).
    pub async fn store_stats(&mut self) -> Result<countersign_gateway::store::StoreStats> {
        self.send("stats").await?;
        Ok(serde_json::from_str(&self.reply().await?)?)
    }

    /// Closes stdin and waits for the child to shut down.
    pub async fn stop(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status =
            tokio::time::timeout(std::time::Duration::from_secs(10), self.child.wait()).await;
        match status {
            Ok(Ok(s)) if s.success() => Ok(()),
            Ok(Ok(s)) => bail!("the child gateway exited with {s}"),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                self.child.kill().await?;
                bail!("the child gateway did not stop within 10 s")
            }
        }
    }
}
