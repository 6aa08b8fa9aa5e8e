//! Property tests (proptest) for the canonical form and the signatures over it:
//!
//! - JCS is a fixed point: canonicalising the parse of a canonical text gives the same bytes,
//!   whatever the value, its member order or its whitespace;
//! - a message survives canonical encoding and strict decoding unchanged;
//! - a signature made over the canonical form still verifies after the message was re-encoded
//!   in any other JSON layout, and stops verifying when any signed field changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use countersign_protocol::canonical::to_canonical_bytes;
use countersign_protocol::types::Decode;
use countersign_protocol::{ApprovalRequest, Decision, Digest, KeyPair, Risk, Signed, Verdict};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Any JSON value: every Unicode scalar in strings and keys, integers across the exactly
/// representable range, finite floats, nesting.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53)..(1i64 << 53)).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Printable ASCII without spaces, as identifiers must be.
fn ident(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[!-~]{{1,{max}}}")).unwrap()
}

/// Free text: any Unicode, bidi and control characters included (display escapes them; the
/// protocol carries them exactly), never empty after trimming.
fn text(max_chars: usize) -> impl Strategy<Value = String> {
    (
        any::<char>(),
        prop::collection::vec(any::<char>(), 0..max_chars),
    )
        .prop_map(|(first, rest)| {
            let first = if first.is_whitespace() { 'x' } else { first };
            std::iter::once(first).chain(rest).collect()
        })
}

fn request() -> impl Strategy<Value = ApprovalRequest> {
    (
        (ident(64), ident(64), ident(32), text(60), text(60)),
        (text(400), ident(40), text(120)),
        (0i64..4_000_000_000, 0i64..100_000, 1i64..1_000_000),
        prop::collection::vec(ident(40), 1..5),
        any::<bool>(),
        prop_oneof![Just(Risk::Low), Just(Risk::Medium), Just(Risk::High)],
    )
        .prop_flat_map(
            |(
                (id, gateway, action, resource, summary),
                (detail, requester, reason),
                times,
                approvers,
                match_required,
                risk,
            )| {
                let n = approvers.len() as u32;
                (1..=n).prop_map(move |min_approvals| ApprovalRequest {
                    v: countersign_protocol::PROTOCOL_VERSION,
                    id: id.clone(),
                    gateway: gateway.clone(),
                    action: action.clone(),
                    resource: resource.clone(),
                    risk,
                    summary: summary.clone(),
                    detail: detail.clone(),
                    requester: requester.clone(),
                    reason: reason.clone(),
                    created_at: times.0,
                    not_before: times.0 + times.1.min(times.2),
                    expires_at: times.0 + times.2,
                    approvers: approvers.clone(),
                    min_approvals,
                    match_required,
                    // Both forms: omitted (false) and present (true) round-trip and verify.
                    deny_needs_passkey: min_approvals % 2 == 0,
                    stages: vec![],
                    mode: countersign_protocol::Mode::Ask,
                    distinct_people: true,
                    requester_person: None,
                    policy: None,
                    grant_seconds: None,
                    windows: vec![],
                })
            },
        )
}

/// `v` re-encoded in another layout: pretty-printed, with members in reverse order.
fn relayout(v: &Value) -> String {
    fn reverse(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                // serde_json's map keeps keys sorted, so write the reversed order by hand.
                Value::Object(m.iter().map(|(k, x)| (k.clone(), reverse(x))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(reverse).collect()),
            other => other.clone(),
        }
    }
    fn write(v: &Value, out: &mut String, depth: usize) {
        match v {
            Value::Object(m) => {
                out.push_str("{\n");
                let n = m.len();
                for (i, (k, x)) in m.iter().rev().enumerate() {
                    out.push_str(&"  ".repeat(depth + 1));
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push_str(" : ");
                    write(x, out, depth + 1);
                    if i + 1 < n {
                        out.push(',');
                    }
                    out.push('\n');
                }
                out.push_str(&"  ".repeat(depth));
                out.push('}');
            }
            Value::Array(a) => {
                out.push_str("[ ");
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" , ");
                    }
                    write(x, out, depth + 1);
                }
                out.push_str(" ]");
            }
            // Non-ASCII escaped as \uXXXX: a different byte encoding of the same strings.
            Value::String(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if (c as u32) < 0x20 || !c.is_ascii() => {
                            let mut buf = [0u16; 2];
                            for unit in c.encode_utf16(&mut buf) {
                                out.push_str(&format!("\\u{unit:04x}"));
                            }
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            other => out.push_str(&serde_json::to_string(other).unwrap()),
        }
    }
    let mut out = String::new();
    write(&reverse(v), &mut out, 0);
    out
}

