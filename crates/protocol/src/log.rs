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
use signed_note::{Note, VerificationError, Verifier, VerifierList, Verifiers};
use tlog_tiles::tlog;
pub use tlog_tiles::tlog::Error as TreeError;
pub use tlog_tiles::tlog::{Hash, HashReader};

use crate::audit::AuditEntry;
use crate::canonical::{domain, to_canonical_bytes};
use crate::crypto::{KeyPair, PublicKey, Signature};
use crate::error::ProtocolError;

/// The signature type of a C2SP signed-note Ed25519 signature (a log's own).
const ALG_ED25519: u8 = 0x01;
/// The signature type of a C2SP `tlog-cosignature/v1` Ed25519 cosignature.
const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The most entries one `GET /v2/log/entries` answers.
pub const MAX_ENTRIES_PER_READ: u64 = 1000;

/// Why a log checkpoint, a proof or a cosignature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("the checkpoint is not a signed note: {0}")]
    MalformedNote(String),
    #[error("the checkpoint body is not a tlog-checkpoint")]
    MalformedCheckpoint,
    #[error("the checkpoint's origin is {found:?}, not {expected:?}")]
    WrongOrigin { expected: String, found: String },
    #[error("the checkpoint carries no valid signature of the gateway key ({0})")]
    BadSignature(String),
    #[error("the proof does not verify: {0}")]
    BadProof(String),
    #[error("the cosignature does not verify: {0}")]
    BadCosignature(String),
    #[error("the log has no leaf {index} (its size is {size})")]
    OutOfRange { index: u64, size: u64 },
    #[error("the stored tree hashes cannot be read: {0}")]
    Storage(String),
}

/// The origin line (and key name) of the log of the gateway with this key fingerprint.
pub fn origin(gateway_fingerprint: &str) -> String {
    format!("countersign/log/{gateway_fingerprint}")
}

/// The key name of a device cosigning as a witness.
pub fn cosigner_name(device_fingerprint: &str) -> String {
    format!("countersign/device/{device_fingerprint}")
}

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

/// The C2SP key id of an Ed25519 key under `name` for signature type `alg`:
/// the first 4 bytes of `SHA-256(name || 0x0A || alg || public key)`.
fn key_id(name: &str, alg: u8, key: &PublicKey) -> u32 {
    let mut material = Vec::with_capacity(33);
    material.push(alg);
    material.extend_from_slice(&key.to_bytes());
    signed_note::key_id(name, &material)
}

/// A verifier of the gateway's own note signatures (type 0x01).
struct LogVerifier {
    name: String,
    id: u32,
    key: PublicKey,
}

impl Verifier for LogVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(raw): Result<[u8; 64], _> = sig.try_into() else {
            return false;
        };
        self.key
            .verify_raw(msg, &Signature::from_bytes(raw))
            .is_ok()
    }
}

/// A verifier of `tlog-cosignature/v1` signatures (type 0x04): the signature is an 8-byte
/// big-endian timestamp and an Ed25519 signature over `cosignature/v1\ntime <timestamp>\n`
/// followed by the note text.
struct CosignatureVerifier {
    name: String,
    id: u32,
    key: PublicKey,
}

impl Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((timestamp, signature)) = split_timestamped(sig) else {
            return false;
        };
        self.key
            .verify_raw(
                &cosigned_message(timestamp, msg),
                &Signature::from_bytes(signature),
            )
            .is_ok()
    }
}

/// Splits a `timestamped_signature` (tlog-cosignature) into its timestamp and Ed25519 signature.
fn split_timestamped(sig: &[u8]) -> Option<(u64, [u8; 64])> {
    if sig.len() != 72 {
        return None;
    }
    let (ts, signature) = sig.split_at(8);
    let timestamp = u64::from_be_bytes(ts.try_into().ok()?);
    if timestamp > i64::MAX as u64 {
        return None;
    }
    Some((timestamp, signature.try_into().ok()?))
}

/// The message a `tlog-cosignature/v1` signs over a note's text.
fn cosigned_message(timestamp: u64, note_text: &[u8]) -> Vec<u8> {
    let mut msg = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    msg.extend_from_slice(note_text);
    msg
}

