//! `countersign`: the headless approver. Pairs with gateways, watches their streams, lists and
//! shows requests, approves and denies them, and verifies and exports the audit log.
//!
//! This file starts the process (logging, the runtime, the data directory) and hands each
//! subcommand to the module that owns it; an error is printed here, once.
//!
//! Modules, leaves first (none imports the others back):
//! - `out`: writing to stdout (`outln!`), where a closed pipe is an error, not a panic;
//! - `args`: the command line as clap parses it;
//! - `json`: the wire shapes (DTOs) of `--json`, built from engine values;
//! - `ctx`: the open engine and output mode every subcommand works with;
//! - `gateways`: `pair` and `gateways`;
//! - `connect`: `connect hoop` and `disconnect`;
//! - `inbox`: `list` and `show`, and the one-line form of a request;
//! - `hoop_items`: hoop reviews in `list` and `show`;
//! - `decide`: `approve`, `deny` and `report`;
//! - `sync`: `sync`;
//! - `audit`: `audit verify` and `audit export`;
//! - `watch`: `watch`.
#![forbid(unsafe_code)]

mod args;
mod audit;
mod connect;
mod ctx;
mod decide;
mod gateways;
mod hoop_items;
mod inbox;
mod json;
mod out;
mod passkeys;
mod prompt;
mod sync;
mod watch;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use countersign_approver::{AuthenticatorChoice, Engine, EngineError};

use args::{AuditCommand, Cli, Command, ConnectCommand, KeyCommand, PasskeyCommand};
use ctx::Ctx;
use json::Line as _;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // clap exits 2 for usage errors and 0 for --help/--version.
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COUNTERSIGN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
                // The CTAP2 library logs every key answer it treats as an error (a wrong PIN,
                // a second init); the CLI says what happened in its own sentence instead.
                .add_directive(quiet("webauthn_authenticator_rs"))
                .add_directive(quiet("fido_hid_rs")),
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
        // The reader of stdout went away (`countersign list | head`): nothing left to say.
        Err(e) if out::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            report_error(json, &e);
            ExitCode::from(1)
        }
    }
}

/// Prints an error: `{"error": {"code", "message"}}` on stdout with `--json`, else on stderr.
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
        let printed = json::Failed::new(code, &message)
            .line()
            .map_err(std::io::Error::other)
            .and_then(|line| out::write_line(format_args!("{line}")));
        if printed.is_err() {
            eprintln!("error: {message}");
        }
    } else {
        eprintln!("error: {message}");
    }
}

/// A directive that silences `target` unless COUNTERSIGN_LOG names it.
fn quiet(target: &str) -> tracing_subscriber::filter::Directive {
    let named = std::env::var("COUNTERSIGN_LOG").is_ok_and(|v| v.contains(target));
    let level = if named { "trace" } else { "off" };
    format!("{target}={level}")
        .parse()
        .unwrap_or_else(|_| tracing_subscriber::filter::LevelFilter::WARN.into())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::VerifyExport {
        file,
        device,
        gateway,
    } = &cli.command
    {
        return audit::verify_export(file, device.as_deref(), gateway.as_deref(), cli.json);
    }
    if let Command::VerifyEvidence { file, gateway } = &cli.command {
        let data_dir = cli
            .data_dir
            .clone()
            .or_else(|| countersign_approver::default_data_dir().ok());
        return audit::verify_evidence(file, gateway.as_deref(), data_dir.as_deref(), cli.json);
    }
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
        pin_stdin: cli.pin_stdin,
    };
    let offline = cli.offline;
    match cli.command {
        Command::Pair { link, device_name } => gateways::pair(&ctx, &link, device_name).await,
        Command::Gateways => gateways::list(&ctx),
        Command::Connect {
            command:
                ConnectCommand::Hoop {
                    url,
                    token_stdin,
                    token_file,
                },
        } => connect::hoop(&ctx, &url, token_stdin, token_file.as_deref()).await,
        Command::Disconnect { connection } => connect::disconnect(&ctx, &connection),
        Command::Watch => watch::run(&ctx).await,
        Command::Sync => sync::run(&ctx).await,
        Command::List { all } => inbox::list(&ctx, all, offline).await,
        Command::Show { id } => inbox::show(&ctx, &id, offline).await,
        Command::Approve {
            id,
            match_code,
            yes,
        } => decide::approve(&ctx, &id, match_code, yes, offline).await,
        Command::Deny { id, reason } => decide::deny(&ctx, &id, &reason, offline).await,
        Command::Report { id } => decide::report(&ctx, &id, offline).await,
        Command::Ack { id } => decide::acknowledge(&ctx, &id, offline).await,
        Command::Revoke { id, reason } => decide::revoke(&ctx, &id, &reason, offline).await,
        Command::Key {
            command: KeyCommand::SetPin,
        } => gateways::set_pin(&ctx),
        Command::Passkey { gateway, command } => {
            let gateway = passkeys::gateway(&ctx, gateway)?;
            match command {
                PasskeyCommand::Add => passkeys::add(&ctx, &gateway).await,
                PasskeyCommand::List => passkeys::list(&ctx, &gateway).await,
                PasskeyCommand::Remove { cred_id } => {
                    passkeys::remove(&ctx, &gateway, &cred_id).await
                }
            }
        }
        Command::Audit {
            command: AuditCommand::Verify { local },
        } => audit::verify(&ctx, local).await,
        Command::Audit {
            command: AuditCommand::Export { output },
        } => audit::export(&ctx, output),
        Command::Evidence { id, output } => audit::evidence(&ctx, &id, output.as_deref()).await,
        Command::VerifyEvidence { .. } | Command::VerifyExport { .. } => {
            unreachable!("handled before the engine opens")
        }
    }
}
