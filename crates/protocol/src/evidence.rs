//! The evidence bundle of one request (docs/protocol.md, section 9.7) and its offline check.
//!
//! A bundle holds the gateway-signed request and its current status, every signed decision
//! (with its WebAuthn assertion, inside the device signature) and the receipt that accepted it,
//! the gateway-signed pairing record of each deciding device and record of each passkey that
//! made an assertion, and the gateway's audit entries of the request with inclusion proofs
//! against a signed log checkpoint. [`verify`] checks all of
//! it against the gateway key and names the first thing that fails.

use serde::{Deserialize, Serialize};

mod passkey;
pub use passkey::{verify_assertion, PasskeyRecord};

use crate::audit::AuditEntry;
use crate::canonical::to_canonical_bytes;
use crate::crypto::{Digest, PublicKey};
use crate::log;
use crate::types::{Decision, Receipt, RequestState, Signed, StatusUpdate};
use crate::ApprovalRequest;
use crate::Paired;

/// The version of the bundle format.
pub const EVIDENCE_VERSION: u32 = 1;

/// One request's evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub v: u32,
    /// The gateway's signing key; a verifier compares its fingerprint with one learnt out of
    /// band (the pairing link's `fp`).
    pub gateway_key: PublicKey,
    pub request: Signed<ApprovalRequest>,
    /// The request's status now.
    pub status: Signed<StatusUpdate>,
    /// Every status update the gateway pushed for the request, in `seq` order, ending with
    /// `status`.
    pub statuses: Vec<Signed<StatusUpdate>>,
    /// Every accepted decision (votes and revocations), in the order accepted.
    pub decisions: Vec<DecisionEvidence>,
    /// The pairing record of every device that made one of `decisions`.
    pub devices: Vec<Signed<Paired>>,
    /// The record of every passkey that made one of the decisions' assertions.
    pub passkeys: Vec<PasskeyEvidence>,
    pub log: LogEvidence,
}

/// A passkey's gateway-signed record, and its registration response as the gateway received
/// it (with the authenticator's attestation), where kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyEvidence {
    pub record: Signed<PasskeyRecord>,
    pub registration: Option<serde_json::Value>,
}

/// The largest bundle read: a request's bundle holds every decision with its assertion, every
/// passkey's registration and the log entries with their proofs, which for a request of many
/// approvers is well above the limit of a single protocol message.
pub const MAX_EVIDENCE_BYTES: usize = 16 * 1024 * 1024;

impl crate::types::Decode for Evidence {
    fn decode(bytes: &[u8]) -> Result<Self, crate::ProtocolError> {
        if bytes.len() > MAX_EVIDENCE_BYTES {
            return Err(crate::ProtocolError::TooLarge {
                size: bytes.len(),
                limit: MAX_EVIDENCE_BYTES,
            });
        }
        let value: Self =
            serde_json::from_slice(bytes).map_err(|e| crate::ProtocolError::Json(e.to_string()))?;
        crate::types::Decode::validate(&value)?;
        Ok(value)
    }

    fn validate(&self) -> Result<(), crate::ProtocolError> {
        if self.v != EVIDENCE_VERSION {
            return Err(crate::ProtocolError::UnsupportedVersion {
                found: self.v,
                supported: EVIDENCE_VERSION,
            });
        }
        Ok(())
    }
}

/// A decision and the receipt that accepted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionEvidence {
    pub decision: Signed<Decision>,
    pub receipt: Signed<Receipt>,
    /// The gateway-signed Challenge the decision's assertion answered, whose digest the
    /// receipt names; null for a decision without an assertion, and for one accepted before
    /// challenges were signed.
    pub challenge: Option<Signed<crate::challenge::Challenge>>,
}

/// The gateway's audit entries of the request, proven in its log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEvidence {
    /// A log checkpoint (signed note) covering every entry below, with the cosignature lines
    /// of the devices that witnessed it.
    pub checkpoint: String,
    pub entries: Vec<ProvenEntry>,
    /// The pairing record of every device whose cosignature is on `checkpoint`.
    pub witnesses: Vec<Signed<Paired>>,
}

/// An audit entry with its inclusion proof in the checkpoint's tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenEntry {
    pub index: u64,
    pub entry: AuditEntry,
    /// The inclusion proof's hashes (standard base64), as [`log::Proof::hashes`].
    pub proof: Vec<String>,
}

/// The first thing in a bundle that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {problem}")]
pub struct EvidenceError {
    /// Which part: `gateway_key`, `request`, `status`, `decisions[2].receipt`, `log.entries[0]`...
    pub what: String,
    pub problem: String,
}

