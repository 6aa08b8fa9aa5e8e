//! Versioned wire types.
//!
//! Every message carries `"v": 2`. Decoding is strict: unknown fields, a different version,
//! oversized fields and bad encodings are typed errors (see [`Decode`]).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::canonical::domain;
use crate::crypto::{Digest, KeyPair, PublicKey, Signature};
use crate::error::ProtocolError;
use crate::stages::StageProgress;

/// Largest JSON document any decoder accepts.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

pub(crate) use crate::fields::{
    check_ident, check_len, check_nonempty, check_origin, check_u53, check_version,
};
pub use crate::fields::{limits, MAX_SAFE_INTEGER};

/// Strict decoding from bytes: size limit, JSON shape (unknown fields refused), then the
/// type's own rules (version, lengths, encodings).
pub trait Decode: DeserializeOwned {
    fn validate(&self) -> Result<(), ProtocolError>;

    fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(ProtocolError::TooLarge {
                size: bytes.len(),
                limit: MAX_MESSAGE_BYTES,
            });
        }
        let value: Self =
            serde_json::from_slice(bytes).map_err(|e| ProtocolError::Json(e.to_string()))?;
        value.validate()?;
        Ok(value)
    }
}

/// A message body that is signed, with the domain label its signature uses.
pub trait SignedBody: Serialize {
    const DOMAIN: &'static str;
}

/// A body and an Ed25519 signature over `DOMAIN || 0x00 || JCS(body)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed<T> {
    pub body: T,
    pub signature: Signature,
}

impl<T: SignedBody> Signed<T> {
    pub fn sign(key: &KeyPair, body: T) -> Result<Self, ProtocolError> {
        let signature = key.sign(T::DOMAIN, &body)?;
        Ok(Signed { body, signature })
    }

    pub fn verify(&self, key: &PublicKey) -> Result<(), ProtocolError> {
        key.verify(T::DOMAIN, &self.body, &self.signature)
    }

    /// SHA-256 over `DOMAIN || 0x00 || JCS(body)`: the bytes the signature covers.
    pub fn digest(&self) -> Result<Digest, ProtocolError> {
        Digest::of(T::DOMAIN, &self.body)
    }

    /// Verifies the signature and returns the digest, canonicalising the body only once.
    pub fn verify_and_digest(&self, key: &PublicKey) -> Result<Digest, ProtocolError> {
        let msg = crate::canonical::signing_message(T::DOMAIN, &self.body)?;
        key.verify_raw(&msg, &self.signature)?;
        Ok(Digest::of_bytes(&msg))
    }
}

impl<T: Decode + SignedBody> Decode for Signed<T> {
    fn validate(&self) -> Result<(), ProtocolError> {
        self.body.validate()
    }
}

/// The lifecycle state of a request at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    Pending,
    Approved,
    Denied,
    Expired,
    Withdrawn,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Denied => "denied",
            RequestState::Expired => "expired",
            RequestState::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => RequestState::Pending,
            "approved" => RequestState::Approved,
            "denied" => RequestState::Denied,
            "expired" => RequestState::Expired,
            "withdrawn" => RequestState::Withdrawn,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        !matches!(self, RequestState::Pending)
    }
}

/// Approve or deny; or revoke the approver's own approval while its grant is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approve,
    Deny,
    /// Withdraws this approver's earlier approval of an approved request within its grant
    /// window (protocol.md 3.22). Needs a passkey assertion, like an approval.
    Revoke,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
            Verdict::Revoke => "revoke",
        }
    }
}

/// One approver's recorded decision, as shown in quorum progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    pub approver: String,
    pub verdict: Verdict,
    pub at: i64,
    /// The approver's directory entry when the vote was accepted. Omitted when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// The indices (0-based) of the stages this approval is credited to (protocol.md 8.3a).
    /// Omitted when empty: a deny, or a status of a request in the list form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<u32>,
}

/// A gateway-signed change of a request's state, pushed to every eligible approver.
///
/// `seq` orders the changes of one request: 1 for the state at creation, one more for every
/// committed change. The gateway signs one body per (`request_id`, `seq`), and `at` is when
/// that change committed, so an approver applies an update only if its `seq` is higher than
/// the one it holds, and never moves a request out of a final state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusUpdate {
    pub v: u32,
    pub request_id: String,
    pub request_digest: Digest,
    pub seq: u64,
    pub state: RequestState,
    /// Approvals credited to the stages, summed; for the list form, the approvals.
    pub approvals: u32,
    /// The request's `quorum_total`.
    pub min_approvals: u32,
    pub votes: Vec<Vote>,
    pub at: i64,
    /// One entry per stage of a request with stages, in the request's order. Omitted for a
    /// request in the list form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageProgress>,
    /// What the approval grants: present exactly when the state is `approved` and the request
    /// has stages (omitted for the list form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<crate::grant::Grant>,
}

