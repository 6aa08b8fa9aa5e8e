//! The SSE endpoint `GET /v2/stream`, through which a paired device receives its events.
//!
//! A connecting device gets a signed hello (bound to its Authorization nonce, naming the head
//! and whether the backlog resumes or resyncs), the stored backlog after its `Last-Event-ID`
//! (all of it if there is none or it is ahead of the head), then a `ready` marker, then live events from the hub (see `hub`), with keep-alive comments in between.
//! The database is read only at connect time and if a slow client falls behind the hub's
//! buffer; there is no polling per connection. Both reads, and the device's authentication,
//! run on the blocking pool ([`Gateway::blocking`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use countersign_protocol::api::{paths, ErrorCode};
use std::collections::VecDeque;
use tokio::sync::broadcast;

use countersign_protocol::types::MAX_SAFE_INTEGER;
use countersign_protocol::{ResyncReason, Signed, StreamHello, StreamMode, PROTOCOL_VERSION};

use crate::devices::{authenticate_device, Device};
use crate::error::{json_text, ApiError};
use crate::gateway::Gateway;
use crate::hub::{Member, Pushed};
use crate::refusals::{refused, ANONYMOUS, STREAM_REFUSED};
use crate::store::events::EVERYONE;
use crate::store::Tx;

fn backlog(
    gw: &Gateway,
    approver: &str,
    member: &Member,
    after: u64,
) -> Result<Vec<Pushed>, ApiError> {
    gw.store
        .read(|c| Ok(c.events_after(approver, member, after)?))
}

/// Who `approver` is, as the last membership statement sent to it says: the groups through
/// which a wide audience reaches its devices.
fn member_of(tx: &dyn Tx, approver: &str) -> Result<Member, ApiError> {
    Ok(tx
        .membership_of(approver)?
        .map(Member::from)
        .unwrap_or_default())
}

/// Whether the live event `p` is for the stream of `approver`, who is `member`.
fn addressed(p: &Pushed, approver: &str, member: &Member) -> bool {
    match &p.wide {
        Some(w) => w.includes(approver, member),
        None => p.approver == approver || p.approver == EVERYONE,
    }
}

/// The person and groups of a `membership` event's statement, which the stream applies to
/// the wide events after it, as the device does.
fn membership_in(p: &Pushed) -> Option<Member> {
    let e: Signed<countersign_protocol::Event> = serde_json::from_str(&p.data).ok()?;
    match e.body.payload {
        countersign_protocol::StreamEvent::Membership { membership } => Some(Member {
            person: membership.body.person,
            groups: membership.body.groups,
        }),
        _ => None,
    }
}

fn to_event(p: &Pushed) -> Event {
    Event::default()
        .id(p.seq.to_string())
        .event(&p.kind)
        .data(&*p.data)
}

/// The device a refused stream connection claimed to be, for the audit log.
pub(crate) fn claimed_device(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| countersign_protocol::DeviceAuth::parse_header(h).ok())
        .map_or_else(|| ANONYMOUS.to_string(), |a| a.device)
}

/// The `Last-Event-ID` a device sent, if any: a decimal event id of at most 2^53 - 1.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get("last-event-id") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|n| *n <= MAX_SAFE_INTEGER)
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::BadLastEventId,
                "Last-Event-ID must be a whole number of at most 2^53 - 1.",
            )
        })
}

/// What a connecting stream starts with: the signed hello and the backlog it describes.
struct Opening {
    hello: Signed<StreamHello>,
    head: u64,
    backlog: Vec<Pushed>,
    member: Member,
}

/// Reads the head and the backlog in one read transaction, and signs the hello that says which
/// backlog it is: every event for the approver after `Last-Event-ID` (resume), or all of them
/// when there is none or it is ahead of every committed event (resync).
fn opening(gw: &Gateway, device: &Device, resumed_from: Option<u64>) -> Result<Opening, ApiError> {
    let (head, backlog, mode, reason, member) = gw.store.read(|c| -> Result<_, ApiError> {
        let head = c.head_event_id()?;
        let member = member_of(c, &device.approver)?;
        let (mode, reason, after) = match resumed_from {
            None => (StreamMode::Resync, Some(ResyncReason::Requested), 0),
            Some(r) if r > head => (StreamMode::Resync, Some(ResyncReason::Ahead), 0),
            Some(r) => (StreamMode::Resume, None, r),
        };
        let backlog = c.events_after(&device.approver, &member, after)?;
        Ok((head, backlog, mode, reason, member))
    })?;
    let hello = Signed::sign(
        &gw.key,
        StreamHello {
            v: PROTOCOL_VERSION,
            gateway: gw.fingerprint.clone(),
            device_id: device.id.clone(),
            approver: device.approver.clone(),
            nonce: device.nonce.clone(),
            head,
            resumed_from,
            mode,
            resync_reason: reason,
            keepalive_seconds: gw.config.keepalive_seconds.max(1),
            at: gw.now(),
        },
    )?;
    Ok(Opening {
        hello,
        head,
        backlog,
        member,
    })
}

