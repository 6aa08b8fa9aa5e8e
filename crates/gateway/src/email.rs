//! Mail over SMTP (docs/notifications.md): to an approver a request waits for who has no device
//! connected when its grace period ends, to the requester about the outcome, and a periodic
//! digest. A mail never decides: it carries a summary and a `countersign://request/<id>` link,
//! never the request's detail, and says that a decision is made in the app.
//!
//! Mails are deliveries (destination `email`) like webhooks: stored in the write that turns
//! the audit entry into deliveries, sent by the dispatcher, retried with backoff, and never
//! sent twice. A mail to an approver is stored due at the end of the grace period and is
//! skipped then if the request no longer waits for them or one of their devices holds a
//! stream. Each mail's `Message-ID` is its delivery id, so a mail server or reader drops a
//! copy.

use countersign_display::visible;
use countersign_protocol::{ApprovalRequest, RequestState, Signed};
use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncTransport as _, Message};
use serde::{Deserialize, Serialize};

use crate::config::email::EmailConfig;
use crate::directory::IdentityKind;
use crate::error::{json_text, ApiError};
use crate::gateway::Gateway;
use crate::store::deliveries::{NewDelivery, Sent};
use crate::store::Tx;

/// The destination name of mail in the delivery rows.
pub(crate) const EMAIL: &str = "email";

/// The most requests one digest lists.
const DIGEST_MAX: u32 = 200;

pub use crate::config::email::Mailer;

/// One stored mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    /// A mail to this approver about a request: sent only if, when it is due, the request
    /// still waits for them and none of their devices holds a stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless_connected: Option<String>,
}

/// Where mail to `approver` goes: the `email` identities of their person in the directory,
/// or the approver name itself when it is a mail address and the person has none.
fn approver_addresses(tx: &dyn Tx, approver: &str) -> Result<Vec<String>, ApiError> {
    let Some(person) = tx.person_of(IdentityKind::Approver.as_str(), approver)? else {
        return Ok(Vec::new());
    };
    let listed = tx.identities_of(&person, IdentityKind::Email.as_str())?;
    if !listed.is_empty() {
        return Ok(listed);
    }
    Ok(approver
        .parse::<lettre::Address>()
        .map(|_| vec![approver.to_owned()])
        .unwrap_or_default())
}

/// Where mail to a requester goes: the `email` identities of their person.
fn requester_addresses(tx: &dyn Tx, requester: &str) -> Result<Vec<String>, ApiError> {
    match crate::directory::requester_person(tx, requester)? {
        Some(person) => Ok(tx.identities_of(&person, IdentityKind::Email.as_str())?),
        None => Ok(Vec::new()),
    }
}

fn put(
    tx: &dyn Tx,
    event: &str,
    request_id: &str,
    mail: &Mail,
    now: i64,
    due_at: i64,
) -> Result<(), ApiError> {
    let id = uuid::Uuid::now_v7().to_string();
    tx.delivery_put(&NewDelivery {
        id: &id,
        destination: EMAIL,
        event,
        request_id,
        body: &json_text(mail)?,
        at: now,
        due_at,
    })?;
    Ok(())
}

/// The lines that name a request in a mail, every field made visible.
fn describe(r: &ApprovalRequest) -> String {
    format!(
        "  {}\n  action:    {}\n  resource:  {}\n  risk:      {}\n  requester: {}\n",
        visible(&r.summary),
        visible(&r.action),
        visible(&r.resource),
        r.risk.as_str(),
        visible(&r.requester),
    )
}

fn link(id: &str) -> String {
    format!("countersign://request/{id}")
}

const NEVER_DECIDES: &str = "This mail cannot approve or deny anything: a decision is made in \
     the Countersign app, confirmed with a passkey.";

/// Stores the mails of `event` on `request`: to its waiting approvers when it is created, to
/// its requester when it closes. Returns how many.
pub(crate) fn enqueue(
    gw: &Gateway,
    tx: &dyn Tx,
    event: &str,
    state: RequestState,
    request: &ApprovalRequest,
    (approvers, deniers): (&[&str], &[&str]),
    now: i64,
) -> Result<usize, ApiError> {
    let Some(cfg) = &gw.config.email else {
        return Ok(0);
    };
    let r = request;
    let mut stored = 0;
    if event == "request.created" && cfg.approvers && state == RequestState::Pending {
        let due = now.saturating_add(i64::try_from(cfg.grace_seconds).unwrap_or(i64::MAX));
        for approver in tx.addressees(&r.id)? {
            for to in approver_addresses(tx, &approver)? {
                let mail = Mail {
                    to,
                    subject: format!("Approval asked: {}", visible(&r.summary)),
                    text: format!(
                        "A request on the gateway {} waits for your decision, and no device \
                         of yours has been connected to it since it was made:\n\n{}\n\
                         Open it in Countersign:\n{}\n\n{NEVER_DECIDES}\n",
                        visible(&gw.config.name),
                        describe(r),
                        link(&r.id),
                    ),
                    unless_connected: Some(approver.clone()),
                };
                put(tx, event, &r.id, &mail, now, due)?;
                stored += 1;
            }
        }
    }
    let closes = matches!(
        event,
        "request.decided" | "request.expired" | "request.withdrawn"
    );
    if closes && cfg.requesters {
        let (word, by) = match state {
            RequestState::Approved if approvers.is_empty() => ("approved", String::new()),
            RequestState::Approved => ("approved", format!(" by {}", approvers.join(", "))),
            RequestState::Denied if deniers.is_empty() => ("denied", String::new()),
            RequestState::Denied => ("denied", format!(" by {}", deniers.join(", "))),
            other => (other.as_str(), String::new()),
        };
        for to in requester_addresses(tx, &r.requester)? {
            let mail = Mail {
                to,
                subject: format!("Request {word}: {}", visible(&r.summary)),
                text: format!(
                    "Your request on the gateway {} was {word}{}:\n\n{}\n{}\n",
                    visible(&gw.config.name),
                    visible(&by),
                    describe(r),
                    link(&r.id),
                ),
                unless_connected: None,
            };
            put(tx, event, &r.id, &mail, now, now)?;
            stored += 1;
        }
    }
    Ok(stored)
}

