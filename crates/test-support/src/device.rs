//! A device paired over the public HTTP API with the software authenticator as its passkey,
//! speaking the protocol directly (no approver engine): it reads its stream, signs decisions,
//! reports and audit checkpoints, and posts them. Each gateway rule can be checked on its own,
//! and a benchmark can pair thousands of devices.

use std::collections::HashMap;

use countersign_approver::authenticator::{authenticate_with, register_with};
use countersign_protocol::api::{paths, CheckpointState, ReportAck};
use countersign_protocol::audit::Checkpoint;
use countersign_protocol::{
    ApprovalRequest, Decision, DeviceAuth, KeyPair, PairChallenge, PairFinish, PairStart, Paired,
    PairingLink, PublicKey, Receipt, Report, Signed, StatusUpdate, StreamEvent, Verdict,
    PROTOCOL_VERSION,
};
use url::Url;
use webauthn_authenticator_rs::softtoken::SoftToken;

use crate::http::{answer, Refusal};
use crate::sse::EventStream;

/// The gateway a [`Device`] is paired with, as its requests need it: the address it serves,
/// the key it signs with, its fingerprint, and the clock it checks device signatures against
/// (a test may shift that clock, and the device's signatures must move with it).
pub trait PairedGateway {
    fn url(&self) -> &Url;
    fn gateway_key(&self) -> PublicKey;
    fn fingerprint(&self) -> String;
    fn now(&self) -> i64;
}

/// Whether the passkey ceremony verifies the user.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Uv {
    Yes,
    No,
}

/// A paired device, and what it has read from its stream so far.
pub struct Device {
    pub key: KeyPair,
    pub id: String,
    pub approver: String,
    pub token: SoftToken,
    pub origin: Url,
    pub http: reqwest::Client,
    /// The last stream event read; the next [`Device::drain`] resumes after it.
    pub last_event: u64,
    /// Each request pushed, with its passkey challenge, by request id.
    pub requests: HashMap<String, (Signed<ApprovalRequest>, serde_json::Value)>,
    /// The latest status pushed for each request.
    pub statuses: HashMap<String, Signed<StatusUpdate>>,
    /// The newest membership statement pushed, verified.
    pub membership: Option<Signed<countersign_protocol::Membership>>,
    /// The log checkpoint notes pushed, in order.
    pub checkpoints: Vec<String>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({})", self.id)
    }
}

impl Device {
    /// Pairs one device named `name` with `link`: `/v2/pair/start`, a passkey registration
    /// with a new `SoftToken`, `/v2/pair/finish`, and the signed confirmation checked against
    /// the key the link pins. The device keeps `http` (and its connection pool).
    pub async fn pair(
        http: &reqwest::Client,
        link: &PairingLink,
        name: &str,
    ) -> Result<Device, Refusal> {
        let (token, _ca) = SoftToken::new(true).unwrap();
        Self::pair_with(http, link, name, token).await
    }

    /// Pairs as [`Device::pair`] does, with the passkey on `token` (whose attestation CA the
    /// caller may have made the gateway trust).
    pub async fn pair_with(
        http: &reqwest::Client,
        link: &PairingLink,
        name: &str,
        mut token: SoftToken,
    ) -> Result<Device, Refusal> {
        let key = KeyPair::generate();
        let start = PairStart {
            v: PROTOCOL_VERSION,
            code: link.code.clone(),
            device_key: key.public(),
            device_name: name.into(),
        };
        let resp = http
            .post(link.gateway.join(paths::PAIR_START).unwrap())
            .json(&start)
            .send()
            .await
            .unwrap();
        let challenge: PairChallenge = answer(resp).await?;
        assert_eq!(challenge.gateway_key.fingerprint(), link.fingerprint);
        let origin = Url::parse(&challenge.webauthn_origin).unwrap();
        let credential = register_with(
            &mut token,
            &origin,
            serde_json::from_value(challenge.creation.clone()).unwrap(),
        )
        .unwrap();
        let finish = Signed::sign(
            &key,
            PairFinish {
                v: PROTOCOL_VERSION,
                pairing_id: challenge.pairing_id.clone(),
                device_key: key.public(),
                credential: serde_json::to_value(&credential).unwrap(),
            },
        )
        .unwrap();
        let resp = http
            .post(link.gateway.join(paths::PAIR_FINISH).unwrap())
            .json(&finish)
            .send()
            .await
            .unwrap();
        let paired: Signed<Paired> = answer(resp).await?;
        paired.verify(&challenge.gateway_key).unwrap();
        Ok(Device {
            key,
            id: paired.body.device_id.clone(),
            approver: paired.body.approver.clone(),
            token,
            origin,
            http: http.clone(),
            last_event: 0,
            requests: HashMap::new(),
            statuses: HashMap::new(),
            membership: None,
            checkpoints: Vec::new(),
        })
    }

