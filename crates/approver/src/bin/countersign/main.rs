//! `countersign`: the headless approver. Pairs with gateways, watches their streams, lists and
//! shows requests, approves and denies them, and verifies and exports the audit log.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use countersign_approver::clock::format_time;
use countersign_approver::display::{visible, visible_text, warnings};
use countersign_approver::{
    open_authenticator, Authenticator, AuthenticatorChoice, DecisionOutcome, Delivery, Engine,
    EngineError, EngineEvent, InboxItem, ListFilter, Notifier,
};
use countersign_protocol::audit::{ChainBreak, Damage};
use countersign_protocol::{PairingLink, RequestState};

#[derive(Parser)]
#[command(
    name = "countersign",
    version,
    about = "Countersign approver (headless)"
)]
struct Cli {
    /// Where the database, device key and development authenticator live.
    #[arg(long, global = true, env = "COUNTERSIGN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Machine-readable output: one JSON object per line.
    #[arg(long, global = true)]
    json: bool,
    /// Passkey authenticator: `usb` (security key) or `soft` (development mode only).
    #[arg(long, global = true, env = "COUNTERSIGN_AUTHENTICATOR", value_parser = ["soft", "usb"])]
    authenticator: Option<String>,
    /// Do not contact gateways first; use the local store only.
    #[arg(long, global = true)]
    offline: bool,
    /// Where a new device key is kept: `auto` (the Secret Service when one answers on the
    /// session bus, else an owner-only file), `secret-service` or `file`. An existing key stays
    /// where it is.
    #[arg(long, global = true, env = "COUNTERSIGN_KEY_STORE", default_value = "auto",
          value_parser = ["auto", "secret-service", "file"])]
    key_store: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pair with a gateway using a countersign://pair link.
    Pair {
        link: String,
        /// How this device is named at the gateway (default: the host name).
        #[arg(long)]
        device_name: Option<String>,
    },
    /// List paired gateways.
    Gateways,
    /// Stay connected to every gateway and print requests as they arrive (Ctrl-C to stop).
    Watch,
    /// Fetch every gateway's backlog and send queued decisions, then exit.
    Sync,
    /// List pending requests (or all with --all).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Show every field of one request.
    Show { id: String },
    /// Approve a request (passkey ceremony).
    Approve {
        id: String,
        /// The code the requester sees, when the request requires number matching.
        #[arg(long)]
        match_code: Option<String>,
    },
    /// Deny a request.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// "I did not expect this": deny the request and report it to its gateway, which blocks
    /// its requester from you (their pending requests to you are denied, new ones refused).
    Report { id: String },
    /// Verify or export the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain and the device's checkpoints, then compare the log with the
    /// checkpoint each paired gateway holds (and upload a newer one); exits non-zero naming the
    /// first bad entry, or the gateway whose checkpoint the log no longer contains.
    Verify {
        /// Check only the local log; do not contact the gateways.
        #[arg(long)]
        local: bool,
    },
    /// Write the log as JSON Lines with a signed checkpoint.
    Export {
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // clap exits 2 for usage errors and 0 for --help/--version.
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COUNTERSIGN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            report_error(json, &anyhow::Error::from(e));
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            report_error(json, &e);
            ExitCode::from(1)
        }
    }
}

fn report_error(json: bool, e: &anyhow::Error) {
    let code = e
        .chain()
        .find_map(|c| c.downcast_ref::<EngineError>())
        .map(EngineError::code)
        .unwrap_or("error");
    let message = e
        .chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    if json {
        println!(
            "{}",
            serde_json::json!({"error": {"code": code, "message": message}})
        );
    } else {
        eprintln!("error: {message}");
    }
}

struct Ctx {
    engine: Engine,
    json: bool,
    choice: Option<AuthenticatorChoice>,
}

impl Ctx {
    fn authenticator(&self) -> anyhow::Result<Box<dyn Authenticator>> {
        let a = open_authenticator(self.choice, self.engine.data_dir())?;
        if !self.json {
            println!("authenticator: {}", a.kind().describe());
        }
        Ok(a)
    }

