//! Outgoing webhooks (docs/notifications.md): the gateway tells configured destinations of
//! requests created, decided, expired and withdrawn. They never decide anything: a body
//! carries a summary and a `countersign://request/<id>` link, and the full detail only for a
//! destination configured with `include_detail`. The same queue carries the GitHub callbacks
//! (`github`) and mail (`email`).
//!
//! The dispatcher reads the gateway's own audit log in order from a persisted cursor and, in
//! the same write that moves the cursor, stores one delivery per destination that wants the
//! event, with its body and a delivery id (table `deliveries`). So a restart loses none and
//! makes none twice. Deliveries are then POSTed, HMAC-signed, and retried with jittered
//! exponential backoff until accepted (any 2xx) or `webhook_retry_seconds` have passed
//! (audited `webhook.given_up`). A receiver processes each delivery id once.

use std::sync::Arc;
use std::time::Duration;

use countersign_protocol::audit::AuditEntry;
use countersign_protocol::{ApprovalRequest, RequestState, Signed, Verdict};
use hmac::Mac as _;
use serde_json::{json, Value};

use crate::config::webhooks::{WebhookConfig, WebhookFormat};
use crate::email::Mailer;
use crate::error::{json_text, ApiError};
use crate::gateway::Gateway;
use crate::status::status_of;
use crate::store::deliveries::{AfterFailure, DueDelivery, NewDelivery, Sent};
use crate::store::Tx;

/// Audit entries looked at per write.
const SCAN_BATCH: u64 = 500;
/// Deliveries sent per round.
const SEND_BATCH: u32 = 50;
/// The longest wait between two attempts of one delivery, in seconds.
const MAX_BACKOFF: i64 = 600;

/// The event an audit entry tells of, and the request's state it leaves.
fn event_of(entry: &AuditEntry) -> Option<(&'static str, RequestState)> {
    let final_state = |v: &Value| match v.get("request_state").and_then(Value::as_str) {
        Some("approved") => Some(RequestState::Approved),
        Some("denied") => Some(RequestState::Denied),
        _ => None,
    };
    match entry.kind.as_str() {
        "request.created" => Some(("request.created", RequestState::Pending)),
        "request.auto_approved" | "request.break_glass" => {
            Some(("request.decided", RequestState::Approved))
        }
        "decision.accepted" => final_state(&entry.detail).map(|s| ("request.decided", s)),
        "request.denied" | "request.blocked" => Some(("request.decided", RequestState::Denied)),
        "request.expired" => Some(("request.expired", RequestState::Expired)),
        "request.withdrawn" => Some(("request.withdrawn", RequestState::Withdrawn)),
        _ => None,
    }
}

/// Turns the audit entries after the cursor into deliveries, in one write; returns how many
/// deliveries were stored. The first look starts at the log's head: history is not sent.
/// Sets the position from which audit entries become deliveries to the log's head, unless one
/// is set: the destinations configured now are told what happens from now on.
fn start_at_head(gw: &Gateway) -> Result<(), ApiError> {
    gw.store.write(|tx| -> Result<(), ApiError> {
        if tx.notify_cursor()?.is_none() {
            tx.notify_cursor_set(tx.audit_last()?.map_or(0, |(seq, _)| seq + 1))?;
        }
        Ok(())
    })
}

