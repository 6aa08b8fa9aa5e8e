//! Test support: a gateway on port 0 with a temporary data directory, and a test device that
//! pairs with the software authenticator and speaks the protocol directly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use countersign_gateway::{Config, Gateway, Running};
use countersign_protocol::api::{
    paths, CheckpointState, CreatedRequest, ErrorBody, NewRequest, ReportAck, RequestView,
};
use countersign_protocol::audit::Checkpoint;
use countersign_protocol::sse::{SseItem, SseParser};
use countersign_protocol::types::Decode;
use countersign_protocol::{
    ApprovalRequest, Decision, DeviceAuth, KeyPair, PairChallenge, PairFinish, PairStart, Paired,
    PairingLink, PublicKey, Receipt, Report, Signed, StatusUpdate, StreamEvent, Verdict,
};
use url::Url;
use webauthn_authenticator_rs::softtoken::SoftToken;
use webauthn_authenticator_rs::WebauthnAuthenticator;

pub struct Harness {
    pub running: Running,
    pub url: Url,
    pub token: String,
    _dir: tempfile::TempDir,
}

/// An HTTP refusal from the gateway.
#[derive(Debug)]
pub struct Failure {
    pub status: u16,
    pub body: Option<ErrorBody>,
}

impl Failure {
    pub fn code(&self) -> Option<&str> {
        self.body.as_ref().map(|b| b.error.code.as_str())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Uv {
    Yes,
    No,
}

pub fn request_id(e: &StreamEvent) -> Option<String> {
    match e {
        StreamEvent::Request { request, .. } => Some(request.body.id.clone()),
        StreamEvent::Status { .. } => None,
    }
}

async fn answer<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, Failure> {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    if (200..300).contains(&status) {
        Ok(serde_json::from_slice(&bytes).unwrap())
    } else {
        assert!(status >= 400, "unexpected HTTP {status}");
        Err(Failure {
            status,
            body: serde_json::from_slice(&bytes).ok(),
        })
    }
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("gateway"),
            listen: "127.0.0.1:0".parse().unwrap(),
            keepalive_seconds: 1,
            expiry_sweep_ms: 50,
            ..Config::default()
        };
        f(&mut config);
        let gw = Gateway::open(config).unwrap();
        let token = countersign_gateway::tokens::create(&gw, "ci-bot").unwrap();
        let running = countersign_gateway::serve(gw).await.unwrap();
        let url = running.url();
        Harness {
            running,
            url,
            token,
            _dir: dir,
        }
    }

    pub fn gw(&self) -> &Arc<Gateway> {
        &self.running.gateway
    }

    pub fn now(&self) -> i64 {
        self.gw().now()
    }

    pub fn gateway_key(&self) -> PublicKey {
        self.gw().key.public()
    }

    pub fn invite(&self, approver: &str) -> PairingLink {
        countersign_gateway::pairing::invite(self.gw(), approver, self.url.clone()).unwrap()
    }

    pub async fn pair(&self, approver: &str) -> TestDevice {
        let link = self.invite(approver);
        self.pair_with_link(&link).await.unwrap()
    }

    pub async fn pair_with_link(&self, link: &PairingLink) -> Result<TestDevice, Failure> {
        let http = reqwest::Client::new();
        let key = KeyPair::generate();
        let start = PairStart {
            v: 1,
            code: link.code.clone(),
            device_key: key.public(),
            device_name: "test device".into(),
        };
        let resp = http
            .post(link.gateway.join("/v1/pair/start").unwrap())
            .json(&start)
            .send()
            .await
            .unwrap();
        let challenge: PairChallenge = answer(resp).await?;
        assert_eq!(challenge.gateway_key.fingerprint(), link.fingerprint);
        let origin = Url::parse(&challenge.webauthn_origin).unwrap();
        let (mut token, _) = SoftToken::new(true).unwrap();
        let credential = token
            .do_registration(
                origin.clone(),
                serde_json::from_value(challenge.creation.clone()).unwrap(),
            )
            .unwrap();
        let finish = Signed::sign(
            &key,
            PairFinish {
                v: 1,
                pairing_id: challenge.pairing_id.clone(),
                device_key: key.public(),
                credential: serde_json::to_value(&credential).unwrap(),
            },
        )
        .unwrap();
        let resp = http
            .post(link.gateway.join("/v1/pair/finish").unwrap())
            .json(&finish)
            .send()
            .await
            .unwrap();
        let paired: Signed<Paired> = answer(resp).await?;
        paired.verify(&challenge.gateway_key).unwrap();
        Ok(TestDevice {
            key,
            id: paired.body.device_id.clone(),
            approver: paired.body.approver.clone(),
            token,
            origin,
            http,
            last_event: 0,
            requests: HashMap::new(),
            statuses: HashMap::new(),
        })
    }

