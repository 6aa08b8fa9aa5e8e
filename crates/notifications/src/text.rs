//! What a notification says. Pure functions, testable without a bus.
//!
//! Every field taken from a request goes through [`field`]: control, bidi and invisible
//! characters are written out as `\u{...}` ([`display::visible`]), the result is cut to a length
//! limit with a `…` marker (the app shows the full text), and notification markup is escaped
//! (`&`, `<`, `>` become entities) because servers may interpret markup in the body (the spec's
//! `body-markup` capability) and some render the summary through the same markup parser.
//!
//! Only the requester, action, resource, risk, the request's one-line summary and its expiry
//! (or, for an item fetched unsigned, where it came from) are ever shown. Never the detail (it may hold credentials typed into a command), the reason, the
//! WebAuthn challenge, digests, keys or match codes.

use countersign_display as display;
use countersign_protocol::{ApprovalRequest, RequestState, Risk};
use notify_rust::Urgency;

/// The marker appended to a field that was cut.
pub const ELLIPSIS: char = '…';

/// Length limits, in characters of the visible form (the marker included).
pub const MAX_REQUESTER: usize = 48;
pub const MAX_ACTION: usize = 48;
pub const MAX_RESOURCE: usize = 64;
pub const MAX_SUMMARY: usize = 120;

/// The fields of a request a notification may show, taken from the signed request. Raw (not yet
/// made safe): [`field`] is applied when the text is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    pub id: String,
    /// Fingerprint of the gateway that sent it (bursts collapse per gateway and requester).
    pub gateway: String,
    pub requester: String,
    pub action: String,
    pub resource: String,
    /// `None`: nobody rated it (a hoop review without hoop's own analysis).
    pub risk: Option<Risk>,
    pub summary: String,
    /// Unix seconds; `None` when it does not expire (a hoop review).
    pub expires_at: Option<i64>,
    /// Approved at once by breaking glass: the approver is told, and acknowledges it.
    pub broke_glass: bool,
    /// For an item no gateway signed (a hoop review): the gateway it was fetched from, which
    /// the notification names in place of a signed request's expiry.
    pub unsigned_from: Option<String>,
}

impl RequestFacts {
    /// The facts of a verified request from the gateway `gateway` (its fingerprint). Only these
    /// reach a notification: never the detail, the reason, the challenge or any digest.
    pub fn from_request(gateway: &str, b: &ApprovalRequest) -> RequestFacts {
        RequestFacts {
            id: b.id.clone(),
            gateway: gateway.to_owned(),
            requester: b.requester.clone(),
            action: b.action.clone(),
            resource: b.resource.clone(),
            risk: Some(b.risk),
            summary: b.summary.clone(),
            expires_at: Some(b.expires_at),
            broke_glass: b.mode == countersign_protocol::Mode::BreakGlass,
            unsigned_from: None,
        }
    }
}

/// What one `Notify` call carries besides ids and actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub summary: String,
    pub body: String,
    pub urgency: Urgency,
    /// A resolved request: shown briefly, not kept in the server's history, no Review button.
    pub resolved: bool,
}

/// Urgency follows risk: low is Low, medium (and unrated) Normal, high and critical Critical.
pub fn urgency(risk: Option<Risk>) -> Urgency {
    match risk {
        Some(Risk::Low) => Urgency::Low,
        Some(Risk::Medium) | None => Urgency::Normal,
        Some(Risk::High | Risk::Critical) => Urgency::Critical,
    }
}

fn risk_rank(risk: Option<Risk>) -> u8 {
    match risk {
        Some(Risk::Low) => 0,
        None | Some(Risk::Medium) => 1,
        Some(Risk::High) => 2,
        Some(Risk::Critical) => 3,
    }
}

/// "high risk", or "risk not rated".
fn risk_words(risk: Option<Risk>) -> String {
    risk.map_or_else(
        || "risk not rated".to_owned(),
        |r| format!("{} risk", r.as_str()),
    )
}

/// The last line of a waiting item: its expiry, or where an unsigned one came from.
fn last_line(r: &RequestFacts, now: i64) -> String {
    match (&r.unsigned_from, r.expires_at) {
        (Some(from), _) => format!("Unsigned, from {}", field(from, MAX_RESOURCE)),
        (None, Some(at)) => expires_in(at, now),
        (None, None) => "Does not expire".to_owned(),
    }
}