impl SignedBody for StatusUpdate {
    const DOMAIN: &'static str = domain::STATUS;
}

impl Decode for StatusUpdate {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("request_id", &self.request_id, limits::ID)?;
        check_u53("seq", self.seq, 1)?;
        // At most 64 addressees approve, and one more eligible approver may deny.
        if self.votes.len() > limits::APPROVERS + 1 {
            return Err(ProtocolError::InvalidField {
                field: "votes",
                reason: "too many votes".into(),
            });
        }
        if let Some(g) = &self.grant {
            if self.state != RequestState::Approved {
                return Err(ProtocolError::InvalidField {
                    field: "grant",
                    reason: "only an approved request has a grant".into(),
                });
            }
            g.validate()?;
        }
        Ok(())
    }
}

/// An approver's decision, signed by its device key. It binds the exact request (by digest),
/// the verdict, the typed match code and the WebAuthn assertion together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub v: u32,
    /// Random UUID chosen by the device; delivery is idempotent on it.
    pub decision_id: String,
    pub request_id: String,
    pub request_digest: Digest,
    /// Fingerprint of the gateway key the request was signed with.
    pub gateway: String,
    pub approver: String,
    pub device_id: String,
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub match_code: Option<String>,
    pub decided_at: i64,
    /// The WebAuthn `PublicKeyCredential` (assertion) JSON, required to approve.
    pub assertion: Option<serde_json::Value>,
}

impl SignedBody for Decision {
    const DOMAIN: &'static str = domain::DECISION;
}

impl Decode for Decision {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("decision_id", &self.decision_id, limits::ID)?;
        check_ident("request_id", &self.request_id, limits::ID)?;
        check_ident("gateway", &self.gateway, limits::ID)?;
        check_ident("approver", &self.approver, limits::NAME)?;
        check_ident("device_id", &self.device_id, limits::ID)?;
        if let Some(r) = &self.reason {
            check_len("reason", r, limits::REASON)?;
        }
        if let Some(c) = &self.match_code {
            check_len("match_code", c, limits::MATCH_CODE)?;
        }
        if self.verdict != Verdict::Deny && self.assertion.is_none() {
            return Err(ProtocolError::InvalidField {
                field: "assertion",
                reason: "an approval or a revocation must carry a passkey assertion".into(),
            });
        }
        Ok(())
    }
}

/// The gateway's signed answer to an accepted decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub v: u32,
    pub decision_id: String,
    /// Digest of the signed decision body (domain `countersign/v1/decision`).
    pub decision_digest: Digest,
    pub request_id: String,
    pub request_digest: Digest,
    pub approver: String,
    pub verdict: Verdict,
    pub accepted_at: i64,
    /// The request's status `seq` that this decision produced, and the state and quorum at it:
    /// the status update with that `seq` says the same.
    pub status_seq: u64,
    /// The request's state after this decision was applied.
    pub request_state: RequestState,
    pub approvals: u32,
    pub min_approvals: u32,
    /// The stage progress at `status_seq`, as in that status. Omitted for the list form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageProgress>,
    /// The digest of the gateway-signed Challenge the decision's assertion answered (its
    /// WebAuthn challenge bytes); absent for a decision without an assertion, and in receipts
    /// signed before challenges were signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_digest: Option<Digest>,
}

impl SignedBody for Receipt {
    const DOMAIN: &'static str = domain::RECEIPT;
}

impl Decode for Receipt {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("decision_id", &self.decision_id, limits::ID)?;
        check_ident("request_id", &self.request_id, limits::ID)?;
        check_ident("approver", &self.approver, limits::NAME)?;
        check_u53("status_seq", self.status_seq, 1)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::StreamEvent;
    use crate::pairing::{GatewayInfo, PairChallenge, PairFinish, PairStart, Paired};
    use crate::request::{ApprovalRequest, Risk};
    use crate::PROTOCOL_VERSION;

