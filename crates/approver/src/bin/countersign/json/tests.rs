//! Each DTO with a real engine value, against the JSON the CLI has always printed for it:
//! a change to an engine type can no longer change `--json` output unnoticed. Protocol
//! values are embedded as the protocol serialises them; their own shape is pinned there.

use countersign_approver::{AnchorReport, AuditSummary, EngineEvent, FlushReport, SyncReport};
use countersign_protocol::{Decision, KeyPair, Risk};
use serde_json::{json, Value};

use super::*;

fn key() -> KeyPair {
    KeyPair::from_seed(&[7; 32])
}

fn value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap()
}

fn gateway_record() -> engine::GatewayRecord {
    engine::GatewayRecord {
        fingerprint: "f00d".into(),
        url: url::Url::parse("http://127.0.0.1:8080/").unwrap(),
        gateway_key: key().public(),
        name: "Gateway".into(),
        approver: "alice@example.com".into(),
        device_id: "dev-1".into(),
        webauthn_origin: url::Url::parse("https://localhost").unwrap(),
        tls_pin: None,
        paired_at: 1_700_000_000,
        last_event_id: 12,
    }
}

fn signed_request() -> Signed<ApprovalRequest> {
    let body = ApprovalRequest {
        v: 1,
        id: "req-1".into(),
        gateway: "f00d".into(),
        action: "sql.exec".into(),
        resource: "prod-db".into(),
        risk: Risk::High,
        summary: "truncate sessions".into(),
        detail: "TRUNCATE sessions;".into(),
        requester: "ci-bot".into(),
        reason: "cleanup".into(),
        created_at: 1_700_000_000,
        not_before: 1_700_000_000,
        expires_at: 1_700_000_600,
        approvers: vec!["alice@example.com".into()],
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
    };
    Signed::sign(&key(), body).unwrap()
}

fn receipt() -> Signed<Receipt> {
    let body = Receipt {
        v: 1,
        decision_id: "dec-1".into(),
        decision_digest: Digest::of_bytes(b"decision"),
        request_id: "req-1".into(),
        request_digest: Digest::of_bytes(b"request"),
        approver: "alice@example.com".into(),
        verdict: Verdict::Approve,
        accepted_at: 1_700_000_100,
        status_seq: 2,
        request_state: RequestState::Approved,
        approvals: 1,
        min_approvals: 1,
        stages: vec![],
        challenge_digest: None,
    };
    Signed::sign(&key(), body).unwrap()
}

fn inbox_item(decision: Option<engine::LocalDecision>) -> engine::InboxItem {
    engine::InboxItem {
        gateway: "f00d".into(),
        gateway_name: "Gateway".into(),
        approver: "alice@example.com".into(),
        request: signed_request(),
        digest: Digest::of_bytes(b"request"),
        challenge: json!({"publicKey": {"challenge": "abc", "rpId": "localhost"}}),
        state: RequestState::Pending,
        approvals: 0,
        min_approvals: 1,
        votes: vec![Vote {
            approver: "bob@example.com".into(),
            verdict: Verdict::Deny,
            at: 1_700_000_050,
            person: None,
            stages: vec![],
        }],
        stages: vec![],
        grant: None,
        membership: None,
        received_at: 1_700_000_001,
        decision,
    }
}

fn decision_outcome(delivery: engine::Delivery) -> engine::DecisionOutcome {
    let body = Decision {
        v: 1,
        decision_id: "dec-1".into(),
        request_id: "req-1".into(),
        request_digest: Digest::of_bytes(b"request"),
        gateway: "f00d".into(),
        approver: "alice@example.com".into(),
        device_id: "dev-1".into(),
        verdict: Verdict::Approve,
        reason: None,
        match_code: None,
        decided_at: 1_700_000_100,
        assertion: None,
    };
    engine::DecisionOutcome {
        decision: Signed::sign(&key(), body).unwrap(),
        delivery,
    }
}

#[test]
fn paired() {
    let g = gateway_record();
    let line = Paired::new(&g, "software");
    assert_eq!(
        value(&line),
        json!({
            "approver": "alice@example.com", "authenticator": "software",
            "device_id": "dev-1", "fingerprint": "f00d", "gateway": "Gateway",
            "url": "http://127.0.0.1:8080/",
        })
    );
}

#[test]
fn gateway_in_field_order() {
    let g = gateway_record();
    let line = Gateway::from(&g);
    let key = key().public().to_base64();
    assert_eq!(
        value(&line),
        json!({
            "kind": "countersign",
            "fingerprint": "f00d", "url": "http://127.0.0.1:8080/", "gateway_key": key,
            "name": "Gateway", "approver": "alice@example.com", "device_id": "dev-1",
            "webauthn_origin": "https://localhost/", "tls_pin": null,
            "paired_at": 1_700_000_000, "last_event_id": 12,
        })
    );
    assert_eq!(
        line.line().unwrap(),
        format!(
            r#"{{"kind":"countersign","fingerprint":"f00d","url":"http://127.0.0.1:8080/","gateway_key":"{key}","name":"Gateway","approver":"alice@example.com","device_id":"dev-1","webauthn_origin":"https://localhost/","tls_pin":null,"paired_at":1700000000,"last_event_id":12}}"#
        )
    );
}

