//! The gateway's audit log as a transparency log (docs/protocol.md, section 9.6).
//!
//! Leaf `i` (0-based) of an RFC 6962/9162 Merkle tree is the gateway's audit entry `seq = i + 1`;
//! its leaf data is the entry's signing message (`countersign/v1/audit-entry || 0x00 ||
//! JCS(entry)`). A **log checkpoint** is a C2SP `tlog-checkpoint` in the C2SP signed-note
//! format, signed with the gateway key under the key name `countersign/log/<fingerprint>`. A
//! device co-signs a checkpoint it verified as a C2SP `tlog-cosignature/v1`, under the key name
//! `countersign/device/<fingerprint>`.
//!
//! The tree, its proofs and the checkpoint body are `tlog_tiles`'s (C2SP tlog-tiles, the
//! algorithms of Go's checksum database); the note format is `signed_note`'s. The
//! `tlog-cosignature` signature type (0x04), which neither crate has, is written here from the
//! C2SP text.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tlog_tiles::tlog;
pub use tlog_tiles::tlog::Error as TreeError;
pub use tlog_tiles::tlog::{Hash, HashReader};

use crate::audit::AuditEntry;
use crate::canonical::{domain, to_canonical_bytes};
use crate::error::ProtocolError;

/// The most entries one `GET /v2/log/entries` answers.
pub const MAX_ENTRIES_PER_READ: u64 = 1000;

/// The leaf data of an audit entry given as its canonical text (JCS): its signing message.
pub fn leaf_data(entry_text: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(domain::AUDIT_ENTRY.len() + 1 + entry_text.len());
    data.extend_from_slice(domain::AUDIT_ENTRY.as_bytes());
    data.push(0);
    data.extend_from_slice(entry_text);
    data
}

/// The RFC 6962 leaf hash of an audit entry given as its canonical text:
/// `SHA-256(0x00 || leaf data)`.
pub fn leaf_hash_of_text(entry_text: &[u8]) -> Hash {
    tlog::record_hash(&leaf_data(entry_text))
}

/// The RFC 6962 leaf hash of an audit entry.
pub fn leaf_hash(entry: &AuditEntry) -> Result<Hash, ProtocolError> {
    Ok(leaf_hash_of_text(&to_canonical_bytes(entry)?))
}

/// The hashes to store when leaf `index` with `leaf` as its hash is appended, given what is
/// stored for the leaves before it (the stored-hash layout of tlog-tiles: `stored_hash_index`).
pub fn hashes_to_store<R: HashReader>(
    index: u64,
    leaf: Hash,
    stored: &R,
) -> Result<Vec<Hash>, LogError> {
    tlog::stored_hashes_for_record_hash(index, leaf, stored)
        .map_err(|e| LogError::Storage(e.to_string()))
}

/// The index, in the stored-hash layout, of the first hash stored for leaf `index`.
pub fn first_stored_index(index: u64) -> u64 {
    tlog::stored_hash_index(0, index)
}