    pub(crate) fn sample_request() -> ApprovalRequest {
        ApprovalRequest {
            v: PROTOCOL_VERSION,
            id: "0b7c4a52-7d1e-4f0e-9a57-3f1d2c8e9b10".into(),
            gateway: "ab".repeat(32),
            action: "sql.exec".into(),
            resource: "prod-db".into(),
            risk: Risk::High,
            summary: "Drop the sessions table".into(),
            detail: "DROP TABLE sessions;".into(),
            requester: "ci-bot".into(),
            reason: "cleanup".into(),
            created_at: 1_700_000_000,
            not_before: 1_700_000_000,
            expires_at: 1_700_000_300,
            approvers: vec!["alice@example.com".into()],
            min_approvals: 1,
            match_required: false,
            deny_needs_passkey: false,
            stages: vec![],
            mode: crate::stages::Mode::Ask,
            distinct_people: true,
            requester_person: None,
            policy: None,
            grant_seconds: None,
            windows: vec![],
        }
    }

    #[test]
    fn signed_request_round_trip() {
        let k = KeyPair::from_seed(&[1; 32]);
        let s = Signed::sign(&k, sample_request()).unwrap();
        let bytes = serde_json::to_vec(&s).unwrap();
        let back = Signed::<ApprovalRequest>::decode(&bytes).unwrap();
        back.verify(&k.public()).unwrap();
        assert_eq!(back.digest().unwrap(), s.digest().unwrap());
    }

    #[test]
    fn changed_field_breaks_signature() {
        let k = KeyPair::from_seed(&[1; 32]);
        let mut s = Signed::sign(&k, sample_request()).unwrap();
        s.body.detail.push(' ');
        assert_eq!(s.verify(&k.public()), Err(ProtocolError::BadSignature));
    }

    /// (mutation of the JSON, predicate on the error)
    #[test]
    fn decoding_table() {
        let k = KeyPair::from_seed(&[1; 32]);
        let good = serde_json::to_value(Signed::sign(&k, sample_request()).unwrap()).unwrap();
        type Mutation = fn(&mut serde_json::Value);
        type Expect = fn(&ProtocolError) -> bool;
        let cases: Vec<(&str, Mutation, Expect)> = vec![
            (
                "version 1",
                |v| v["body"]["v"] = 1.into(),
                |e| matches!(e, ProtocolError::UnsupportedVersion { found: 1, .. }),
            ),
            (
                "unknown field",
                |v| v["body"]["extra"] = 1.into(),
                |e| matches!(e, ProtocolError::Json(_)),
            ),
            (
                "missing field",
                |v| {
                    v["body"].as_object_mut().unwrap().remove("requester");
                },
                |e| matches!(e, ProtocolError::Json(_)),
            ),
            (
                "oversized detail",
                |v| v["body"]["detail"] = "x".repeat(limits::DETAIL + 1).into(),
                |e| {
                    matches!(
                        e,
                        ProtocolError::FieldTooLong {
                            field: "detail",
                            ..
                        }
                    )
                },
            ),
            (
                "bad signature encoding",
                |v| v["signature"] = "***".into(),
                |e| matches!(e, ProtocolError::Json(m) if m.contains("base64url")),
            ),
            (
                "zero approvers and no stages",
                |v| v["body"]["approvers"] = serde_json::json!([]),
                |e| {
                    matches!(
                        e,
                        ProtocolError::InvalidField {
                            field: "stages",
                            ..
                        }
                    )
                },
            ),
            (
                "both the list form and stages",
                |v| v["body"]["stages"] = serde_json::json!([{"name": "dba", "approvers": null, "group": "dba", "min": 1}]),
                |e| {
                    matches!(
                        e,
                        ProtocolError::InvalidField {
                            field: "approvers",
                            ..
                        }
                    )
                },
            ),
            (
                "a stage naming both a group and a list",
                |v| {
                    v["body"]["approvers"] = serde_json::json!([]);
                    v["body"]["min_approvals"] = 0.into();
                    v["body"]["stages"] = serde_json::json!([{"name": "dba", "approvers": ["a"], "group": "dba", "min": 1}]);
                },
                |e| {
                    matches!(
                        e,
                        ProtocolError::InvalidField {
                            field: "stages",
                            ..
                        }
                    )
                },
            ),
            (
                "a stage field the format does not know",
                |v| {
                    v["body"]["approvers"] = serde_json::json!([]);
                    v["body"]["min_approvals"] = 0.into();
                    v["body"]["stages"] =
                        serde_json::json!([{"name": "dba", "group": "dba", "min": 1, "weight": 2}]);
                },
                |e| matches!(e, ProtocolError::Json(_)),
            ),
            (
                "quorum larger than approvers",
                |v| v["body"]["min_approvals"] = 2.into(),
                |e| {
                    matches!(
                        e,
                        ProtocolError::InvalidField {
                            field: "min_approvals",
                            ..
                        }
                    )
                },
            ),
            (
                "requester with a space",
                |v| v["body"]["requester"] = "a b".into(),
                |e| {
                    matches!(
                        e,
                        ProtocolError::InvalidField {
                            field: "requester",
                            ..
                        }
                    )
                },
            ),
            (
                "unknown risk",
                |v| v["body"]["risk"] = "extreme".into(),
                |e| matches!(e, ProtocolError::Json(_)),
            ),
            (
                "negative quorum",
                |v| v["body"]["min_approvals"] = (-1).into(),
                |e| matches!(e, ProtocolError::Json(_)),
            ),
        ];
        for (name, mutate, expected) in cases {
            let mut v = good.clone();
            mutate(&mut v);
            let bytes = serde_json::to_vec(&v).unwrap();
            let err = Signed::<ApprovalRequest>::decode(&bytes).unwrap_err();
            assert!(expected(&err), "{name}: unexpected error {err:?}");
        }
    }