    pub fn new_request(&self) -> NewRequest {
        NewRequest {
            action: "sql.exec".into(),
            resource: "prod-db".into(),
            risk: None,
            summary: "Drop the sessions table".into(),
            detail: "DROP TABLE sessions;".into(),
            reason: "cleanup after migration".into(),
            ttl_seconds: 300,
            approvers: vec!["alice@example.com".into()],
            min_approvals: 1,
            require_match: false,
        }
    }

    pub async fn try_create(
        &self,
        f: impl FnOnce(&mut NewRequest),
    ) -> Result<CreatedRequest, Failure> {
        let mut n = self.new_request();
        f(&mut n);
        let resp = reqwest::Client::new()
            .post(self.url.join("/v1/requests").unwrap())
            .bearer_auth(&self.token)
            .json(&n)
            .send()
            .await
            .unwrap();
        answer(resp).await
    }

    pub async fn create_with(&self, f: impl FnOnce(&mut NewRequest)) -> CreatedRequest {
        self.try_create(f).await.unwrap()
    }

    pub async fn create(
        &self,
        approvers: &[&str],
        min: u32,
        require_match: bool,
    ) -> CreatedRequest {
        self.create_with(|n| {
            n.approvers = approvers.iter().map(|s| s.to_string()).collect();
            n.min_approvals = min;
            n.require_match = require_match;
        })
        .await
    }

    pub async fn view(&self, id: &str) -> RequestView {
        let resp = reqwest::Client::new()
            .get(self.url.join(&format!("/v1/requests/{id}")).unwrap())
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let v: RequestView = answer(resp).await.unwrap();
        v.status.verify(&self.gateway_key()).unwrap();
        v
    }

    pub fn audit(
        &self,
    ) -> Vec<(
        countersign_protocol::audit::AuditEntry,
        countersign_protocol::Digest,
    )> {
        self.gw()
            .store
            .read(countersign_gateway::store::audit_entries)
            .unwrap()
    }

    fn expect_audited(&self, kind: &str, code: &str) {
        let entries = self.audit();
        let last = entries
            .iter()
            .rev()
            .find(|(e, _)| e.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} in the audit log"));
        assert_eq!(
            last.0.detail["code"], code,
            "audited {kind}: {:?}",
            last.0.detail
        );
        countersign_protocol::audit::verify_chain(entries).unwrap();
    }

    /// The refusal carries `code` and a sentence, and the gateway audited it.
    pub fn expect_rejection(&self, f: &Failure, code: &str) {
        assert_eq!(f.code(), Some(code), "{f:?}");
        assert!((400..500).contains(&f.status), "{f:?}");
        assert!(!f.body.as_ref().unwrap().error.message.is_empty());
        self.expect_audited("decision.rejected", code);
    }

    pub fn expect_pairing_rejection(&self, f: &Failure, code: &str) {
        assert_eq!(f.code(), Some(code), "{f:?}");
        self.expect_audited("pairing.rejected", code);
    }
}

impl std::fmt::Debug for TestDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestDevice({})", self.id)
    }
}

pub struct TestDevice {
    pub key: KeyPair,
    pub id: String,
    pub approver: String,
    pub token: SoftToken,
    pub origin: Url,
    pub http: reqwest::Client,
    pub last_event: u64,
    pub requests: HashMap<String, (Signed<ApprovalRequest>, serde_json::Value)>,
    pub statuses: HashMap<String, Signed<StatusUpdate>>,
}

pub struct TestStream {
    resp: reqwest::Response,
    parser: SseParser,
    queue: std::collections::VecDeque<SseItem>,
}