/// `raw` made safe for a notification: hidden characters shown as `\u{...}`, cut to `max`
/// characters with a trailing `…`, then markup-escaped.
pub fn field(raw: &str, max: usize) -> String {
    let visible = display::visible(raw);
    let cut = if visible.chars().count() > max {
        let mut s: String = visible.chars().take(max.saturating_sub(1)).collect();
        s.push(ELLIPSIS);
        s
    } else {
        visible
    };
    escape_markup(&cut)
}

/// `&`, `<` and `>` as entities, so the server shows them instead of interpreting them.
pub fn escape_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// "Expires in 5 min" for `expires_at` seen at `now` (both unix seconds). Minutes round up, so a
/// request created with five minutes to live still says 5 min a second later.
pub fn expires_in(expires_at: i64, now: i64) -> String {
    let left = expires_at.saturating_sub(now);
    if left <= 0 {
        return "Expired".into();
    }
    if left < 60 {
        return format!("Expires in {left} s");
    }
    let minutes = (left + 59) / 60;
    if minutes < 60 {
        return format!("Expires in {minutes} min");
    }
    let (h, m) = (minutes / 60, minutes % 60);
    if m == 0 {
        format!("Expires in {h} h")
    } else {
        format!("Expires in {h} h {m} min")
    }
}

/// One waiting request:
///
/// ```text
/// summary: Approve sql.exec on prod-db? (high risk)
/// body:    ci-bot asks: Drop the sessions table
///          Expires in 5 min
/// ```
pub fn single(r: &RequestFacts, now: i64) -> Text {
    if r.broke_glass {
        return broke_glass(r);
    }
    let mut body = format!(
        "{} asks: {}\n{}",
        field(&r.requester, MAX_REQUESTER),
        field(&r.summary, MAX_SUMMARY),
        last_line(r, now)
    );
    if looks_deceptive(r) {
        body.push_str(LOOK_ALIKE);
    }
    Text {
        summary: format!(
            "Approve {} on {}? ({})",
            field(&r.action, MAX_ACTION),
            field(&r.resource, MAX_RESOURCE),
            risk_words(r.risk)
        ),
        body,
        urgency: urgency(r.risk),
        resolved: false,
    }
}

/// A request approved at once by breaking glass, which the approver acknowledges:
///
/// ```text
/// summary: Glass broken: sql.exec on prod-db (high risk)
/// body:    dana approved it at once: Restart the settlement worker
///          Acknowledge it in Countersign
/// ```
fn broke_glass(r: &RequestFacts) -> Text {
    let mut body = format!(
        "{} approved it at once: {}\nAcknowledge it in Countersign",
        field(&r.requester, MAX_REQUESTER),
        field(&r.summary, MAX_SUMMARY),
    );
    if looks_deceptive(r) {
        body.push_str(LOOK_ALIKE);
    }
    Text {
        summary: format!(
            "Glass broken: {} on {} ({})",
            field(&r.action, MAX_ACTION),
            field(&r.resource, MAX_RESOURCE),
            risk_words(r.risk)
        ),
        body,
        urgency: urgency(r.risk),
        resolved: false,
    }
}

/// Appended to a notification whose shown fields carry hidden characters, mixed scripts or
/// ASCII look-alikes (UTS #39, see `countersign_display::warnings`).
pub const LOOK_ALIKE: &str = "\n⚠ Hidden or look-alike characters: check in the app";

fn looks_deceptive(r: &RequestFacts) -> bool {
    [&r.action, &r.resource, &r.requester, &r.summary]
        .iter()
        .any(|f| !display::warnings(f).is_empty())
}

/// Several waiting requests from one requester, collapsed into one notification (`waiting` in
/// arrival order, the newest last; at least one):
///
/// ```text
/// summary: ci-bot: 3 requests waiting
/// body:    Newest: sql.exec on prod-db (high risk): Drop the sessions table
///          Expires in 5 min
/// ```
///
/// Urgency is that of the riskiest waiting request, and the look-alike warning is there when
/// any of them, not only the newest, carries hidden or look-alike characters: a burst is where
/// a deceptive request would hide.
pub fn collapsed(waiting: &[&RequestFacts], now: i64) -> Option<Text> {
    let newest = waiting.last()?;
    if waiting.len() == 1 {
        return Some(single(newest, now));
    }
    let riskiest = waiting
        .iter()
        .map(|r| r.risk)
        .max_by_key(|r| risk_rank(*r))
        .unwrap_or(newest.risk);
    let mut body = format!(
        "Newest: {} on {} ({}): {}\n{}",
        field(&newest.action, MAX_ACTION),
        field(&newest.resource, MAX_RESOURCE),
        risk_words(newest.risk),
        field(&newest.summary, MAX_SUMMARY),
        last_line(newest, now)
    );
    if waiting.iter().any(|r| looks_deceptive(r)) {
        body.push_str(LOOK_ALIKE);
    }
    Some(Text {
        summary: format!(
            "{}: {} requests waiting",
            field(&newest.requester, MAX_REQUESTER),
            waiting.len()
        ),
        body,
        urgency: urgency(riskiest),
        resolved: false,
    })
}

