//! `countersign-bench`: the performance figures of docs/performance.md, each printed next to
//! its target with PASS or FAIL. Run with `--release`:
//!
//! ```text
//! cargo run --release -p countersign-bench -- all
//! ```
// A benchmark measures real time: the wall-clock ban (clippy.toml) is for the product.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod audit;
mod child;
mod common;
mod create;
mod desktop;
mod engine;
mod fanout;
mod hoop;
mod log;
mod policy;
mod replicas;
mod throughput;

use common::Figure;

#[derive(Parser)]
#[command(
    name = "countersign-bench",
    about = "Countersign benchmarks (build with --release)"
)]
struct Cli {
    /// Exit with status 1 if any figure misses its target.
    #[arg(long, global = true)]
    strict: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Request created (POST /v2/requests) until the approver engine has verified and stored it.
    PushLatency {
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// Put the gateway's and the engine's data directories under this directory
        /// (diagnostic, e.g. /dev/shm; the reported figure uses a real disk).
        #[arg(long)]
        data_parent: Option<PathBuf>,
    },
    /// POST /v2/requests until the engine stored it: one SQLite node, one PostgreSQL replica,
    /// and across two PostgreSQL replicas, in one run (a PostgreSQL server is started).
    PushReplicas {
        #[arg(long, default_value_t = 1000)]
        requests: usize,
    },
    /// Engine approve with the software authenticator until the receipt is verified and stored.
    DecisionRtt {
        #[arg(long, default_value_t = 500)]
        decisions: usize,
        /// As for push-latency.
        #[arg(long)]
        data_parent: Option<PathBuf>,
    },
    /// Decisions verified per second by the gateway under concurrent POST /v2/decisions.
    Throughput {
        #[arg(long, default_value_t = 4000)]
        requests: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 8)]
        approvers: usize,
        /// Put the gateway's data directory under this directory (e.g. /dev/shm to see what
        /// fsync costs; the reported figure uses the default, a real disk).
        #[arg(long)]
        data_parent: Option<PathBuf>,
        /// Record a `perf record -g` profile of the gateway during the timed run.
        #[arg(long)]
        perf: Option<PathBuf>,
    },
    /// One request pushed to approvers x devices open streams; gateway memory per idle stream.
    Fanout {
        #[arg(long, default_value_t = 50)]
        approvers: usize,
        #[arg(long, default_value_t = 20)]
        devices: usize,
        /// Address the request to a policy group of every approver (one event to the group)
        /// rather than naming each.
        #[arg(long)]
        group: bool,
        /// Two gateway replicas on PostgreSQL; half the streams on each.
        #[arg(long)]
        replicas: bool,
    },
    /// Audit appends (one transaction each) against a plain insert of the same row.
    AuditAppend {
        #[arg(long, default_value_t = 1000)]
        entries: usize,
        #[arg(long)]
        data_parent: Option<PathBuf>,
    },
    /// The gateway log: appends with the tree near the start and at this many entries, proofs,
    /// checkpoints and the backfill at open.
    GatewayLog {
        #[arg(long, default_value_t = 100_000)]
        entries: u64,
    },
    /// Engine::audit_verify over a chain of this many entries.
    AuditVerify {
        #[arg(long, default_value_t = 1_000_000)]
        entries: usize,
        #[arg(long)]
        data_parent: Option<PathBuf>,
    },
    /// The desktop app: cold start to first paint, idle memory and CPU, push to the
    /// notification, 10,000 pending requests. Needs a display and a session bus (xvfb-run,
    /// dbus-run-session), tauri-driver, and the app built (release by default).
    Desktop {
        /// The app binary; default: <target>/release/countersign-desktop.
        #[arg(long)]
        app: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        starts: usize,
        #[arg(long, default_value_t = 500)]
        pushes: usize,
        #[arg(long, default_value_t = 10_000)]
        inbox: usize,
        #[arg(long, default_value_t = 60)]
        idle_seconds: u64,
    },
    /// The gateway's policy evaluation: a 100-rule policy, 1,000 people in the directory,
    /// beside regorus alone on the same inputs.
    PolicyEval {
        #[arg(long, default_value_t = 5000)]
        evaluations: usize,
        /// Rules in the generated policy (the target is set for 100).
        #[arg(long, default_value_t = 100)]
        rules: usize,
    },
    /// Request creation under the default policy and a 100-rule policy, beside a pass-through
    /// policy (creation without a policy's cost).
    RequestCreate {
        #[arg(long, default_value_t = 2000)]
        requests: usize,
    },
    /// A hoop review's creation until a running engine notifies it, and what polling costs
    /// hoop while nothing waits.
    HoopNotify {
        #[arg(long, default_value_t = 40)]
        reviews: usize,
        /// The poll interval, in milliseconds (the engine's default is 3000).
        #[arg(long, default_value_t = 3000)]
        interval_ms: u64,
        /// How long the idle cost is counted, in seconds.
        #[arg(long, default_value_t = 30)]
        idle_seconds: u64,
    },
    /// Every benchmark with its defaults, then a summary.
    All,
    /// Internal: the gateway child process used by `throughput` and `fanout`.
    #[command(hide = true)]
    GatewayChild {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        policy: Option<PathBuf>,
        #[arg(long)]
        database_url: Option<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    if let Command::GatewayChild {
        data_dir,
        policy,
        database_url,
    } = cli.command
    {
        return rt.block_on(child::run(data_dir, policy, database_url));
    }
    println!("machine: {}", common::machine());
    let figures = rt.block_on(run(cli.command))?;
    println!();
    println!("load average at the end: {}", common::load_average());
    for f in &figures {
        f.print();
    }
    if cli.strict && figures.iter().any(|f| f.pass == Some(false)) {
        std::process::exit(1);
    }
    Ok(())
}

