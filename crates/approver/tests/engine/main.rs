//! Engine integration tests: real SQLite files in temporary directories, the software
//! authenticator, a real WebAuthn relying party (webauthn-rs) standing in for the gateway's,
//! and a tiny loopback HTTP server for the stream and decision endpoints.
// A test binary: a failed unwrap is a failed test, which is what we want here, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use countersign_approver::audit::kind;
use countersign_approver::{
    Authenticator, Clock, Delivery, DeliveryState, Engine, EngineError, EngineOptions,
    FrameRefusal, GatewayRecord, IngestOutcome, ListFilter, SoftAuthenticator,
};
use countersign_protocol::api::ErrorCode;
use countersign_protocol::audit::{verify_chain, AuditEntry, Checkpoint};
use countersign_protocol::{
    ApprovalRequest, Audience, Digest, Event, KeyPair, PublicKey, RequestState, Risk, Signed,
    StatusUpdate, StreamEvent, Verdict, PROTOCOL_VERSION,
};
use url::Url;
use webauthn_rs::prelude::{Passkey, PasskeyAuthentication, Webauthn, WebauthnBuilder};

mod audience;
mod http;

const APPROVER: &str = "alice@example.com";
const T0: i64 = 1_800_000_000;
const ORIGIN: &str = "http://localhost:8080";

/// A gateway played by the test: its signing key, a WebAuthn relying party and the passkey the
/// engine's soft authenticator registered with it.
struct Rig {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    now: Arc<AtomicI64>,
    engine: Engine,
    gw_key: KeyPair,
    fp: String,
    rp: Webauthn,
    passkey: Passkey,
    auth: SoftAuthenticator,
    next_id: std::sync::atomic::AtomicU64,
}

fn open_engine(dir: &std::path::Path, now: &Arc<AtomicI64>) -> Engine {
    let n = now.clone();
    Engine::open_with(
        dir,
        EngineOptions {
            clock: Clock::from_fn(move || n.load(Ordering::SeqCst)),
            ..EngineOptions::default()
        },
    )
    .unwrap()
}

impl Rig {
    fn new() -> Rig {
        Self::with_url("http://127.0.0.1:9/")
    }

    fn with_url(url: &str) -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let now = Arc::new(AtomicI64::new(T0));
        let engine = open_engine(&dir, &now);
        let gw_key = KeyPair::generate();
        let fp = gw_key.public().fingerprint();
        let origin = Url::parse(ORIGIN).unwrap();
        let rp = WebauthnBuilder::new("localhost", &origin)
            .unwrap()
            .build()
            .unwrap();
        let mut auth = SoftAuthenticator::open(&dir.join("soft-authenticator.cbor")).unwrap();
        let (ccr, reg) = rp
            .start_passkey_registration(uuid::Uuid::new_v4(), APPROVER, APPROVER, None)
            .unwrap();
        let cred = auth.register(&origin, ccr).unwrap();
        let passkey = rp.finish_passkey_registration(&cred, &reg).unwrap();
        engine
            .trust_gateway(GatewayRecord {
                fingerprint: fp.clone(),
                url: Url::parse(url).unwrap(),
                gateway_key: gw_key.public(),
                name: "test-gateway".into(),
                approver: APPROVER.into(),
                device_id: "dev-1".into(),
                webauthn_origin: origin,
                paired_at: T0,
                last_event_id: 0,
                tls_pin: None,
            })
            .unwrap();
        Rig {
            _dir: tmp,
            dir,
            now,
            engine,
            gw_key,
            fp,
            rp,
            passkey,
            auth,
            next_id: std::sync::atomic::AtomicU64::new(1000),
        }
    }

    fn body(&self, id: &str) -> ApprovalRequest {
        ApprovalRequest {
            v: PROTOCOL_VERSION,
            id: id.into(),
            gateway: self.fp.clone(),
            action: "sql.exec".into(),
            resource: "prod-db".into(),
            risk: Risk::High,
            summary: "Drop the sessions table".into(),
            detail: "DROP TABLE sessions;".into(),
            requester: "ci-bot".into(),
            reason: "cleanup".into(),
            created_at: T0,
            not_before: T0,
            expires_at: T0 + 300,
            approvers: vec![APPROVER.into(), "bob@example.com".into()],
            min_approvals: 1,
            match_required: false,
            deny_needs_passkey: false,
            stages: vec![],
            mode: countersign_protocol::Mode::Ask,
            distinct_people: true,
            requester_person: None,
            policy: None,
            grant_seconds: None,
            windows: vec![],
        }
    }

    /// A signed request event with a fresh WebAuthn challenge bound to it.
    fn event(&self, body: ApprovalRequest) -> (StreamEvent, PasskeyAuthentication) {
        let request = Signed::sign(&self.gw_key, body).unwrap();
        self.event_for(request)
    }

    fn event_for(&self, request: Signed<ApprovalRequest>) -> (StreamEvent, PasskeyAuthentication) {
        let (rcr, state) = self
            .rp
            .start_passkey_authentication(std::slice::from_ref(&self.passkey))
            .unwrap();
        // Bound to the request and approver, as the gateway binds it (protocol.md 3.24).
        let signed = Signed::sign(
            &self.gw_key,
            countersign_protocol::challenge::Challenge {
                v: PROTOCOL_VERSION,
                gateway: self.fp.clone(),
                request_id: request.body.id.clone(),
                request_digest: request.digest().unwrap(),
                approver: APPROVER.into(),
                nonce: "A".repeat(43),
                rp_id: "localhost".into(),
                origin: ORIGIN.into(),
                allow_credentials: vec!["AAAA".into()],
                user_verification: "required".into(),
                issued_at: T0,
                expires_at: request.body.expires_at,
            },
        )
        .unwrap();
        let mut options = serde_json::to_value(rcr).unwrap();
        let mut state = serde_json::to_value(state).unwrap();
        countersign_protocol::challenge::bind_json(
            &mut options,
            &mut state,
            &signed.digest().unwrap(),
        )
        .unwrap();
        (
            StreamEvent::Request {
                request: Box::new(request),
                challenge: options,
                signed_challenge: Some(Box::new(signed)),
            },
            serde_json::from_value(state).unwrap(),
        )
    }

    /// `payload` in a gateway-signed envelope addressed to the approver, with event id `id`.
    fn sealed(&self, id: u64, payload: StreamEvent) -> Signed<Event> {
        Signed::sign(
            &self.gw_key,
            Event {
                v: PROTOCOL_VERSION,
                gateway: self.fp.clone(),
                id,
                at: T0,
                audience: Audience::approver(APPROVER),
                payload,
            },
        )
        .unwrap()
    }

    /// [`Rig::sealed`] with the next unused event id.
    fn sealed_next(&self, payload: StreamEvent) -> Signed<Event> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        self.sealed(id, payload)
    }

    fn accept(&self, id: &str, event_id: u64) -> PasskeyAuthentication {
        let (ev, state) = self.event(self.body(id));
        assert_eq!(
            self.engine
                .ingest(&self.fp, &self.sealed(event_id, ev))
                .unwrap(),
            IngestOutcome::Accepted
        );
        state
    }

    fn audit_kinds(&self) -> Vec<(String, serde_json::Value)> {
        self.engine
            .audit_entries()
            .unwrap()
            .into_iter()
            .map(|(e, _)| (e.kind, e.detail))
            .collect()
    }
}