/// The last request of a notification reached a final state (decided here or elsewhere, expired
/// or withdrawn). The engine does not say where a decision was made, so the text does not either:
///
/// ```text
/// summary: Approved: sql.exec on prod-db
/// body:    ci-bot asked: Drop the sessions table
///          Nothing left to decide.
/// ```
///
/// `None` for `Pending` (not a final state).
pub fn resolved(r: &RequestFacts, state: RequestState) -> Option<Text> {
    let verb = match state {
        RequestState::Pending => return None,
        RequestState::Approved => "Approved",
        RequestState::Denied => "Denied",
        RequestState::Expired => "Expired",
        RequestState::Withdrawn => "Withdrawn",
    };
    Some(Text {
        summary: format!(
            "{verb}: {} on {}",
            field(&r.action, MAX_ACTION),
            field(&r.resource, MAX_RESOURCE)
        ),
        body: format!(
            "{} asked: {}\nNothing left to decide.",
            field(&r.requester, MAX_REQUESTER),
            field(&r.summary, MAX_SUMMARY)
        ),
        urgency: Urgency::Low,
        resolved: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(risk: Risk) -> RequestFacts {
        RequestFacts {
            id: "r1".into(),
            gateway: "gw".into(),
            requester: "ci-bot".into(),
            action: "sql.exec".into(),
            resource: "prod-db".into(),
            risk: Some(risk),
            summary: "Drop the sessions table".into(),
            expires_at: Some(1_000 + 300),
            broke_glass: false,
            unsigned_from: None,
        }
    }

    #[test]
    fn a_broken_glass_asks_for_acknowledgement_not_approval() {
        let t = single(
            &RequestFacts {
                broke_glass: true,
                ..facts(Risk::High)
            },
            1_000,
        );
        assert_eq!(t.summary, "Glass broken: sql.exec on prod-db (high risk)");
        assert_eq!(
            t.body,
            "ci-bot approved it at once: Drop the sessions table\nAcknowledge it in Countersign"
        );
    }

    #[test]
    fn field_table() {
        let cases: &[(&str, usize, &str)] = &[
            ("plain", 10, "plain"),
            ("<b>bold</b> & co", 40, "&lt;b&gt;bold&lt;/b&gt; &amp; co"),
            ("rm -rf /\u{202E}txt.exe", 40, "rm -rf /\\u{202E}txt.exe"),
            ("a\u{200B}b", 10, "a\\u{200B}b"),
            ("two\nlines", 20, "two\\u{A}lines"),
            ("abcdefghij", 10, "abcdefghij"),
            ("abcdefghijk", 10, "abcdefghi…"),
            ("héllo wörld", 5, "héll…"),
            // cut first, escape after: an entity is never cut in half
            ("aaaa&&&&", 6, "aaaa&amp;…"),
            ("<<<<", 3, "&lt;&lt;…"),
        ];
        for (raw, max, want) in cases {
            assert_eq!(&field(raw, *max), want, "raw {raw:?} max {max}");
        }
    }

    #[test]
    fn expiry_table() {
        let cases: &[(i64, &str)] = &[
            (-5, "Expired"),
            (0, "Expired"),
            (1, "Expires in 1 s"),
            (59, "Expires in 59 s"),
            (60, "Expires in 1 min"),
            (61, "Expires in 2 min"),
            (299, "Expires in 5 min"),
            (300, "Expires in 5 min"),
            (3600, "Expires in 1 h"),
            (3601, "Expires in 1 h 1 min"),
            (7200 + 15 * 60, "Expires in 2 h 15 min"),
        ];
        for (left, want) in cases {
            assert_eq!(expires_in(1_000 + left, 1_000), *want, "left {left}");
        }
    }

    #[test]
    fn urgency_follows_risk() {
        let cases = [
            (Risk::Low, Urgency::Low),
            (Risk::Medium, Urgency::Normal),
            (Risk::High, Urgency::Critical),
            (Risk::Critical, Urgency::Critical),
        ];
        for (risk, want) in cases {
            assert_eq!(urgency(Some(risk)), want, "{risk:?}");
            assert_eq!(single(&facts(risk), 1_000).urgency, want);
        }
        assert_eq!(urgency(None), Urgency::Normal);
    }

    /// A hoop review: unrated by hoop, no expiry, and named as unsigned with where it came from.
    #[test]
    fn an_unsigned_item_says_so_in_place_of_an_expiry() {
        let t = single(
            &RequestFacts {
                risk: None,
                expires_at: None,
                unsigned_from: Some("hoop at hoop.example.com".into()),
                ..facts(Risk::High)
            },
            1_000,
        );
        assert_eq!(t.summary, "Approve sql.exec on prod-db? (risk not rated)");
        assert_eq!(
            t.body,
            "ci-bot asks: Drop the sessions table\nUnsigned, from hoop at hoop.example.com"
        );
        assert_eq!(t.urgency, Urgency::Normal);
    }

    #[test]
    fn single_text() {
        let t = single(&facts(Risk::High), 1_000);
        assert_eq!(t.summary, "Approve sql.exec on prod-db? (high risk)");
        assert_eq!(
            t.body,
            "ci-bot asks: Drop the sessions table\nExpires in 5 min"
        );
        assert!(!t.resolved);
    }

    #[test]
    fn collapsed_text() {
        let a = facts(Risk::Critical);
        let mut b = facts(Risk::Low);
        b.id = "r2".into();
        b.summary = "Read a row".into();
        let t = collapsed(&[&a, &b], 1_000).unwrap();
        assert_eq!(t.summary, "ci-bot: 2 requests waiting");
        assert_eq!(
            t.body,
            "Newest: sql.exec on prod-db (low risk): Read a row\nExpires in 5 min"
        );
        assert_eq!(t.urgency, Urgency::Critical, "riskiest waiting request");
        assert_eq!(collapsed(&[&b], 1_000).unwrap(), single(&b, 1_000));
        assert!(collapsed(&[], 1_000).is_none());
    }

    #[test]
    fn a_look_alike_anywhere_in_a_burst_is_flagged_in_the_collapsed_text() {
        let mut older = facts(Risk::High);
        older.resource = "pr\u{043e}d-db".into(); // Cyrillic о
        let mut newest = facts(Risk::Low);
        newest.id = "r2".into();
        let t = collapsed(&[&older, &newest], 1_000).unwrap();
        assert!(t.body.ends_with(LOOK_ALIKE), "{}", t.body);
        let clean = collapsed(&[&newest, &newest], 1_000).unwrap();
        assert!(!clean.body.contains(LOOK_ALIKE), "{}", clean.body);
    }

    #[test]
    fn resolved_text() {
        let cases = [
            (RequestState::Approved, "Approved: sql.exec on prod-db"),
            (RequestState::Denied, "Denied: sql.exec on prod-db"),
            (RequestState::Expired, "Expired: sql.exec on prod-db"),
            (RequestState::Withdrawn, "Withdrawn: sql.exec on prod-db"),
        ];
        for (state, want) in cases {
            let t = resolved(&facts(Risk::High), state).unwrap();
            assert_eq!(t.summary, want);
            assert_eq!(
                t.body,
                "ci-bot asked: Drop the sessions table\nNothing left to decide."
            );
            assert_eq!(t.urgency, Urgency::Low);
            assert!(t.resolved);
        }
        assert!(resolved(&facts(Risk::High), RequestState::Pending).is_none());
    }

    #[test]
    fn hostile_fields_are_escaped_everywhere() {
        let mut r = facts(Risk::High);
        r.requester = "<i>root</i>".into();
        r.action = "a&b".into();
        r.resource = "db\u{202E}gpj".into();
        r.summary = "<a href=\"x\">click</a>\u{2066}".into();
        let texts = [
            single(&r, 1_000),
            collapsed(&[&r, &r], 1_000).unwrap(),
            resolved(&r, RequestState::Denied).unwrap(),
        ];
        assert!(texts[0].body.ends_with(LOOK_ALIKE), "{}", texts[0].body);
        let plain = single(&facts(Risk::High), 1_000);
        assert!(!plain.body.contains(LOOK_ALIKE), "{}", plain.body);
        let mut spoof = facts(Risk::High);
        spoof.resource = "prod-db.pаypal.com".into(); // Cyrillic а
        assert!(single(&spoof, 1_000).body.ends_with(LOOK_ALIKE));
        for t in texts {
            for s in [&t.summary, &t.body] {
                assert!(!s.contains('<') && !s.contains('>'), "{s}");
                assert!(!s.contains('\u{202E}') && !s.contains('\u{2066}'), "{s}");
                assert!(!s.contains("a&b"), "{s}");
            }
        }
    }
}
