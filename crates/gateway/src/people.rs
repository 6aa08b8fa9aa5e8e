//! The administrative commands about people: `approver …` (the directory), `token …` (the
//! requesters' tokens) and `devices …` (the approvers' devices and passkeys).

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use countersign_gateway::directory::Entry;
use countersign_gateway::directory_admin as directory;
use countersign_gateway::tokens::{self, TokenAttributes};
use countersign_gateway::Gateway;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create (or replace) the token of a requester (or, with --auditor, of an auditor) and
    /// print it once.
    Create {
        name: String,
        /// An auditor token: it reads every request's evidence and the gateway log, and can
        /// never create or change a request.
        #[arg(long, conflicts_with_all = ["team", "environments"])]
        auditor: bool,
        /// The requester's team (for the policy).
        #[arg(long)]
        team: Option<String>,
        /// An environment the requester may ask for (for the policy); repeatable.
        #[arg(long = "env", value_name = "ENVIRONMENT")]
        environments: Vec<String>,
    },
    /// Revoke a requester's token.
    Revoke { name: String },
    /// List requesters.
    List {
        /// One JSON object per token and line.
        #[arg(long)]
        json: bool,
    },
}

/// The identities of a person besides an approver name.
#[derive(Args)]
pub struct Identities {
    /// A requester token's name that is this person's; repeatable.
    #[arg(long = "token", value_name = "TOKEN")]
    tokens: Vec<String>,
    /// A Kubernetes username that is this person's; repeatable.
    #[arg(long = "kubernetes", value_name = "USERNAME")]
    kubernetes: Vec<String>,
    /// A GitHub login that is this person's; repeatable.
    #[arg(long = "github", value_name = "LOGIN")]
    github: Vec<String>,
    /// A hoop.dev email that is this person's; repeatable.
    #[arg(long = "hoop", value_name = "EMAIL")]
    hoop: Vec<String>,
    /// A mail address the gateway writes to this person at (`[email]`); repeatable.
    #[arg(long = "email", value_name = "ADDRESS")]
    email: Vec<String>,
}

impl Identities {
    fn entry(&self, groups: &[String]) -> Entry {
        Entry {
            groups: groups.to_vec(),
            tokens: self.tokens.clone(),
            kubernetes: self.kubernetes.clone(),
            github: self.github.clone(),
            hoop: self.hoop.clone(),
            email: self.email.clone(),
            ..Entry::default()
        }
    }
}

