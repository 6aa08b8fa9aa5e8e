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
}

pub fn policy_command(gw: &Gateway, command: &PolicyCommand) -> anyhow::Result<ExitCode> {
    let (file, json, run_tests) = match command {
        PolicyCommand::Check { file, json } => (file, *json, false),
        PolicyCommand::Test { file, json } => (file, *json, true),
    };
    let source = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the policy {}", file.display()))?;
    let data = directory::policy_data(&directory_admin::list(gw)?);
    let name = file_name(file);
    let loaded = if run_tests {
        Policy::load(&name, &source, data)
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
