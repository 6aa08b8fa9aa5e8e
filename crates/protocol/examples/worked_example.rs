//! The worked example of `docs/protocol.md`, section "Worked example".
//!
//! From fixed key seeds and fixed messages it prints every value an independent implementation
//! has to reproduce: the JCS bytes, the domain-separated signing messages, the SHA-256 digests,
//! the public keys and fingerprints, and the Ed25519 signatures (which are deterministic).
//!
//! Run it with `cargo run -p countersign-protocol --example worked_example`. The test
//! `crates/protocol/tests/worked_example.rs` checks that `docs/protocol.md` contains this output
//! verbatim, so the document cannot drift from the code.

use std::error::Error;
use std::fmt::Write as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use countersign_protocol::api::ErrorCode;
use countersign_protocol::audit::{AuditEntry, GENESIS};
use countersign_protocol::canonical::{domain, signing_message, to_canonical_bytes};
use countersign_protocol::challenge::Challenge;
use countersign_protocol::{
    ApprovalRequest, Audience, Decision, Digest, Event, KeyPair, Mode, PasskeyInfo, PasskeyList,
    PasskeyRemove, PolicyRef, Receipt, Refusal, RequestState, Risk, Signed, Stage, StageProgress,
    StatusUpdate, StreamEvent, Verdict, Vote, AUDIT_VERSION, PROTOCOL_VERSION,
};

/// The gateway's Ed25519 seed: 32 bytes of 0x01.
pub const GATEWAY_SEED: [u8; 32] = [0x01; 32];
/// The device's Ed25519 seed: 32 bytes of 0x02.
pub const DEVICE_SEED: [u8; 32] = [0x02; 32];
/// How many leading bytes of each signing message are printed in hex.
pub const HEAD_BYTES: usize = 32;

/// The fixed nonce of the example `Authorization` header (16 bytes, lowercase hex).
pub const DEVICE_AUTH_NONCE: &str = "00112233445566778899aabbccddeeff";

/// 2026-01-01T00:00:00Z.
pub const T0: i64 = 1_767_225_600;

/// The fixed approval request, as the gateway with [`GATEWAY_SEED`] would sign it.
pub fn request(gateway_fingerprint: &str) -> ApprovalRequest {
    ApprovalRequest {
        v: PROTOCOL_VERSION,
        id: "7d0f3c2a-5b1e-4c8a-9f3d-2e6b8a1c4d59".into(),
        gateway: gateway_fingerprint.into(),
        action: "sql.exec".into(),
        resource: "prod-db".into(),
        risk: Risk::High,
        summary: "Delete expired sessions".into(),
        detail: "DELETE FROM sessions WHERE expires_at < now();".into(),
        requester: "ci-deploy".into(),
        reason: "Nightly cleanup, ticket OPS-1234".into(),
        created_at: T0,
        not_before: T0,
        expires_at: T0 + 600,
        approvers: vec![],
        min_approvals: 0,
        match_required: true,
        deny_needs_passkey: false,
        stages: vec![
            Stage {
                name: "dba".into(),
                approvers: None,
                group: Some("dba".into()),
                min: 1,
            },
            Stage {
                name: "managers".into(),
                approvers: None,
                group: Some("managers".into()),
                min: 1,
            },
        ],
        mode: Mode::Ask,
        distinct_people: true,
        requester_person: Some("carol".into()),
        policy: Some(PolicyRef {
            rule: "peer_and_manager".into(),
            policy_hash: Digest::of_bytes(b"example policy"),
            directory_hash: Digest::of_bytes(b"example directory"),
        }),
        grant_seconds: Some(900),
        windows: vec!["weekdays 08:00-18:00 Europe/Berlin".into()],
    }
}