/// A checkpoint whose gateway signature verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCheckpoint {
    pub size: u64,
    pub root: Hash,
    /// The note's text (the three checkpoint lines), as signed.
    pub text: String,
}

/// The note text of the checkpoint of `(size, root)` for the gateway with this fingerprint.
pub fn checkpoint_text(gateway_fingerprint: &str, size: u64, root: &Hash) -> String {
    format!(
        "{}\n{size}\n{}\n",
        origin(gateway_fingerprint),
        to_b64(root)
    )
}

/// Signs the checkpoint of `(size, root)` with the gateway key: the whole signed note.
pub fn sign_checkpoint(gateway: &KeyPair, size: u64, root: &Hash) -> String {
    let fingerprint = gateway.public().fingerprint();
    let name = origin(&fingerprint);
    let text = checkpoint_text(&fingerprint, size, root);
    let signature = gateway.sign_raw(text.as_bytes());
    let mut sig = key_id(&name, ALG_ED25519, &gateway.public())
        .to_be_bytes()
        .to_vec();
    sig.extend_from_slice(&signature.to_bytes());
    format!("{text}\n\u{2014} {name} {}\n", STANDARD.encode(sig))
}

/// Verifies a log checkpoint note under the gateway key: the origin, the checkpoint body and
/// the gateway's signature. Other signature lines (cosignatures) are left to
/// [`verify_cosignatures`].
pub fn verify_checkpoint(note: &str, gateway: &PublicKey) -> Result<VerifiedCheckpoint, LogError> {
    let fingerprint = gateway.fingerprint();
    let name = origin(&fingerprint);
    let parsed =
        Note::from_bytes(note.as_bytes()).map_err(|e| LogError::MalformedNote(e.to_string()))?;
    let body = tlog_tiles::checkpoint::Checkpoint::from_bytes(parsed.text())
        .map_err(|_| LogError::MalformedCheckpoint)?;
    if body.origin() != name {
        return Err(LogError::WrongOrigin {
            expected: name,
            found: body.origin().to_owned(),
        });
    }
    if !body.extension().is_empty() {
        return Err(LogError::MalformedCheckpoint);
    }
    let verifier = LogVerifier {
        id: key_id(&name, ALG_ED25519, gateway),
        name,
        key: *gateway,
    };
    let known = VerifierList::new(vec![Box::new(verifier)]);
    parsed
        .verify(&known)
        .map_err(|e| LogError::BadSignature(e.to_string()))?;
    let text = String::from_utf8(parsed.text().to_vec())
        .map_err(|e| LogError::MalformedNote(e.to_string()))?;
    Ok(VerifiedCheckpoint {
        size: body.size(),
        root: *body.hash(),
        text,
    })
}

/// A device's cosignature of a checkpoint, as uploaded to `POST /v2/log/cosignatures`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cosignature {
    pub v: u32,
    pub device_id: String,
    pub size: u64,
    /// The cosigned root, standard base64 with padding.
    pub root: String,
    pub timestamp: u64,
    /// The signature line's value: base64 of the 4-byte key id, the 8-byte big-endian
    /// timestamp and the 64-byte Ed25519 signature.
    pub signature: String,
}

/// Co-signs a verified checkpoint with a device key at `timestamp` (POSIX seconds).
pub fn cosign(
    device: &KeyPair,
    device_id: &str,
    checkpoint: &VerifiedCheckpoint,
    timestamp: u64,
) -> Cosignature {
    let name = cosigner_name(&device.public().fingerprint());
    let signature = device.sign_raw(&cosigned_message(timestamp, checkpoint.text.as_bytes()));
    let mut sig = key_id(&name, ALG_COSIGNATURE_V1, &device.public())
        .to_be_bytes()
        .to_vec();
    sig.extend_from_slice(&timestamp.to_be_bytes());
    sig.extend_from_slice(&signature.to_bytes());
    Cosignature {
        v: crate::PROTOCOL_VERSION,
        device_id: device_id.to_owned(),
        size: checkpoint.size,
        root: to_b64(&checkpoint.root),
        timestamp,
        signature: STANDARD.encode(sig),
    }
}