proptest! {
    // 256 cases per property (proptest's default); PROPTEST_CASES raises it for a longer run.
    // A failure prints its minimal input.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn canonical_form_is_a_fixed_point(v in json()) {
        let once = to_canonical_bytes(&v).unwrap();
        let parsed: Value = serde_json::from_slice(&once).unwrap();
        prop_assert_eq!(to_canonical_bytes(&parsed).unwrap(), once.clone());
        let other: Value = serde_json::from_str(&relayout(&v)).unwrap();
        prop_assert_eq!(to_canonical_bytes(&other).unwrap(), once);
    }

    #[test]
    fn requests_survive_canonical_encoding_and_strict_decoding(r in request()) {
        let bytes = to_canonical_bytes(&r).unwrap();
        let back = ApprovalRequest::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &r);
        prop_assert_eq!(to_canonical_bytes(&back).unwrap(), bytes);
    }

    #[test]
    fn signatures_hold_across_layouts_and_break_on_any_change(r in request(), seed in any::<[u8; 32]>(), which in 0usize..6) {
        let key = KeyPair::from_seed(&seed);
        let signed = Signed::sign(&key, r.clone()).unwrap();
        let digest: Digest = signed.digest().unwrap();
        // Any layout of the same message verifies and has the same digest.
        let value = serde_json::to_value(&signed).unwrap();
        let text = relayout(&value);
        let again = Signed::<ApprovalRequest>::decode(text.as_bytes()).unwrap();
        prop_assert!(again.verify(&key.public()).is_ok());
        prop_assert_eq!(again.digest().unwrap(), digest);
        // Any change to a signed field breaks the signature and the digest.
        let mut changed = again.clone();
        match which {
            0 => changed.body.detail.push(';'),
            1 => changed.body.summary.push('\u{202E}'),
            2 => changed.body.expires_at += 1,
            3 => changed.body.approvers.push("mallory".into()),
            4 => changed.body.match_required = !changed.body.match_required,
            _ => changed.body.requester.push('x'),
        }
        prop_assert!(changed.verify(&key.public()).is_err());
        prop_assert_ne!(changed.digest().unwrap(), digest);
    }

    #[test]
    fn decisions_with_opaque_assertions_keep_their_signature(v in json(), seed in any::<[u8; 32]>()) {
        let key = KeyPair::from_seed(&seed);
        let d = Decision {
            v: countersign_protocol::PROTOCOL_VERSION,
            decision_id: "d-1".into(),
            request_id: "r-1".into(),
            request_digest: Digest([7; 32]),
            gateway: "gw".into(),
            approver: "alice@example.com".into(),
            device_id: "dev-1".into(),
            verdict: Verdict::Approve,
            reason: None,
            match_code: None,
            decided_at: 1_800_000_000,
            assertion: Some(serde_json::json!({"type": "public-key", "response": v})),
        };
        let signed = Signed::sign(&key, d).unwrap();
        let text = relayout(&serde_json::to_value(&signed).unwrap());
        let again = Signed::<Decision>::decode(text.as_bytes()).unwrap();
        prop_assert!(again.verify(&key.public()).is_ok());
        prop_assert_eq!(again.digest().unwrap(), signed.digest().unwrap());
    }
}