#[test]
fn request_pending_and_effectively_expired() {
    let item = inbox_item(None);
    let expected = |effective: &str| {
        json!({
            "approvals": 0,
            "challenge": {"publicKey": {"challenge": "abc", "rpId": "localhost"}},
            "decision": null,
            "digest": Digest::of_bytes(b"request").to_hex(),
            "effective_state": effective,
            "gateway": "f00d",
            "gateway_name": "Gateway",
            "grant": null,
            "min_approvals": 1,
            "needs_acknowledgement": false,
            "received_at": 1_700_000_001,
            "request": value(&item.request),
            "stages": [{"name": "approvers", "approvals": 0, "min": 1, "satisfied": false}],
            "state": "pending",
            "votes": [{"approver": "bob@example.com", "verdict": "deny", "at": 1_700_000_050}],
            "why_asked": ["named in stage approvers"],
        })
    };
    assert_eq!(
        value(&Request::new(&item, 1_700_000_002)),
        expected("pending")
    );
    assert_eq!(
        value(&Request::new(&item, 1_700_000_600)),
        expected("expired")
    );
    // Sorted at every level, the signed request's body included.
    let line = Request::new(&item, 1_700_000_002).line().unwrap();
    assert!(line.starts_with(r#"{"approvals":0,"challenge":{"publicKey":{"challenge":"abc","rpId":"localhost"}},"decision":null,"digest":"#), "{line}");
    assert!(line.contains(r#","request":{"body":{"action":"sql.exec","approvers":["alice@example.com"],"created_at":1700000000,"#), "{line}");
    assert!(line.ends_with(r#","state":"pending","votes":[{"approver":"bob@example.com","at":1700000050,"verdict":"deny"}],"why_asked":["named in stage approvers"]}"#), "{line}");
}

#[test]
fn request_with_this_devices_decision() {
    let receipt = receipt();
    let item = inbox_item(Some(engine::LocalDecision {
        decision_id: "dec-1".into(),
        verdict: Verdict::Approve,
        decided_at: 1_700_000_100,
        delivery: engine::DeliveryState::Delivered,
        last_error: None,
        receipt: Some(receipt.clone()),
    }));
    assert_eq!(
        value(&Request::new(&item, 1_700_000_002))["decision"],
        json!({
            "decided_at": 1_700_000_100, "decision_id": "dec-1", "delivery": "delivered",
            "last_error": null, "receipt": value(&receipt), "verdict": "approve",
        })
    );
    for (state, text) in [
        (engine::DeliveryState::Queued, "queued"),
        (engine::DeliveryState::Refused, "refused"),
    ] {
        assert_eq!(value(&DeliveryState::from(state)), json!(text));
    }
}

#[test]
fn decided_for_each_delivery() {
    let receipt = receipt();
    let cases = [
        (
            engine::Delivery::Delivered {
                receipt: Box::new(receipt.clone()),
            },
            json!({"delivery": "delivered", "receipt": value(&receipt)}),
        ),
        (
            engine::Delivery::Refused {
                code: "wrong_match_code".into(),
                message: "no".into(),
            },
            json!({"delivery": "refused", "code": "wrong_match_code", "message": "no"}),
        ),
        (
            engine::Delivery::Queued {
                error: "unreachable".into(),
            },
            json!({"delivery": "queued", "error": "unreachable"}),
        ),
        (engine::Delivery::InFlight, json!({"delivery": "in_flight"})),
        (
            engine::Delivery::Settled {
                state: engine::DeliveryState::Delivered,
            },
            json!({"delivery": "settled", "state": "delivered"}),
        ),
    ];
    for (delivery, expected) in cases {
        let out = decision_outcome(delivery);
        assert_eq!(
            value(&Decided::new(&out, None)),
            json!({
                "decision_id": "dec-1", "delivery": expected, "request_id": "req-1",
                "verdict": "approve",
            })
        );
    }
    let out = decision_outcome(engine::Delivery::Refused {
        code: "wrong_match_code".into(),
        message: "no".into(),
    });
    assert_eq!(
        Decided::new(&out, Some("software")).line().unwrap(),
        r#"{"authenticator":"software","decision_id":"dec-1","delivery":{"code":"wrong_match_code","delivery":"refused","message":"no"},"request_id":"req-1","verdict":"approve"}"#
    );
}

#[test]
fn report_ack_in_field_order() {
    let ack = ReportAck {
        v: 1,
        report_id: "rep-1".into(),
        request_id: "req-1".into(),
        requester: "ci-bot".into(),
        denied: vec!["req-2".into()],
    };
    assert_eq!(
        ack.line().unwrap(),
        r#"{"v":1,"report_id":"rep-1","request_id":"req-1","requester":"ci-bot","denied":["req-2"]}"#
    );
}

#[test]
fn sync_lines() {
    let report = SyncReport {
        gateway: "f00d".into(),
        name: "Gateway".into(),
        events: 3,
        error: Some("unreachable".into()),
        error_code: Some("gateway_unreachable".into()),
        log_history_changed: None,
    };
    assert_eq!(
        value(&Synced::from(&report)),
        json!({
            "gateway": "f00d", "name": "Gateway", "events": 3, "error": "unreachable",
            "error_code": "gateway_unreachable", "log_history_changed": null,
        })
    );
    assert_eq!(
        Synced::from(&report).line().unwrap(),
        r#"{"gateway":"f00d","name":"Gateway","events":3,"error":"unreachable","error_code":"gateway_unreachable","log_history_changed":null}"#
    );
    let flushed = FlushReport {
        delivered: 1,
        refused: 2,
        queued: 3,
    };
    assert_eq!(
        Outbox::from(flushed).line().unwrap(),
        r#"{"outbox":{"delivered":1,"queued":3,"refused":2}}"#
    );
}

#[test]
fn audit_verified() {
    let head = Digest::of_bytes(b"head");
    let summary = AuditSummary {
        entries: 31,
        head,
        checkpoints: 11,
        checkpointed_through: Some(31),
    };
    let anchors = [
        AnchorReport {
            gateway: "f00d".into(),
            name: "Gateway".into(),
            held: Some(23),
            uploaded: Some(31),
            damage: None,
            problem: None,
        },
        AnchorReport {
            gateway: "beef".into(),
            name: "Other".into(),
            held: None,
            uploaded: None,
            damage: Some(Damage::RolledBack),
            problem: Some("rolled back".into()),
        },
    ];
    assert_eq!(
        value(&AuditVerified::new(&summary, &anchors)),
        json!({
            "checkpointed_through": 31, "checkpoints": 11, "entries": 31,
            "gateways": [
                {"damage": null, "gateway": "f00d", "held": 23, "name": "Gateway",
                 "problem": null, "uploaded": 31},
                {"damage": "rolled_back", "gateway": "beef", "held": null, "name": "Other",
                 "problem": "rolled back", "uploaded": null},
            ],
            "head": head.to_hex(), "ok": true,
        })
    );
    assert_eq!(
        AuditVerified::new(&summary, &[]).line().unwrap(),
        format!(
            r#"{{"checkpointed_through":31,"checkpoints":11,"entries":31,"gateways":[],"head":"{}","ok":true}}"#,
            head.to_hex()
        )
    );
}

#[test]
fn watch_notices() {
    let item = inbox_item(None);
    let notice = Notice::Request {
        request: Box::new(Request::new(&item, 1_700_000_002)),
    };
    assert_eq!(
        value(&notice),
        json!({"type": "request", "request": value(&Request::new(&item, 1_700_000_002))})
    );
    let resolved = Notice::Resolved {
        request_id: "req-1",
        state: RequestState::Denied,
    };
    assert_eq!(
        resolved.line().unwrap(),
        r#"{"request_id":"req-1","state":"denied","type":"resolved"}"#
    );
}

#[test]
fn watch_events_tag_first() {
    let cases = [
        (
            EngineEvent::RequestRejected {
                gateway: "f00d".into(),
                request_id: None,
                reason: "bad signature".into(),
            },
            r#"{"type":"request_rejected","gateway":"f00d","request_id":null,"reason":"bad signature"}"#,
        ),
        (
            EngineEvent::ConnectionUp {
                gateway: "f00d".into(),
            },
            r#"{"type":"connection_up","gateway":"f00d"}"#,
        ),
        (
            EngineEvent::ConnectionDown {
                gateway: "f00d".into(),
                error: "closed".into(),
            },
            r#"{"type":"connection_down","gateway":"f00d","error":"closed"}"#,
        ),
        (
            EngineEvent::DecisionDelivered {
                decision_id: "dec-1".into(),
                request_id: "req-1".into(),
                request_state: RequestState::Approved,
            },
            r#"{"type":"decision_delivered","decision_id":"dec-1","request_id":"req-1","request_state":"approved"}"#,
        ),
        (
            EngineEvent::DecisionRefused {
                decision_id: "dec-1".into(),
                request_id: "req-1".into(),
                code: "request_expired".into(),
                message: "too late".into(),
            },
            r#"{"type":"decision_refused","decision_id":"dec-1","request_id":"req-1","code":"request_expired","message":"too late"}"#,
        ),
    ];
    for (event, expected) in cases {
        let line = Event::from_engine(&event).unwrap().line().unwrap();
        assert_eq!(line, expected);
    }
    // Arrivals and resolutions come through the notifier instead.
    let received = EngineEvent::RequestReceived {
        gateway: "f00d".into(),
        request_id: "req-1".into(),
    };
    assert!(Event::from_engine(&received).is_none());
}

#[test]
fn failure() {
    assert_eq!(
        Failed::new("unknown_request", "No request matches `x`.")
            .line()
            .unwrap(),
        r#"{"error":{"code":"unknown_request","message":"No request matches `x`."}}"#
    );
}