    /// Syncs first unless offline; an unreachable gateway is a warning, not a failure.
    async fn maybe_sync(&self, offline: bool) -> anyhow::Result<()> {
        if offline {
            return Ok(());
        }
        let (reports, _) = self.engine.sync().await?;
        for r in reports {
            if let Some(err) = r.error {
                eprintln!(
                    "warning: gateway {} could not be reached ({err}); showing the local store",
                    visible(&r.name)
                );
            }
        }
        Ok(())
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = match cli.data_dir {
        Some(d) => d,
        None => countersign_approver::default_data_dir()
            .context("Neither --data-dir nor COUNTERSIGN_DATA_DIR is set")?,
    };
    let choice = cli
        .authenticator
        .as_deref()
        .map(str::parse::<AuthenticatorChoice>)
        .transpose()?;
    let options = countersign_approver::EngineOptions {
        key_store: cli.key_store.parse()?,
        ..Default::default()
    };
    let engine = Engine::open_with(&data_dir, options)
        .with_context(|| format!("Cannot open the data directory {}", data_dir.display()))?;
    let ctx = Ctx {
        engine,
        json: cli.json,
        choice,
    };
    match cli.command {
        Command::Pair { link, device_name } => pair(&ctx, &link, device_name).await,
        Command::Gateways => gateways(&ctx),
        Command::Watch => watch(&ctx).await,
        Command::Sync => sync(&ctx).await,
        Command::List { all } => {
            ctx.maybe_sync(cli.offline).await?;
            list(&ctx, all)
        }
        Command::Show { id } => {
            ctx.maybe_sync(cli.offline).await?;
            show(&ctx, &id)
        }
        Command::Approve { id, match_code } => {
            let mut auth = ctx.authenticator()?;
            ctx.maybe_sync(cli.offline).await?;
            let out = ctx.engine.approve(&id, match_code, auth.as_mut()).await?;
            decision_result(&ctx, &out, Some(auth.kind().describe()))
        }
        Command::Deny { id, reason } => {
            ctx.maybe_sync(cli.offline).await?;
            let out = ctx.engine.deny(&id, &reason).await?;
            decision_result(&ctx, &out, None)
        }
        Command::Report { id } => {
            ctx.maybe_sync(cli.offline).await?;
            let out = ctx.engine.report_unexpected(&id).await?;
            if ctx.json {
                println!("{}", serde_json::to_string(&out.ack)?);
            } else {
                if let Some(d) = &out.denial {
                    decision_result(&ctx, d, None)?;
                }
                println!(
                    "reported: {} can no longer send you requests through this gateway; {} pending request(s) from them denied",
                    visible(&out.ack.requester),
                    out.ack.denied.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { local },
        } => {
            let s = ctx.engine.audit_verify()?;
            let anchors = if local {
                Vec::new()
            } else {
                ctx.engine.anchor_audit().await?
            };
            if let Some(bad) = anchors.iter().find(|a| a.damage.is_some()) {
                let damage = bad.damage.unwrap_or(Damage::RolledBack);
                return Err(EngineError::AuditBroken(ChainBreak {
                    position: bad.held.unwrap_or(0),
                    damage,
                    problem: bad.problem.clone().unwrap_or_default(),
                })
                .into());
            }
            if ctx.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": true,
                        "entries": s.entries,
                        "head": s.head,
                        "checkpoints": s.checkpoints,
                        "checkpointed_through": s.checkpointed_through,
                        "gateways": anchors,
                    })
                );
            } else {
                println!("audit log intact: {} entries, head {}", s.entries, s.head);
                match s.checkpointed_through {
                    Some(n) => println!(
                        "{} device-signed checkpoints verify; the latest covers entries 1 to {n}",
                        s.checkpoints
                    ),
                    None => println!("no checkpoints yet"),
                }
                for a in &anchors {
                    match (&a.problem, a.held, a.uploaded) {
                        (Some(p), _, _) => {
                            println!("not compared with gateway {}: {p}", a.name)
                        }
                        (None, held, Some(up)) => println!(
                            "gateway {}: {}; uploaded the checkpoint at entry {up}",
                            a.name,
                            held.map_or("held no checkpoint".to_owned(), |h| format!(
                                "its checkpoint at entry {h} is in the log"
                            ))
                        ),
                        (None, Some(h), None) => println!(
                            "gateway {}: its checkpoint at entry {h} is in the log",
                            a.name
                        ),
                        (None, None, None) => {
                            println!("gateway {}: no checkpoint to compare yet", a.name)
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Export { output },
        } => {
            let s = match &output {
                Some(path) => {
                    let mut f = std::io::BufWriter::new(
                        std::fs::File::create(path)
                            .with_context(|| format!("Cannot create {}", path.display()))?,
                    );
                    let s = ctx.engine.audit_export(&mut f)?;
                    f.flush()?;
                    s
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut lock = stdout.lock();
                    ctx.engine.audit_export(&mut lock)?
                }
            };
            if let Some(path) = output {
                eprintln!(
                    "exported {} entries and a signed checkpoint to {}",
                    s.entries,
                    path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn pair(ctx: &Ctx, link: &str, device_name: Option<String>) -> anyhow::Result<ExitCode> {
    let link = PairingLink::parse(link).map_err(EngineError::from)?;
    let mut auth = ctx.authenticator()?;
    let name = device_name
        .unwrap_or_else(|| countersign_approver::device_name(countersign_approver::Host::Cli));
    let g = ctx.engine.pair(&link, &name, auth.as_mut()).await?;
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({
                "gateway": g.name, "url": g.url.as_str(), "fingerprint": g.fingerprint,
                "approver": g.approver, "device_id": g.device_id,
                "authenticator": auth.kind().describe(),
            })
        );
    } else {
        println!("paired with {} ({})", visible(&g.name), g.url);
        println!("approver:    {}", visible(&g.approver));
        println!("fingerprint: {}", g.fingerprint);
        println!("device id:   {}", g.device_id);
    }
    Ok(ExitCode::SUCCESS)
}

fn gateways(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    if !ctx.json {
        println!("device key: {}", ctx.engine.key_location().describe());
    }
    for g in ctx.engine.gateways()? {
        if ctx.json {
            println!("{}", serde_json::to_string(&g)?);
        } else {
            println!(
                "{}  {}  approver {}  device {}  {}",
                &g.fingerprint[..16.min(g.fingerprint.len())],
                visible(&g.name),
                visible(&g.approver),
                g.device_id,
                g.url
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn remaining(now: i64, until: i64) -> String {
    let s = until - now;
    if s <= 0 {
        return "expired".into();
    }
    format!("in {}m {:02}s", s / 60, s % 60)
}

fn one_line(item: &InboxItem, now: i64) -> String {
    let b = &item.request.body;
    format!(
        "{}  {:<8} {:<9} {} on {} by {}: {}{}",
        b.id,
        b.risk.as_str(),
        item.effective_state(now).as_str(),
        visible(&b.action),
        visible(&b.resource),
        visible(&b.requester),
        visible(&b.summary),
        // Only a pending request has an expiry worth showing.
        if item.effective_state(now) == countersign_protocol::RequestState::Pending {
            format!(" (expires {})", remaining(now, b.expires_at))
        } else {
            String::new()
        }
    )
}

fn item_json(item: &InboxItem, now: i64) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(item)?;
    v["effective_state"] = serde_json::json!(item.effective_state(now));
    Ok(v)
}

fn list(ctx: &Ctx, all: bool) -> anyhow::Result<ExitCode> {
    let now = ctx.engine.now();
    let filter = if all {
        ListFilter::All
    } else {
        ListFilter::Pending
    };
    let items = ctx.engine.list(filter)?;
    if ctx.json {
        for i in &items {
            println!("{}", item_json(i, now)?);
        }
    } else if items.is_empty() {
        println!("no {}requests", if all { "" } else { "pending " });
    } else {
        for i in &items {
            println!("{}", one_line(i, now));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Ctx, id: &str) -> anyhow::Result<ExitCode> {
    let now = ctx.engine.now();
    let item = ctx.engine.show(id)?;
    if ctx.json {
        println!("{}", item_json(&item, now)?);
        return Ok(ExitCode::SUCCESS);
    }
    let b = &item.request.body;
    let mut out = String::new();
    let mut field = |k: &str, v: String| out.push_str(&format!("{k:<12} {v}\n"));
    field("request", b.id.clone());
    field(
        "gateway",
        format!("{} ({})", visible(&item.gateway_name), item.gateway),
    );
    field(
        "state",
        format!(
            "{} ({} of {} approvals)",
            item.effective_state(now).as_str(),
            item.approvals,
            item.min_approvals
        ),
    );
    field("requester", visible(&b.requester));
    field("action", visible(&b.action));
    field("resource", visible(&b.resource));
    field("risk", b.risk.as_str().to_owned());
    field("summary", visible(&b.summary));
    field(
        "reason",
        format!("{} (the requester's words, unverified)", visible(&b.reason)),
    );
    field("created", format_time(b.created_at));
    field("valid from", format_time(b.not_before));
    field(
        "expires",
        format!(
            "{} ({})",
            format_time(b.expires_at),
            remaining(now, b.expires_at)
        ),
    );
    field(
        "approvers",
        format!(
            "{} (needs {})",
            b.approvers
                .iter()
                .map(|a| visible(a))
                .collect::<Vec<_>>()
                .join(", "),
            b.min_approvals
        ),
    );
    field(
        "match code",
        if b.match_required {
            "required"
        } else {
            "not required"
        }
        .into(),
    );
    field("digest", item.digest.to_hex());
    field("received", format_time(item.received_at));
    for v in &item.votes {
        field(
            "vote",
            format!(
                "{} {} at {}",
                visible(&v.approver),
                v.verdict.as_str(),
                format_time(v.at)
            ),
        );
    }
    if let Some(d) = &item.decision {
        field(
            "you decided",
            format!(
                "{} at {} (decision {}, {}{})",
                d.verdict.as_str(),
                format_time(d.decided_at),
                d.decision_id,
                d.delivery.as_str(),
                d.last_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        );
    }
    for (name, text) in [
        ("action", &b.action),
        ("resource", &b.resource),
        ("summary", &b.summary),
        ("detail", &b.detail),
        ("reason", &b.reason),
        ("requester", &b.requester),
    ] {
        for w in warnings(text) {
            field("WARNING", format!("{name} {w}"));
        }
    }
    out.push_str("detail:\n");
    for line in visible_text(&b.detail, true).lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn decision_result(
    ctx: &Ctx,
    out: &DecisionOutcome,
    authenticator: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let d = &out.decision.body;
    if ctx.json {
        let mut v = serde_json::json!({
            "request_id": d.request_id, "decision_id": d.decision_id, "verdict": d.verdict,
            "delivery": out.delivery,
        });
        if let Some(a) = authenticator {
            v["authenticator"] = a.into();
        }
        println!("{v}");
    } else {
        match &out.delivery {
            Delivery::Delivered { receipt } => println!(
                "{} {}: delivered; the request is now {} ({} of {} approvals)",
                d.verdict.as_str(),
                d.request_id,
                receipt.body.request_state.as_str(),
                receipt.body.approvals,
                receipt.body.min_approvals
            ),
            Delivery::Queued { error } => println!(
                "{} {}: recorded and queued; the gateway could not be reached ({error}). \
                 It will be sent by `countersign sync` or `countersign watch`.",
                d.verdict.as_str(),
                d.request_id
            ),
            Delivery::Refused { code, message } => {
                eprintln!("error: the gateway refused the decision ({code}): {message}")
            }
            Delivery::InFlight | Delivery::Settled { .. } => {
                println!("{} {}: recorded", d.verdict.as_str(), d.request_id)
            }
        }
    }
    Ok(match out.delivery {
        Delivery::Refused { .. } => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

async fn sync(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let (reports, flushed) = ctx.engine.sync().await?;
    let mut failed = false;
    for r in &reports {
        failed |= r.error.is_some();
        if ctx.json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            match &r.error {
                None => println!("{}: up to date ({} events)", visible(&r.name), r.events),
                Some(e) => println!("{}: {e}", visible(&r.name)),
            }
        }
    }
    if ctx.json {
        println!("{}", serde_json::json!({"outbox": flushed}));
    } else {
        println!(
            "outbox: {} delivered, {} refused, {} still queued",
            flushed.delivered, flushed.refused, flushed.queued
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints arriving requests. It only prints: a notification never decides anything.
struct PrintNotifier {
    json: bool,
    engine: Engine,
}

impl Notifier for PrintNotifier {
    fn request_arrived(&self, item: &InboxItem) {
        let now = self.engine.now();
        if self.json {
            if let Ok(v) = item_json(item, now) {
                println!("{}", serde_json::json!({"type": "request", "request": v}));
            }
        } else {
            println!("new request {}", one_line(item, now));
        }
    }

    fn request_resolved(&self, request_id: &str, state: RequestState) {
        if self.json {
            println!(
                "{}",
                serde_json::json!({"type": "resolved", "request_id": request_id, "state": state})
            );
        } else {
            println!("request {request_id} is now {}", state.as_str());
        }
    }
}

async fn watch(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    if ctx.engine.gateways()?.is_empty() {
        anyhow::bail!("No gateway is paired yet; run `countersign pair <link>` first.");
    }
    ctx.engine.set_notifier(Arc::new(PrintNotifier {
        json: ctx.json,
        engine: ctx.engine.clone(),
    }));
    let mut events = ctx.engine.subscribe();
    let json = ctx.json;
    let printer = tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            let line = match &e {
                EngineEvent::RequestRejected {
                    request_id, reason, ..
                } => format!(
                    "rejected request {}: {}",
                    request_id.as_deref().unwrap_or("(unreadable)"),
                    visible(reason)
                ),
                EngineEvent::ConnectionUp { gateway } => format!("connected to {gateway}"),
                EngineEvent::ConnectionDown { gateway, error } => {
                    format!("connection to {gateway} lost: {error}; retrying")
                }
                EngineEvent::DecisionDelivered { decision_id, .. } => {
                    format!("decision {decision_id} delivered")
                }
                EngineEvent::DecisionRefused {
                    decision_id,
                    code,
                    message,
                    ..
                } => {
                    format!("decision {decision_id} refused ({code}): {message}")
                }
                _ => continue,
            };
            if json {
                if let Ok(v) = serde_json::to_string(&e) {
                    println!("{v}");
                }
            } else {
                eprintln!("{line}");
            }
        }
    });
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
        let _ = tx.send(true);
    });
    if !ctx.json {
        eprintln!(
            "watching {} gateway(s); Ctrl-C to stop",
            ctx.engine.gateways()?.len()
        );
    }
    ctx.engine.run(rx).await?;
    printer.abort();
    Ok(ExitCode::SUCCESS)
}
