//! `audit verify` and `audit export`: checking the local hash chain and comparing it with the
//! checkpoint each gateway holds, and writing the log out with a signed checkpoint.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use countersign_approver::EngineError;
use countersign_protocol::audit::{ChainBreak, Damage};

use crate::ctx::Ctx;
use crate::json;
use crate::out::outln;

/// Fails (naming the first gateway whose checkpoint the log no longer contains) unless the
/// chain verifies and every gateway's checkpoint is in it.
pub async fn verify(ctx: &Ctx, local: bool) -> anyhow::Result<ExitCode> {
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
        json::print(&json::AuditVerified::new(&s, &anchors))?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!("audit log intact: {} entries, head {}", s.entries, s.head);
    match s.checkpointed_through {
        Some(n) => outln!(
            "{} device-signed checkpoints verify; the latest covers entries 1 to {n}",
            s.checkpoints
        ),
        None => outln!("no checkpoints yet"),
    }
    for a in &anchors {
        match (&a.problem, a.held, a.uploaded) {
            (Some(p), _, _) => {
                outln!("not compared with gateway {}: {p}", a.name)
            }
            (None, held, Some(up)) => outln!(
                "gateway {}: {}; uploaded the checkpoint at entry {up}",
                a.name,
                held.map_or("held no checkpoint".to_owned(), |h| format!(
                    "its checkpoint at entry {h} is in the log"
                ))
            ),
            (None, Some(h), None) => outln!(
                "gateway {}: its checkpoint at entry {h} is in the log",
                a.name
            ),
            (None, None, None) => {
                outln!("gateway {}: no checkpoint to compare yet", a.name)
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the log (JSON Lines, the engine's export format) to `output` or stdout.
pub fn export(ctx: &Ctx, output: Option<PathBuf>) -> anyhow::Result<ExitCode> {
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

/// `evidence ID [-o FILE]`: the bundle from the request's gateway, verified before it is written.
pub async fn evidence(
    ctx: &Ctx,
    id: &str,
    output: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let bundle = ctx.engine.evidence(id).await?;
    let text = serde_json::to_string_pretty(&bundle)? + "\n";
    match output {
        Some(path) => {
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            outln!(
                "evidence of {id} verified against the pinned gateway key and written to {}",
                path.display()
            );
        }
        None => outln!("{}", text.trim_end()),
    }
    Ok(ExitCode::SUCCESS)
}

/// `verify-evidence FILE`: checks a bundle offline, with no data directory.
pub fn verify_evidence(
    file: &std::path::Path,
    gateway: Option<&str>,
    data_dir: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use countersign_approver::witness::{bundle_witness_in, BundleWitness};
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let bundle: countersign_protocol::evidence::Evidence = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not an evidence bundle", file.display()))?;
    let failed = |what: &str, problem: &str| -> anyhow::Result<ExitCode> {
        if json {
            outln!(
                "{}",
                serde_json::to_string(
                    &serde_json::json!({"failed": {"what": what, "problem": problem}})
                )?
            );
        } else {
            outln!("evidence does NOT verify: {what}: {problem}");
        }
        Ok(ExitCode::FAILURE)
    };
    let v = match countersign_protocol::evidence::verify(&bundle, gateway) {
        Ok(v) => v,
        Err(e) => return failed(&e.what, &e.problem),
    };
    // On a device paired with the gateway, its checkpoint is compared with the ones this
    // device witnessed.
    let witness = match data_dir {
        Some(dir) => bundle_witness_in(dir, &bundle)?,
        None => None,
    };
    if let Some(BundleWitness::Contradicted { problem }) = &witness {
        return failed("log.checkpoint", problem);
    }
    if json {
        outln!(
            "{}",
            serde_json::to_string(&serde_json::json!({"verified": v, "witness": witness}))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "evidence verifies: request {} ({}), {}, {} decision(s), {} log entries in a checkpoint of {}",
        v.request_id,
        v.request_digest,
        v.state.as_str(),
        v.decisions.len(),
        v.entries,
        v.log_size
    );
    for (approver, verdict, device) in &v.decisions {
        outln!("  {verdict} by {approver} on device {device}");
    }
    if !v.witnessed_by.is_empty() {
        outln!(
            "  checkpoint cosigned by device(s) {}",
            v.witnessed_by.join(", ")
        );
    }
    match witness {
        Some(BundleWitness::Witnessed { size }) => {
            outln!("  this device witnessed the checkpoint of {size} entries")
        }
        Some(BundleWitness::NotWitnessed { size }) => outln!(
            "  this device witnessed no checkpoint of {size} entries: the log rests on the gateway's signature"
        ),
        Some(BundleWitness::Contradicted { .. }) | None => {}
    }
    if gateway.is_none() {
        outln!("  (checked against the key the bundle carries, {}; pass --gateway to compare it with the fingerprint you trust)", v.gateway);
    }
    Ok(ExitCode::SUCCESS)
}

/// `verify-export FILE [--device FP] [--gateway FP]`: an approver's audit export, offline.
pub fn verify_export(
    file: &std::path::Path,
    device: Option<&str>,
    gateway: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match countersign_protocol::approver_export::verify_export(&text, device, gateway) {
        Ok(v) => {
            if json {
                outln!(
                    "{}",
                    serde_json::to_string(&serde_json::json!({"verified": v}))?
                );
            } else {
                outln!(
                    "export verifies: {} entries (head {}), signed by device key {}",
                    v.entries,
                    v.head,
                    v.device
                );
                for (gw, seq) in &v.acked {
                    outln!("  gateway {gw} acknowledged its checkpoint at entry {seq}");
                }
                if v.acked.is_empty() {
                    outln!("  no gateway acknowledgement: nothing shows the export is complete");
                }
                if device.is_none() {
                    outln!("  (checked against the key the export carries; pass --device to compare it with the fingerprint you trust)");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            if json {
                outln!(
                    "{}",
                    serde_json::to_string(&serde_json::json!({"failed": {
                        "position": b.position, "damage": b.damage, "problem": b.problem
                    }}))?
                );
            } else {
                outln!(
                    "export does NOT verify: entry {} ({}): {}",
                    b.position,
                    b.damage.as_str(),
                    b.problem
                );
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
