//! One device's `GET /v2/stream`, read event by event: the backlog up to the `ready` marker,
//! live events after it, or the raw event names and data for a caller that decodes them itself.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use countersign_protocol::api::paths;
use countersign_protocol::sse::{SseItem, SseParser};
use countersign_protocol::types::Decode;
use countersign_protocol::{DeviceAuth, Event, KeyPair, Signed, StreamEvent, StreamHello};
use tokio::time::Instant;
use url::Url;

/// How long a test waits for the next event before it fails: the gateway sends a keep-alive
/// comment well within it, so a quiet stream is a broken one.
const PATIENCE: Duration = Duration::from_secs(10);

/// The request a stream event announces, if it is a request (not a status change).
pub fn request_id(e: &StreamEvent) -> Option<String> {
    match e {
        StreamEvent::Request { request, .. } => Some(request.body.id.clone()),
        StreamEvent::Status { .. }
        | StreamEvent::Membership { .. }
        | StreamEvent::Checkpoint { .. } => None,
    }
}

/// An open `GET /v2/stream` for one device.
pub struct EventStream {
    resp: reqwest::Response,
    parser: SseParser,
    queue: VecDeque<SseItem>,
    /// The stream's signed hello, once read.
    pub hello: Option<Signed<StreamHello>>,
}

impl EventStream {
    /// Opens the stream of device `device_id` at the gateway `base`, signing the request with
    /// `key` at time `now` (the gateway's clock). With `last_event` above zero the stream
    /// resumes after that event.
    pub async fn open(
        http: &reqwest::Client,
        base: &Url,
        key: &KeyPair,
        device_id: &str,
        now: i64,
        last_event: u64,
    ) -> Result<EventStream> {
        let auth = DeviceAuth::create(key, device_id, "GET", paths::STREAM, now)?;
        let mut req = http
            .get(base.join(paths::STREAM)?)
            .header("authorization", auth.to_header())
            .header("accept", "text/event-stream");
        if last_event > 0 {
            req = req.header("last-event-id", last_event.to_string());
        }
        let resp = req.send().await?;
        if resp.status() != 200 {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            bail!("stream refused: HTTP {status}: {body}");
        }
        Ok(EventStream {
            resp,
            parser: SseParser::new(),
            queue: VecDeque::new(),
            hello: None,
        })
    }

    /// The next item (an event or a keep-alive comment), read by `deadline`.
    async fn item(&mut self, deadline: Instant) -> Result<SseItem> {
        loop {
            if let Some(i) = self.queue.pop_front() {
                return Ok(i);
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .map_err(|_| anyhow!("the stream went quiet"))??
                .ok_or_else(|| anyhow!("the stream ended"))?;
            self.queue.extend(
                self.parser
                    .feed(&chunk)
                    .map_err(|e| anyhow!("bad SSE: {e}"))?,
            );
        }
    }

    /// The next event within `timeout` (comments skipped), undecoded: `(event name, data)`.
    pub async fn next_message(&mut self, timeout: Duration) -> Result<(String, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let SseItem::Event { event, data, .. } = self.item(deadline).await? {
                return Ok((event, data));
            }
        }
    }

    /// Reads until the `ready` marker; returns the events before it (the hello is kept in
    /// [`EventStream::hello`]).
    pub async fn until_ready(&mut self) -> Vec<(u64, StreamEvent)> {
        let mut out = Vec::new();
        loop {
            match self.item(Instant::now() + PATIENCE).await.unwrap() {
                SseItem::Comment => {}
                SseItem::Event { event, .. } if event == "ready" => return out,
                SseItem::Event { event, data, .. } if event == "hello" => self.keep_hello(&data),
                SseItem::Event { id, data, .. } => out.push(decoded(id, &data)),
            }
        }
    }

    /// The next event (comments and the hello skipped), with its id.
    pub async fn next_event(&mut self) -> (u64, StreamEvent) {
        loop {
            match self.item(Instant::now() + PATIENCE).await.unwrap() {
                SseItem::Event { event, data, .. } if event == "hello" => self.keep_hello(&data),
                SseItem::Event { id, data, .. } => return decoded(id, &data),
                SseItem::Comment => {}
            }
        }
    }

    /// The next event within `timeout` (comments and the hello skipped, the hello kept), with
    /// its id; an error when the stream ends or goes quiet, for a caller that reconnects.
    pub async fn try_next_event(&mut self, timeout: Duration) -> Result<(u64, StreamEvent)> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.item(deadline).await? {
                SseItem::Event { event, data, .. } if event == "hello" => self.keep_hello(&data),
                SseItem::Event { event, .. } if event == "ready" => {}
                SseItem::Event { id, data, .. } => return Ok(decoded(id, &data)),
                SseItem::Comment => {}
            }
        }
    }

    fn keep_hello(&mut self, data: &str) {
        self.hello = Some(Signed::<StreamHello>::decode(data.as_bytes()).unwrap());
    }
}

/// An event's id and its payload. The id in the gateway-signed envelope is the event id; the
/// SSE `id:` line must say the same.
fn decoded(id: Option<String>, data: &str) -> (u64, StreamEvent) {
    let envelope = Signed::<Event>::decode(data.as_bytes()).unwrap();
    assert_eq!(
        id.as_deref(),
        Some(envelope.body.id.to_string().as_str()),
        "the SSE id differs from the envelope's"
    );
    (envelope.body.id, envelope.body.payload)
}
