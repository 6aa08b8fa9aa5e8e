//! `list` and `show`: reading the inbox, as one line per request or every field of one, and
//! the one-line form `watch` prints for an arriving request.

use std::process::ExitCode;

use countersign_approver::clock::format_time;
use countersign_approver::display::{visible, visible_text, warnings};
use countersign_approver::{InboxItem, ListFilter};
use countersign_protocol::{ApprovalRequest, RequestState};

use crate::ctx::Ctx;
use crate::json;
use crate::out::{out, outln};

fn remaining(now: i64, until: i64) -> String {
    let s = until - now;
    if s <= 0 {
        return "expired".into();
    }
    format!("in {}m {:02}s", s / 60, s % 60)
}

/// The fields of a request whose text carries hidden characters, mixed scripts or ASCII
/// look-alikes, each with its warning: the one list every command that shows a request shows
/// (`list`, `watch`, `show`, `approve`, `deny`).
pub fn flags(b: &ApprovalRequest) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (name, text) in [
        ("action", &b.action),
        ("resource", &b.resource),
        ("summary", &b.summary),
        ("detail", &b.detail),
        ("reason", &b.reason),
        ("requester", &b.requester),
    ] {
        for w in warnings(text) {
            out.push((name, w));
        }
    }
    out
}

/// The flagged fields' names once each, for a one-line mark (`⚠ check resource, requester`).
fn flag_mark(b: &ApprovalRequest) -> String {
    let mut names: Vec<&str> = flags(b).into_iter().map(|(n, _)| n).collect();
    names.dedup();
    if names.is_empty() {
        String::new()
    } else {
        format!(
            "  ⚠ hidden or look-alike characters in {}",
            names.join(", ")
        )
    }
}

/// One request on one line: id, risk, state, what, the expiry while it is pending, and a mark
/// when a field carries hidden or look-alike characters.
pub fn one_line(item: &InboxItem, now: i64) -> String {
    let b = &item.request.body;
    format!(
        "{}  {:<8} {:<9} {} on {} by {}: {}{}{}",
        b.id,
        b.risk.as_str(),
        item.effective_state(now).as_str(),
        visible(&b.action),
        visible(&b.resource),
        visible(&b.requester),
        visible(&b.summary),
        // Only a pending request has an expiry worth showing.
        if item.effective_state(now) == RequestState::Pending {
            format!(" (expires {})", remaining(now, b.expires_at))
        } else {
            String::new()
        },
        flag_mark(b)
    )
}

pub async fn list(ctx: &Ctx, all: bool, offline: bool) -> anyhow::Result<ExitCode> {
    ctx.maybe_sync(offline).await?;
    let now = ctx.engine.now();
    let filter = if all {
        ListFilter::All
    } else {
        ListFilter::Pending
    };
    let items = ctx.engine.list(filter)?;
    let hoop = ctx.engine.hoop_items(all)?;
    if ctx.json {
        for i in &items {
            json::print(&json::Request::new(i, now))?;
        }
        for i in &hoop {
            json::print(&json::HoopRequest::from(i))?;
        }
    } else if items.is_empty() && hoop.is_empty() {
        outln!("no {}requests", if all { "" } else { "pending " });
    } else {
        for i in &items {
            outln!("{}", one_line(i, now));
        }
        for i in &hoop {
            outln!("{}", crate::hoop_items::one_line(i));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn show(ctx: &Ctx, id: &str, offline: bool) -> anyhow::Result<ExitCode> {
    ctx.maybe_sync(offline).await?;
    let now = ctx.engine.now();
    let item = match ctx.engine.show(id) {
        Ok(item) => item,
        Err(countersign_approver::EngineError::UnknownRequest(_)) => {
            if let Some(h) = ctx.engine.hoop_item(id)? {
                if ctx.json {
                    json::print(&json::HoopRequest::from(&h))?;
                } else {
                    out!("{}", crate::hoop_items::every_field(&h));
                }
                return Ok(ExitCode::SUCCESS);
            }
            return Err(countersign_approver::EngineError::UnknownRequest(id.to_owned()).into());
        }
        Err(e) => return Err(e.into()),
    };
    if ctx.json {
        json::print(&json::Request::new(&item, now))?;
        return Ok(ExitCode::SUCCESS);
    }
    out!("{}", every_field(&item, now));
    Ok(ExitCode::SUCCESS)
}

/// What an approval grants: its window, its revocation and its acknowledgement.
fn grant_line(g: &countersign_protocol::Grant) -> String {
    let mut parts = vec![match g.expires_at {
        Some(t) => format!("valid until {}", format_time(t)),
        None => "valid until used".to_owned(),
    }];
    if let (Some(t), Some(by)) = (g.revoked_at, &g.revoked_by) {
        parts.push(format!("revoked by {} at {}", visible(by), format_time(t)));
    }
    if let (Some(t), Some(by)) = (g.acknowledged_at, &g.acknowledged_by) {
        parts.push(format!(
            "acknowledged by {} at {}",
            visible(by),
            format_time(t)
        ));
    }
    parts.join("; ")
}

/// Every field of a request, one per line, then its detail indented.
fn every_field(item: &InboxItem, now: i64) -> String {
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
            "{} ({})",
            item.effective_state(now).as_str(),
            visible(&countersign_approver::stages::progress_text(
                &item.progress()
            ))
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
        "stages",
        b.effective_stages()
            .iter()
            .map(|s| match (&s.approvers, &s.group) {
                (Some(list), _) => format!(
                    "{}: {} of {}",
                    visible(&s.name),
                    s.min,
                    list.iter()
                        .map(|a| visible(a))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (None, Some(g)) => {
                    format!("{}: {} of group {}", visible(&s.name), s.min, visible(g))
                }
                (None, None) => visible(&s.name),
            })
            .collect::<Vec<_>>()
            .join("; ")
            + if b.distinct_people || b.effective_stages().len() < 2 {
                ""
            } else {
                " (one person may count for several stages)"
            },
    );
    if b.mode == countersign_protocol::Mode::BreakGlass {
        field(
            "break-glass",
            "approved at once by the requester with a reason; you are told after the fact".into(),
        );
    }
    if let Some(g) = &item.grant {
        field("grant", grant_line(g));
    }
    field("why you", visible(&item.why_asked().join("; ")));
    if let Some(p) = &b.policy {
        field("policy rule", visible(&p.rule));
    }
    if let Some(g) = b.grant_seconds {
        field(
            "approval lasts",
            format!("{g} s from approval, for the action to start"),
        );
    }
    if !b.windows.is_empty() {
        field(
            "time windows",
            b.windows
                .iter()
                .map(|w| visible(w))
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
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
    for (name, w) in flags(b) {
        field("WARNING", format!("{name} {w}"));
    }
    out.push_str("detail:\n");
    for line in visible_text(&b.detail, true).lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}