/// Stores the digest when one is due: one mail to each `digest_to` address listing the
/// requests created since the last digest and those still pending (none when there are no
/// such requests). The first call only starts the schedule. Returns how many were stored.
pub(crate) fn digest(gw: &Gateway) -> Result<usize, ApiError> {
    let Some(cfg) = gw.config.email.as_ref().filter(|c| !c.digest_to.is_empty()) else {
        return Ok(0);
    };
    let now = gw.now();
    let period = i64::try_from(cfg.digest_seconds).unwrap_or(i64::MAX);
    let due = |last: Option<i64>| last.is_none_or(|l| now >= l.saturating_add(period));
    // Most looks find nothing due: they only read.
    if !due(gw.store.read(|c| c.digest_last())?) {
        return Ok(0);
    }
    gw.store.write(|tx| -> Result<usize, ApiError> {
        let last = tx.digest_last()?;
        if !due(last) {
            return Ok(0);
        }
        tx.digest_last_set(now)?;
        let Some(since) = last else {
            return Ok(0);
        };
        let rows = tx.digest_requests(since, DIGEST_MAX)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut lines = String::new();
        let mut pending = 0;
        for (signed, state) in &rows {
            let r: Signed<ApprovalRequest> = serde_json::from_str(signed)
                .map_err(|e| ApiError::internal("stored request", e))?;
            pending += usize::from(state == "pending");
            lines.push_str(&format!(
                "[{state}] {}\n  {} on {}, from {}\n  {}\n\n",
                visible(&r.body.summary),
                visible(&r.body.action),
                visible(&r.body.resource),
                visible(&r.body.requester),
                link(&r.body.id),
            ));
        }
        let more = if rows.len() == DIGEST_MAX as usize {
            format!("(the first {DIGEST_MAX}; `countersign-gateway requests` lists them all)\n\n")
        } else {
            String::new()
        };
        for to in &cfg.digest_to {
            let mail = Mail {
                to: to.clone(),
                subject: format!(
                    "Countersign digest of {}: {} request{}, {pending} pending",
                    visible(&gw.config.name),
                    rows.len(),
                    if rows.len() == 1 { "" } else { "s" },
                ),
                text: format!(
                    "The requests on the gateway {} made since the last digest, and those \
                     still pending:\n\n{lines}{more}{NEVER_DECIDES}\n",
                    visible(&gw.config.name),
                ),
                unless_connected: None,
            };
            put(tx, "digest", "", &mail, now, now)?;
        }
        Ok(cfg.digest_to.len())
    })
}

/// Whether a mail to `approver` about `request_id` is still wanted: the request waits, they
/// have not voted on it, and none of their devices holds a stream.
fn still_wanted(
    gw: &Gateway,
    request_id: &str,
    approver: &str,
) -> Result<Option<String>, ApiError> {
    if gw.hub.streams_of(approver) > 0 {
        return Ok(Some(format!("a device of {approver} is connected")));
    }
    // The stored state and votes: no status needs signing to answer this.
    let (state, voted) = gw.store.read(|c| -> Result<_, ApiError> {
        let state = c.request_status(request_id)?.state;
        let voted = c.votes(request_id)?.iter().any(|v| v.approver == approver);
        Ok((state, voted))
    })?;
    if state != RequestState::Pending.as_str() {
        return Ok(Some(format!("the request is {state}")));
    }
    if voted {
        return Ok(Some(format!("{approver} has decided")));
    }
    Ok(None)
}

/// Sends one due mail, or skips it when it is no longer wanted.
pub(crate) async fn deliver(
    gw: &std::sync::Arc<Gateway>,
    mailer: &Mailer,
    cfg: &EmailConfig,
    delivery_id: &str,
    request_id: &str,
    body: &str,
) -> Result<Sent, String> {
    let mail: Mail =
        serde_json::from_str(body).map_err(|e| format!("the stored mail is unreadable: {e}"))?;
    if let Some(approver) = mail.unless_connected.clone() {
        let rid = request_id.to_owned();
        let why = gw
            .blocking(move |gw| still_wanted(gw, &rid, &approver))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(why) = why {
            return Ok(Sent::Skipped(why));
        }
    }
    let from: Mailbox = cfg.from.parse().map_err(|e| format!("[email] from: {e}"))?;
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| format!("the address {:?}: {e}", mail.to))?;
    let message = Message::builder()
        .message_id(Some(format!("<{delivery_id}@{}>", from.email.domain())))
        .from(from)
        .to(to)
        .subject(&mail.subject)
        .header(ContentType::TEXT_PLAIN)
        .body(mail.text.clone())
        .map_err(|e| format!("the mail could not be built: {e}"))?;
    mailer
        .send(message)
        .await
        .map_err(|e| format!("SMTP: {e}"))?;
    Ok(Sent::Delivered)
}