impl Cosignature {
    /// Checks this cosignature over `checkpoint` under the device key, and returns the
    /// signature line it adds to the note (`— <key name> <signature>`).
    pub fn verify(
        &self,
        checkpoint: &VerifiedCheckpoint,
        device: &PublicKey,
    ) -> Result<String, LogError> {
        if self.size != checkpoint.size || self.root != to_b64(&checkpoint.root) {
            return Err(LogError::BadCosignature(format!(
                "it names the tree ({}, {}), the checkpoint is ({}, {})",
                self.size,
                self.root,
                checkpoint.size,
                to_b64(&checkpoint.root)
            )));
        }
        let name = cosigner_name(&device.fingerprint());
        let raw = STANDARD
            .decode(&self.signature)
            .map_err(|_| LogError::BadCosignature("the signature is not base64".into()))?;
        if raw.len() != 76 {
            return Err(LogError::BadCosignature(format!(
                "the signature is {} bytes, not 76",
                raw.len()
            )));
        }
        let (id, sig) = raw.split_at(4);
        let verifier = CosignatureVerifier {
            id: key_id(&name, ALG_COSIGNATURE_V1, device),
            name: name.clone(),
            key: *device,
        };
        if id != verifier.id.to_be_bytes() {
            return Err(LogError::BadCosignature(
                "the key id is not this device's".into(),
            ));
        }
        match split_timestamped(sig) {
            Some((ts, _)) if ts == self.timestamp => {}
            _ => {
                return Err(LogError::BadCosignature(
                    "the signed timestamp is not the cosignature's".into(),
                ))
            }
        }
        if !verifier.verify(checkpoint.text.as_bytes(), sig) {
            return Err(LogError::BadCosignature(
                "the signature does not verify under the device key".into(),
            ));
        }
        Ok(format!("\u{2014} {name} {}", self.signature))
    }
}

/// A witness a verifier knows: its name (from its device fingerprint) and key.
pub struct Witness {
    pub key: PublicKey,
}

struct Witnesses(Vec<CosignatureVerifier>);

impl Verifiers for Witnesses {
    fn verifier(&self, name: &str, id: u32) -> Result<&dyn Verifier, VerificationError> {
        self.0
            .iter()
            .find(|v| v.name == name && v.id == id)
            .map(|v| v as &dyn Verifier)
            .ok_or(VerificationError::UnknownKey {
                name: name.to_owned(),
                id,
            })
    }
}

/// Verifies the cosignature lines of `note` by the given witnesses and returns the
/// fingerprints of those whose cosignature verified. A line by a key not listed is skipped; a
/// line by a listed key that does not verify fails the whole note.
pub fn verify_cosignatures(note: &str, witnesses: &[Witness]) -> Result<Vec<String>, LogError> {
    let parsed =
        Note::from_bytes(note.as_bytes()).map_err(|e| LogError::MalformedNote(e.to_string()))?;
    let known = Witnesses(
        witnesses
            .iter()
            .map(|w| {
                let name = cosigner_name(&w.key.fingerprint());
                CosignatureVerifier {
                    id: key_id(&name, ALG_COSIGNATURE_V1, &w.key),
                    name,
                    key: w.key,
                }
            })
            .collect(),
    );
    match parsed.verify(&known) {
        Ok((verified, _)) => Ok(verified
            .iter()
            .filter_map(|s| {
                s.name()
                    .strip_prefix("countersign/device/")
                    .map(str::to_owned)
            })
            .collect()),
        Err(signed_note::NoteError::UnverifiedNote) => Ok(Vec::new()),
        Err(e) => Err(LogError::BadCosignature(e.to_string())),
    }
}

/// Adds cosignature lines (as [`Cosignature::verify`] returns them) to a signed checkpoint note.
pub fn with_cosignatures(note: &str, lines: &[String]) -> String {
    let mut out = note.to_owned();
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out
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

#[cfg(test)]
mod tests;
