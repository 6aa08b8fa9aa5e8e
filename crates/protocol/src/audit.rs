//! The audit chain rule shared by the approver and the gateway, and by any independent verifier.
//!
//! Entry `n` (from 1) is the JCS of an [`AuditEntry`] whose `prev` is the hash of entry `n-1`
//! (32 zero bytes for the first). Its hash is SHA-256 over
//! `countersign/v1/audit-entry || 0x00 || JCS(entry)`. A [`Checkpoint`] signs a chain head.

use serde::{Deserialize, Serialize};

use crate::canonical::domain;
use crate::crypto::Digest;
use crate::error::ProtocolError;
use crate::types::{Decode, SignedBody};
use crate::PROTOCOL_VERSION;

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub v: u32,
    pub seq: u64,
    pub at: i64,
    /// What happened: `request.received`, `request.rejected`, `decision.made`, ...
    pub kind: String,
    pub request_id: Option<String>,
    /// Free-form, kind-specific facts (canonicalised with the rest).
    pub detail: serde_json::Value,
    pub prev: Digest,
}

impl AuditEntry {
    pub fn hash(&self) -> Result<Digest, ProtocolError> {
        Digest::of(domain::AUDIT_ENTRY, self)
    }
}

impl Decode for AuditEntry {
    fn validate(&self) -> Result<(), ProtocolError> {
        if self.v != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion {
                found: self.v,
                supported: PROTOCOL_VERSION,
            });
        }
        Ok(())
    }
}

/// The hash that the first entry's `prev` holds.
pub const GENESIS: Digest = Digest([0; 32]);

/// A signed statement that the chain had `seq` entries ending in `head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub v: u32,
    /// Fingerprint of the key that signs this checkpoint.
    pub signer: String,
    pub seq: u64,
    pub head: Digest,
    pub at: i64,
}

impl SignedBody for Checkpoint {
    const DOMAIN: &'static str = domain::CHECKPOINT;
}

impl Decode for Checkpoint {
    fn validate(&self) -> Result<(), ProtocolError> {
        if self.v != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion {
                found: self.v,
                supported: PROTOCOL_VERSION,
            });
        }
        Ok(())
    }
}

/// The first place a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {position} is bad: {problem}")]
pub struct ChainBreak {
    /// 1-based position in the sequence checked.
    pub position: u64,
    pub problem: String,
}

/// Walks a chain of `(entry, stored hash)` in order and names the first bad entry.
/// Returns the number of entries and the head hash.
pub fn verify_chain<I>(entries: I) -> Result<(u64, Digest), ChainBreak>
where
    I: IntoIterator<Item = (AuditEntry, Digest)>,
{
    let mut prev = GENESIS;
    let mut n = 0u64;
    for (entry, stored) in entries {
        n += 1;
        let fail = |problem: String| ChainBreak {
            position: n,
            problem,
        };
        if entry.seq != n {
            return Err(fail(format!(
                "sequence number {} where {n} was expected (an entry was deleted, inserted or moved)",
                entry.seq
            )));
        }
        if entry.prev != prev {
            return Err(fail(
                "its `prev` does not match the previous entry's hash".to_string(),
            ));
        }
        let computed = entry.hash().map_err(|e| fail(e.to_string()))?;
        if !computed.ct_eq(&stored) {
            return Err(fail(
                "its content does not match its stored hash (the entry was edited)".to_string(),
            ));
        }
        prev = computed;
    }
    Ok((n, prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<(AuditEntry, Digest)> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let e = AuditEntry {
                    v: 1,
                    seq,
                    at: 1000 + seq as i64,
                    kind: "request.received".into(),
                    request_id: Some(format!("r{seq}")),
                    detail: serde_json::json!({"n": seq}),
                    prev,
                };
                let h = e.hash().unwrap();
                prev = h;
                (e, h)
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let head = c[4].1;
        assert_eq!(verify_chain(c).unwrap(), (5, head));
    }

    #[test]
    fn damage_is_located() {
        let mut edited = chain(5);
        edited[2].0.kind = "x".into();
        assert_eq!(verify_chain(edited).unwrap_err().position, 3);

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(verify_chain(deleted).unwrap_err().position, 2);

        let mut swapped = chain(5);
        swapped.swap(3, 4);
        assert_eq!(verify_chain(swapped).unwrap_err().position, 4);
    }
}