pub fn scan(gw: &Gateway) -> Result<usize, ApiError> {
    if !active(gw) {
        return Ok(0);
    }
    // Most looks find nothing new: they only read.
    let idle = gw.store.read(|c| -> Result<bool, ApiError> {
        Ok(match (c.notify_cursor()?, c.audit_last()?) {
            (Some(next), Some((last, _))) => last < next,
            (Some(_), None) => true,
            (None, _) => false,
        })
    })?;
    if idle {
        return Ok(0);
    }
    let now = gw.now();
    gw.store.write(|tx| -> Result<usize, ApiError> {
        let next = match tx.notify_cursor()? {
            Some(n) => n,
            None => {
                let head = tx.audit_last()?.map_or(0, |(seq, _)| seq + 1);
                tx.notify_cursor_set(head)?;
                return Ok(0);
            }
        };
        let rows = tx.audit_text_range(next, next + SCAN_BATCH)?;
        let mut stored = 0;
        for (_, text) in &rows {
            let entry: AuditEntry = serde_json::from_str(text)
                .map_err(|e| ApiError::internal("stored audit entry", e))?;
            let (Some((event, state)), Some(id)) = (event_of(&entry), entry.request_id.as_deref())
            else {
                continue;
            };
            stored += enqueue(gw, tx, event, state, id, entry.at, now)?;
        }
        if let Some((last, _)) = rows.last() {
            tx.notify_cursor_set(last + 1)?;
        }
        Ok(stored)
    })
}

/// Whether anything is sent: a webhook destination, a GitHub App to call back, or mail.
fn active(gw: &Gateway) -> bool {
    !gw.config.webhooks.is_empty() || gw.config.github.is_some() || gw.config.email.is_some()
}

/// The destination name of GitHub callbacks in the delivery rows.
pub(crate) const GITHUB: &str = "github";

/// Stores the deliveries of `event` on request `id` for every destination that wants it, and
/// the GitHub callback when the event closes a request that holds a deployment.
fn enqueue(
    gw: &Gateway,
    tx: &dyn Tx,
    event: &str,
    state: RequestState,
    id: &str,
    at: i64,
    now: i64,
) -> Result<usize, ApiError> {
    let Some(signed) = tx.request_signed(id)? else {
        return Ok(0);
    };
    let request: Signed<ApprovalRequest> =
        serde_json::from_str(&signed).map_err(|e| ApiError::internal("stored request", e))?;
    let r = &request.body;
    let wanting: Vec<&WebhookConfig> = gw
        .config
        .webhooks
        .iter()
        .filter(|w| w.wants(event, &r.action, &r.requester))
        .collect();
    let github = match (&gw.config.github, event) {
        (Some(_), "request.decided" | "request.expired" | "request.withdrawn") => {
            tx.github_of(id)?
        }
        _ => None,
    };
    if wanting.is_empty() && github.is_none() && gw.config.email.is_none() {
        return Ok(0);
    }
    let (status, _) = status_of(gw, tx, id)?;
    let approvers: Vec<&str> = status
        .body
        .votes
        .iter()
        .filter(|v| v.verdict == Verdict::Approve)
        .map(|v| v.approver.as_str())
        .collect();
    let deniers: Vec<&str> = status
        .body
        .votes
        .iter()
        .filter(|v| v.verdict == Verdict::Deny)
        .map(|v| v.approver.as_str())
        .collect();
    for w in &wanting {
        let delivery_id = uuid::Uuid::now_v7().to_string();
        let fact = Fact {
            delivery_id: &delivery_id,
            event,
            state,
            at,
            request: r,
            approvers: &approvers,
            deniers: &deniers,
        };
        let body = match w.format {
            WebhookFormat::Json => json_text(&fact.json(gw, w.include_detail))?,
            WebhookFormat::Slack => json_text(&fact.slack(w.include_detail))?,
        };
        tx.delivery_put(&NewDelivery {
            id: &delivery_id,
            destination: &w.name,
            event,
            request_id: id,
            body: &body,
            at: now,
            due_at: now,
        })?;
    }
    let mailed = crate::email::enqueue(gw, tx, event, state, r, (&approvers, &deniers), now)?;
    if let Some(d) = github {
        let retry = i64::try_from(gw.config.webhook_retry_seconds).unwrap_or(i64::MAX);
        // An approval is worth calling back until its grant ends; a rejection for as long as
        // any delivery is retried.
        let deadline = status
            .body
            .grant
            .as_ref()
            .and_then(|g| g.expires_at)
            .unwrap_or_else(|| now.saturating_add(retry));
        let body = crate::github::callback_body(&d, state, &approvers, &deniers, deadline);
        let delivery_id = uuid::Uuid::now_v7().to_string();
        tx.delivery_put(&NewDelivery {
            id: &delivery_id,
            destination: GITHUB,
            event,
            request_id: id,
            body: &json_text(&body)?,
            at: now,
            due_at: now,
        })?;
    }
    Ok(wanting.len() + mailed)
}

