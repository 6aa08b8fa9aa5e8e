//! The log's signed notes: the gateway's checkpoint (C2SP `tlog-checkpoint` in the C2SP
//! signed-note format, signature type 0x01) and a device's `tlog-cosignature/v1` of it
//! (signature type 0x04, written here from the C2SP text).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use signed_note::{Note, VerificationError, Verifier, VerifierList, Verifiers};

use super::error::LogError;
use crate::crypto::{KeyPair, PublicKey, Signature};
use tlog_tiles::tlog::Hash;

/// The signature type of a C2SP signed-note Ed25519 signature (a log's own).
pub(super) const ALG_ED25519: u8 = 0x01;
/// The signature type of a C2SP `tlog-cosignature/v1` Ed25519 cosignature.
const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The origin line (and key name) of the log of the gateway with this key fingerprint.
pub fn origin(gateway_fingerprint: &str) -> String {
    format!("countersign/log/{gateway_fingerprint}")
}

/// The key name of a device cosigning as a witness.
pub fn cosigner_name(device_fingerprint: &str) -> String {
    format!("countersign/device/{device_fingerprint}")
}

fn to_b64(h: &Hash) -> String {
    STANDARD.encode(h.0)
}

/// The C2SP key id of an Ed25519 key under `name` for signature type `alg`:
/// the first 4 bytes of `SHA-256(name || 0x0A || alg || public key)`.
pub(super) fn key_id(name: &str, alg: u8, key: &PublicKey) -> u32 {
    let mut material = Vec::with_capacity(33);
    material.push(alg);
    material.extend_from_slice(&key.to_bytes());
    signed_note::key_id(name, &material)
}

/// A verifier of the gateway's own note signatures (type 0x01).
pub(super) struct LogVerifier {
    pub(super) name: String,
    pub(super) id: u32,
    pub(super) key: PublicKey,
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
pub(super) fn split_timestamped(sig: &[u8]) -> Option<(u64, [u8; 64])> {
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
pub(super) fn cosigned_message(timestamp: u64, note_text: &[u8]) -> Vec<u8> {
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

impl crate::types::Decode for Cosignature {
    fn validate(&self) -> Result<(), crate::ProtocolError> {
        crate::fields::check_version(self.v)?;
        crate::fields::check_ident("device_id", &self.device_id, crate::fields::limits::ID)?;
        crate::fields::check_u53("size", self.size, 1)?;
        crate::fields::check_u53("timestamp", self.timestamp, 0)?;
        if self.root.len() != 44 || self.signature.len() > 128 {
            return Err(crate::ProtocolError::InvalidField {
                field: "signature",
                reason: "a root is 44 characters of base64, a signature 104".into(),
            });
        }
        Ok(())
    }
}

/// The gateway's answer to an accepted cosignature: the size of the checkpoint it now holds
/// the device's cosignature of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignatureAck {
    pub v: u32,
    pub size: u64,
}

impl crate::types::Decode for CosignatureAck {
    fn validate(&self) -> Result<(), crate::ProtocolError> {
        crate::fields::check_version(self.v)
    }
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