    /// Opens this device's stream, resuming after event `last` when it is above zero.
    pub async fn open_stream(&self, gw: &impl PairedGateway, last: u64) -> EventStream {
        EventStream::open(&self.http, gw.url(), &self.key, &self.id, gw.now(), last)
            .await
            .unwrap()
    }

    /// Connects, reads the backlog after the last seen event, disconnects. Each request is
    /// checked against the gateway's key and kept with its challenge; each status is kept.
    /// Membership statements are verified and kept (`membership`), log checkpoints are kept
    /// (`checkpoints`), and both are left out of the events returned, which are about requests.
    pub async fn drain(&mut self, gw: &impl PairedGateway) -> Vec<(u64, StreamEvent)> {
        let mut s = self.open_stream(gw, self.last_event).await;
        let events = s.until_ready().await;
        for (id, e) in &events {
            assert!(*id > self.last_event, "event {id} delivered twice");
            self.last_event = *id;
            match e {
                StreamEvent::Request {
                    request, challenge, ..
                } => {
                    request.verify(&gw.gateway_key()).unwrap();
                    self.requests.insert(
                        request.body.id.clone(),
                        ((**request).clone(), challenge.clone()),
                    );
                }
                StreamEvent::Membership { membership } => {
                    membership.verify(&gw.gateway_key()).unwrap();
                    self.membership = Some((**membership).clone());
                }
                StreamEvent::Checkpoint { checkpoint } => {
                    self.checkpoints.push(checkpoint.clone());
                }
                StreamEvent::Status { status } => {
                    self.statuses
                        .insert(status.body.request_id.clone(), (**status).clone());
                }
            }
        }
        events
            .into_iter()
            .filter(|(_, e)| {
                !matches!(
                    e,
                    StreamEvent::Membership { .. } | StreamEvent::Checkpoint { .. }
                )
            })
            .collect()
    }

    /// The request `id` as pushed, with its passkey challenge (reading the stream if it has
    /// not been seen yet).
    pub async fn request_event(
        &mut self,
        gw: &impl PairedGateway,
        id: &str,
    ) -> (Signed<ApprovalRequest>, serde_json::Value) {
        if !self.requests.contains_key(id) {
            self.drain(gw).await;
        }
        self.requests
            .get(id)
            .cloned()
            .expect("request was not pushed")
    }

    /// The latest status pushed for request `id`, after reading the stream.
    pub async fn status_event(
        &mut self,
        gw: &impl PairedGateway,
        id: &str,
    ) -> Signed<StatusUpdate> {
        self.drain(gw).await;
        self.statuses.get(id).cloned().expect("no status pushed")
    }