/// What one delivery tells.
struct Fact<'a> {
    delivery_id: &'a str,
    event: &'a str,
    state: RequestState,
    at: i64,
    request: &'a ApprovalRequest,
    approvers: &'a [&'a str],
    deniers: &'a [&'a str],
}

/// The link an approver's app opens.
fn link(id: &str) -> String {
    format!("countersign://request/{id}")
}

impl Fact<'_> {
    fn json(&self, gw: &Gateway, include_detail: bool) -> Value {
        let r = self.request;
        let mut body = json!({
            "v": 1,
            "delivery_id": self.delivery_id,
            "event": self.event,
            "at": self.at,
            "gateway": {"name": gw.config.name, "fingerprint": gw.fingerprint},
            "request": {
                "id": r.id,
                "action": r.action,
                "resource": r.resource,
                "risk": r.risk,
                "summary": r.summary,
                "requester": r.requester,
                "state": self.state.as_str(),
                "created_at": r.created_at,
                "expires_at": r.expires_at,
                "link": link(&r.id),
            },
            "approved_by": self.approvers,
            "denied_by": self.deniers,
        });
        if include_detail {
            body["request"]["detail"] = json!(r.detail);
            body["request"]["reason"] = json!(r.reason);
        }
        body
    }

    fn slack(&self, include_detail: bool) -> Value {
        let r = self.request;
        let what = match (self.event, self.state) {
            ("request.created", _) => "asks for approval".to_owned(),
            (_, RequestState::Approved) if self.approvers.is_empty() => {
                "was approved by the policy".to_owned()
            }
            (_, RequestState::Approved) => {
                format!(
                    "was approved by {}",
                    slack_escape(&self.approvers.join(", "))
                )
            }
            (_, RequestState::Denied) if self.deniers.is_empty() => "was denied".to_owned(),
            (_, RequestState::Denied) => {
                format!("was denied by {}", slack_escape(&self.deniers.join(", ")))
            }
            (_, state) => format!("is {}", state.as_str()),
        };
        let mut text = format!(
            "Countersign: *{}* {what}\n`{}` on `{}` from `{}`\n<{}|Open in Countersign>",
            slack_escape(&r.summary),
            slack_escape(&r.action),
            slack_escape(&r.resource),
            slack_escape(&r.requester),
            link(&r.id),
        );
        if include_detail && !r.detail.is_empty() {
            text.push_str(&format!("\n```{}```", slack_escape(&r.detail)));
        }
        json!({"text": text})
    }
}