/// The fixed decision of alice's device. The assertion is a small placeholder object that only
/// shows how a nested JSON value is canonicalised; a gateway would refuse it as a passkey
/// assertion.
pub fn decision(
    gateway_fingerprint: &str,
    request_digest: Digest,
) -> Result<Decision, Box<dyn Error>> {
    Ok(Decision {
        v: PROTOCOL_VERSION,
        decision_id: "3f6c1e9a-2b7d-4e0f-8a15-c94d7b2e6f30".into(),
        request_id: "7d0f3c2a-5b1e-4c8a-9f3d-2e6b8a1c4d59".into(),
        request_digest,
        gateway: gateway_fingerprint.into(),
        approver: "alice@example.com".into(),
        device_id: "9b2d4f6a-1c3e-4a5b-8d7f-0e1c2b3a4d5e".into(),
        verdict: Verdict::Approve,
        reason: None,
        match_code: Some("482913".into()),
        decided_at: T0 + 42,
        assertion: Some(serde_json::from_str(
            r#"{"type":"public-key","id":"AAECAw","rawId":"AAECAw",
                "response":{"clientDataJSON":"e30","authenticatorData":"AA","signature":"AA"},
                "extensions":{}}"#,
        )?),
    })
}

/// When the device co-signs the example checkpoint.
pub const COSIGNED_AT: u64 = 1_767_225_670;

/// The challenge the gateway issues alice for the request (3.24): its nonce is 32 bytes of
/// `0x03`, and alice has one passkey.
pub fn challenge(gateway_fingerprint: &str, request_digest: Digest) -> Challenge {
    Challenge {
        v: PROTOCOL_VERSION,
        gateway: gateway_fingerprint.into(),
        request_id: "7d0f3c2a-5b1e-4c8a-9f3d-2e6b8a1c4d59".into(),
        request_digest,
        approver: "alice@example.com".into(),
        nonce: URL_SAFE_NO_PAD.encode([3u8; 32]),
        rp_id: "gateway.example.com".into(),
        origin: "https://gateway.example.com".into(),
        allow_credentials: vec![PASSKEY_B.into()],
        user_verification: "required".into(),
        issued_at: T0,
        expires_at: T0 + 600,
    }
}

/// The gateway's receipt for [`decision`]: one of two approvals, so the request stays pending.
pub fn receipt(d: &Decision, decision_digest: Digest) -> Receipt {
    Receipt {
        v: PROTOCOL_VERSION,
        decision_id: d.decision_id.clone(),
        decision_digest,
        request_id: d.request_id.clone(),
        request_digest: d.request_digest,
        approver: d.approver.clone(),
        verdict: d.verdict,
        accepted_at: T0 + 43,
        status_seq: 2,
        request_state: RequestState::Pending,
        approvals: 1,
        min_approvals: 2,
        stages: vec![
            StageProgress {
                name: "dba".into(),
                approvals: 1,
                min: 1,
                satisfied: true,
            },
            StageProgress {
                name: "managers".into(),
                approvals: 0,
                min: 1,
                satisfied: false,
            },
        ],
        // A placeholder assertion answers no signed challenge (protocol.md 3.24).
        challenge_digest: None,
    }
}

/// The status the receipt's decision produced (`seq` 2), as pushed to the approvers.
pub fn status(r: &Receipt) -> StatusUpdate {
    StatusUpdate {
        v: PROTOCOL_VERSION,
        request_id: r.request_id.clone(),
        request_digest: r.request_digest,
        seq: r.status_seq,
        state: r.request_state,
        approvals: r.approvals,
        min_approvals: r.min_approvals,
        votes: vec![Vote {
            approver: r.approver.clone(),
            verdict: r.verdict,
            at: r.accepted_at,
            person: Some("alice".into()),
            stages: vec![0],
        }],
        at: r.accepted_at,
        stages: r.stages.clone(),
        grant: None,
    }
}

/// The stream event (id 17) that carries `status` to alice's devices.
pub fn event(gateway_fingerprint: &str, status: Signed<StatusUpdate>) -> Event {
    Event {
        v: PROTOCOL_VERSION,
        gateway: gateway_fingerprint.into(),
        id: 17,
        at: T0 + 43,
        audience: Audience::approver("alice@example.com"),
        payload: StreamEvent::Status {
            status: Box::new(status),
        },
    }
}

