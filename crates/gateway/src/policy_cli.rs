//! `countersign-gateway policy check|test FILE`: whether a policy would load, before it is put in
//! front of requests. Both evaluate with the gateway's directory as `data.directory`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use countersign_gateway::policy::{Policy, PolicyError};
use countersign_gateway::{directory, directory_admin, Gateway};
use serde_json::json;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Compile a policy and check the rules every policy must keep (package countersign, no
    /// system clock, no default result); its tests are not run.
    Check {
        file: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Everything `check` does, then run the policy's `test_*` rules: each must be true.
    Test {
        file: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// What the policy answers for a request: the input it sees and its result.
    Explain {
        /// The request as a requester sends it (NewRequest JSON, protocol.md 3.14).
        #[arg(long)]
        request: std::path::PathBuf,
        /// The requester token's name it comes from.
        #[arg(long)]
        requester: String,
        /// When (RFC 3339); default: now on the gateway's clock.
        #[arg(long)]
        at: Option<String>,
        /// The policy (default: the embedded default policy).
        #[arg(long)]
        policy: Option<std::path::PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub fn policy_command(gw: &Gateway, command: &PolicyCommand) -> anyhow::Result<ExitCode> {
    let (file, json, run_tests) = match command {
        PolicyCommand::Check { file, json } => (file, *json, false),
        PolicyCommand::Test { file, json } => (file, *json, true),
        PolicyCommand::Explain {
            request,
            requester,
            at,
            policy,
            json,
        } => {
            return explain(
                gw,
                request,
                requester,
                at.as_deref(),
                policy.as_deref(),
                *json,
            )
        }
    };
    let source = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the policy {}", file.display()))?;
    let data = directory::policy_data(&directory_admin::list(gw)?);
    let name = file_name(file);
    let loaded = if run_tests {
        Policy::load_with(&name, &source, data, operator_data(gw)?.as_ref())
    } else {
        Policy::check(&name, &source, data)
    };
    report(&name, loaded, run_tests, json)
}

fn file_name(file: &Path) -> String {
    file.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string())
}

fn report(
    name: &str,
    loaded: Result<Policy, PolicyError>,
    ran_tests: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match loaded {
        Ok(p) => {
            if json {
                println!(
                    "{}",
                    json!({"policy": name, "ok": true, "policy_hash": p.hash, "tests": p.tests, "tests_run": ran_tests})
                );
            } else if ran_tests {
                println!("{name}: {} tests passed (policy {})", p.tests.len(), p.hash);
                for t in &p.tests {
                    println!("  ok  {t}");
                }
            } else {
                println!(
                    "{name}: compiles, {} tests not run (policy {})",
                    p.tests.len(),
                    p.hash
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let failed = match &e {
                PolicyError::TestsFail(f) => f.clone(),
                _ => Vec::new(),
            };
            if json {
                println!(
                    "{}",
                    json!({"policy": name, "ok": false, "error": e.to_string(), "failed": failed})
                );
            } else {
                eprintln!("{name}: {e}");
                for t in &failed {
                    eprintln!("  FAILED  {t}");
                }
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn explain(
    gw: &Gateway,
    request: &Path,
    requester: &str,
    at: Option<&str>,
    policy: Option<&Path>,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(request)
        .with_context(|| format!("cannot read the request {}", request.display()))?;
    let new: countersign_protocol::api::NewRequest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a request (NewRequest JSON)", request.display()))?;
    let now = match at {
        Some(t) => time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .with_context(|| format!("--at {t:?} is not an RFC 3339 time"))?
            .unix_timestamp(),
        None => gw.now(),
    };
    let who = gw
        .store
        .read(|tx| countersign_gateway::tokens::requester(tx, requester))?;
    let data = directory::policy_data(&directory_admin::list(gw)?);
    let (name, loaded) = match policy {
        Some(file) => {
            let source = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the policy {}", file.display()))?;
            (
                file_name(file),
                Policy::load_with(&file_name(file), &source, data, operator_data(gw)?.as_ref()),
            )
        }
        None => (
            "default.rego".to_owned(),
            Policy::load_with(
                "default.rego",
                countersign_gateway::policy::DEFAULT_POLICY,
                data,
                operator_data(gw)?.as_ref(),
            ),
        ),
    };
    let policy = match loaded {
        Ok(p) => p,
        Err(e) => return report(&name, Err(e), true, json_out),
    };
    let input = countersign_gateway::policy::input(&new, &who, now);
    let outcome = policy.evaluate(&input);
    if json_out {
        let result = match &outcome {
            Ok(o) => json!({"ok": true, "result": o}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        };
        println!(
            "{}",
            json!({"policy": name, "policy_hash": policy.hash, "input": input, "outcome": result})
        );
    } else {
        println!("policy {name} ({})", policy.hash);
        println!("input {}", serde_json::to_string_pretty(&input)?);
        match &outcome {
            Ok(o) => println!("result {}", serde_json::to_string_pretty(o)?),
            Err(e) => eprintln!("policy error: {e}"),
        }
    }
    Ok(if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The operator's data file the gateway's configuration names (`policy_data_file`), read as
/// the gateway reads it.
fn operator_data(
    gw: &Gateway,
) -> anyhow::Result<Option<countersign_gateway::policy::OperatorData>> {
    Ok(gw
        .config
        .policy_data_file
        .as_deref()
        .map(countersign_gateway::policy::operator_data)
        .transpose()?)
}