/// The number of leaves whose hashes fill exactly the first `count` stored hashes (the largest
/// `n` with `stored_hash_count(n) <= count`).
pub fn leaves_of_stored(count: u64) -> u64 {
    let mut lo = 0u64;
    let mut hi = count + 1;
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if tlog::stored_hash_count(mid) <= count {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The root hash of the tree of the first `size` leaves.
pub fn root<R: HashReader>(size: u64, stored: &R) -> Result<Hash, LogError> {
    tlog::tree_hash(size, stored).map_err(|e| LogError::Storage(e.to_string()))
}

/// An inclusion proof (`index` set) or a consistency proof (`old_size` set) in a tree of
/// `size` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    pub v: u32,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_size: Option<u64>,
    /// The proof's hashes, standard base64 with padding, in the order of RFC 9162 section 2.1.
    pub hashes: Vec<String>,
}

fn to_b64(h: &Hash) -> String {
    STANDARD.encode(h.0)
}

/// Decodes a hash written as standard base64 with padding (as checkpoints and proofs write it).
pub fn parse_hash(s: &str) -> Result<Hash, LogError> {
    let raw = STANDARD
        .decode(s)
        .map_err(|_| LogError::BadProof(format!("{s:?} is not base64")))?;
    let raw: [u8; 32] = raw
        .try_into()
        .map_err(|_| LogError::BadProof(format!("{s:?} is not 32 bytes")))?;
    if STANDARD.encode(raw) != s {
        return Err(LogError::BadProof(format!("{s:?} is not canonical base64")));
    }
    Ok(Hash(raw))
}

/// The hash as a checkpoint and a proof write it.
pub fn hash_to_string(h: &Hash) -> String {
    to_b64(h)
}

impl crate::types::Decode for Proof {
    fn validate(&self) -> Result<(), ProtocolError> {
        crate::fields::check_version(self.v)?;
        // A proof in a tree of at most 2^53 leaves has at most 2 * 53 hashes.
        if self.hashes.len() > 128 {
            return Err(ProtocolError::InvalidField {
                field: "hashes",
                reason: "a proof has at most 128 hashes".into(),
            });
        }
        Ok(())
    }
}

impl Proof {
    fn hashes(&self) -> Result<Vec<Hash>, LogError> {
        self.hashes.iter().map(|s| parse_hash(s)).collect()
    }

    /// The proof that leaf `index` is in the tree of `size` leaves.
    pub fn inclusion<R: HashReader>(size: u64, index: u64, stored: &R) -> Result<Proof, LogError> {
        if index >= size {
            return Err(LogError::OutOfRange { index, size });
        }
        let hashes = tlog::prove_record(size, index, stored)
            .map_err(|e| LogError::Storage(e.to_string()))?;
        Ok(Proof {
            v: crate::PROTOCOL_VERSION,
            size,
            index: Some(index),
            old_size: None,
            hashes: hashes.iter().map(to_b64).collect(),
        })
    }

    /// The proof that the tree of `size` leaves extends the one of `old_size` leaves.
    pub fn consistency<R: HashReader>(
        size: u64,
        old_size: u64,
        stored: &R,
    ) -> Result<Proof, LogError> {
        if old_size > size {
            return Err(LogError::OutOfRange {
                index: old_size,
                size,
            });
        }
        let hashes = if old_size == 0 || old_size == size {
            Vec::new()
        } else {
            tlog::prove_tree(size, old_size, stored)
                .map_err(|e| LogError::Storage(e.to_string()))?
        };
        Ok(Proof {
            v: crate::PROTOCOL_VERSION,
            size,
            index: None,
            old_size: Some(old_size),
            hashes: hashes.iter().map(to_b64).collect(),
        })
    }

    /// Checks that this inclusion proof shows `leaf` at its index in the tree `(size, root)`.
    pub fn check_inclusion(&self, size: u64, root: &Hash, leaf: &Hash) -> Result<(), LogError> {
        let index = self
            .index
            .ok_or_else(|| LogError::BadProof("not an inclusion proof".into()))?;
        if self.size != size {
            return Err(LogError::BadProof(format!(
                "the proof is for a tree of {} leaves, the checkpoint's has {size}",
                self.size
            )));
        }
        if index >= size {
            return Err(LogError::OutOfRange { index, size });
        }
        tlog::check_record(&self.hashes()?, size, *root, index, *leaf)
            .map_err(|e| LogError::BadProof(format!("leaf {index} of {size}: {e}")))
    }

    /// Checks that this consistency proof shows the tree `(size, root)` extends `(old, old_root)`.
    pub fn check_consistency(
        &self,
        old: u64,
        old_root: &Hash,
        size: u64,
        root: &Hash,
    ) -> Result<(), LogError> {
        if self.old_size != Some(old) || self.size != size {
            return Err(LogError::BadProof(format!(
                "the proof is from {:?} to {} leaves, not from {old} to {size}",
                self.old_size, self.size
            )));
        }
        if old > size {
            return Err(LogError::BadProof(format!(
                "a tree of {size} leaves cannot extend one of {old}"
            )));
        }
        if old == 0 {
            return if self.hashes.is_empty() {
                Ok(())
            } else {
                Err(LogError::BadProof("the empty tree needs no proof".into()))
            };
        }
        if old == size {
            return if self.hashes.is_empty() && old_root == root {
                Ok(())
            } else {
                Err(LogError::BadProof(format!(
                    "two trees of {size} leaves with different roots"
                )))
            };
        }
        tlog::check_tree(&self.hashes()?, size, *root, old, *old_root)
            .map_err(|e| LogError::BadProof(format!("from {old} to {size} leaves: {e}")))
    }
}

/// One audit entry as `GET /v2/log/entries` answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    pub index: u64,
    pub entry: AuditEntry,
}

/// Stored hashes held in memory, by stored-hash index (for tests, exports and verifiers that
/// rebuild a tree from its leaves).
#[derive(Debug, Default, Clone)]
pub struct MemoryHashes(pub Vec<Hash>);

impl HashReader for MemoryHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.0.get(i).copied())
                    .ok_or(tlog::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl MemoryHashes {
    /// Appends a leaf by its hash.
    pub fn push(&mut self, leaf: Hash) -> Result<(), LogError> {
        let index = self.leaves();
        let new = hashes_to_store(index, leaf, self)?;
        self.0.extend(new);
        Ok(())
    }

    /// The number of leaves.
    pub fn leaves(&self) -> u64 {
        leaves_of_stored(self.0.len() as u64)
    }

    /// The tree over these leaf hashes.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Result<Self, LogError> {
        let mut hashes = MemoryHashes::default();
        for leaf in leaves {
            hashes.push(leaf)?;
        }
        Ok(hashes)
    }
}

mod error;
mod note;
pub use error::LogError;
pub use note::*;

#[cfg(test)]
use note::{cosigned_message, key_id, split_timestamped, LogVerifier, ALG_ED25519};

#[cfg(test)]
mod tests;
