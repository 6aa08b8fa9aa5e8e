//! `countersign-gateway`: serve the reference gateway, issue invites and tokens, and create
//! approval requests (the CI/CD gate).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use countersign_gateway::client::RequesterClient;
use countersign_gateway::{pairing, Config, Gateway};
use countersign_protocol::api::NewRequest;
use countersign_protocol::{RequestState, Risk};
use url::Url;

mod people;
mod policy_cli;

/// Exit codes of `request --wait`.
const EXIT_DENIED: u8 = 3;
const EXIT_EXPIRED: u8 = 4;
const EXIT_WITHDRAWN: u8 = 5;

#[derive(Parser)]
#[command(
    name = "countersign-gateway",
    version,
    about = "Countersign reference gateway"
)]
struct Cli {
    /// Configuration file (TOML). Default: $XDG_CONFIG_HOME/countersign/gateway.toml if present.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Where the gateway keeps its database and signing key.
    #[arg(long, global = true, env = "COUNTERSIGN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API.
    Serve {
        /// Address to listen on (loopback by default).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// URL approvers use to reach this gateway, written into pairing links.
        #[arg(long)]
        public_url: Option<Url>,
        /// Serve HTTPS with this PEM certificate chain (with --tls-key); links pin it.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<std::path::PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
    },
    /// Print a one-time pairing link for an approver.
    Invite {
        approver: String,
        #[arg(long)]
        public_url: Option<Url>,
        #[arg(long)]
        json: bool,
    },
    /// Manage requester tokens.
    Token {
        #[command(subcommand)]
        command: people::TokenCommand,
    },
    /// Check a policy file, or run its tests.
    Policy {
        #[command(subcommand)]
        command: policy_cli::PolicyCommand,
    },
    /// The directory of people: approvers, their groups and their other identities.
    Approver {
        #[command(subcommand)]
        command: people::ApproverCommand,
    },
    /// Create an approval request on a running gateway; optionally wait and run a command.
    Request(RequestArgs),
    /// Verify the gateway's own audit chain.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Lift the block an approver's "I did not expect this" report put on a requester.
    Unblock { requester: String, approver: String },
    /// Revoke an approval before it is used, within its grant window: the requester and the
    /// integrations see it revoked, and its approvers are told.
    Revoke {
        request_id: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Write a request's evidence bundle (docs/protocol.md, section 9.7); check it with
    /// `countersign verify-evidence`.
    Evidence {
        request_id: String,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
    },
    /// The approvers' devices and passkeys: list them, revoke a device or a passkey.
    Devices {
        #[command(subcommand)]
        command: people::DevicesCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the chain, and that the newest log checkpoint is the tree over it.
    Verify,
    /// Write the log: one LogEntry per line, then `{"checkpoint": note}` signed over exactly
    /// those entries (docs/protocol.md, section 9.6).
    Export {
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(clap::Args)]
struct RequestArgs {
    /// Gateway URL (or COUNTERSIGN_GATEWAY, or `gateway` in requester.toml).
    #[arg(long, env = "COUNTERSIGN_GATEWAY")]
    gateway: Option<Url>,
    /// Requester token (or COUNTERSIGN_TOKEN, or `token` in requester.toml).
    #[arg(long, env = "COUNTERSIGN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long)]
    action: String,
    #[arg(long)]
    resource: String,
    /// One-line summary; defaults to the command or the action.
    #[arg(long)]
    summary: Option<String>,
    /// Full detail (the exact command, SQL, manifest). Defaults to the command after `--`.
    #[arg(long)]
    detail: Option<String>,
    #[arg(long, default_value = "")]
    reason: String,
    /// Time to live in seconds.
    #[arg(long, default_value_t = 600)]
    ttl: u32,
    /// An approver to ask (repeatable). With the default policy these are who approves; with
    /// another policy they narrow the approvers it makes eligible.
    #[arg(long = "approver")]
    approvers: Vec<String>,
    /// Approvals to ask for at least, per stage (0: as the policy says).
    #[arg(long, default_value_t = 0)]
    min_approvals: u32,
    /// Require number matching: you are shown a code the approver must type.
    #[arg(long)]
    require_match: bool,
    /// Break glass: approved at once if the gateway's policy lets you, with --reason (which
    /// every eligible approver reads); they are told after the fact and acknowledge it.
    #[arg(long)]
    break_glass: bool,
    #[arg(long, value_parser = parse_risk)]
    risk: Option<Risk>,
    /// Block until the request is decided (implied by a command).
    #[arg(long)]
    wait: bool,
    #[arg(long)]
    json: bool,
    /// Command to run once approved.
    #[arg(last = true)]
    command: Vec<String>,
}

fn parse_risk(s: &str) -> Result<Risk, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| "risk is one of low, medium, high, critical".to_string())
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RequesterFile {
    gateway: Option<Url>,
    token: Option<String>,
}

fn requester_file() -> Result<RequesterFile> {
    let Some(base) = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
    else {
        return Ok(RequesterFile::default());
    };
    let p = base.join("countersign/requester.toml");
    if !p.exists() {
        return Ok(RequesterFile::default());
    }
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

fn load_config(cli: &Cli) -> Result<Config> {
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(d) = &cli.data_dir {
        cfg.data_dir = d.clone();
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A configuration that does not load is reported by the command; its logs are text.
    let format = load_config(&cli).map(|c| c.log_format).unwrap_or_default();
    countersign_gateway::logging::init(format);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Serve {
            listen,
            public_url,
            tls_cert,
            tls_key,
        } => {
            let mut cfg = load_config(&cli)?;
            if let (Some(c), Some(k)) = (tls_cert, tls_key) {
                cfg.tls_cert = Some(c.clone());
                cfg.tls_key = Some(k.clone());
            }
            if let Some(l) = listen {
                cfg.listen = *l;
            }
            if let Some(u) = public_url {
                cfg.public_url = Some(u.clone());
            }
            countersign_gateway::server::raise_open_files();
            // Opening connects to the store, synchronously: on the blocking pool too.
            let gw = tokio::task::spawn_blocking(move || Gateway::open(cfg))
                .await
                .context("opening the gateway did not finish")??;
            let running = countersign_gateway::serve(gw).await?;
            tracing::info!(
                url = %running.url(),
                fingerprint = %running.gateway.fingerprint,
                operations = running.operations_addr.map(|a| a.to_string()),
                "countersign gateway listening"
            );
            // `invite`, run separately, reads this to put the live URL into pairing links.
            let url_file = running.gateway.config.data_dir.join("serving-url");
            if let Err(e) = std::fs::write(&url_file, running.url().as_str()) {
                tracing::warn!(%e, "cannot record the serving URL in {}", url_file.display());
            }
            println!("listening on {}", running.url());
            shutdown_signal().await;
            running.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Request(args) => request(args).await,
        // The administrative commands use the store synchronously, so they run on the blocking
        // pool, never on an async worker thread (see the store's module documentation).
        Command::Invite { .. }
        | Command::Token { .. }
        | Command::Approver { .. }
        | Command::Policy { .. }
        | Command::Unblock { .. }
        | Command::Revoke { .. }
        | Command::Devices { .. }
        | Command::Evidence { .. }
        | Command::Audit { .. } => tokio::task::spawn_blocking(move || admin(&cli))
            .await
            .context("the command's task did not finish")?,
    }
}

/// Runs an administrative command (`invite`, `token`, `unblock`, `audit verify`) on the
/// gateway's store, synchronously.
fn admin(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Invite {
            approver,
            public_url,
            json,
        } => {
            let cfg = load_config(cli)?;
            let serving = std::fs::read_to_string(cfg.data_dir.join("serving-url"))
                .ok()
                .and_then(|s| Url::parse(s.trim()).ok());
            let url = public_url
                .clone()
                .or_else(|| cfg.public_url.clone())
                .or(serving)
                .unwrap_or_else(|| cfg.public_url());
            let gw = Gateway::open(cfg)?;
            let link = pairing::invite(&gw, approver, url)?;
            if *json {
                println!(
                    "{}",
                    serde_json::json!({"link": link.to_string(), "approver": approver, "fingerprint": link.fingerprint, "expires_at": link.expires_at})
                );
            } else {
                println!("{link}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { command } => {
            let gw = Gateway::open(load_config(cli)?)?;
            people::token_command(&gw, command)
        }
        Command::Approver { command } => {
            let gw = Gateway::open(load_config(cli)?)?;
            people::approver_command(&gw, command)
        }
        Command::Policy { command } => {
            let gw = Gateway::open(load_config(cli)?)?;
            policy_cli::policy_command(&gw, command)
        }
        Command::Devices { command } => {
            let gw = Gateway::open(load_config(cli)?)?;
            people::devices_command(&gw, command)
        }
        Command::Revoke { request_id, reason } => {
            let gw = Gateway::open(load_config(cli)?)?;
            let status = countersign_gateway::lifecycle::revoke(&gw, request_id, "admin", reason)?;
            println!(
                "the approval of {request_id} is revoked (status {})",
                status.body.seq
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Unblock {
            requester,
            approver,
        } => {
            let gw = Gateway::open(load_config(cli)?)?;
            if countersign_gateway::reports::unblock(&gw, requester, approver)? {
                println!("{requester} may send requests to {approver} again");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("error: {requester} is not blocked for {approver}");
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let gw = Gateway::open(load_config(cli)?)?;
            let entries = gw.store.read(countersign_gateway::store::audit_entries)?;
            match countersign_protocol::audit::verify_chain(entries) {
                Ok((n, head)) => {
                    println!("audit chain intact: {n} entries, head {head}");
                    match countersign_gateway::tlog::verify_tree(&gw) {
                        Ok(Some(size)) => {
                            println!("log checkpoint of {size} entries matches the tree over them");
                            Ok(ExitCode::SUCCESS)
                        }
                        Ok(None) => Ok(ExitCode::SUCCESS),
                        Err(e) => {
                            println!("log BROKEN: {e}");
                            Ok(ExitCode::FAILURE)
                        }
                    }
                }
                Err(b) => {
                    println!("audit chain BROKEN: {b}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Evidence { request_id, output } => {
            let gw = Gateway::open(load_config(cli)?)?;
            let bundle = countersign_gateway::evidence::bundle(&gw, request_id)?;
            let text = serde_json::to_string_pretty(&bundle)? + "\n";
            match output {
                Some(path) => std::fs::write(path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Export { output },
        } => {
            let gw = Gateway::open(load_config(cli)?)?;
            let size = match output {
                Some(path) => {
                    let mut file = std::io::BufWriter::new(
                        std::fs::File::create(path)
                            .with_context(|| format!("cannot create {}", path.display()))?,
                    );
                    let size = countersign_gateway::tlog::export(&gw, &mut file)?;
                    std::io::Write::flush(&mut file)?;
                    size
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut lock = stdout.lock();
                    countersign_gateway::tlog::export(&gw, &mut lock)?
                }
            };
            eprintln!("exported {size} entries with their checkpoint");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { .. } | Command::Request(_) => {
            bail!("`serve` and `request` are not administrative commands")
        }
    }
}

async fn request(args: &RequestArgs) -> Result<ExitCode> {
    let file = requester_file()?;
    let gateway = args
        .gateway
        .clone()
        .or(file.gateway)
        .context("no gateway: pass --gateway URL, set COUNTERSIGN_GATEWAY, or add `gateway` to requester.toml")?;
    let token = args.token.clone().or(file.token).context(
        "no requester token: pass --token, set COUNTERSIGN_TOKEN, or add `token` to requester.toml",
    )?;
    let command_line = (!args.command.is_empty()).then(|| shell_words(&args.command));
    let new = NewRequest {
        action: args.action.clone(),
        resource: args.resource.clone(),
        risk: args.risk,
        summary: args
            .summary
            .clone()
            .or_else(|| command_line.clone())
            .unwrap_or_else(|| format!("{} on {}", args.action, args.resource)),
        detail: args
            .detail
            .clone()
            .or_else(|| command_line.clone())
            .unwrap_or_default(),
        reason: args.reason.clone(),
        ttl_seconds: args.ttl,
        approvers: args.approvers.clone(),
        min_approvals: args.min_approvals,
        require_match: args.require_match,
        break_glass: args.break_glass,
    };
    let client = RequesterClient::new(gateway, token)?;
    let created = client.create(&new).await?;
    let id = created.request.body.id.clone();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"id": id, "digest": created.digest, "match_code": created.match_code, "duplicate": created.duplicate, "expires_at": created.request.body.expires_at})
        );
    } else {
        let b = &created.request.body;
        match (b.mode, &b.policy) {
            (countersign_protocol::Mode::Auto, Some(p)) => {
                eprintln!(
                    "request {id} approved by the gateway's policy (rule {})",
                    p.rule
                )
            }
            (countersign_protocol::Mode::BreakGlass, Some(p)) => eprintln!(
                "request {id} approved by breaking glass (rule {}); {} told and must acknowledge it",
                p.rule,
                b.effective_stages()
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            _ => eprintln!(
                "request {id} created, waiting for approval: {}",
                b.effective_stages()
                    .iter()
                    .map(|s| match (&s.group, &s.approvers) {
                        (Some(g), _) => format!("{} of group {g}", s.min),
                        (None, Some(list)) => format!("{} of {}", s.min, list.join(", ")),
                        (None, None) => s.name.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        }
        if created.duplicate {
            eprintln!("(an identical request was already pending; this is that request)");
        }
        if let Some(code) = &created.match_code {
            eprintln!("match code: {code}  (the approver must type this code)");
        }
    }
    if !args.wait && args.command.is_empty() {
        if !args.json {
            println!("{id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Ctrl-C (or SIGTERM) while waiting withdraws the request, so no approver is left
    // deciding something nobody waits for.
    let view = tokio::select! {
        v = client.wait_final(&id) => v?,
        _ = shutdown_signal() => {
            eprintln!("interrupted: withdrawing request {id}");
            client.withdraw(&id).await?
        }
    };
    let state = view.status.body.state;
    let votes: Vec<String> = view
        .status
        .body
        .votes
        .iter()
        .map(|v| format!("{} {}", v.approver, v.verdict.as_str()))
        .collect();
    let stages = &view.status.body.stages;
    if stages.is_empty() {
        eprintln!("request {id} {}: {}", state.as_str(), votes.join(", "));
    } else {
        eprintln!(
            "request {id} {} ({}): {}",
            state.as_str(),
            countersign_protocol::stages::progress_line(stages),
            votes.join(", ")
        );
    }
    match state {
        RequestState::Approved => {
            if args.command.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            let status = tokio::process::Command::new(&args.command[0])
                .args(&args.command[1..])
                .status()
                .await
                .with_context(|| format!("running {}", args.command[0]))?;
            Ok(ExitCode::from(
                status.code().map(|c| c.clamp(0, 255) as u8).unwrap_or(1),
            ))
        }
        RequestState::Denied => Ok(ExitCode::from(EXIT_DENIED)),
        RequestState::Expired => Ok(ExitCode::from(EXIT_EXPIRED)),
        RequestState::Withdrawn => Ok(ExitCode::from(EXIT_WITHDRAWN)),
        RequestState::Pending => bail!("the request is still pending"),
    }
}

/// Joins a command for display, quoting words that need it.
fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
