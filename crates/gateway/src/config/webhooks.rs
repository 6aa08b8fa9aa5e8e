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

    /// The HMAC key, read from `secret_file`.
    pub fn secret(&self) -> Result<Option<Vec<u8>>, String> {
        let Some(p) = &self.secret_file else {
            return Ok(None);
        };
        super::github::read_secret(p)
            .map(Some)
            .map_err(|e| format!("webhook {}: {e}", self.name))
    }
}
