//! A man in the middle on the HTTP path between an approver and a gateway, in the test process:
//! what an attacker with a place on the path (a TLS-terminating proxy, a compromised middlebox)
//! can do to plain HTTP/1.1. It forwards every request, and on command it
//!
//! - injects raw Server-Sent Events bytes into a live `GET /v2/stream` (once the stream has
//!   passed its `ready` marker),
//! - strips the `Last-Event-ID` header from stream requests,
//! - answers `POST /v2/decisions` itself, so the gateway never sees the decision,
//!
//! and it records every SSE event the gateway sent through it, so a test can replay one.
//! Each client connection carries one request (`Connection: close` both ways).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use countersign_protocol::sse::{SseItem, SseParser};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use url::Url;

/// One SSE event as the gateway sent it through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SeenEvent {
    /// The event as SSE bytes, ready to inject.
    pub fn to_sse(&self) -> Vec<u8> {
        let mut s = String::new();
        if let Some(id) = &self.id {
            s.push_str(&format!("id: {id}\n"));
        }
        s.push_str(&format!("event: {}\ndata: {}\n\n", self.event, self.data));
        s.into_bytes()
    }
}

#[derive(Default)]
struct State {
    inject: VecDeque<Vec<u8>>,
    strip_last_event_id: bool,
    decision_answer: Option<(u16, String)>,
    seen: Vec<SeenEvent>,
    /// `Last-Event-ID` of each stream request as the device sent it.
    last_event_ids: Vec<Option<String>>,
    decisions_answered: usize,
    decisions_forwarded: usize,
}

/// The proxy; see the module documentation.
pub struct Mitm {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Mitm {
    pub async fn start(upstream: SocketAddr) -> Mitm {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let wake = Arc::new(Notify::new());
        let (s, w) = (state.clone(), wake.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(handle(client, upstream, s.clone(), w.clone()));
            }
        });
        Mitm {
            addr,
            state,
            wake,
            task,
        }
    }

    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}/", self.addr)).unwrap()
    }

    /// Queues raw SSE bytes for every live stream (written once a stream is past `ready`).
    pub fn inject(&self, sse: Vec<u8>) {
        self.state.lock().unwrap().inject.push_back(sse);
        self.wake.notify_waiters();
    }

    pub fn strip_last_event_id(&self, on: bool) {
        self.state.lock().unwrap().strip_last_event_id = on;
    }

    /// Answers `POST /v2/decisions` with `status` and `body` instead of forwarding it, or
    /// forwards again with `None`.
    pub fn answer_decisions(&self, answer: Option<(u16, &str)>) {
        self.state.lock().unwrap().decision_answer = answer.map(|(s, b)| (s, b.to_string()));
    }

    /// Every SSE event the gateway sent through the proxy, in order.
    pub fn seen(&self) -> Vec<SeenEvent> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The `Last-Event-ID` of every stream request, as the device sent it.
    pub fn last_event_ids(&self) -> Vec<Option<String>> {
        self.state.lock().unwrap().last_event_ids.clone()
    }

    /// Decisions answered by the proxy, and decisions forwarded to the gateway.
    pub fn decisions(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.decisions_answered, s.decisions_forwarded)
    }
}

impl Drop for Mitm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request or response head: the first line and the headers, as sent.
struct Head {
    line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The head with `Connection: close` and without the headers named in `drop`.
    fn write(&self, drop: &[&str]) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.line);
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("connection")
                || drop.iter().any(|d| k.eq_ignore_ascii_case(d))
            {
                continue;
            }
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("connection: close\r\n\r\n");
        out.into_bytes()
    }
}

async fn read_head<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<Head> {
    let mut line = String::new();
    if r.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let line = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).await.ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Some(Head { line, headers })
}

async fn read_body<R: tokio::io::AsyncRead + Unpin>(r: &mut R, head: &Head) -> Vec<u8> {
    let len: usize = head
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = r.read_exact(&mut body).await;
    body
}

async fn handle(
    client: TcpStream,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
) {
    let mut client = BufReader::new(client);
    let Some(head) = read_head(&mut client).await else {
        return;
    };
    let body = read_body(&mut client, &head).await;
    let stream = head.line.starts_with("GET /v2/stream");
    let decision = head.line.starts_with("POST /v2/decisions");
    if decision {
        let canned = state.lock().unwrap().decision_answer.clone();
        if let Some((status, answer)) = canned {
            state.lock().unwrap().decisions_answered += 1;
            let out = format!(
                "HTTP/1.1 {status} Refused\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = client.get_mut().write_all(out.as_bytes()).await;
            return;
        }
        state.lock().unwrap().decisions_forwarded += 1;
    }
    let mut drop: Vec<&str> = Vec::new();
    if stream {
        let mut s = state.lock().unwrap();
        s.last_event_ids
            .push(head.get("last-event-id").map(str::to_string));
        if s.strip_last_event_id {
            drop.push("last-event-id");
        }
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let mut server = BufReader::new(server);
    let mut out = head.write(&drop);
    out.extend_from_slice(&body);
    if server.get_mut().write_all(&out).await.is_err() {
        return;
    }
    let Some(resp) = read_head(&mut server).await else {
        return;
    };
    let chunked = resp
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if client.get_mut().write_all(&resp.write(&[])).await.is_err() {
        return;
    }
    if !chunked {
        let body = read_body(&mut server, &resp).await;
        let _ = client.get_mut().write_all(&body).await;
        return;
    }
    // A chunked body (the event stream): decoded chunk by chunk, parsed as SSE for the record,
    // and written again as chunks, with injected bytes in between once past `ready`.
    let mut parser = SseParser::new();
    let mut live = false;
    loop {
        if live {
            let queued: Vec<Vec<u8>> = state.lock().unwrap().inject.drain(..).collect();
            for bytes in queued {
                if write_chunk(client.get_mut(), &bytes).await.is_err() {
                    return;
                }
            }
        }
        let notified = wake.notified();
        let mut size_line = String::new();
        let mut probe = [0u8; 1];
        tokio::select! {
            r = server.read_line(&mut size_line) => {
                if !matches!(r, Ok(n) if n > 0) {
                    let _ = client.get_mut().write_all(b"0\r\n\r\n").await;
                    return;
                }
            }
            _ = notified, if live => continue,
            // The client sends nothing after its request: a read that returns means it went
            // away, and this stream must not take the next injection.
            _ = client.read(&mut probe) => return,
        }
        let Ok(size) = usize::from_str_radix(size_line.trim(), 16) else {
            return;
        };
        let mut chunk = vec![0u8; size + 2];
        if server.read_exact(&mut chunk).await.is_err() {
            return;
        }
        chunk.truncate(size);
        if size == 0 {
            let _ = client.get_mut().write_all(b"0\r\n\r\n").await;
            return;
        }
        for item in parser.feed(&chunk).unwrap_or_default() {
            if let SseItem::Event { id, event, data } = item {
                live |= event == "ready";
                state
                    .lock()
                    .unwrap()
                    .seen
                    .push(SeenEvent { id, event, data });
            }
        }
        if write_chunk(client.get_mut(), &chunk).await.is_err() {
            return;
        }
    }
}

async fn write_chunk(w: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(format!("{:x}\r\n", bytes.len()).as_bytes())
        .await?;
    w.write_all(bytes).await?;
    w.write_all(b"\r\n").await
}