/// The same status as event 18, sent once to the request's groups: how the gateway sends a
/// request's events when it has more addressees than `prechallenge_max` (protocol.md 3.12).
pub fn group_event(gateway_fingerprint: &str, status: Signed<StatusUpdate>) -> Event {
    Event {
        id: 18,
        audience: Audience::wide(&[], &["dba".into(), "managers".into()]),
        ..event(gateway_fingerprint, status)
    }
}

/// The gateway's refusal of the same decision sent again under a new decision id, once the
/// approver has decided (`already_decided`, at status `seq` 2).
pub fn refusal(gateway_fingerprint: &str, d: &Decision, decision_digest: Digest) -> Refusal {
    Refusal {
        v: PROTOCOL_VERSION,
        gateway: gateway_fingerprint.into(),
        decision_id: d.decision_id.clone(),
        decision_digest,
        request_id: d.request_id.clone(),
        request_digest: d.request_digest,
        approver: d.approver.clone(),
        code: ErrorCode::AlreadyDecided,
        refused_at: T0 + 50,
        status_seq: Some(2),
    }
}

/// The body a device signs for its `Authorization` header (`GET /v2/stream`), with a fixed
/// nonce. Keys are written in canonical order already; JCS sorts them in any case.
pub fn device_auth_body(device_id: &str) -> serde_json::Value {
    serde_json::json!({
        "device": device_id,
        "method": "GET",
        "nonce": DEVICE_AUTH_NONCE,
        "path": "/v2/stream",
        "ts": T0 + 5,
    })
}

/// The first entry of an audit chain, recording the request's arrival.
pub fn audit_entry(gateway_fingerprint: &str, request_digest: Digest) -> AuditEntry {
    AuditEntry {
        v: AUDIT_VERSION,
        seq: 1,
        at: T0 + 1,
        kind: "request.received".into(),
        request_id: Some("7d0f3c2a-5b1e-4c8a-9f3d-2e6b8a1c4d59".into()),
        detail: serde_json::json!({
            "gateway": gateway_fingerprint,
            "request_digest": request_digest,
        }),
        prev: GENESIS,
    }
}

/// Writes one `key = value` line with the keys aligned.
fn kv(out: &mut String, key: &str, value: impl std::fmt::Display) -> Result<(), Box<dyn Error>> {
    writeln!(out, "{key:<24} = {value}")?;
    Ok(())
}

fn utf8(bytes: Vec<u8>) -> Result<String, Box<dyn Error>> {
    Ok(String::from_utf8(bytes)?)
}

/// Writes the domain, JCS, signing-message length and head, and SHA-256 of one body.
fn message<T: serde::Serialize>(
    out: &mut String,
    label: &str,
    dom: &str,
    body: &T,
) -> Result<Digest, Box<dyn Error>> {
    let jcs = utf8(to_canonical_bytes(body)?)?;
    let msg = signing_message(dom, body)?;
    let digest = Digest::of_bytes(&msg);
    kv(out, &format!("{label}.domain"), dom)?;
    kv(out, &format!("{label}.jcs"), &jcs)?;
    kv(out, &format!("{label}.jcs_len"), jcs.len())?;
    kv(out, &format!("{label}.message_len"), msg.len())?;
    kv(
        out,
        &format!("{label}.message_head"),
        hex::encode(&msg[..HEAD_BYTES.min(msg.len())]),
    )?;
    kv(out, &format!("{label}.sha256"), digest)?;
    Ok(digest)
}

/// Two credential ids (unpadded base64url) for the passkey messages.
const PASSKEY_A: &str = "q7dN3w9fZk2YpX4sVb6Tg1RcH8uJ0aLe";
const PASSKEY_B: &str = "M2xQ9vR4tY7uI1oP3aS5dF8gH0jK6lZc";

