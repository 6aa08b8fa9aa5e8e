//! The `[[webhooks]]` of the gateway's configuration: where the gateway tells of requests
//! (docs/notifications.md), with a filter each, the body's format, and the HMAC secret.

use std::path::PathBuf;

use serde::Deserialize;

/// The events a destination can be sent.
pub const EVENTS: &[&str] = &[
    "request.created",
    "request.decided",
    "request.expired",
    "request.withdrawn",
];

/// One destination of outgoing webhooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// A name for the audit log and the delivery rows (unique).
    pub name: String,
    /// Where each event is POSTed.
    pub url: url::Url,
    /// A file holding the HMAC-SHA256 key (its bytes, trailing white space dropped); unset:
    /// the bodies are not signed (a Slack incoming webhook checks no signature).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// `json` (the gateway's own body) or `slack` (an incoming-webhook message).
    #[serde(default)]
    pub format: WebhookFormat,
    /// The events sent (of [`EVENTS`]); empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// The actions sent (exact, or a prefix ending in `*`); empty: all.
    #[serde(default)]
    pub actions: Vec<String>,
    /// The requesters whose requests are sent (exact, or a prefix ending in `*`); empty: all.
    /// A destination of a team's own channel tells its requesters the outcome.
    #[serde(default)]
    pub requesters: Vec<String>,
    /// Whether the body carries the request's full detail (the command, the object change);
    /// by default only its summary and a link.
    #[serde(default)]
    pub include_detail: bool,
}

/// The body of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    #[default]
    Json,
    Slack,
}

impl WebhookConfig {
    /// Whether this destination takes `event` for a request of `action` from `requester`.
    pub fn wants(&self, event: &str, action: &str, requester: &str) -> bool {
        use super::kubernetes::matches_any;
        (self.events.is_empty() || self.events.iter().any(|e| e == event))
            && matches_any(&self.actions, action)
            && matches_any(&self.requesters, requester)
    }
}

/// Refuses destinations whose names repeat, or that take the name of the GitHub callbacks'
/// queue (`github`), and filters naming an event that does not exist.
pub fn check(webhooks: &[WebhookConfig]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for w in webhooks {
        if w.name == "github" {
            return Err("A [[webhooks]] destination cannot be named \"github\": that name is the GitHub callbacks' (docs/github.md).".into());
        }
        if !seen.insert(w.name.as_str()) {
            return Err(format!(
                "Two [[webhooks]] destinations are named {:?}.",
                w.name
            ));
        }
        if let Some(e) = w.events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
            return Err(format!(
                "The [[webhooks]] destination {:?} names the event {e:?}; the events are {}.",
                w.name,
                EVENTS.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(name: &str, events: &[&str]) -> WebhookConfig {
        WebhookConfig {
            name: name.into(),
            url: "https://hooks.example.com/x".parse().unwrap(),
            secret_file: None,
            format: WebhookFormat::Json,
            events: events.iter().map(|e| e.to_string()).collect(),
            actions: Vec::new(),
            requesters: Vec::new(),
            include_detail: false,
        }
    }

    #[test]
    fn names_are_unique_github_is_taken_and_events_must_exist() {
        assert!(check(&[dest("ops", &["request.decided"]), dest("sre", &[])]).is_ok());
        assert!(check(&[dest("ops", &[]), dest("ops", &[])])
            .unwrap_err()
            .contains("Two"));
        assert!(check(&[dest("github", &[])])
            .unwrap_err()
            .contains("github"));
        assert!(check(&[dest("ops", &["request.approved"])])
            .unwrap_err()
            .contains("request.approved"));
    }

    #[test]
    fn a_filter_takes_exact_names_and_prefixes() {
        let mut d = dest("ops", &["request.created"]);
        d.actions = vec!["kubectl.*".into()];
        assert!(d.wants("request.created", "kubectl.exec", "k8s:alice"));
        assert!(!d.wants("request.decided", "kubectl.exec", "k8s:alice"));
        assert!(!d.wants("request.created", "deploy", "k8s:alice"));
    }
}
