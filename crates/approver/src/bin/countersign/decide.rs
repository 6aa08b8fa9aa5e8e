//! `approve`, `deny` and `report`: deciding a request (the passkey ceremony for an approval)
//! and what became of the decision, and "I did not expect this".

use std::process::ExitCode;

use countersign_approver::display::visible;
use countersign_approver::{DecisionOutcome, Delivery};

use crate::ctx::Ctx;
use crate::json;

pub async fn approve(
    ctx: &Ctx,
    id: &str,
    match_code: Option<String>,
    offline: bool,
) -> anyhow::Result<ExitCode> {
    let mut auth = ctx.authenticator()?;
    ctx.maybe_sync(offline).await?;
    let out = ctx.engine.approve(id, match_code, auth.as_mut()).await?;
    decision_result(ctx, &out, Some(auth.kind().describe()))
}

pub async fn deny(ctx: &Ctx, id: &str, reason: &str, offline: bool) -> anyhow::Result<ExitCode> {
    ctx.maybe_sync(offline).await?;
    let out = ctx.engine.deny(id, reason).await?;
    decision_result(ctx, &out, None)
}

pub async fn report(ctx: &Ctx, id: &str, offline: bool) -> anyhow::Result<ExitCode> {
    ctx.maybe_sync(offline).await?;
    let out = ctx.engine.report_unexpected(id).await?;
    if ctx.json {
        json::print(&out.ack)?;
    } else {
        if let Some(d) = &out.denial {
            decision_result(ctx, d, None)?;
        }
        println!(
            "reported: {} can no longer send you requests through this gateway; {} pending request(s) from them denied",
            visible(&out.ack.requester),
            out.ack.denied.len()
        );
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