/// The complete output of the example, as printed by `main`.
pub fn render() -> Result<String, Box<dyn Error>> {
    let mut out = String::new();
    let gateway = KeyPair::from_seed(&GATEWAY_SEED);
    let device = KeyPair::from_seed(&DEVICE_SEED);
    let gw_fp = gateway.public().fingerprint();

    writeln!(out, "# Keys")?;
    kv(&mut out, "gateway.seed", hex::encode(GATEWAY_SEED))?;
    kv(&mut out, "gateway.public_key", gateway.public().to_base64())?;
    kv(
        &mut out,
        "gateway.public_hex",
        hex::encode(gateway.public().to_bytes()),
    )?;
    kv(&mut out, "gateway.fingerprint", &gw_fp)?;
    kv(&mut out, "device.seed", hex::encode(DEVICE_SEED))?;
    kv(&mut out, "device.public_key", device.public().to_base64())?;
    kv(
        &mut out,
        "device.public_hex",
        hex::encode(device.public().to_bytes()),
    )?;
    kv(
        &mut out,
        "device.fingerprint",
        device.public().fingerprint(),
    )?;

    writeln!(out)?;
    writeln!(out, "# ApprovalRequest, signed by the gateway key")?;
    let req = Signed::sign(&gateway, request(&gw_fp))?;
    let request_digest = message(&mut out, "request", domain::REQUEST, &req.body)?;
    kv(&mut out, "request.signature", req.signature.to_base64())?;
    kv(&mut out, "request.wire", serde_json::to_string(&req)?)?;

    writeln!(out)?;
    writeln!(
        out,
        "# Challenge for alice on that request, signed by the gateway key (3.24)"
    )?;
    let ch = Signed::sign(&gateway, challenge(&gw_fp, request_digest))?;
    let challenge_digest = message(&mut out, "challenge", domain::CHALLENGE, &ch.body)?;
    kv(&mut out, "challenge.signature", ch.signature.to_base64())?;
    kv(
        &mut out,
        "challenge.webauthn",
        countersign_protocol::challenge::webauthn_challenge(&challenge_digest),
    )?;

    writeln!(out)?;
    writeln!(out, "# Decision, signed by the device key")?;
    let dec = Signed::sign(&device, decision(&gw_fp, request_digest)?)?;
    let decision_digest = message(&mut out, "decision", domain::DECISION, &dec.body)?;
    kv(&mut out, "decision.signature", dec.signature.to_base64())?;

    writeln!(out)?;
    writeln!(out, "# Receipt, signed by the gateway key")?;
    let rec = Signed::sign(&gateway, receipt(&dec.body, decision_digest))?;
    message(&mut out, "receipt", domain::RECEIPT, &rec.body)?;
    kv(&mut out, "receipt.signature", rec.signature.to_base64())?;

    writeln!(out)?;
    writeln!(out, "# StatusUpdate at seq 2, signed by the gateway key")?;
    let st = Signed::sign(&gateway, status(&rec.body))?;
    message(&mut out, "status", domain::STATUS, &st.body)?;
    kv(&mut out, "status.signature", st.signature.to_base64())?;

    writeln!(out)?;
    writeln!(
        out,
        "# Event 17 carrying that status, signed by the gateway key"
    )?;
    let ev = Signed::sign(&gateway, event(&gw_fp, st.clone()))?;
    message(&mut out, "event", domain::EVENT, &ev.body)?;
    kv(&mut out, "event.signature", ev.signature.to_base64())?;
    kv(&mut out, "event.wire", serde_json::to_string(&ev)?)?;

    writeln!(out)?;
    writeln!(
        out,
        "# Event 18: the same status sent once to the groups dba and managers, signed by the gateway key"
    )?;
    let gev = Signed::sign(&gateway, group_event(&gw_fp, st))?;
    message(&mut out, "group_event", domain::EVENT, &gev.body)?;
    kv(&mut out, "group_event.signature", gev.signature.to_base64())?;

    writeln!(out)?;
    writeln!(
        out,
        "# Refusal of a later decision by the same approver, signed by the gateway key"
    )?;
    let mut again = dec.body.clone();
    again.decision_id = "5a8e2c71-0d4b-4f3a-9c6e-1b7d3f5a2e84".into();
    again.decided_at = T0 + 49;
    let again_digest = Digest::of(domain::DECISION, &again)?;
    kv(&mut out, "refused_decision.sha256", again_digest)?;
    let rf = Signed::sign(&gateway, refusal(&gw_fp, &again, again_digest))?;
    message(&mut out, "refusal", domain::REFUSAL, &rf.body)?;
    kv(&mut out, "refusal.signature", rf.signature.to_base64())?;

    writeln!(out)?;
    writeln!(out, "# Device Authorization header for GET /v2/stream")?;
    let auth_body = device_auth_body(&dec.body.device_id);
    message(&mut out, "device_auth", domain::DEVICE_AUTH, &auth_body)?;
    let auth_sig = device.sign(domain::DEVICE_AUTH, &auth_body)?;
    kv(&mut out, "device_auth.signature", auth_sig.to_base64())?;
    kv(
        &mut out,
        "device_auth.header",
        format!(
            "Countersign-Device device={}, ts={}, nonce={}, sig={}",
            dec.body.device_id,
            T0 + 5,
            DEVICE_AUTH_NONCE,
            auth_sig.to_base64()
        ),
    )?;

    writeln!(out)?;
    writeln!(out, "# PasskeyRemove, signed by the device key")?;
    let remove = Signed::sign(
        &device,
        PasskeyRemove {
            v: PROTOCOL_VERSION,
            device_id: dec.body.device_id.clone(),
            cred_id: PASSKEY_A.into(),
            at: T0 + 60,
        },
    )?;
    message(
        &mut out,
        "passkey_remove",
        domain::PASSKEY_CHANGE,
        &remove.body,
    )?;
    kv(
        &mut out,
        "passkey_remove.signature",
        remove.signature.to_base64(),
    )?;

    writeln!(out)?;
    writeln!(
        out,
        "# The PasskeyList answering it, signed by the gateway key"
    )?;
    let list = Signed::sign(
        &gateway,
        PasskeyList {
            v: PROTOCOL_VERSION,
            approver: dec.body.approver.clone(),
            passkeys: vec![PasskeyInfo {
                cred_id: PASSKEY_B.into(),
                aaguid: Some("11111111-2222-4333-8444-555555555555".into()),
                device_id: Some(dec.body.device_id.clone()),
                created_at: T0 - 86_400,
                last_used_at: Some(T0 + 48),
            }],
            at: T0 + 60,
        },
    )?;
    message(&mut out, "passkey_list", domain::PASSKEYS, &list.body)?;
    kv(
        &mut out,
        "passkey_list.signature",
        list.signature.to_base64(),
    )?;

    writeln!(out)?;
    writeln!(out, "# Audit entry 1 (prev = genesis)")?;
    let entry = audit_entry(&gw_fp, request_digest);
    message(&mut out, "audit", domain::AUDIT_ENTRY, &entry)?;

    writeln!(out)?;
    writeln!(
        out,
        "# Log checkpoint of the tree of that one entry, and the device's cosignature (9.6, 9.8)"
    )?;
    let leaf = countersign_protocol::log::leaf_hash(&entry)?;
    kv(&mut out, "log.leaf_hash", hex::encode(leaf.0))?;
    let note = countersign_protocol::log::sign_checkpoint(&gateway, 1, &leaf);
    kv(&mut out, "log.checkpoint", note.escape_debug())?;
    let cp = countersign_protocol::log::verify_checkpoint(&note, &gateway.public())?;
    let cosig = countersign_protocol::log::cosign(
        &device,
        "9b2d4f6a-1c3e-4a5b-8d7f-0e1c2b3a4d5e",
        &cp,
        COSIGNED_AT,
    );
    let line = cosig.verify(&cp, &device.public())?;
    kv(&mut out, "log.cosignature_line", line)?;
    Ok(out)
}

fn main() -> Result<(), Box<dyn Error>> {
    print!("{}", render()?);
    Ok(())
}