impl TestStream {
    async fn item(&mut self) -> SseItem {
        loop {
            if let Some(i) = self.queue.pop_front() {
                return i;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.resp.chunk())
                .await
                .expect("stream went quiet")
                .unwrap()
                .expect("stream ended");
            self.queue.extend(self.parser.feed(&chunk).unwrap());
        }
    }

    /// Reads until the `ready` marker; returns the events before it.
    pub async fn until_ready(&mut self) -> Vec<(u64, StreamEvent)> {
        let mut out = Vec::new();
        loop {
            match self.item().await {
                SseItem::Comment => {}
                SseItem::Event { event, .. } if event == "ready" => return out,
                SseItem::Event { id, data, .. } => out.push((
                    id.unwrap().parse().unwrap(),
                    StreamEvent::decode(data.as_bytes()).unwrap(),
                )),
            }
        }
    }

    pub async fn next_event(&mut self) -> (u64, StreamEvent) {
        loop {
            if let SseItem::Event { id, data, .. } = self.item().await {
                return (
                    id.unwrap().parse().unwrap(),
                    StreamEvent::decode(data.as_bytes()).unwrap(),
                );
            }
        }
    }
}

impl TestDevice {
    pub async fn open_stream(&self, h: &Harness, last: u64) -> TestStream {
        let auth = DeviceAuth::create(&self.key, &self.id, "GET", "/v1/stream", h.now()).unwrap();
        let mut req = self
            .http
            .get(h.url.join("/v1/stream").unwrap())
            .header("authorization", auth.to_header());
        if last > 0 {
            req = req.header("last-event-id", last.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        TestStream {
            resp,
            parser: SseParser::new(),
            queue: Default::default(),
        }
    }

    /// Connects, reads the backlog after the last seen event, disconnects.
    pub async fn drain(&mut self, h: &Harness) -> Vec<(u64, StreamEvent)> {
        let mut s = self.open_stream(h, self.last_event).await;
        let events = s.until_ready().await;
        for (id, e) in &events {
            assert!(*id > self.last_event, "event {id} delivered twice");
            self.last_event = *id;
            match e {
                StreamEvent::Request { request, challenge } => {
                    request.verify(&h.gateway_key()).unwrap();
                    self.requests.insert(
                        request.body.id.clone(),
                        (request.clone(), challenge.clone()),
                    );
                }
                StreamEvent::Status { status } => {
                    self.statuses
                        .insert(status.body.request_id.clone(), status.clone());
                }
            }
        }
        events
    }

    pub async fn request_event(
        &mut self,
        h: &Harness,
        id: &str,
    ) -> (Signed<ApprovalRequest>, serde_json::Value) {
        if !self.requests.contains_key(id) {
            self.drain(h).await;
        }
        self.requests
            .get(id)
            .cloned()
            .expect("request was not pushed")
    }

    pub async fn status_event(&mut self, h: &Harness, id: &str) -> Signed<StatusUpdate> {
        self.drain(h).await;
        self.statuses.get(id).cloned().expect("no status pushed")
    }

    pub fn signed_decision(
        &mut self,
        h: &Harness,
        req: &Signed<ApprovalRequest>,
        challenge: Option<&serde_json::Value>,
        verdict: Verdict,
        match_code: Option<&str>,
        uv: Uv,
    ) -> Result<Signed<Decision>, String> {
        let assertion = match challenge {
            None => None,
            Some(ch) => {
                let mut ch = ch.clone();
                if uv == Uv::No {
                    ch["publicKey"]["userVerification"] = "discouraged".into();
                }
                let cred = self
                    .token
                    .do_authentication(self.origin.clone(), serde_json::from_value(ch).unwrap())
                    .map_err(|e| format!("{e:?}"))?;
                Some(serde_json::to_value(&cred).unwrap())
            }
        };
        let d = Decision {
            v: 1,
            decision_id: uuid::Uuid::new_v4().to_string(),
            request_id: req.body.id.clone(),
            request_digest: req.digest().unwrap(),
            gateway: h.gw().fingerprint.clone(),
            approver: self.approver.clone(),
            device_id: self.id.clone(),
            verdict,
            reason: (verdict == Verdict::Deny).then(|| "not now".to_string()),
            match_code: match_code.map(str::to_string),
            decided_at: h.now(),
            assertion,
        };
        Ok(Signed::sign(&self.key, d).unwrap())
    }

    pub async fn post_decision(
        &self,
        h: &Harness,
        d: &Signed<Decision>,
    ) -> Result<Signed<Receipt>, Failure> {
        let resp = self
            .http
            .post(h.url.join("/v1/decisions").unwrap())
            .json(d)
            .send()
            .await
            .unwrap();
        let r: Signed<Receipt> = answer(resp).await?;
        r.verify(&h.gateway_key()).unwrap();
        assert_eq!(r.body.decision_digest, d.digest().unwrap());
        Ok(r)
    }

    /// Signs an "I did not expect this" report on `req` with this device's key.
    pub fn signed_report(&self, h: &Harness, req: &Signed<ApprovalRequest>) -> Signed<Report> {
        self.signed_report_by(h, &self.key, req)
    }

    /// The same, signed with `key` (to forge one).
    pub fn signed_report_by(
        &self,
        h: &Harness,
        key: &KeyPair,
        req: &Signed<ApprovalRequest>,
    ) -> Signed<Report> {
        Signed::sign(
            key,
            Report {
                v: countersign_protocol::PROTOCOL_VERSION,
                report_id: uuid::Uuid::new_v4().to_string(),
                request_id: req.body.id.clone(),
                request_digest: req.digest().unwrap(),
                gateway: req.body.gateway.clone(),
                approver: self.approver.clone(),
                device_id: self.id.clone(),
                reported_at: h.now(),
            },
        )
        .unwrap()
    }

    pub async fn post_report(&self, h: &Harness, r: &Signed<Report>) -> Result<ReportAck, Failure> {
        let resp = self
            .http
            .post(h.url.join(paths::REPORTS).unwrap())
            .json(r)
            .send()
            .await
            .unwrap();
        answer(resp).await
    }

    /// A checkpoint over a chain of `seq` entries ending in `head`, signed by this device.
    pub fn checkpoint(&self, seq: u64, head: u8) -> Signed<Checkpoint> {
        self.checkpoint_by(&self.key, seq, head)
    }

    pub fn checkpoint_by(&self, key: &KeyPair, seq: u64, head: u8) -> Signed<Checkpoint> {
        Signed::sign(
            key,
            Checkpoint {
                v: countersign_protocol::PROTOCOL_VERSION,
                signer: key.public().fingerprint(),
                seq,
                head: countersign_protocol::Digest([head; 32]),
                at: 1_700_000_000,
            },
        )
        .unwrap()
    }

    fn auth(&self, h: &Harness, method: &str, path: &str) -> String {
        DeviceAuth::create(&self.key, &self.id, method, path, h.now())
            .unwrap()
            .to_header()
    }

    pub async fn upload_checkpoint(
        &self,
        h: &Harness,
        cp: &Signed<Checkpoint>,
    ) -> Result<CheckpointState, Failure> {
        let resp = self
            .http
            .post(h.url.join(paths::CHECKPOINTS).unwrap())
            .header("authorization", self.auth(h, "POST", paths::CHECKPOINTS))
            .json(cp)
            .send()
            .await
            .unwrap();
        answer(resp).await
    }

    pub async fn held_checkpoint(&self, h: &Harness) -> Option<Signed<Checkpoint>> {
        let resp = self
            .http
            .get(h.url.join(paths::CHECKPOINT_LATEST).unwrap())
            .header(
                "authorization",
                self.auth(h, "GET", paths::CHECKPOINT_LATEST),
            )
            .send()
            .await
            .unwrap();
        let state: CheckpointState = answer(resp).await.unwrap();
        state.checkpoint
    }

    pub async fn decide(
        &mut self,
        h: &Harness,
        req: &Signed<ApprovalRequest>,
        challenge: Option<&serde_json::Value>,
        verdict: Verdict,
        match_code: Option<&str>,
        uv: Uv,
    ) -> Result<Signed<Receipt>, Failure> {
        let d = self
            .signed_decision(h, req, challenge, verdict, match_code, uv)
            .unwrap();
        self.post_decision(h, &d).await
    }
}