    /// A decision on `req` signed by this device, with an assertion over `challenge` when
    /// there is one (without user verification when `uv` is [`Uv::No`]). The error is the
    /// authenticator's refusal.
    pub fn signed_decision(
        &mut self,
        gw: &impl PairedGateway,
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
                let cred = authenticate_with(
                    &mut self.token,
                    &self.origin,
                    serde_json::from_value(ch).unwrap(),
                )
                .map_err(|e| format!("{e:?}"))?;
                Some(serde_json::to_value(&cred).unwrap())
            }
        };
        let d = Decision {
            v: PROTOCOL_VERSION,
            decision_id: uuid::Uuid::new_v4().to_string(),
            request_id: req.body.id.clone(),
            request_digest: req.digest().unwrap(),
            gateway: gw.fingerprint(),
            approver: self.approver.clone(),
            device_id: self.id.clone(),
            verdict,
            reason: (verdict == Verdict::Deny).then(|| "not now".to_string()),
            match_code: match_code.map(str::to_string),
            decided_at: gw.now(),
            assertion,
        };
        Ok(Signed::sign(&self.key, d).unwrap())
    }

    /// Posts a signed decision; the receipt is checked against the gateway's key and `d`.
    pub async fn post_decision(
        &self,
        gw: &impl PairedGateway,
        d: &Signed<Decision>,
    ) -> Result<Signed<Receipt>, Refusal> {
        let resp = self
            .http
            .post(gw.url().join(paths::DECISIONS).unwrap())
            .json(d)
            .send()
            .await
            .unwrap();
        let r: Signed<Receipt> = answer(resp).await?;
        r.verify(&gw.gateway_key()).unwrap();
        assert_eq!(r.body.decision_digest, d.digest().unwrap());
        Ok(r)
    }

    /// Signs and posts a decision in one step.
    pub async fn decide(
        &mut self,
        gw: &impl PairedGateway,
        req: &Signed<ApprovalRequest>,
        challenge: Option<&serde_json::Value>,
        verdict: Verdict,
        match_code: Option<&str>,
        uv: Uv,
    ) -> Result<Signed<Receipt>, Refusal> {
        let d = self
            .signed_decision(gw, req, challenge, verdict, match_code, uv)
            .unwrap();
        self.post_decision(gw, &d).await
    }

    /// Signs an "I did not expect this" report on `req` with this device's key.
    pub fn signed_report(
        &self,
        gw: &impl PairedGateway,
        req: &Signed<ApprovalRequest>,
    ) -> Signed<Report> {
        self.signed_report_by(gw, &self.key, req)
    }

    /// The same, signed with `key` (to forge one).
    pub fn signed_report_by(
        &self,
        gw: &impl PairedGateway,
        key: &KeyPair,
        req: &Signed<ApprovalRequest>,
    ) -> Signed<Report> {
        Signed::sign(
            key,
            Report {
                v: PROTOCOL_VERSION,
                report_id: uuid::Uuid::new_v4().to_string(),
                request_id: req.body.id.clone(),
                request_digest: req.digest().unwrap(),
                gateway: req.body.gateway.clone(),
                approver: self.approver.clone(),
                device_id: self.id.clone(),
                reported_at: gw.now(),
            },
        )
        .unwrap()
    }

    pub async fn post_report(
        &self,
        gw: &impl PairedGateway,
        r: &Signed<Report>,
    ) -> Result<ReportAck, Refusal> {
        let resp = self
            .http
            .post(gw.url().join(paths::REPORTS).unwrap())
            .json(r)
            .send()
            .await
            .unwrap();
        answer(resp).await
    }

    /// Asks the gateway for a WebAuthn challenge on `req` now (`POST /v2/challenges`).
    pub async fn ask_challenge(
        &self,
        gw: &impl PairedGateway,
        req: &Signed<ApprovalRequest>,
    ) -> Result<serde_json::Value, Refusal> {
        let body = countersign_protocol::api::ChallengeRequest {
            v: PROTOCOL_VERSION,
            request_id: req.body.id.clone(),
            request_digest: req.digest().unwrap(),
        };
        let resp = self
            .http
            .post(gw.url().join(paths::CHALLENGES).unwrap())
            .header("authorization", self.auth(gw, "POST", paths::CHALLENGES))
            .json(&body)
            .send()
            .await
            .unwrap();
        answer::<countersign_protocol::api::IssuedChallenge>(resp)
            .await
            .map(|c| c.challenge)
    }

    /// Acknowledges `req` (approved without asking) with an acknowledgement signed by this
    /// device, under `ack_id`.
    pub async fn acknowledge(
        &self,
        gw: &impl PairedGateway,
        req: &Signed<ApprovalRequest>,
        ack_id: &str,
    ) -> Result<Signed<StatusUpdate>, Refusal> {
        let ack = Signed::sign(
            &self.key,
            countersign_protocol::Acknowledgement {
                v: PROTOCOL_VERSION,
                ack_id: ack_id.to_owned(),
                request_id: req.body.id.clone(),
                request_digest: req.digest().unwrap(),
                gateway: req.body.gateway.clone(),
                approver: self.approver.clone(),
                device_id: self.id.clone(),
                acked_at: gw.now(),
            },
        )
        .unwrap();
        let resp = self
            .http
            .post(gw.url().join(paths::ACKS).unwrap())
            .json(&ack)
            .send()
            .await
            .unwrap();
        answer(resp).await
    }

    /// A checkpoint over a chain of `seq` entries ending in `head`, signed by this device.
    pub fn checkpoint(&self, seq: u64, head: u8) -> Signed<Checkpoint> {
        self.checkpoint_by(&self.key, seq, head)
    }

    /// The same, signed with `key` (to forge one).
    pub fn checkpoint_by(&self, key: &KeyPair, seq: u64, head: u8) -> Signed<Checkpoint> {
        Signed::sign(
            key,
            Checkpoint {
                v: countersign_protocol::AUDIT_VERSION,
                signer: key.public().fingerprint(),
                seq,
                head: countersign_protocol::Digest([head; 32]),
                at: 1_700_000_000,
            },
        )
        .unwrap()
    }

    /// This device's signed `authorization` header for `method path`.
    fn auth(&self, gw: &impl PairedGateway, method: &str, path: &str) -> String {
        DeviceAuth::create(&self.key, &self.id, method, path, gw.now())
            .unwrap()
            .to_header()
    }

    pub async fn upload_checkpoint(
        &self,
        gw: &impl PairedGateway,
        cp: &Signed<Checkpoint>,
    ) -> Result<CheckpointState, Refusal> {
        let resp = self
            .http
            .post(gw.url().join(paths::CHECKPOINTS).unwrap())
            .header("authorization", self.auth(gw, "POST", paths::CHECKPOINTS))
            .json(cp)
            .send()
            .await
            .unwrap();
        answer(resp).await
    }

    /// The checkpoint the gateway holds for this device, if any.
    pub async fn held_checkpoint(&self, gw: &impl PairedGateway) -> Option<Signed<Checkpoint>> {
        let resp = self
            .http
            .get(gw.url().join(paths::CHECKPOINT_LATEST).unwrap())
            .header(
                "authorization",
                self.auth(gw, "GET", paths::CHECKPOINT_LATEST),
            )
            .send()
            .await
            .unwrap();
        let state: CheckpointState = answer(resp).await.unwrap();
        state.checkpoint
    }

    /// GETs `path_and_query` with this device's authorization for `path` (the path alone, as
    /// the header signs it), as JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        gw: &impl PairedGateway,
        path: &str,
        path_and_query: &str,
    ) -> T {
        self.get_answer(gw, path, path_and_query).await.unwrap()
    }

    /// Like [`Device::get_json`], keeping a refusal.
    pub async fn get_answer<T: serde::de::DeserializeOwned>(
        &self,
        gw: &impl PairedGateway,
        path: &str,
        path_and_query: &str,
    ) -> Result<T, Refusal> {
        let resp = self
            .http
            .get(gw.url().join(path_and_query).unwrap())
            .header("authorization", self.auth(gw, "GET", path))
            .send()
            .await
            .unwrap();
        answer(resp).await
    }

    /// POSTs `body` as JSON to `path` with this device's authorization.
    pub async fn post_answer<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        gw: &impl PairedGateway,
        path: &str,
        body: &B,
    ) -> Result<T, Refusal> {
        let resp = self
            .http
            .post(gw.url().join(path).unwrap())
            .header("authorization", self.auth(gw, "POST", path))
            .json(body)
            .send()
            .await
            .unwrap();
        answer(resp).await
    }
}