fn fail(what: impl Into<String>, problem: impl std::fmt::Display) -> EvidenceError {
    EvidenceError {
        what: what.into(),
        problem: problem.to_string(),
    }
}

/// What a verified bundle shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub request_id: String,
    pub request_digest: Digest,
    pub gateway: String,
    pub state: RequestState,
    /// Each accepted decision: (approver, verdict, device id).
    pub decisions: Vec<(String, String, String)>,
    pub log_size: u64,
    pub entries: usize,
    /// The devices whose cosignature of the checkpoint verified.
    pub witnessed_by: Vec<String>,
    /// How many assertions answered a gateway-signed Challenge naming the request and the
    /// approver (the others were accepted before challenges were signed).
    pub bound_challenges: usize,
}

/// Checks a bundle offline. `expected_gateway` is the gateway fingerprint learnt out of band;
/// without it, the bundle is checked against its own `gateway_key` (which proves consistency,
/// not who signed).
pub fn verify(e: &Evidence, expected_gateway: Option<&str>) -> Result<Verified, EvidenceError> {
    if e.v != EVIDENCE_VERSION {
        return Err(fail(
            "v",
            format!("version {} is not {EVIDENCE_VERSION}", e.v),
        ));
    }
    let gw = &e.gateway_key;
    let fingerprint = gw.fingerprint();
    if let Some(want) = expected_gateway {
        if want != fingerprint {
            return Err(fail(
                "gateway_key",
                format!("its fingerprint is {fingerprint}, not the expected {want}"),
            ));
        }
    }

    // The request.
    e.request.verify(gw).map_err(|err| {
        fail(
            "request",
            format!("the gateway signature does not verify ({err})"),
        )
    })?;
    let request = &e.request.body;
    if request.gateway != fingerprint {
        return Err(fail("request", "it names another gateway"));
    }
    let digest = e.request.digest().map_err(|err| fail("request", err))?;

    // Its status.
    e.status.verify(gw).map_err(|err| {
        fail(
            "status",
            format!("the gateway signature does not verify ({err})"),
        )
    })?;
    let status = &e.status.body;
    if status.request_id != request.id || status.request_digest != digest {
        return Err(fail("status", "it is the status of another request"));
    }
    // Its history: every status pushed, in order, never leaving a final state, ending with it.
    let mut final_state: Option<RequestState> = None;
    let mut last_seq = 0;
    for (i, s) in e.statuses.iter().enumerate() {
        let what = format!("statuses[{i}]");
        s.verify(gw).map_err(|err| {
            fail(
                &what,
                format!("the gateway signature does not verify ({err})"),
            )
        })?;
        let b = &s.body;
        if b.request_id != request.id || b.request_digest != digest {
            return Err(fail(&what, "it is the status of another request"));
        }
        if b.seq <= last_seq {
            return Err(fail(&what, "the statuses are not in increasing seq order"));
        }
        if final_state.is_some_and(|f| f != b.state) {
            return Err(fail(&what, "it leaves a final state"));
        }
        if b.state.is_final() {
            final_state = Some(b.state);
        }
        last_seq = b.seq;
    }
    if e.statuses.last() != Some(&e.status) {
        return Err(fail(
            "statuses",
            "the last status is not the bundle's status",
        ));
    }

    // The devices.
    let mut devices = std::collections::BTreeMap::new();
    for (i, d) in e.devices.iter().enumerate() {
        let what = format!("devices[{i}]");
        d.verify(gw).map_err(|err| {
            fail(
                &what,
                format!("the gateway signature does not verify ({err})"),
            )
        })?;
        devices.insert(d.body.device_id.clone(), &d.body);
    }

    // The passkeys.
    for (i, p) in e.passkeys.iter().enumerate() {
        let what = format!("passkeys[{i}]");
        p.record.verify(gw).map_err(|err| {
            fail(
                &what,
                format!("the gateway signature does not verify ({err})"),
            )
        })?;
        if p.record.body.gateway != fingerprint {
            return Err(fail(&what, "it names another gateway"));
        }
    }

    // The decisions and their receipts.
    let mut decisions = Vec::new();
    let mut decision_digests = Vec::new();
    let mut bound = 0;
    for (i, d) in e.decisions.iter().enumerate() {
        let what = format!("decisions[{i}]");
        let body = &d.decision.body;
        let device = devices.get(&body.device_id).ok_or_else(|| {
            fail(
                &what,
                format!(
                    "device {} has no pairing record in the bundle",
                    body.device_id
                ),
            )
        })?;
        if device.approver != body.approver {
            return Err(fail(
                &what,
                format!(
                    "device {} is paired to {}, not {}",
                    body.device_id, device.approver, body.approver
                ),
            ));
        }
        d.decision.verify(&device.device_key).map_err(|err| {
            fail(
                &what,
                format!("the device signature does not verify ({err})"),
            )
        })?;
        if body.request_id != request.id || body.request_digest != digest {
            return Err(fail(&what, "it decides another request"));
        }
        if body.gateway != fingerprint {
            return Err(fail(&what, "it names another gateway"));
        }
        if request.match_required
            && body.match_code.is_none()
            && body.verdict == crate::Verdict::Approve
        {
            return Err(fail(
                &what,
                "an approval of a request that needs a match code carries none",
            ));
        }
        if let Some(assertion) = &body.assertion {
            let credential =
                passkey::assertion_credential(assertion).map_err(|err| fail(&what, err))?;
            let record = e
                .passkeys
                .iter()
                .map(|p| &p.record.body)
                .find(|r| {
                    r.approver == body.approver
                        && passkey::record_credential(r).is_ok_and(|c| c == credential)
                })
                .ok_or_else(|| {
                    fail(
                        &what,
                        "the passkey of its assertion has no record in the bundle",
                    )
                })?;
            let answered = verify_assertion(assertion, record).map_err(|err| {
                fail(
                    &what,
                    format!("the WebAuthn assertion does not verify: {err}"),
                )
            })?;
            match (&d.challenge, &d.receipt.body.challenge_digest) {
                (Some(c), Some(named)) => {
                    let cwhat = format!("{what}.challenge");
                    let cd = c.verify_and_digest(gw).map_err(|err| {
                        fail(
                            &cwhat,
                            format!("the gateway signature does not verify ({err})"),
                        )
                    })?;
                    let b = &c.body;
                    if b.gateway != fingerprint
                        || b.request_id != request.id
                        || b.request_digest != digest
                        || b.approver != body.approver
                    {
                        return Err(fail(
                            &cwhat,
                            "it was not issued by this gateway for this request and approver",
                        ));
                    }
                    if !cd.ct_eq(named) {
                        return Err(fail(&cwhat, "the receipt names another challenge"));
                    }
                    if answered != crate::challenge::webauthn_challenge(&cd) {
                        return Err(fail(
                            &cwhat,
                            "the assertion answers another WebAuthn challenge",
                        ));
                    }
                    bound += 1;
                }
                (None, None) => {}
                (None, Some(_)) => {
                    return Err(fail(
                        format!("{what}.challenge"),
                        "the receipt names a challenge the bundle does not carry",
                    ))
                }
                (Some(_), None) => {
                    return Err(fail(
                        format!("{what}.receipt"),
                        "it names no challenge, but the bundle carries one",
                    ))
                }
            }
        } else if d.challenge.is_some() || d.receipt.body.challenge_digest.is_some() {
            return Err(fail(
                format!("{what}.challenge"),
                "a decision without an assertion answered no challenge",
            ));
        }
        let receipt_what = format!("{what}.receipt");
        d.receipt.verify(gw).map_err(|err| {
            fail(
                &receipt_what,
                format!("the gateway signature does not verify ({err})"),
            )
        })?;
        let decision_digest = d.decision.digest().map_err(|err| fail(&what, err))?;
        let r = &d.receipt.body;
        if r.decision_id != body.decision_id || r.decision_digest != decision_digest {
            return Err(fail(&receipt_what, "it accepts another decision"));
        }
        if r.request_id != request.id || r.request_digest != digest {
            return Err(fail(&receipt_what, "it names another request"));
        }
        if r.approver != body.approver || r.verdict != body.verdict {
            return Err(fail(
                &receipt_what,
                "its approver or verdict is not the decision's",
            ));
        }
        match e.statuses.iter().find(|s| s.body.seq == r.status_seq) {
            Some(s) if s.body.state == r.request_state => {}
            Some(_) => {
                return Err(fail(
                    &receipt_what,
                    "its request state is not the status at its status_seq",
                ))
            }
            None => {
                return Err(fail(
                    &receipt_what,
                    format!(
                        "the bundle has no status at its status_seq {}",
                        r.status_seq
                    ),
                ))
            }
        }
        if r.status_seq > status.seq {
            return Err(fail(
                &receipt_what,
                format!(
                    "it is at status {}, after the bundle's status {}",
                    r.status_seq, status.seq
                ),
            ));
        }
        decision_digests.push(decision_digest);
        decisions.push((
            body.approver.clone(),
            body.verdict.as_str().to_owned(),
            body.device_id.clone(),
        ));
    }

    // The log: the checkpoint, every entry's inclusion, and the entries that record the
    // request and each decision.
    let cp =
        log::verify_checkpoint(&e.log.checkpoint, gw).map_err(|err| fail("log.checkpoint", err))?;
    let witnessed_by = witnesses(e, gw)?;
    let mut created = false;
    let mut accepted = vec![false; decision_digests.len()];
    for (i, p) in e.log.entries.iter().enumerate() {
        let what = format!("log.entries[{i}]");
        if p.entry.request_id.as_deref() != Some(request.id.as_str()) {
            return Err(fail(&what, "it is an entry of another request"));
        }
        if p.entry.seq != p.index + 1 {
            return Err(fail(
                &what,
                format!("entry {} is not leaf {}", p.entry.seq, p.index),
            ));
        }
        let text = to_canonical_bytes(&p.entry).map_err(|err| fail(&what, err))?;
        let proof = log::Proof {
            v: crate::PROTOCOL_VERSION,
            size: cp.size,
            index: Some(p.index),
            old_size: None,
            hashes: p.proof.clone(),
        };
        proof
            .check_inclusion(cp.size, &cp.root, &log::leaf_hash_of_text(&text))
            .map_err(|err| fail(&what, err))?;
        let detail = &p.entry.detail;
        let names = |field: &str, d: &Digest| {
            detail.get(field).and_then(|v| v.as_str()) == Some(d.to_hex().as_str())
        };
        // `request_digest`; entries written before the name was unified say `digest`.
        if p.entry.kind == "request.created"
            && (names("request_digest", &digest) || names("digest", &digest))
        {
            created = true;
        }
        if p.entry.kind == "decision.accepted" || p.entry.kind == "request.revoked" {
            for (j, dd) in decision_digests.iter().enumerate() {
                if names("decision_digest", dd) {
                    accepted[j] = true;
                }
            }
        }
    }
    if !created {
        return Err(fail(
            "log.entries",
            "no entry records the creation of this request with its digest",
        ));
    }
    if let Some(j) = accepted.iter().position(|a| !a) {
        return Err(fail(
            format!("decisions[{j}]"),
            "no log entry records that the gateway accepted it",
        ));
    }
    Ok(Verified {
        request_id: request.id.clone(),
        request_digest: digest,
        gateway: fingerprint,
        state: status.state,
        decisions,
        log_size: cp.size,
        entries: e.log.entries.len(),
        witnessed_by,
        bound_challenges: bound,
    })
}

