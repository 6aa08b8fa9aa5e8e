//! hoop reviews in `list` and `show`: one line each after the Countersign requests, and every
//! field of one, labelled as fetched unsigned from their hoop gateway.

use countersign_approver::clock::format_time;
use countersign_approver::display::{visible, visible_text, warnings};
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