type Mutation = fn(&Rig, &mut ApprovalRequest) -> Option<Signed<ApprovalRequest>>;

#[test]
fn rejection_rules_table() {
    // (case, mutation of the request, expected code, expected words in the reason)
    let cases: Vec<(&str, Mutation, &str, &str)> = vec![
        (
            "signed by another key",
            |_, b| Some(Signed::sign(&KeyPair::generate(), b.clone()).unwrap()),
            "bad_signature",
            "signed by a key other than the pinned gateway key",
        ),
        (
            "changed after signing",
            |r, b| {
                let mut s = Signed::sign(&r.gw_key, b.clone()).unwrap();
                s.body.detail = "DROP TABLE users;".into();
                Some(s)
            },
            "bad_signature",
            "changed after signing",
        ),
        (
            "expired",
            |_, b| {
                b.created_at = T0 - 600;
                b.not_before = T0 - 600;
                b.expires_at = T0 - 1;
                None
            },
            "expired",
            "expired at",
        ),
        (
            "not yet valid",
            |_, b| {
                b.not_before = T0 + 120;
                b.expires_at = T0 + 600;
                None
            },
            "not_yet_valid",
            "not valid until",
        ),
        (
            "valid for ten years",
            |_, b| {
                b.expires_at = b.created_at + 10 * 365 * 24 * 3600;
                None
            },
            "valid_too_long",
            "longer than this approver accepts",
        ),
        (
            "addressed to someone else",
            |_, b| {
                b.approvers = vec!["mallory@example.com".into()];
                None
            },
            "not_addressed",
            "addressed to other approvers",
        ),
        (
            "names another gateway",
            |_, b| {
                b.gateway = "ab".repeat(32);
                None
            },
            "wrong_gateway",
            "not the pinned gateway",
        ),
    ];
    for (i, (name, mutate, code, words)) in cases.into_iter().enumerate() {
        let rig = Rig::new();
        let mut body = rig.body(&format!("req-{i}"));
        let signed = match mutate(&rig, &mut body) {
            Some(s) => s,
            None => Signed::sign(&rig.gw_key, body).unwrap(),
        };
        let (ev, _) = rig.event_for(signed);
        let out = rig.engine.ingest(&rig.fp, &rig.sealed(1, ev)).unwrap();
        let IngestOutcome::Rejected { reason } = out else {
            panic!("{name}: accepted");
        };
        assert_eq!(reason.code(), code, "{name}");
        assert!(
            reason.message().contains(words),
            "{name}: {}",
            reason.message()
        );
        assert!(
            rig.engine.list(ListFilter::All).unwrap().is_empty(),
            "{name}"
        );
        let audited = rig.audit_kinds();
        let (k, detail) = audited.last().unwrap();
        assert_eq!(k, kind::REQUEST_REJECTED, "{name}");
        assert_eq!(detail["code"], code, "{name}");
        assert!(detail["reason"].as_str().unwrap().contains(words), "{name}");
        rig.engine.audit_verify().unwrap();
    }
}

#[test]
fn clock_skew_is_allowed_on_not_before_only() {
    let rig = Rig::new();
    let mut b = rig.body("skew");
    b.not_before = T0 + 30;
    let (ev, _) = rig.event(b);
    assert_eq!(
        rig.engine.ingest(&rig.fp, &rig.sealed_next(ev)).unwrap(),
        IngestOutcome::Accepted
    );
    let mut b = rig.body("late");
    b.expires_at = T0 - 1;
    b.created_at = T0 - 10;
    b.not_before = T0 - 10;
    let (ev, _) = rig.event(b);
    assert!(matches!(
        rig.engine.ingest(&rig.fp, &rig.sealed_next(ev)).unwrap(),
        IngestOutcome::Rejected { .. }
    ));
}