/// Checks each witness's pairing record and its cosignature on the checkpoint, and returns the
/// witnesses' device ids.
fn witnesses(e: &Evidence, gw: &PublicKey) -> Result<Vec<String>, EvidenceError> {
    let mut keys = Vec::with_capacity(e.log.witnesses.len());
    for (i, w) in e.log.witnesses.iter().enumerate() {
        let what = format!("log.witnesses[{i}]");
        w.verify(gw).map_err(|err| fail(&what, err))?;
        keys.push(log::Witness {
            key: w.body.device_key,
        });
    }
    let verified = log::verify_cosignatures(&e.log.checkpoint, &keys)
        .map_err(|err| fail("log.checkpoint", err))?;
    let mut ids = Vec::with_capacity(keys.len());
    for (i, w) in e.log.witnesses.iter().enumerate() {
        if !verified.contains(&w.body.device_key.fingerprint()) {
            return Err(fail(
                format!("log.witnesses[{i}]"),
                "the checkpoint carries no cosignature by this device",
            ));
        }
        ids.push(w.body.device_id.clone());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Decode;

    /// A bundle above one protocol message's limit is read (a request of many approvers);
    /// one above the bundle limit is refused before it is parsed.
    #[test]
    fn bundles_have_a_limit_of_their_own() {
        let mut big = vec![b' '; crate::types::MAX_MESSAGE_BYTES + 1];
        big.extend_from_slice(b"{}");
        assert!(matches!(
            Evidence::decode(&big),
            Err(crate::ProtocolError::Json(_))
        ));
        let huge = vec![b' '; MAX_EVIDENCE_BYTES + 1];
        assert!(matches!(
            Evidence::decode(&huge),
            Err(crate::ProtocolError::TooLarge { .. })
        ));
    }
}