async fn run(command: Command) -> Result<Vec<Figure>> {
    Ok(match command {
        Command::PushLatency {
            requests,
            data_parent,
        } => engine::push_latency(requests, 50, data_parent.as_deref()).await?,
        Command::PushReplicas { requests } => replicas::run(requests.max(10)).await?,
        Command::DecisionRtt {
            decisions,
            data_parent,
        } => engine::decision_rtt(decisions, 20, data_parent.as_deref()).await?,
        Command::Throughput {
            requests,
            concurrency,
            approvers,
            data_parent,
            perf,
        } => {
            throughput::run(throughput::Options {
                requests,
                concurrency,
                approvers,
                data_parent,
                perf,
            })
            .await?
        }
        Command::Fanout {
            approvers,
            devices,
            group,
            replicas,
        } => {
            fanout::run(fanout::Options {
                approvers,
                devices,
                group,
                replicas,
                data_parent: None,
            })
            .await?
        }
        Command::AuditAppend {
            entries,
            data_parent,
        } => audit::append_rate(entries, data_parent.as_deref())?,
        Command::AuditVerify {
            entries,
            data_parent,
        } => audit::verify(entries, data_parent.as_deref())?,
        Command::GatewayLog { entries } => log::run(entries.max(1000))?,
        Command::PolicyEval { evaluations, rules } => policy::run(evaluations, rules.max(1))?,
        Command::RequestCreate { requests } => create::run(requests.max(50)).await?,
        Command::HoopNotify {
            reviews,
            interval_ms,
            idle_seconds,
        } => {
            hoop::run(
                reviews.max(1),
                std::time::Duration::from_millis(interval_ms.max(10)),
                std::time::Duration::from_secs(idle_seconds.max(1)),
            )
            .await?
        }
        Command::Desktop {
            app,
            starts,
            pushes,
            inbox,
            idle_seconds,
        } => {
            let app = match app {
                Some(a) => a,
                None => common::target_dir()?.join("release/countersign-desktop"),
            };
            desktop::run(desktop::Options {
                app,
                starts,
                pushes,
                inbox,
                idle_seconds,
            })
            .await?
        }
        Command::All => {
            let mut all = Vec::new();
            all.extend(engine::push_latency(1000, 50, None).await?);
            all.extend(engine::decision_rtt(500, 20, None).await?);
            all.extend(
                throughput::run(throughput::Options {
                    requests: 4000,
                    concurrency: 16,
                    approvers: 8,
                    data_parent: None,
                    perf: None,
                })
                .await?,
            );
            all.extend(
                fanout::run(fanout::Options {
                    approvers: 50,
                    devices: 20,
                    group: false,
                    replicas: false,
                    data_parent: None,
                })
                .await?,
            );
            all.extend(audit::append_rate(1000, None)?);
            all.extend(audit::verify(1_000_000, None)?);
            all.extend(policy::run(5000, 100)?);
            all.extend(create::run(2000).await?);
            all.extend(
                hoop::run(
                    40,
                    countersign_approver::HOOP_POLL_INTERVAL,
                    std::time::Duration::from_secs(30),
                )
                .await?,
            );
            all
        }
        Command::GatewayChild { .. } => Vec::new(),
    })
}