#[test]
fn duplicates_are_not_stored_twice() {
    let rig = Rig::new();
    let (ev, _) = rig.event(rig.body("dup"));
    assert_eq!(
        rig.engine
            .ingest(&rig.fp, &rig.sealed(5, ev.clone()))
            .unwrap(),
        IngestOutcome::Accepted
    );
    // The same event id again (a resume overlap): ignored silently.
    let before = rig.audit_kinds().len();
    assert_eq!(
        rig.engine
            .ingest(&rig.fp, &rig.sealed(5, ev.clone()))
            .unwrap(),
        IngestOutcome::Duplicate
    );
    assert_eq!(rig.audit_kinds().len(), before);
    // The same request under a new event id (a re-delivery): not stored, but audited.
    assert_eq!(
        rig.engine.ingest(&rig.fp, &rig.sealed(6, ev)).unwrap(),
        IngestOutcome::Duplicate
    );
    let (k, d) = rig.audit_kinds().pop().unwrap();
    assert_eq!(
        (k.as_str(), d["code"].as_str()),
        (kind::REQUEST_REJECTED, Some("duplicate"))
    );
    // A different request reusing the id is refused outright.
    let mut other = rig.body("dup");
    other.summary = "something else".into();
    let (ev, _) = rig.event(other);
    let out = rig.engine.ingest(&rig.fp, &rig.sealed(7, ev)).unwrap();
    assert!(
        matches!(out, IngestOutcome::Rejected { reason } if reason.code() == "conflicting_duplicate")
    );
    assert_eq!(rig.engine.list(ListFilter::All).unwrap().len(), 1);
    assert_eq!(rig.engine.gateway(&rig.fp).unwrap().last_event_id, 7);
}

/// `show` takes an exact id or a unique prefix; an exact id wins over longer ids it prefixes.
#[test]
fn show_finds_exact_ids_and_unique_prefixes() {
    let rig = Rig::new();
    rig.accept("0b7c4a52", 1);
    rig.accept("0b7c4a52-bbbb", 2);
    rig.accept("0b7c4a53", 3);
    assert_eq!(rig.engine.show("0b7c4a52").unwrap().id(), "0b7c4a52");
    assert_eq!(rig.engine.show("0b7c4a52-").unwrap().id(), "0b7c4a52-bbbb");
    assert_eq!(rig.engine.show("0b7c4a53").unwrap().id(), "0b7c4a53");
    assert!(matches!(
        rig.engine.show("0b7c4a5"),
        Err(EngineError::AmbiguousRequest(_))
    ));
    assert!(matches!(
        rig.engine.show("0b7c4a54"),
        Err(EngineError::UnknownRequest(_))
    ));
    // Past the last stored id, and a prefix whose next character sorts after every id.
    assert!(matches!(
        rig.engine.show("~"),
        Err(EngineError::UnknownRequest(_))
    ));
}

#[test]
fn inbox_lists_shows_and_expires() {
    let rig = Rig::new();
    rig.accept("0b7c4a52-aaaa", 1);
    rig.accept("0b7c4a52-bbbb", 2);
    assert_eq!(rig.engine.list(ListFilter::Pending).unwrap().len(), 2);
    assert_eq!(rig.engine.pending_count().unwrap(), 2);
    assert!(matches!(
        rig.engine.show("0b7c4a52"),
        Err(EngineError::AmbiguousRequest(_))
    ));
    let item = rig.engine.show("0b7c4a52-b").unwrap();
    assert_eq!(item.id(), "0b7c4a52-bbbb");
    assert_eq!(item.state, RequestState::Pending);
    assert!(matches!(
        rig.engine.show("nope"),
        Err(EngineError::UnknownRequest(_))
    ));
    // The last second of validity still counts as pending; at expiry, neither lists it.
    rig.now.store(T0 + 299, Ordering::SeqCst);
    assert_eq!(rig.engine.list(ListFilter::Pending).unwrap().len(), 2);
    assert_eq!(rig.engine.pending_count().unwrap(), 2);
    rig.now.store(T0 + 300, Ordering::SeqCst);
    assert!(rig.engine.list(ListFilter::Pending).unwrap().is_empty());
    assert_eq!(rig.engine.pending_count().unwrap(), 0);
    rig.now.store(T0 + 301, Ordering::SeqCst);
    assert!(rig.engine.list(ListFilter::Pending).unwrap().is_empty());
    assert_eq!(rig.engine.list(ListFilter::All).unwrap().len(), 2);
    let err = futures::executor::block_on(rig.engine.deny("0b7c4a52-aaaa", "no")).unwrap_err();
    assert_eq!(err.code(), "request_expired");
}