/// Text made inert for Slack's message formatting: the characters that could hide text
/// (bidirectional controls, invisible characters) shown as their code points, as the app shows
/// them (`countersign_display`), then `&`, `<` and `>` escaped as Slack asks.
fn slack_escape(s: &str) -> String {
    countersign_display::visible_text(s, true)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<body>` with `key`.
pub fn signature(key: &[u8], timestamp: i64, body: &str) -> String {
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes a key of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The wait before attempt `attempts + 1`: 2^attempts seconds up to [`MAX_BACKOFF`], less up to
/// a fifth at random.
fn backoff(attempts: u32) -> i64 {
    use rand::Rng as _;
    let base = 1i64 << attempts.min(10);
    let base = base.min(MAX_BACKOFF);
    base - rand::thread_rng().gen_range(0..=base / 5)
}

/// What sends deliveries: the HTTP client, and the SMTP client when `[email]` is set.
pub struct Senders {
    pub client: reqwest::Client,
    pub mailer: Option<Mailer>,
}

impl Senders {
    pub fn new(gw: &Gateway) -> Result<Senders, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("the HTTP client: {e}"))?;
        let mailer = match &gw.config.email {
            Some(cfg) => Some(cfg.mailer(gw.secrets.smtp_password.as_deref())?),
            None => None,
        };
        Ok(Senders { client, mailer })
    }
}

/// Sends one delivery: `Ok` when the destination answered 2xx.
async fn send(
    client: &reqwest::Client,
    gw: &Gateway,
    w: &WebhookConfig,
    d: &DueDelivery,
    now: i64,
) -> Result<Sent, String> {
    let mut req = client
        .post(w.url.clone())
        .header("content-type", "application/json")
        .header("x-countersign-event", &d.event)
        .header("x-countersign-delivery", &d.id)
        .header("x-countersign-timestamp", now.to_string());
    if let Some(key) = gw.secrets.webhooks.get(&w.name) {
        req = req.header("x-countersign-signature-256", signature(key, now, &d.body));
    }
    let answer = req
        .body(d.body.clone())
        .send()
        .await
        .map_err(|e| format!("{e}"))?;
    if answer.status().is_success() {
        Ok(Sent::Delivered)
    } else {
        Err(format!("answered HTTP {}", answer.status().as_u16()))
    }
}

/// Sends the deliveries due now, records each outcome; returns how many were accepted.
pub async fn send_due(gw: &Arc<Gateway>, senders: &Senders) -> Result<usize, ApiError> {
    let client = &senders.client;
    let now = gw.now();
    let due = gw
        .blocking(move |gw| {
            gw.store
                .read(|c| c.deliveries_due(now, SEND_BATCH).map_err(ApiError::from))
        })
        .await?;
    let mut accepted = 0;
    for d in due {
        let mut retry_for = i64::try_from(gw.config.webhook_retry_seconds).unwrap_or(i64::MAX);
        let github = gw.config.github.as_ref().zip(gw.secrets.github.as_ref());
        let email = gw.config.email.as_ref().zip(senders.mailer.as_ref());
        let outcome = match d.destination.as_str() {
            GITHUB => match (github, serde_json::from_str::<Value>(&d.body)) {
                (Some((cfg, secrets)), Ok(body)) => {
                    retry_for = body["deadline"]
                        .as_i64()
                        .map_or(retry_for, |end| end.saturating_sub(d.created_at));
                    let call = crate::github::Call {
                        client,
                        cfg,
                        secrets,
                        attempts: d.attempts,
                    };
                    call.deliver(&body, now).await
                }
                (None, _) => Err("no [github] App is configured any more".to_owned()),
                (_, Err(e)) => Err(format!("the stored callback is unreadable: {e}")),
            },
            crate::email::EMAIL => match email {
                Some((cfg, mailer)) => {
                    crate::email::deliver(gw, mailer, cfg, &d.id, &d.request_id, &d.body).await
                }
                None => Err("no [email] is configured any more".to_owned()),
            },
            _ => match gw.config.webhooks.iter().find(|w| w.name == d.destination) {
                Some(w) => send(client, gw, w, &d, now).await,
                None => Err("the destination is no longer configured".to_owned()),
            },
        };
        let ok = outcome.is_ok();
        gw.blocking(move |gw| record(gw, &d, outcome, now, retry_for))
            .await?;
        accepted += usize::from(ok);
    }
    Ok(accepted)
}

fn record(
    gw: &Gateway,
    d: &DueDelivery,
    outcome: Result<Sent, String>,
    now: i64,
    retry_for: i64,
) -> Result<(), ApiError> {
    gw.store.write(|tx| -> Result<(), ApiError> {
        let attempts = d.attempts.saturating_add(1);
        match outcome {
            Ok(Sent::Skipped(why)) => {
                tx.delivery_skip(&d.id, now, &why)?;
                if d.destination == GITHUB {
                    tx.audit_append(
                        now,
                        "github.no_longer_waiting",
                        Some(&d.request_id),
                        json!({"delivery_id": d.id, "attempts": d.attempts, "why": why}),
                    )?;
                }
            }
            Ok(Sent::Delivered) => {
                tx.delivery_done(&d.id, now)?;
                if d.destination == GITHUB {
                    let state = serde_json::from_str::<Value>(&d.body)
                        .ok()
                        .and_then(|b| b["payload"]["state"].as_str().map(str::to_owned));
                    tx.audit_append(
                        now,
                        "github.called_back",
                        Some(&d.request_id),
                        json!({"delivery_id": d.id, "state": state, "attempts": attempts}),
                    )?;
                }
            }
            Err(e) if now.saturating_sub(d.created_at) >= retry_for => {
                tx.delivery_failed(&d.id, attempts, &e, AfterFailure::GiveUp(now))?;
                tx.audit_append(
                    now,
                    "webhook.given_up",
                    None,
                    json!({"delivery_id": d.id, "destination": d.destination, "event": d.event, "attempts": attempts, "error": e}),
                )?;
            }
            Err(e) => {
                tracing::warn!(destination = %d.destination, delivery = %d.id, error = %e, "a webhook delivery failed; it is retried");
                let next = AfterFailure::RetryAt(now + backoff(attempts - 1));
                tx.delivery_failed(&d.id, attempts, &e, next)?;
            }
        }
        Ok(())
    })
}

/// The background task: scans the audit log and sends what is due, every `webhook_poll_ms`
/// and whenever a request changes.
pub async fn dispatcher(gw: Arc<Gateway>) {
    if !active(&gw) {
        // Nothing is sent: forget the position, so that destinations configured later start
        // at the log's head as on a first start, rather than send what happened meanwhile.
        let forget = gw.blocking(|gw| {
            if gw.store.read(|c| c.notify_cursor())?.is_some() {
                gw.store.write(|tx| tx.notify_cursor_forget())?;
            }
            Ok::<(), ApiError>(())
        });
        if let Err(e) = forget.await {
            tracing::warn!(%e, "forgetting the webhook position failed");
        }
        return;
    }
    let senders = match Senders::new(&gw) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%e, "the delivery clients could not be built; nothing is sent");
            return;
        }
    };
    // Where sending starts is fixed when the destinations start, on whichever replica, not
    // when a leader first gets to it: what happens from now on is sent.
    if let Err(e) = gw.blocking(start_at_head).await {
        tracing::warn!(%e, "setting where the webhook deliveries start failed");
    }
    let poll = Duration::from_millis(gw.config.webhook_poll_ms.max(10));
    loop {
        let changed = gw.changes.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        // The queues are shared: one replica (the leader, `Store::is_leader`) works them.
        if gw.store.is_leader() {
            if let Err(e) = gw.blocking(scan).await {
                tracing::warn!(%e, "turning audit entries into webhook deliveries failed");
            }
            if let Err(e) = gw.blocking(crate::email::digest).await {
                tracing::warn!(%e, "making the mail digest failed");
            }
            if let Err(e) = send_due(&gw, &senders).await {
                tracing::warn!(%e, "sending webhook deliveries failed");
            }
        }
        let _ = tokio::time::timeout(poll, changed).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // RFC 4231 test case 2's key and data, as "<timestamp>.<body>" = "what do ya want for nothing?"
        // is not of that form, so the expected value is computed over the joined text.
        let s = signature(b"Jefe", 1_700_000_000, "{}");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.{}");
        assert_eq!(
            s,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_eq!(s.len(), "sha256=".len() + 64);
    }

    #[test]
    fn slack_text_cannot_format_or_hide() {
        assert_eq!(slack_escape("<!channel> & co"), "&lt;!channel&gt; &amp; co");
        assert_eq!(slack_escape("a\u{202E}b"), "a\\u{202E}b");
        assert_eq!(slack_escape("one\ntwo"), "one\ntwo");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert!((1..=1).contains(&backoff(0)));
        assert!((13..=16).contains(&backoff(4)));
        assert!((480..=600).contains(&backoff(20)));
    }
}
