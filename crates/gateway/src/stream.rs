//! The SSE endpoint `GET /v1/stream`, through which a paired device receives its events.
//!
//! A connecting device gets the stored backlog after its `Last-Event-ID`, then a `ready`
//! marker, then live events from the hub (see `hub`), with keep-alive comments in between.
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
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::devices::authenticate_device;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::hub::Pushed;

fn backlog(gw: &Gateway, approver: &str, after: u64) -> Result<Vec<Pushed>, ApiError> {
    gw.store.read(|c| Ok(c.events_after(approver, after)?))
}

fn to_event(p: &Pushed) -> Event {
    Event::default()
        .id(p.seq.to_string())
        .event(&p.kind)
        .data(&*p.data)
}

/// `GET /v1/stream`.
pub async fn handler(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let (device, after, mut live, mut closed, first) = gw
        .blocking(move |gw| {
            let device = authenticate_device(gw, &headers, "GET", paths::STREAM)?;
            let after = match headers.get("last-event-id") {
                None => 0,
                Some(v) => v
                    .to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            ErrorCode::BadLastEventId,
                            "Last-Event-ID must be an integer.",
                        )
                    })?,
            };
            // Subscribe before reading the backlog so nothing committed in between is missed.
            let live = gw.hub.subscribe();
            let closed = gw.hub.closed();
            let first = backlog(gw, &device.approver, after)?;
            Ok((device, after, live, closed, first))
        })
        .await?;
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(256);
    let keepalive = gw.config.keepalive_seconds.max(1);
    let gw2 = gw.clone();
    tokio::spawn(async move {
        let approver = device.approver;
        let mut last = after;
        for p in &first {
            if tx.send(Ok(to_event(p))).await.is_err() {
                return;
            }
            last = p.seq;
        }
        drop(first);
        let ready = Event::default()
            .event("ready")
            .data(format!("{{\"keepalive_seconds\":{keepalive}}}"));
        if tx.send(Ok(ready)).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                r = live.recv() => match r {
                    Ok(p) => {
                        if p.approver == approver && p.seq > last {
                            if tx.send(Ok(to_event(&p))).await.is_err() {
                                return;
                            }
                            last = p.seq;
                            if let Some(at) = p.published {
                                tracing::trace!(
                                    seq = p.seq,
                                    %approver,
                                    behind_us = at.elapsed().as_micros() as u64,
                                    "event handed to the stream"
                                );
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // This client fell behind the hub's buffer: catch up from the store.
                        let who = approver.clone();
                        let read = gw2.blocking(move |gw| backlog(gw, &who, last));
                        let Ok(missed) = read.await else { return };
                        for p in &missed {
                            if tx.send(Ok(to_event(p))).await.is_err() {
                                return;
                            }
                            last = p.seq;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = closed.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(keepalive))
            .text("keep-alive"),
    ))
}