#[derive(Subcommand)]
pub enum ApproverCommand {
    /// Add a person with this approver name, their groups and their other identities.
    Add {
        approver: String,
        /// The person's id in the directory (default: the approver name).
        #[arg(long)]
        person: Option<String>,
        /// A group the person is in; repeatable.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        #[command(flatten)]
        identities: Identities,
    },
    /// Link more identities (tokens, Kubernetes, GitHub, hoop, mail) to the person of an approver.
    Link {
        approver: String,
        #[command(flatten)]
        identities: Identities,
    },
    /// Replace the groups of the person of an approver (none: no groups).
    SetGroups {
        approver: String,
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// Remove the person of an approver: their devices' votes are refused from now on.
    Remove { approver: String },
    /// Every person in the directory.
    List {
        /// One JSON object per person and line.
        #[arg(long)]
        json: bool,
    },
}

/// `approver add|link|set-groups|remove|list`.
pub fn approver_command(gw: &Gateway, command: &ApproverCommand) -> anyhow::Result<ExitCode> {
    match command {
        ApproverCommand::Add {
            approver,
            person,
            groups,
            identities,
        } => {
            let e = directory::add_approver(
                gw,
                approver,
                person.as_deref(),
                &identities.entry(groups),
            )?;
            println!("added {}", describe(&e));
        }
        ApproverCommand::Link {
            approver,
            identities,
        } => {
            let e = directory::link(gw, approver, &identities.entry(&[]))?;
            println!("{}", describe(&e));
        }
        ApproverCommand::SetGroups { approver, groups } => {
            let e = directory::set_groups(gw, approver, groups)?;
            println!("{}", describe(&e));
        }
        ApproverCommand::Remove { approver } => {
            let person = directory::remove(gw, approver)?;
            println!("removed {person}: the votes of {approver}'s devices are refused from now on");
        }
        ApproverCommand::List { json } => {
            for e in directory::list(gw)? {
                if *json {
                    println!("{}", serde_json::to_string(&e)?);
                } else {
                    println!("{}", describe(&e));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per person: `alice  approvers alice@example.com  groups dba,managers  tokens …`.
fn describe(e: &Entry) -> String {
    let mut line = e.id.clone();
    for (label, names) in [
        ("approvers", &e.approvers),
        ("groups", &e.groups),
        ("tokens", &e.tokens),
        ("kubernetes", &e.kubernetes),
        ("github", &e.github),
        ("hoop", &e.hoop),
        ("email", &e.email),
    ] {
        if !names.is_empty() {
            line.push_str(&format!("  {label} {}", names.join(",")));
        }
    }
    line
}

/// `token create|revoke|list`.
pub fn token_command(gw: &Gateway, command: &TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create {
            name,
            auditor: true,
            ..
        } => {
            println!("{}", tokens::create_auditor(gw, name)?);
        }
        TokenCommand::Create {
            name,
            team,
            environments,
            auditor: false,
        } => {
            let attributes = TokenAttributes {
                team: team.clone(),
                environments: environments.clone(),
            };
            println!("{}", tokens::create_with(gw, name, &attributes)?);
        }
        TokenCommand::Revoke { name } => {
            if !tokens::revoke(gw, name)? {
                bail!("{name} has no active token");
            }
        }
        TokenCommand::List { json } => {
            for t in tokens::list(gw)? {
                if *json {
                    println!("{}", serde_json::to_string(&t)?);
                    continue;
                }
                let mut line = format!(
                    "{}\tcreated {}\t{}",
                    t.name,
                    t.created_at,
                    if t.revoked { "revoked" } else { "active" }
                );
                if t.role == tokens::Role::Auditor {
                    line.push_str("\tauditor");
                }
                if let Some(team) = &t.attributes.team {
                    line.push_str(&format!("\tteam {team}"));
                }
                if !t.attributes.environments.is_empty() {
                    line.push_str(&format!(
                        "\tenvironments {}",
                        t.attributes.environments.join(",")
                    ));
                }
                println!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
pub enum DevicesCommand {
    /// Each device (id, name, paired, last seen) and passkey (AAGUID, created, last used,
    /// signature counter, backup flags) of every approver, or of one.
    List {
        #[arg(long)]
        approver: Option<String>,
        /// One JSON object per approver and line.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device (its stream closes at once, its decisions are refused from now on), or
    /// with --passkey one passkey (never accepted again).
    Revoke {
        /// The device id, or with --passkey the passkey's credential id, as `list` shows them.
        id: String,
        #[arg(long)]
        passkey: bool,
    },
}

/// `devices list` and `devices revoke`.
pub fn devices_command(gw: &Gateway, command: &DevicesCommand) -> anyhow::Result<ExitCode> {
    use countersign_gateway::admin::{self, Revoked};
    let when = |t: Option<i64>| t.map_or_else(|| "never".to_owned(), format_time);
    match command {
        DevicesCommand::List { approver, json } => {
            let listing = admin::list(gw, approver.as_deref())?;
            if listing.is_empty() {
                if let Some(a) = approver {
                    eprintln!("{a} has no devices or passkeys");
                    return Ok(ExitCode::FAILURE);
                }
            }
            for a in &listing {
                if *json {
                    println!("{}", serde_json::to_string(a)?);
                    continue;
                }
                println!("{}", a.approver);
                for d in &a.devices {
                    let state = match d.revoked_at {
                        Some(t) => format!("revoked {}", format_time(t)),
                        None => "active".into(),
                    };
                    println!(
                        "  device {}  {:?}  paired {}  last seen {}  {state}",
                        d.id,
                        d.name,
                        format_time(d.paired_at),
                        when(d.last_seen_at)
                    );
                }
                for p in &a.passkeys {
                    let state = match p.retired_at {
                        Some(t) => format!("revoked {}", format_time(t)),
                        None => "active".into(),
                    };
                    println!(
                        "  passkey {}  {}  created {}  last used {}  counter {}  backup eligible {} state {}  {state}",
                        p.cred_id,
                        countersign_gateway::models::describe(p.aaguid.as_deref(), p.attested),
                        format_time(p.created_at),
                        when(p.last_used_at),
                        p.counter,
                        p.backup_eligible,
                        p.backup_state,
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DevicesCommand::Revoke { id, passkey } => {
            let outcome = if *passkey {
                admin::revoke_passkey(gw, id)?
            } else {
                admin::revoke_device(gw, id)?
            };
            match outcome {
                Revoked::Device { approver } => {
                    println!("device {id} of {approver} revoked: its stream closes, its decisions are refused");
                }
                Revoked::Passkey { approver } => {
                    println!("passkey {id} of {approver} revoked: it is never accepted again");
                }
                Revoked::Nothing => {
                    eprintln!(
                        "error: no active {} {id}",
                        if *passkey { "passkey" } else { "device" }
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A Unix time as RFC 3339 (UTC).
pub fn format_time(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}