#[test]
fn status_updates_are_verified_and_applied() {
    let rig = Rig::new();
    rig.accept("st-1", 1);
    let item = rig.engine.show("st-1").unwrap();
    let status = |digest: Digest, key: &KeyPair| StreamEvent::Status {
        status: Box::new(
            Signed::sign(
                key,
                StatusUpdate {
                    v: PROTOCOL_VERSION,
                    request_id: "st-1".into(),
                    request_digest: digest,
                    seq: 2,
                    state: RequestState::Approved,
                    approvals: 1,
                    min_approvals: 1,
                    votes: vec![],
                    at: T0 + 5,
                    stages: vec![],
                    grant: None,
                },
            )
            .unwrap(),
        ),
    };
    let forged = rig
        .engine
        .ingest(
            &rig.fp,
            &rig.sealed(2, status(item.digest, &KeyPair::generate())),
        )
        .unwrap();
    assert!(
        matches!(forged, IngestOutcome::Rejected { reason } if reason.code() == "status_bad_signature")
    );
    let other = rig
        .engine
        .ingest(
            &rig.fp,
            &rig.sealed(3, status(Digest([9; 32]), &rig.gw_key)),
        )
        .unwrap();
    assert!(
        matches!(other, IngestOutcome::Rejected { reason } if reason.code() == "status_digest_mismatch")
    );
    assert_eq!(
        rig.engine.show("st-1").unwrap().state,
        RequestState::Pending
    );
    let ok = rig
        .engine
        .ingest(&rig.fp, &rig.sealed(4, status(item.digest, &rig.gw_key)))
        .unwrap();
    assert_eq!(ok, IngestOutcome::Accepted);
    assert_eq!(
        rig.engine.show("st-1").unwrap().state,
        RequestState::Approved
    );
    // Closed elsewhere: no longer pending, though still listed under all.
    assert!(rig.engine.list(ListFilter::Pending).unwrap().is_empty());
    assert_eq!(rig.engine.pending_count().unwrap(), 0);
    assert_eq!(rig.engine.list(ListFilter::All).unwrap().len(), 1);
    assert_eq!(rig.audit_kinds().last().unwrap().0, kind::REQUEST_STATUS);
}

/// A status older than the one held, or any status after a final one, is ignored: a replayed
/// genuine "pending, 1 of 2" cannot reopen a denied request (issue 15, item 2).
#[test]
fn statuses_apply_in_sequence_order_and_never_reopen_a_final_state() {
    let rig = Rig::new();
    rig.accept("seq-1", 1);
    let digest = rig.engine.show("seq-1").unwrap().digest;
    let status = |seq: u64, state: RequestState, approvals: u32| StreamEvent::Status {
        status: Box::new(
            Signed::sign(
                &rig.gw_key,
                StatusUpdate {
                    v: PROTOCOL_VERSION,
                    request_id: "seq-1".into(),
                    request_digest: digest,
                    seq,
                    state,
                    approvals,
                    min_approvals: 2,
                    votes: vec![],
                    at: T0 + seq as i64,
                    stages: vec![],
                    grant: None,
                },
            )
            .unwrap(),
        ),
    };
    let pending_1_of_2 = status(2, RequestState::Pending, 1);
    assert_eq!(
        rig.engine
            .ingest(&rig.fp, &rig.sealed(2, pending_1_of_2.clone()))
            .unwrap(),
        IngestOutcome::Accepted
    );
    assert_eq!(
        rig.engine
            .ingest(&rig.fp, &rig.sealed(3, status(3, RequestState::Denied, 1)))
            .unwrap(),
        IngestOutcome::Accepted
    );
    // The same genuine status replayed under a new event id: stale, audited, nothing moves.
    assert_eq!(
        rig.engine
            .ingest(&rig.fp, &rig.sealed(4, pending_1_of_2))
            .unwrap(),
        IngestOutcome::Stale
    );
    let item = rig.engine.show("seq-1").unwrap();
    assert_eq!(item.state, RequestState::Denied);
    let (k, d) = rig.audit_kinds().pop().unwrap();
    assert_eq!(k, kind::STATUS_STALE);
    assert_eq!(
        (d["seq"].as_u64(), d["held_seq"].as_u64()),
        (Some(2), Some(3))
    );
    // Even a higher seq does not move a final state.
    assert_eq!(
        rig.engine
            .ingest(&rig.fp, &rig.sealed(5, status(9, RequestState::Pending, 0)))
            .unwrap(),
        IngestOutcome::Stale
    );
    assert_eq!(
        rig.engine.show("seq-1").unwrap().state,
        RequestState::Denied
    );
    rig.engine.audit_verify().unwrap();
}

/// Only a verified envelope addressed to this device moves the resume point: a forged frame
/// with a huge id, a genuine event for another approver and an envelope signed by another key
/// are refused and audited, and later genuine events still arrive (issue 15, item 1).
#[test]
fn only_verified_addressed_envelopes_move_the_resume_point() {
    let rig = Rig::new();
    rig.accept("r-1", 5);
    assert_eq!(rig.engine.gateway(&rig.fp).unwrap().last_event_id, 5);
    let (ev, _) = rig.event(rig.body("r-2"));
    let mut forged = rig.sealed(9_000_000_000_000_000, ev.clone());
    forged.signature = rig.sealed(6, ev.clone()).signature;
    let mut elsewhere = rig.sealed(6, ev.clone());
    elsewhere.body.audience = Audience::approver("mallory@example.com");
    let elsewhere = Signed::sign(&rig.gw_key, elsewhere.body).unwrap();
    let other_key = Signed::sign(&KeyPair::generate(), rig.sealed(7, ev.clone()).body).unwrap();
    for (frame, reason) in [
        (forged, FrameRefusal::BadSignature),
        (elsewhere, FrameRefusal::NotAddressed),
        (other_key, FrameRefusal::BadSignature),
    ] {
        assert_eq!(
            rig.engine.ingest(&rig.fp, &frame).unwrap(),
            IngestOutcome::Refused { reason }
        );
        assert_eq!(rig.engine.gateway(&rig.fp).unwrap().last_event_id, 5);
    }
    assert!(rig
        .engine
        .list(ListFilter::All)
        .unwrap()
        .iter()
        .all(|i| i.request.body.id != "r-2"));
    // Each refusal is audited (the first of a reason at once; repeats are counted).
    let refused: Vec<_> = rig
        .audit_kinds()
        .into_iter()
        .filter(|(k, _)| k == kind::STREAM_FRAME_REJECTED)
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    // The genuine event after them arrives and moves the resume point.
    assert_eq!(
        rig.engine.ingest(&rig.fp, &rig.sealed(6, ev)).unwrap(),
        IngestOutcome::Accepted
    );
    assert_eq!(rig.engine.gateway(&rig.fp).unwrap().last_event_id, 6);
    rig.engine.audit_verify().unwrap();
}

