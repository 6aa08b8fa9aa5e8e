//! Canonical JSON (RFC 8785, the JSON Canonicalization Scheme) and domain-separated messages.
//!
//! Every digest and signature in Countersign covers `domain || 0x00 || JCS(body)`, where
//! `domain` is an ASCII label naming the kind of message. The label stops a signature made for
//! one kind of message from being accepted as another.

use serde::Serialize;

use crate::error::ProtocolError;

/// Domain labels. Each is covered by exactly one message kind.
pub mod domain {
    pub const REQUEST: &str = "countersign/v2/request";
    pub const DECISION: &str = "countersign/v2/decision";
    pub const RECEIPT: &str = "countersign/v2/receipt";
    pub const REFUSAL: &str = "countersign/v2/refusal";
    pub const STATUS: &str = "countersign/v2/status";
    pub const EVENT: &str = "countersign/v2/event";
    pub const STREAM_HELLO: &str = "countersign/v2/stream-hello";
    pub const PAIRING: &str = "countersign/v2/pairing";
    pub const PAIRED: &str = "countersign/v2/paired";
    pub const DEVICE_AUTH: &str = "countersign/v2/device-auth";
    pub const REPORT: &str = "countersign/v2/report";
    pub const ACK: &str = "countersign/v2/ack";
    pub const MEMBERSHIP: &str = "countersign/v2/membership";
    pub const PASSKEY_CHANGE: &str = "countersign/v2/passkey-change";
    pub const PASSKEYS: &str = "countersign/v2/passkeys";
    /// A passkey's record in an evidence bundle (docs/protocol.md 9.7).
    pub const PASSKEY_RECORD: &str = "countersign/v2/passkey-record";
    /// A WebAuthn challenge bound to one request and approver (docs/protocol.md 3.24).
    pub const CHALLENGE: &str = "countersign/v2/challenge";
    /// The gateway's statement that it holds a device's audit checkpoint (docs/protocol.md 9.4).
    pub const CHECKPOINT_ACK: &str = "countersign/v2/checkpoint-ack";
    /// The audit log format keeps its own version ([`crate::AUDIT_VERSION`]).
    pub const AUDIT_ENTRY: &str = "countersign/v1/audit-entry";
    pub const CHECKPOINT: &str = "countersign/v1/checkpoint";
}

/// The RFC 8785 canonical form of `value`.
pub fn to_canonical_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, ProtocolError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| ProtocolError::Canonical(e.to_string()))
}

/// The bytes that are hashed and signed: `domain || 0x00 || JCS(value)`.
pub fn signing_message<T: Serialize>(domain: &str, value: &T) -> Result<Vec<u8>, ProtocolError> {
    let body = to_canonical_bytes(value)?;
    let mut out = Vec::with_capacity(domain.len() + 1 + body.len());
    out.extend_from_slice(domain.as_bytes());
    out.push(0);
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_whitespace_removed() {
        let v = json!({"b": 1, "a": [true, null, "x"], "c": {"z": 1.5, "y": "é"}});
        let bytes = to_canonical_bytes(&v).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"a":[true,null,"x"],"b":1,"c":{"y":"é","z":1.5}}"#
        );
    }

    #[test]
    fn rfc8785_number_and_escape_rules() {
        let v = json!({"n": 1e21, "s": "\u{0007}\"\\/\u{2028}"});
        let s = String::from_utf8(to_canonical_bytes(&v).unwrap()).unwrap();
        assert_eq!(s, "{\"n\":1e+21,\"s\":\"\\u0007\\\"\\\\/\u{2028}\"}");
    }

    #[test]
    fn message_has_domain_separator() {
        let m = signing_message("d", &json!({"a": 1})).unwrap();
        assert_eq!(m, b"d\0{\"a\":1}");
    }
}