    #[test]
    fn oversized_message_is_refused_before_parsing() {
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            StreamEvent::decode(&big),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_never_panics_any_decoder() {
        let inputs: Vec<Vec<u8>> = vec![
            vec![],
            b"null".to_vec(),
            b"[]".to_vec(),
            b"{\"type\":\"request\"}".to_vec(),
            vec![0xff, 0xfe, 0x00],
            b"{\"v\":1}".to_vec(),
            b"\"\\ud800\"".to_vec(),
            b"{\"v\":4294967296}".to_vec(),
        ];
        for i in &inputs {
            assert!(StreamEvent::decode(i).is_err());
            assert!(Signed::<Decision>::decode(i).is_err());
            assert!(Signed::<Receipt>::decode(i).is_err());
            assert!(PairStart::decode(i).is_err());
            assert!(PairChallenge::decode(i).is_err());
            assert!(Signed::<PairFinish>::decode(i).is_err());
            assert!(Signed::<Paired>::decode(i).is_err());
            assert!(GatewayInfo::decode(i).is_err());
            assert!(Signed::<StatusUpdate>::decode(i).is_err());
        }
    }

    /// Random bytes and random mutations of valid messages: every decoder answers with a
    /// typed error or a value, never a panic. Seeded, so a failure reproduces.
    #[test]
    fn decoders_survive_random_and_mutated_input() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x0c0_5e7);
        let k = KeyPair::from_seed(&[1; 32]);
        let valid = serde_json::to_vec(&StreamEvent::Request {
            request: Box::new(Signed::sign(&k, sample_request()).unwrap()),
            challenge: serde_json::json!({"publicKey": {"challenge": "abc"}}),
            signed_challenge: None,
        })
        .unwrap();
        for i in 0..20_000 {
            let input: Vec<u8> = if i % 2 == 0 {
                (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect()
            } else {
                let mut v = valid.clone();
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(0..v.len());
                    match rng.gen_range(0..3) {
                        0 => v[at] = rng.gen(),
                        1 => {
                            v.remove(at);
                        }
                        _ => v.insert(at, rng.gen()),
                    }
                }
                v
            };
            let _ = StreamEvent::decode(&input);
            let _ = Signed::<Decision>::decode(&input);
            let _ = Signed::<Receipt>::decode(&input);
            let _ = PairStart::decode(&input);
            let _ = PairChallenge::decode(&input);
            let _ = Signed::<PairFinish>::decode(&input);
            let _ = Signed::<Paired>::decode(&input);
            let _ = GatewayInfo::decode(&input);
            let _ = crate::audit::AuditEntry::decode(&input);
        }
    }

    #[test]
    fn approval_without_assertion_is_refused() {
        let d = Decision {
            v: PROTOCOL_VERSION,
            decision_id: "d1".into(),
            request_id: "r1".into(),
            request_digest: Digest([0; 32]),
            gateway: "g".into(),
            approver: "a".into(),
            device_id: "dev".into(),
            verdict: Verdict::Approve,
            reason: None,
            match_code: None,
            decided_at: 0,
            assertion: None,
        };
        assert!(matches!(
            d.validate(),
            Err(ProtocolError::InvalidField {
                field: "assertion",
                ..
            })
        ));
    }
}
