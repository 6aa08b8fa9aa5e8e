//! A minimal loopback HTTP/1.1 server that plays the gateway's stream and decision endpoints.

use std::sync::{Arc, Mutex};

use countersign_protocol::api::{ErrorBody, ErrorCode};
use countersign_protocol::types::Decode;
use countersign_protocol::{
    Decision, DeviceAuth, KeyPair, Receipt, Refusal, RequestState, ResyncReason, Signed,
    StatusUpdate, StreamHello, StreamMode, PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Event = (Option<u64>, &'static str, String);

#[derive(Default)]
struct State {
    key: Option<KeyPair>,
    stream: Vec<Event>,
    stream_headers: (String, Option<String>),
    decision_status: u16,
    /// The highest event id the stream has named so far.
    head: u64,
    /// With a 4xx decision status: sign a refusal with this code, and this status.
    refusal: Option<(ErrorCode, Option<StatusUpdate>)>,
}

pub struct FakeGateway {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl FakeGateway {
    pub async fn start() -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            decision_status: 200,
            ..State::default()
        }));
        let s = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(sock, s.clone()));
            }
        });
        FakeGateway { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn set_key(&self, k: KeyPair) {
        self.state.lock().unwrap().key = Some(k);
    }

    pub fn set_stream(&self, events: Vec<Event>) {
        self.state.lock().unwrap().stream = events;
    }

    pub fn set_decision_status(&self, s: u16) {
        self.state.lock().unwrap().decision_status = s;
    }

    /// Makes 4xx decision answers carry a refusal with `code` (and `status`), signed by the key.
    pub fn set_refusal(&self, code: ErrorCode, status: Option<StatusUpdate>) {
        self.state.lock().unwrap().refusal = Some((code, status));
    }

    pub fn last_stream_headers(&self) -> (String, Option<String>) {
        self.state.lock().unwrap().stream_headers.clone()
    }
}

async fn serve(mut sock: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut tmp).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if request_line.starts_with("GET /v2/stream") {
        let (events, hello) = {
            let mut st = state.lock().unwrap();
            st.stream_headers = (
                header("authorization").unwrap_or_default(),
                header("last-event-id"),
            );
            let auth = DeviceAuth::parse_header(&st.stream_headers.0).unwrap();
            let resumed_from = st
                .stream_headers
                .1
                .as_ref()
                .map(|v| v.parse::<u64>().unwrap());
            // Like a real gateway's, the head never goes down.
            let head = st
                .stream
                .iter()
                .filter_map(|e| e.0)
                .max()
                .unwrap_or(0)
                .max(st.head);
            st.head = head;
            let (mode, resync_reason) = match resumed_from {
                None => (StreamMode::Resync, Some(ResyncReason::Requested)),
                Some(r) if r > head => (StreamMode::Resync, Some(ResyncReason::Ahead)),
                Some(_) => (StreamMode::Resume, None),
            };
            let key = st.key.as_ref().unwrap();
            let hello = Signed::sign(
                key,
                StreamHello {
                    v: PROTOCOL_VERSION,
                    gateway: key.public().fingerprint(),
                    device_id: auth.device,
                    approver: "alice@example.com".into(),
                    nonce: auth.nonce,
                    head,
                    resumed_from,
                    mode,
                    resync_reason,
                    keepalive_seconds: 15,
                    at: 0,
                },
            )
            .unwrap();
            (st.stream.clone(), serde_json::to_string(&hello).unwrap())
        };
        let mut body = format!(": keep-alive\n\nevent: hello\ndata: {hello}\n\n");
        for (id, name, data) in events {
            if let Some(id) = id {
                body.push_str(&format!("id: {id}\n"));
            }
            body.push_str(&format!("event: {name}\ndata: {data}\n\n"));
        }
        let _ = sock
            .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n{body}").as_bytes())
            .await;
        // Keep the stream open like a real gateway until the client goes away.
        let _ = sock.read(&mut tmp).await;
        return;
    }
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut tmp).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let body = &buf[head_end..head_end + len];
    let (status, answer) = if request_line.starts_with("POST /v2/decisions") {
        let st = state.lock().unwrap();
        match st.decision_status {
            200 => {
                let d = Signed::<Decision>::decode(body).unwrap();
                let r = Receipt {
                    v: countersign_protocol::PROTOCOL_VERSION,
                    decision_id: d.body.decision_id.clone(),
                    decision_digest: d.digest().unwrap(),
                    request_id: d.body.request_id.clone(),
                    request_digest: d.body.request_digest,
                    approver: d.body.approver.clone(),
                    verdict: d.body.verdict,
                    // Fixed so that a re-sent decision gets the very same receipt.
                    accepted_at: 1,
                    status_seq: 2,
                    request_state: RequestState::Denied,
                    approvals: 0,
                    min_approvals: 1,
                    stages: vec![],
                    challenge_digest: None,
                };
                let key = st.key.as_ref().unwrap();
                (
                    200,
                    serde_json::to_string(&Signed::sign(key, r).unwrap()).unwrap(),
                )
            }
            s => match &st.refusal {
                None => (
                    s,
                    r#"{"error":{"code":"test_refusal","message":"The test gateway says no."}}"#
                        .to_string(),
                ),
                Some((code, status)) => {
                    let key = st.key.as_ref().unwrap();
                    let d = Signed::<Decision>::decode(body).unwrap();
                    let refusal = Refusal {
                        v: PROTOCOL_VERSION,
                        gateway: key.public().fingerprint(),
                        decision_id: d.body.decision_id.clone(),
                        decision_digest: d.digest().unwrap(),
                        request_id: d.body.request_id.clone(),
                        request_digest: d.body.request_digest,
                        approver: d.body.approver.clone(),
                        code: code.clone(),
                        refused_at: 1,
                        status_seq: status.as_ref().map(|s| s.seq),
                    };
                    let mut answer = ErrorBody::new(code.clone(), "The test gateway says no.");
                    answer.refusal = Some(Signed::sign(key, refusal).unwrap());
                    answer.status = status.clone().map(|s| Signed::sign(key, s).unwrap());
                    (s, serde_json::to_string(&answer).unwrap())
                }
            },
        }
    } else {
        (
            404,
            r#"{"error":{"code":"not_found","message":"No such path."}}"#.to_string(),
        )
    };
    let _ = sock
        .write_all(
            format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            )
            .as_bytes(),
        )
        .await;
}