#[test]
fn assertion_is_bound_to_its_own_request_challenge() {
    let mut rig = Rig::new();
    let state_a = rig.accept("req-a", 1);
    let state_b = rig.accept("req-b", 2);
    let a = rig.engine.assertion_for("req-a", &mut rig.auth).unwrap();
    let cred: webauthn_rs::prelude::PublicKeyCredential = serde_json::from_value(a).unwrap();
    // The relying party accepts A's assertion for A and refuses it for B.
    rig.rp
        .finish_passkey_authentication(&cred, &state_a)
        .unwrap();
    assert!(rig
        .rp
        .finish_passkey_authentication(&cred, &state_b)
        .is_err());
    // A decision carrying A's assertion on B is still signed (the gateway must refuse it).
    let d = rig
        .engine
        .sign_decision(
            "req-b",
            Verdict::Approve,
            None,
            None,
            Some(serde_json::to_value(&cred).unwrap()),
        )
        .unwrap();
    d.verify(&rig.engine.device_public_key()).unwrap();
    assert_eq!(d.body.request_id, "req-b");
    assert_eq!(d.body.gateway, rig.fp);
    assert_eq!(d.body.device_id, "dev-1");
}

type ChallengeMutation<'a> = dyn Fn(&mut serde_json::Value, &mut Option<Box<Signed<countersign_protocol::challenge::Challenge>>>)
    + 'a;

/// A request's challenge must be one the gateway signed for this request and this approver,
/// whose digest is the WebAuthn challenge the passkey will sign; otherwise the request is
/// refused before it reaches the inbox.
#[test]
fn a_request_whose_challenge_is_not_bound_to_it_is_refused() {
    let rig = Rig::new();
    let unbound = |mutate: &ChallengeMutation<'_>| {
        let (ev, _) = rig.event(rig.body(&format!("req-{}", rig.next_id.load(Ordering::SeqCst))));
        let StreamEvent::Request {
            request,
            mut challenge,
            mut signed_challenge,
        } = ev
        else {
            unreachable!()
        };
        mutate(&mut challenge, &mut signed_challenge);
        let out = rig
            .engine
            .ingest(
                &rig.fp,
                &rig.sealed_next(StreamEvent::Request {
                    request,
                    challenge,
                    signed_challenge,
                }),
            )
            .unwrap();
        match out {
            IngestOutcome::Rejected { reason } => reason.message(),
            other => panic!("accepted: {other:?}"),
        }
    };
    // Unsigned.
    let why = unbound(&|_, s| *s = None);
    assert!(why.contains("not signed by the gateway"), "{why}");
    // Signed for another approver.
    let why = unbound(&|_, s| {
        let mut body = s.take().unwrap().body;
        body.approver = "bob@example.com".into();
        *s = Some(Box::new(Signed::sign(&rig.gw_key, body).unwrap()));
    });
    assert!(
        why.contains("another gateway, request or approver"),
        "{why}"
    );
    // Signed by another key.
    let why = unbound(&|_, s| {
        let body = s.take().unwrap().body;
        *s = Some(Box::new(Signed::sign(&KeyPair::generate(), body).unwrap()));
    });
    assert!(
        why.contains("not signed by the pinned gateway key"),
        "{why}"
    );
    // A WebAuthn challenge other than the signed one's digest.
    let why = unbound(&|c, _| c["publicKey"]["challenge"] = "AAAA".into());
    assert!(why.contains("not the signed challenge's digest"), "{why}");
    // The bound one is accepted.
    let (ev, _) = rig.event(rig.body("req-bound"));
    assert_eq!(
        rig.engine.ingest(&rig.fp, &rig.sealed_next(ev)).unwrap(),
        IngestOutcome::Accepted
    );
}

#[test]
fn approval_checks_match_code_first() {
    let mut rig = Rig::new();
    let mut b = rig.body("mc");
    b.match_required = true;
    let (ev, _) = rig.event(b);
    rig.engine.ingest(&rig.fp, &rig.sealed(1, ev)).unwrap();
    let err =
        futures::executor::block_on(rig.engine.approve("mc", None, &mut rig.auth)).unwrap_err();
    assert_eq!(err.code(), "match_code_required");
    assert!(rig.engine.outbox().unwrap().is_empty());
}

