//! `sync`: fetching every gateway's backlog and sending queued decisions, one report per
//! gateway and the outbox totals.

use std::process::ExitCode;

use countersign_approver::display::visible;

use crate::ctx::Ctx;
use crate::json;
use crate::out::outln;

/// Fails (exit 1) when a gateway could not be synced.
pub async fn run(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let (reports, flushed) = ctx.engine.sync().await?;
    let mut failed = false;
    for r in &reports {
        failed |= r.error.is_some();
        if ctx.json {
            json::print(&json::Synced::from(r))?;
        } else {
            match &r.error {
                None => outln!("{}: up to date ({} events)", visible(&r.name), r.events),
                Some(e) => outln!("{}: {e}", visible(&r.name)),
            }
            if let Some(h) = &r.log_history_changed {
                outln!("{}: WARNING: {h}", visible(&r.name));
            }
        }
    }
    if ctx.json {
        json::print(&json::Outbox::from(flushed))?;
    } else {
        outln!(
            "outbox: {} delivered, {} refused, {} still queued",
            flushed.delivered,
            flushed.refused,
            flushed.queued
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
