//! `approve`, `deny` and `report`: deciding a request (the passkey ceremony for an approval)
//! and what became of the decision, and "I did not expect this".

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use countersign_approver::display::visible;
use countersign_approver::{DecisionOutcome, Delivery, EngineError};

use crate::ctx::Ctx;
use crate::inbox::flags;
use crate::json;
use crate::out::outln;

pub async fn approve(
    ctx: &Ctx,
    id: &str,
    match_code: Option<String>,
    yes: bool,
    offline: bool,
) -> anyhow::Result<ExitCode> {
    ctx.maybe_sync(offline).await?;
    if let Some(item) = crate::hoop_items::target(ctx, id)? {
        let verdict = countersign_approver::hoop::api::HoopVerdict::Approve;
        return crate::hoop_items::decide(ctx, &item, verdict, "", yes).await;
    }
    let mut auth = ctx.authenticator()?;
    confirm_flagged(ctx, id, yes)?;
    let out = ctx.engine.approve(id, match_code, auth.as_mut()).await?;
    decision_result(ctx, &out, Some(auth.kind().describe()))
}

pub async fn deny(ctx: &Ctx, id: &str, reason: &str, offline: bool) -> anyhow::Result<ExitCode> {
    ctx.maybe_sync(offline).await?;
    if let Some(item) = crate::hoop_items::target(ctx, id)? {
        // hoop asks for no passkey; this device confirms a rejection like an approval.
        let verdict = countersign_approver::hoop::api::HoopVerdict::Reject;
        return crate::hoop_items::decide(ctx, &item, verdict, reason, true).await;
    }
    // Denying is safe whatever the text says; the flags are still shown.
    warn_flagged(ctx, id)?;
    if ctx.engine.deny_needs_passkey(id)? {
        // The gateway wants the denial confirmed like an approval.
        eprintln!("The gateway wants this denial confirmed with your passkey.");
        let mut auth = ctx.authenticator()?;
        let out = ctx
            .engine
            .deny_with(id, reason, Some(auth.as_mut()))
            .await?;
        return decision_result(ctx, &out, Some(auth.kind().describe()));
    }
    let out = ctx.engine.deny(id, reason).await?;
    decision_result(ctx, &out, None)
}

/// Prints, on stderr, the fields of request `id` that carry hidden or look-alike characters,
/// with their text made visible. Whether any did.
fn warn_flagged(ctx: &Ctx, id: &str) -> anyhow::Result<bool> {
    let item = ctx.engine.show(id)?;
    let b = &item.request.body;
    let flagged = flags(b);
    if flagged.is_empty() {
        return Ok(false);
    }
    eprintln!(
        "warning: request {} has hidden or look-alike characters; read these fields as shown:",
        b.id
    );
    for (name, w) in &flagged {
        let text = match *name {
            "action" => &b.action,
            "resource" => &b.resource,
            "summary" => &b.summary,
            "detail" => &b.detail,
            "reason" => &b.reason,
            _ => &b.requester,
        };
        eprintln!("  {name}: {} ({w})", visible(text));
    }
    Ok(true)
}

/// Before an approval: a request with flagged fields is approved only once the person has seen
/// them and said yes (`--yes` says it beforehand). Without a terminal to ask on, it is refused.
fn confirm_flagged(ctx: &Ctx, id: &str, yes: bool) -> anyhow::Result<()> {
    if !warn_flagged(ctx, id)? || yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() || !std::io::stderr().is_terminal() {
        return Err(EngineError::InvalidInput(format!(
            "Request {id} has hidden or look-alike characters and there is no terminal to confirm on; \
             read it with `countersign show {id}` and approve with --yes if it is what you expect."
        ))
        .into());
    }
    eprint!("Approve it anyway? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(EngineError::InvalidInput("Not approved: the request was not confirmed.".into()).into())
    }
}

pub async fn report(ctx: &Ctx, id: &str, offline: bool) -> anyhow::Result<ExitCode> {
    ctx.maybe_sync(offline).await?;
    let (out, used) = if ctx.engine.deny_needs_passkey(id)? {
        eprintln!("The gateway wants this denial confirmed with your passkey.");
        let mut auth = ctx.authenticator()?;
        let out = ctx
            .engine
            .report_unexpected_with(id, Some(auth.as_mut()))
            .await?;
        (out, Some(auth.kind().describe()))
    } else {
        (ctx.engine.report_unexpected(id).await?, None)
    };
    if ctx.json {
        json::print(&out.ack)?;
    } else {
        if let Some(d) = &out.denial {
            decision_result(ctx, d, used)?;
        }
        outln!(
            "reported: {} can no longer send you requests through this gateway; {} pending request(s) from them denied",
            visible(&out.ack.requester),
            out.ack.denied.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn revoke(ctx: &Ctx, id: &str, reason: &str, offline: bool) -> anyhow::Result<ExitCode> {
    ctx.maybe_sync(offline).await?;
    let mut auth = ctx.authenticator()?;
    let receipt = ctx.engine.revoke(id, reason, auth.as_mut()).await?;
    // The revoked grant comes with the request's next status, on the stream.
    ctx.maybe_sync(offline).await?;
    if ctx.json {
        let item = ctx.engine.show(&receipt.body.request_id)?;
        json::print(&json::Request::new(&item, ctx.engine.now()))?;
    } else {
        outln!(
            "revoked your approval of {} (confirmed with {}; status {})",
            receipt.body.request_id,
            auth.kind().describe(),
            receipt.body.status_seq
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn acknowledge(ctx: &Ctx, id: &str, offline: bool) -> anyhow::Result<ExitCode> {
    ctx.maybe_sync(offline).await?;
    let item = ctx.engine.acknowledge(id).await?;
    let by = item
        .grant
        .as_ref()
        .and_then(|g| g.acknowledged_by.clone())
        .unwrap_or_default();
    if ctx.json {
        json::print(&json::Request::new(&item, ctx.engine.now()))?;
    } else if by == item.approver {
        outln!("acknowledged {}", item.id());
    } else {
        outln!("{} was already acknowledged by {}", item.id(), visible(&by));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what became of a decision; a refusal by the gateway is a failure (exit 1).
fn decision_result(
    ctx: &Ctx,
    out: &DecisionOutcome,
    authenticator: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let d = &out.decision.body;
    if ctx.json {
        json::print(&json::Decided::new(out, authenticator))?;
    } else {
        match &out.delivery {
            Delivery::Delivered { receipt } => outln!(
                "{} {}: delivered; the request is now {} ({} of {} approvals{})",
                d.verdict.as_str(),
                d.request_id,
                receipt.body.request_state.as_str(),
                receipt.body.approvals,
                receipt.body.min_approvals,
                if receipt.body.stages.is_empty() {
                    String::new()
                } else {
                    format!(
                        ": {}",
                        visible(&countersign_approver::stages::progress_text(
                            &receipt.body.stages
                        ))
                    )
                }
            ),
            Delivery::Queued { error } => outln!(
                "{} {}: recorded and queued; the gateway could not be reached ({error}). \
                 It will be sent by `countersign sync` or `countersign watch`.",
                d.verdict.as_str(),
                d.request_id
            ),
            Delivery::Refused { code, message } => {
                eprintln!("error: the gateway refused the decision ({code}): {message}")
            }
            Delivery::InFlight | Delivery::Settled { .. } => {
                outln!("{} {}: recorded", d.verdict.as_str(), d.request_id)
            }
        }
    }
    Ok(match out.delivery {
        Delivery::Refused { .. } => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}