#[test]
fn audit_edit_is_named_by_verify() {
    let rig = Rig::new();
    rig.accept("a1", 1);
    rig.accept("a2", 2);
    rig.accept("a3", 3);
    let summary = rig.engine.audit_verify().unwrap();
    assert_eq!(summary.entries, 4); // gateway.paired + 3 received
    let conn = rusqlite::Connection::open(rig.dir.join("approver.db")).unwrap();
    let entry: String = conn
        .query_row("SELECT entry FROM audit WHERE seq = 3", [], |r| r.get(0))
        .unwrap();
    let edited = entry.replace("ci-bot", "ci-bat");
    assert_ne!(entry, edited);
    conn.execute("UPDATE audit SET entry = ?1 WHERE seq = 3", [edited])
        .unwrap();
    let err = rig.engine.audit_verify().unwrap_err();
    assert_eq!(err.code(), "audit_chain_broken");
    assert!(err.to_string().contains("audit entry 3"), "{err}");
    // Deleting a row is found at the gap.
    conn.execute("UPDATE audit SET entry = ?1 WHERE seq = 3", [entry])
        .unwrap();
    rig.engine.audit_verify().unwrap();
    conn.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
    let err = rig.engine.audit_verify().unwrap_err();
    assert!(err.to_string().contains("audit entry 2"), "{err}");
}

#[test]
fn export_lines_parse_and_checkpoint_verifies() {
    let rig = Rig::new();
    rig.accept("e1", 1);
    let mut out = Vec::new();
    let s = rig.engine.audit_export(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, s.entries + 1);
    let chain: Vec<(AuditEntry, Digest)> = lines[..lines.len() - 1]
        .iter()
        .map(|l| {
            (
                serde_json::from_value(l["entry"].clone()).unwrap(),
                serde_json::from_value(l["hash"].clone()).unwrap(),
            )
        })
        .collect();
    let (n, head) = verify_chain(chain).unwrap();
    let last = lines.last().unwrap();
    let cp: Signed<Checkpoint> = serde_json::from_value(last["checkpoint"].clone()).unwrap();
    let key = PublicKey::parse("public_key", last["public_key"].as_str().unwrap()).unwrap();
    cp.verify(&key).unwrap();
    assert_eq!((cp.body.seq, cp.body.head), (n, head));
    assert_eq!(cp.body.signer, key.fingerprint());
    assert_eq!(key, rig.engine.device_public_key());
}

/// Closing the engine (its last handle dropped) signs a checkpoint over everything the log
/// gained, so a log truncated while the app was closed is caught at the next start.
#[tokio::test]
async fn shutdown_checkpoints_and_a_later_truncation_is_named() {
    let rig = Rig::new();
    rig.accept("c1", 1);
    rig.engine.deny("c1", "not now").await.unwrap();
    let Rig {
        engine,
        dir,
        now,
        _dir,
        ..
    } = rig;
    let entries = engine.audit_verify().unwrap().entries;
    drop(engine);
    let engine = open_engine(&dir, &now);
    let s = engine.audit_verify().unwrap();
    assert_eq!(s.checkpointed_through, Some(entries));
    drop(engine);
    let conn = rusqlite::Connection::open(dir.join("approver.db")).unwrap();
    conn.execute("DELETE FROM audit WHERE seq = ?1", [entries as i64])
        .unwrap();
    drop(conn);
    let engine = open_engine(&dir, &now);
    match engine.audit_verify() {
        Err(EngineError::AuditBroken(b)) => {
            assert_eq!(
                b.damage,
                countersign_protocol::audit::Damage::Truncation,
                "{b}"
            );
            assert_eq!(b.position, entries);
        }
        other => panic!("truncation not detected: {other:?}"),
    }
}

#[tokio::test]
async fn queued_decision_survives_reopen() {
    let rig = Rig::new(); // its gateway URL points at a closed port
    rig.accept("q1", 1);
    let out = rig.engine.deny("q1", "not now").await.unwrap();
    assert!(
        matches!(out.delivery, Delivery::Queued { .. }),
        "{:?}",
        out.delivery
    );
    let id = out.decision.body.decision_id.clone();
    let Rig {
        engine,
        dir,
        now,
        _dir,
        ..
    } = rig;
    drop(engine);
    let engine = open_engine(&dir, &now);
    let rows = engine.outbox().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].decision_id, id);
    assert_eq!(rows[0].state, DeliveryState::Queued);
    assert_eq!(rows[0].attempts, 1);
    let item = engine.show("q1").unwrap();
    assert_eq!(item.decision.unwrap().decision_id, id);
    assert!(matches!(
        engine.deny("q1", "again").await,
        Err(EngineError::AlreadyDecided { .. })
    ));
    let kinds: Vec<String> = engine
        .audit_entries()
        .unwrap()
        .into_iter()
        .map(|(e, _)| e.kind)
        .collect();
    // The decision, then the failed delivery attempt (audited, to be retried).
    assert!(
        kinds.ends_with(&[
            kind::DECISION_MADE.to_string(),
            kind::DECISION_RETRY.to_string()
        ]),
        "{kinds:?}"
    );
    engine.audit_verify().unwrap();
}