/// `GET /v2/stream`.
pub async fn handler(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    // Subscribed before the device is authenticated: a revocation committed after that check
    // reaches this stream.
    let revocations = gw.hub.revocations();
    let (device, opening, live, mut closed) = gw
        .blocking(move |gw| {
            let device = authenticate_device(gw, &headers, "GET", paths::STREAM);
            let device = refused(gw, STREAM_REFUSED, &claimed_device(&headers), device)?;
            let resumed_from = refused(gw, STREAM_REFUSED, &device.id, last_event_id(&headers))?;
            // Subscribe before reading the backlog so nothing committed in between is missed.
            let live = gw.hub.subscribe();
            let closed = gw.hub.closed();
            let opening = opening(gw, &device, resumed_from)?;
            Ok((device, opening, live, closed))
        })
        .await?;
    let keepalive = gw.config.keepalive_seconds.max(1);
    let mut pending = VecDeque::with_capacity(opening.backlog.len() + 2);
    pending.push_back(
        Event::default()
            .event("hello")
            .data(json_text(&opening.hello)?),
    );
    pending.extend(opening.backlog.iter().map(to_event));
    // A stream that opened as the gateway closed would never see the change.
    let closing = *closed.borrow_and_update();
    if !closing {
        pending.push_back(
            Event::default()
                .event("ready")
                .data(format!("{{\"through\":{}}}", opening.head)),
        );
    }
    let open = Live {
        _open: gw.hub.stream_opened(&device.approver),
        gw,
        approver: device.approver,
        device_id: device.id,
        member: opening.member,
        // Every event for this approver up to the head was in the backlog.
        last: opening.head,
        pending,
        live,
        revocations,
        closed,
        ended: closing,
    };
    // The body is this one stream, polled by the connection as it writes: no task or channel
    // per stream, so an idle stream holds only its connection and these receivers.
    let body = futures::stream::unfold(open, |mut s| async move {
        let e = s.next().await?;
        Some((Ok::<_, Infallible>(e), s))
    });
    Ok(Sse::new(body).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(keepalive))
            .text("keep-alive"),
    ))
}

/// One open stream after its opening: what is left to send, and where the rest comes from.
struct Live {
    /// Counted open for as long as the connection holds the stream.
    _open: crate::hub::OpenStream,
    gw: Arc<Gateway>,
    approver: String,
    device_id: String,
    member: Member,
    last: u64,
    pending: VecDeque<Event>,
    live: broadcast::Receiver<Arc<Pushed>>,
    revocations: broadcast::Receiver<Arc<str>>,
    closed: tokio::sync::watch::Receiver<bool>,
    ended: bool,
}

impl Live {
    /// The next event to send, or `None` when the stream ends: at shutdown, on the device's
    /// revocation, or when the hub or the store fails it.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                if self.pending.is_empty() && self.pending.capacity() > 16 {
                    // The backlog is sent: do not keep its room for the life of the stream.
                    self.pending = VecDeque::new();
                }
                return Some(e);
            }
            if self.ended {
                return None;
            }
            tokio::select! {
                r = self.live.recv() => match r {
                    Ok(p) => self.offer(&p),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // This client fell behind the hub's buffer: catch up from the store.
                        let (who, was, last) = (self.approver.clone(), self.member.clone(), self.last);
                        let read = self.gw.blocking(move |gw| {
                            let missed = backlog(gw, &who, &was, last)?;
                            let now = gw.store.read(|c| member_of(c, &who))?;
                            Ok::<_, ApiError>((missed, now))
                        });
                        let Ok((missed, now)) = read.await else { return None };
                        self.member = now;
                        for p in &missed {
                            self.pending.push_back(to_event(p));
                            self.last = p.seq;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                r = self.revocations.recv() => match r {
                    // The device's pairing was revoked: its stream ends now.
                    Ok(id) if *id == *self.device_id => return None,
                    Ok(_) => {}
                    // Missed some: the device may be among them.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let id = self.device_id.clone();
                        let check = self.gw.blocking(move |gw| crate::devices::paired_device(gw, &id));
                        if check.await.is_err() {
                            return None;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.closed.changed() => return None,
            }
        }
    }

    /// Queues the live event `p` if it is for this stream and newer than what it sent.
    fn offer(&mut self, p: &Pushed) {
        if !addressed(p, &self.approver, &self.member) || p.seq <= self.last {
            return;
        }
        if p.kind == "membership" && p.approver == self.approver {
            if let Some(m) = membership_in(p) {
                self.member = m;
            }
        }
        self.pending.push_back(to_event(p));
        self.last = p.seq;
        if let Some(at) = p.published {
            self.gw.metrics.event_pushed(at.elapsed());
            tracing::trace!(
                seq = p.seq,
                approver = %self.approver,
                behind_us = at.elapsed().as_micros() as u64,
                "event handed to the stream"
            );
        }
    }
}
