//! hoop reviews in `list` and `show`: one line each after the Countersign requests, and every
//! field of one, labelled as fetched unsigned from their hoop gateway.

use countersign_approver::clock::format_time;
use countersign_approver::display::{visible, visible_text, warnings};
use countersign_approver::hoop::api::HoopVerdict;
use countersign_approver::hoop::decide::HoopDelivery;
use countersign_approver::hoop::inbox::HoopItem;

/// One hoop review on one line.
pub fn one_line(item: &HoopItem) -> String {
    let first = item.detail().lines().next().unwrap_or("");
    let flagged = [
        item.detail(),
        item.requester(),
        &item.resource(),
        &item.reason(),
    ]
    .iter()
    .any(|t| !warnings(t).is_empty());
    format!(
        "{}  hoop     {:<9} {} on {} by {}: {}  [{}, unsigned]{}",
        item.id(),
        item.review.status.to_lowercase(),
        item.action(),
        visible(&item.resource()),
        visible(item.requester()),
        visible(first),
        visible(item.url.host_str().unwrap_or("hoop")),
        if flagged {
            "  ⚠ hidden or look-alike characters"
        } else {
            ""
        }
    )
}

/// Every field of a hoop review, then its script indented.
pub fn every_field(item: &HoopItem) -> String {
    let r = &item.review;
    let s = &item.session;
    let mut out = String::new();
    let mut field = |k: &str, v: String| out.push_str(&format!("{k:<12} {v}\n"));
    field("review", r.id.clone());
    field(
        "gateway",
        format!("hoop at {} ({})", item.url, item.provenance()),
    );
    field(
        "state",
        format!(
            "{} ({} of {} groups approved)",
            r.status.to_lowercase(),
            r.approved_groups(),
            r.needed()
        ),
    );
    field(
        "requester",
        format!("{} ({})", visible(item.requester()), visible(&s.user_name)),
    );
    field("action", item.action().to_owned());
    field("resource", visible(&item.resource()));
    if !item.reason().is_empty() {
        field(
            "reason",
            format!(
                "{} (the requester's words, unverified)",
                visible(&item.reason())
            ),
        );
    }
    if r.kind == "jit" {
        field(
            "access",
            format!("{} minutes once approved", r.access_seconds() / 60),
        );
    }
    for g in &r.review_groups_data {
        let by = g
            .reviewed_by
            .as_ref()
            .map(|b| format!(" by {}", visible(&b.email)))
            .unwrap_or_default();
        field(
            "group",
            format!("{}: {}{by}", visible(&g.group), g.status.to_lowercase()),
        );
    }
    if let Some(ai) = &s.ai_analysis {
        field(
            "hoop's risk",
            format!(
                "{}: {} ({})",
                visible(&ai.risk_level),
                visible(&ai.title),
                visible(&ai.explanation)
            ),
        );
    }
    field("received", format_time(item.received_at));
    for (name, text) in [
        ("script", item.detail().to_owned()),
        ("requester", item.requester().to_owned()),
        ("resource", item.resource()),
        ("reason", item.reason()),
    ] {
        for w in warnings(&text) {
            out.push_str(&format!("WARNING      {name}: {w}\n"));
        }
    }
    out.push_str("script:\n");
    for line in visible_text(item.detail(), true).lines() {
        out.push_str(&format!("    {line}\n"));
    }
    out
}

/// The hoop review `id` names, when it names no Countersign request.
pub fn target(ctx: &crate::ctx::Ctx, id: &str) -> anyhow::Result<Option<HoopItem>> {
    match ctx.engine.show(id) {
        Ok(_) => Ok(None),
        Err(countersign_approver::EngineError::UnknownRequest(_)) => {
            Ok(ctx.engine.hoop_item(id)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// `approve` and `deny` of a hoop review: the connection's passkey, the signed decision, and
/// what hoop made of it.
pub async fn decide(
    ctx: &crate::ctx::Ctx,
    item: &HoopItem,
    verdict: HoopVerdict,
    reason: &str,
    yes: bool,
) -> anyhow::Result<std::process::ExitCode> {
    use std::io::IsTerminal as _;
    let flagged = [
        item.detail().to_owned(),
        item.requester().to_owned(),
        item.resource(),
        item.reason(),
    ]
    .iter()
    .any(|t| !warnings(t).is_empty());
    if flagged {
        eprintln!(
            "warning: this hoop review has hidden or look-alike characters; its script reads:"
        );
        for line in visible_text(item.detail(), true).lines() {
            eprintln!("    {line}");
        }
        let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        if verdict == HoopVerdict::Approve && !yes && !interactive {
            anyhow::bail!(countersign_approver::EngineError::InvalidInput(format!(
                "hoop review {} has hidden or look-alike characters and there is no terminal to confirm on; \
                 read it with `countersign show {}` and approve with --yes if it is what you expect.",
                item.id(),
                item.id()
            )));
        }
    }
    let mut auth = ctx.authenticator()?;
    let out = ctx
        .engine
        .decide_hoop(item.id(), verdict, reason, auth.as_mut())
        .await?;
    let d = &out.decision.body;
    if ctx.json {
        crate::out::outln!(
            "{}",
            serde_json::json!({
                "kind": "hoop",
                "decision_id": d.decision_id,
                "review_id": d.review_id,
                "verdict": d.verdict,
                "delivery": out.delivery,
            })
        );
    }
    let code = match &out.delivery {
        HoopDelivery::Delivered { status } => {
            if !ctx.json {
                crate::out::outln!(
                    "{} in hoop (with {}); the review is {}",
                    if verdict == HoopVerdict::Approve {
                        "approved"
                    } else {
                        "rejected"
                    },
                    auth.kind().describe(),
                    status.to_lowercase()
                );
            }
            std::process::ExitCode::SUCCESS
        }
        HoopDelivery::Queued { error } => {
            if !ctx.json {
                crate::out::outln!(
                    "decided and kept; not sent yet ({}); it is sent when hoop answers",
                    visible(error)
                );
            }
            std::process::ExitCode::SUCCESS
        }
        HoopDelivery::Refused { message, .. } => {
            eprintln!("{}", visible(message));
            std::process::ExitCode::FAILURE
        }
        HoopDelivery::Superseded { status } => {
            eprintln!(
                "The review was decided elsewhere meanwhile (it is {}); your decision was not sent.",
                status.to_lowercase()
            );
            std::process::ExitCode::FAILURE
        }
    };
    Ok(code)
}