#[tokio::test]
async fn sync_drains_stream_and_delivers_outbox() {
    let server = http::FakeGateway::start().await;
    let rig = Rig::with_url(&server.url());
    server.set_key(KeyPair::from_seed(&rig.gw_key.seed()));
    // The stream: one request (id 1), a malformed frame claiming id 2, then ready.
    let (ev, _) = rig.event(rig.body("s1"));
    server.set_stream(vec![
        (
            Some(1),
            "request",
            serde_json::to_string(&rig.sealed(1, ev)).unwrap(),
        ),
        (Some(2), "request", "{\"type\":\"request\"}".into()),
        (None, "ready", "{\"through\":2}".into()),
    ]);
    let (reports, _) = rig.engine.sync().await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].error, None, "{reports:?}");
    assert_eq!(rig.engine.show("s1").unwrap().state, RequestState::Pending);
    // The malformed frame was refused and audited, and did not move the resume point.
    assert_eq!(rig.engine.gateway(&rig.fp).unwrap().last_event_id, 1);
    let refused: Vec<_> = rig
        .audit_kinds()
        .into_iter()
        .filter(|(k, _)| k == kind::STREAM_FRAME_REJECTED)
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].1["reason"], "undecodable");
    let auth = server.last_stream_headers();
    assert!(
        auth.0.starts_with("Countersign-Device device=dev-1,"),
        "{auth:?}"
    );
    assert_eq!(auth.1, None);
    // Reconnecting resumes after the last verified event.
    server.set_stream(vec![
        (
            Some(1),
            "request",
            serde_json::to_string(&rig.sealed(1, rig.event(rig.body("s1")).0)).unwrap(),
        ),
        (None, "ready", "{\"through\":1}".into()),
    ]);
    rig.engine.sync().await.unwrap();
    assert_eq!(server.last_stream_headers().1.as_deref(), Some("1"));

    // Delivery: first a 503 (stays queued), then a receipt (delivered), idempotent on resend.
    server.set_decision_status(503);
    let out = rig.engine.deny("s1", "not today").await.unwrap();
    assert!(matches!(out.delivery, Delivery::Queued { .. }));
    server.set_decision_status(200);
    let (_, flushed) = rig.engine.sync().await.unwrap();
    assert_eq!(flushed.delivered, 1);
    let item = rig.engine.show("s1").unwrap();
    let d = item.decision.unwrap();
    assert_eq!(d.delivery, DeliveryState::Delivered);
    assert_eq!(item.state, RequestState::Denied);
    let receipt = rig.engine.submit(&rig.fp, &out.decision).await.unwrap();
    assert_eq!(Some(receipt), d.receipt);
    let kinds: Vec<String> = rig.audit_kinds().into_iter().map(|k| k.0).collect();
    assert!(
        kinds.ends_with(&[
            kind::DECISION_MADE.to_string(),
            kind::DECISION_RETRY.to_string(),
            kind::DECISION_SENT.to_string(),
            kind::RECEIPT_RECEIVED.to_string()
        ]),
        "{kinds:?}"
    );

    // An unsigned 4xx is not final: the decision stays queued, and the retry is audited
    // without the answer's sentence.
    rig.accept("s2", 10);
    server.set_decision_status(409);
    let out = rig.engine.deny("s2", "no").await.unwrap();
    assert!(
        matches!(&out.delivery, Delivery::Queued { .. }),
        "{:?}",
        out.delivery
    );
    // (Retries are aggregated per gateway: this second one in the minute is counted, and
    // written when the window closes.)
    let item = rig.engine.show("s2").unwrap();
    assert_eq!(item.state, RequestState::Pending);
    let error = item.decision.unwrap().last_error.unwrap_or_default();
    assert!(
        error.contains("not a verified refusal") && !error.contains("says no"),
        "{error}"
    );

    // A signed `request_closed` that the request's signed status does not bear out (still
    // pending) is not final either.
    let status = |state: RequestState, seq: u64| StatusUpdate {
        v: PROTOCOL_VERSION,
        request_id: "s2".into(),
        request_digest: rig.engine.show("s2").unwrap().digest,
        seq,
        state,
        approvals: 0,
        min_approvals: 1,
        votes: vec![],
        at: T0,
        stages: vec![],
        grant: None,
    };
    server.set_refusal(
        ErrorCode::RequestClosed,
        Some(status(RequestState::Pending, 2)),
    );
    let (_, flushed) = rig.engine.sync().await.unwrap();
    assert_eq!(flushed.queued, 1, "{flushed:?}");
    let kinds: Vec<String> = rig.audit_kinds().into_iter().map(|k| k.0).collect();
    assert!(
        kinds.contains(&kind::REFUSAL_UNCONFIRMED.to_string()),
        "{kinds:?}"
    );

    // Borne out by a final signed status, the refusal is final: refused with this device's own
    // sentence, and the status applied.
    server.set_refusal(
        ErrorCode::RequestClosed,
        Some(status(RequestState::Withdrawn, 3)),
    );
    let (_, flushed) = rig.engine.sync().await.unwrap();
    assert_eq!(flushed.refused, 1, "{flushed:?}");
    let (k, detail) = rig.audit_kinds().pop().unwrap();
    assert_eq!(k, kind::DECISION_REFUSED);
    assert_eq!(detail["code"], "request_closed");
    assert_eq!(detail["status_seq"], 3);
    assert_eq!(
        rig.engine.show("s2").unwrap().state,
        RequestState::Withdrawn
    );
    let item = rig.engine.show("s2").unwrap();
    let error = item.decision.unwrap().last_error.unwrap_or_default();
    assert!(!error.contains("says no"), "{error}");
    rig.engine.audit_verify().unwrap();

    // Closing the engine writes the counts of the open windows: no retry vanishes.
    let Rig {
        _dir: _keep,
        dir,
        engine,
        ..
    } = rig;
    drop(engine);
    let engine = Engine::open(&dir).unwrap();
    let retries: Vec<serde_json::Value> = engine
        .audit_entries()
        .unwrap()
        .into_iter()
        .filter(|(e, _)| e.kind == kind::DECISION_RETRY)
        .map(|(e, _)| e.detail)
        .collect();
    let counted: u64 = retries.iter().map(|d| d["count"].as_u64().unwrap()).sum();
    assert_eq!(retries.len(), 2, "{retries:?}");
    // The 503, then the unsigned 409 and the unconfirmed refusal counted in the same window.
    assert_eq!(retries[1]["count"], 2, "{retries:?}");
    assert_eq!(counted, 3, "{retries:?}");
    for d in &retries {
        assert!(!d.to_string().contains("says no"), "{d}");
    }
    engine.audit_verify().unwrap();
}

/// One engine per data directory: a second is refused with a message naming the holder, and the
/// directory is free again once the first is closed.
#[test]
fn a_second_instance_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Engine::open(dir.path()).unwrap();
    match Engine::open(dir.path()) {
        Err(e @ EngineError::InUse { .. }) => {
            assert_eq!(e.code(), "data_dir_in_use");
            let text = e.to_string();
            assert!(
                text.contains(&format!("process {}", std::process::id())),
                "{text}"
            );
        }
        other => panic!("a second instance was not refused: {other:?}"),
    }
    drop(first);
    Engine::open(dir.path()).unwrap();
}

/// A database file that is not SQLite (overwritten header, or garbage from the start) is
/// refused with `corrupt_store` and left as it was, for the user to restore or inspect.
#[test]
fn a_corrupt_database_file_is_refused_clearly_and_left_alone() {
    for damage in [
        |b: &mut Vec<u8>| b[..16].copy_from_slice(b"not a database!!"),
        |b: &mut Vec<u8>| *b = vec![0x5a; 8192],
    ] {
        let dir = tempfile::tempdir().unwrap();
        drop(Engine::open(dir.path()).unwrap());
        let db = dir.path().join(countersign_approver::DATABASE_FILE);
        let mut bytes = std::fs::read(&db).unwrap();
        damage(&mut bytes);
        std::fs::write(&db, &bytes).unwrap();
        match Engine::open(dir.path()) {
            Err(e @ EngineError::Corrupt(_)) => {
                assert_eq!(e.code(), "corrupt_store");
                assert!(
                    e.to_string().contains("not a readable SQLite database"),
                    "{e}"
                );
            }
            other => panic!("a corrupt database was opened: {other:?}"),
        }
        assert_eq!(
            std::fs::read(&db).unwrap(),
            bytes,
            "the damaged file was changed"
        );
    }
}

/// While `run` is active, `ingest` leaves a checkpoint that became due by entry count to the
/// background checkpointer (its fsync would delay the next event), which signs it once the
/// stream is quiet: nothing more has to arrive, and nothing has to shut down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_due_by_entry_count_is_signed_in_the_background_while_running() {
    let rig = Rig::new();
    // A first checkpoint now; the test clock stands still, so only the count can make the
    // next one due.
    let base = rig.engine.audit_checkpoint(true).unwrap().unwrap();
    let mut events = rig.engine.subscribe();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let engine = rig.engine.clone();
    let run = tokio::spawn(async move { engine.run(rx).await });
    // The gateway address refuses connections: the first report says the loop is running.
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !matches!(
            events.recv().await,
            Ok(countersign_approver::EngineEvent::ConnectionDown { .. })
        ) {}
    })
    .await
    .unwrap();
    let due = countersign_approver::audit::CHECKPOINT_EVERY_ENTRIES;
    for n in 0..due + 20 {
        rig.accept(&format!("bg{n}"), n + 1);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let through = loop {
        let s = rig.engine.audit_verify().unwrap();
        match s.checkpointed_through {
            Some(t) if t >= base + due => break t,
            _ if std::time::Instant::now() > deadline => {
                panic!("no checkpoint after {due} entries: {s:?}")
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    assert!(through <= rig.engine.audit_verify().unwrap().entries);
    stop.send(true).unwrap();
    run.await.unwrap().unwrap();
}

/// A gateway paired under protocol version 1 is kept as history, but its stream is not
/// connected: the device must pair again (and a resume point no verified event set would be
/// dropped first, not sent).
#[tokio::test]
async fn a_gateway_paired_under_protocol_1_asks_to_pair_again() {
    let server = http::FakeGateway::start().await;
    let rig = Rig::with_url(&server.url());
    rig.accept("old-1", 41);
    let conn = rusqlite::Connection::open(rig.dir.join("approver.db")).unwrap();
    conn.execute("UPDATE gateways SET protocol = 1, resume_digest = NULL", [])
        .unwrap();
    let (reports, _) = rig.engine.sync().await.unwrap();
    assert_eq!(
        reports[0].error_code.as_deref(),
        Some("gateway_refused"),
        "{reports:?}"
    );
    assert!(
        reports[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("protocol_upgraded"),
        "{reports:?}"
    );
    assert_eq!(
        server.last_stream_headers(),
        (String::new(), None),
        "nothing was sent"
    );
    // The history stays readable.
    assert_eq!(
        rig.engine.show("old-1").unwrap().state,
        RequestState::Pending
    );

    // Paired under version 2 but with a resume point no verified event set: resync first.
    conn.execute("UPDATE gateways SET protocol = 2", [])
        .unwrap();
    server.set_key(KeyPair::from_seed(&rig.gw_key.seed()));
    server.set_stream(vec![(None, "ready", "{\"through\":0}".into())]);
    rig.engine.sync().await.unwrap();
    assert_eq!(
        server.last_stream_headers().1,
        None,
        "the unverified resume point was not sent"
    );
    let (k, d) = rig
        .audit_kinds()
        .into_iter()
        .rfind(|(k, _)| k == kind::STREAM_RESYNC)
        .unwrap();
    assert_eq!(
        (k.as_str(), d["reason"].as_str()),
        (kind::STREAM_RESYNC, Some("unverified_resume_point"))
    );
    assert_eq!(d["old_resume_point"], 41);
}
