//! Ed25519 keys and signatures, SHA-256 digests and the device authorization header.
//!
//! Encodings on the wire: public keys and signatures are unpadded base64url of their raw bytes
//! (32 and 64 bytes); digests and key fingerprints are lowercase hex of 32 bytes.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::canonical::{domain, signing_message};
use crate::error::ProtocolError;

/// A SHA-256 digest, written as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// SHA-256 of raw bytes.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self::of_parts(&[bytes])
    }

    /// SHA-256 of the concatenation of `parts`, without copying them together. (ring's
    /// SHA-256 uses the CPU's vector units; on CPUs without SHA extensions it is about twice as
    /// fast as a portable implementation, which matters when verifying long audit logs.)
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Digest(out)
    }

    /// SHA-256 of `domain || 0x00 || JCS(value)`.
    pub fn of<T: Serialize>(domain: &str, value: &T) -> Result<Self, ProtocolError> {
        Ok(Self::of_bytes(&signing_message(domain, value)?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn parse(field: &'static str, s: &str) -> Result<Self, ProtocolError> {
        let bad = || ProtocolError::InvalidEncoding {
            field,
            encoding: "lowercase hex SHA-256 digest",
        };
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut arr = [0u8; 32];
        hex::decode_to_slice(s, &mut arr).map_err(|_| bad())?;
        Ok(Digest(arr))
    }

    /// Compares in constant time.
    pub fn ct_eq(&self, other: &Digest) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parsed from the borrowed text where the input allows it: no allocation per digest.
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a lowercase hex SHA-256 digest")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Digest, E> {
                Digest::parse("digest", s).map_err(E::custom)
            }
        }
        d.deserialize_str(Hex)
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    pub fn from_bytes(field: &'static str, raw: &[u8]) -> Result<Self, ProtocolError> {
        let bad = || ProtocolError::InvalidEncoding {
            field,
            encoding: "Ed25519 public key",
        };
        let arr: [u8; 32] = raw.try_into().map_err(|_| bad())?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&arr).map_err(|_| bad())?;
        // A weak (small-order) key would let anyone produce signatures that verify.
        if key.is_weak() {
            return Err(bad());
        }
        Ok(PublicKey(key))
    }

    pub fn parse(field: &'static str, s: &str) -> Result<Self, ProtocolError> {
        let raw = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| ProtocolError::InvalidEncoding {
                field,
                encoding: "unpadded base64url",
            })?;
        Self::from_bytes(field, &raw)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.to_bytes())
    }

    /// The key fingerprint: lowercase hex of SHA-256 over the 32 raw key bytes.
    pub fn fingerprint(&self) -> String {
        Digest::of_bytes(&self.0.to_bytes()).to_hex()
    }

    /// Verifies `signature` over `domain || 0x00 || JCS(value)`.
    pub fn verify<T: Serialize>(
        &self,
        domain: &str,
        value: &T,
        signature: &Signature,
    ) -> Result<(), ProtocolError> {
        let msg = signing_message(domain, value)?;
        self.verify_raw(&msg, signature)
    }

    /// Verifies `signature` over exactly `msg`, rejecting non-canonical signatures.
    pub fn verify_raw(&self, msg: &[u8], signature: &Signature) -> Result<(), ProtocolError> {
        self.0
            .verify_strict(msg, &signature.0)
            .map_err(|_| ProtocolError::BadSignature)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PublicKey::parse("public_key", &s).map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(ed25519_dalek::Signature);

impl Signature {
    pub fn parse(field: &'static str, s: &str) -> Result<Self, ProtocolError> {
        let bad = || ProtocolError::InvalidEncoding {
            field,
            encoding: "unpadded base64url Ed25519 signature",
        };
        let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let arr: [u8; 64] = raw.try_into().map_err(|_| bad())?;
        Ok(Signature(ed25519_dalek::Signature::from_bytes(&arr)))
    }

    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.to_bytes())
    }

    /// From the 64 raw bytes (R || S); whether they verify is for [`PublicKey::verify_raw`].
    pub fn from_bytes(raw: [u8; 64]) -> Self {
        Signature(ed25519_dalek::Signature::from_bytes(&raw))
    }

    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes()
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_base64())
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Signature::parse("signature", &s).map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 signing key. Its `Debug` output never shows the secret.
pub struct KeyPair(ed25519_dalek::SigningKey);

impl KeyPair {
    pub fn generate() -> Self {
        KeyPair(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        KeyPair(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The 32-byte secret seed. Callers store it with owner-only permissions.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `domain || 0x00 || JCS(value)`.
    pub fn sign<T: Serialize>(&self, domain: &str, value: &T) -> Result<Signature, ProtocolError> {
        let msg = signing_message(domain, value)?;
        Ok(self.sign_raw(&msg))
    }

    pub fn sign_raw(&self, msg: &[u8]) -> Signature {
        Signature(self.0.sign(msg))
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair(public={})", self.public().to_base64())
    }
}

/// The `Authorization` header a paired device sends on its own endpoints (the stream, the
/// checkpoint upload):
///
/// `Countersign-Device device=<id>, ts=<unix seconds>, nonce=<hex>, sig=<base64url>`
///
/// `sig` covers `countersign/v1/device-auth || 0x00 || JCS({"device": id, "method": M,
/// "nonce": n, "path": p, "ts": ts})`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuth {
    pub device: String,
    pub ts: i64,
    pub nonce: String,
    pub signature: Signature,
}

#[derive(Serialize)]
struct DeviceAuthBody<'a> {
    device: &'a str,
    method: &'a str,
    nonce: &'a str,
    path: &'a str,
    ts: i64,
}

/// The scheme name in the `Authorization` header.
pub const DEVICE_AUTH_SCHEME: &str = "Countersign-Device";

impl DeviceAuth {
    pub fn create(
        key: &KeyPair,
        device: &str,
        method: &str,
        path: &str,
        ts: i64,
    ) -> Result<Self, ProtocolError> {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let body = DeviceAuthBody {
            device,
            method,
            nonce: &nonce,
            path,
            ts,
        };
        let signature = key.sign(domain::DEVICE_AUTH, &body)?;
        Ok(DeviceAuth {
            device: device.to_owned(),
            ts,
            nonce,
            signature,
        })
    }

    pub fn to_header(&self) -> String {
        format!(
            "{DEVICE_AUTH_SCHEME} device={}, ts={}, nonce={}, sig={}",
            self.device,
            self.ts,
            self.nonce,
            self.signature.to_base64()
        )
    }

    pub fn parse_header(h: &str) -> Result<Self, ProtocolError> {
        let err = |m: &str| ProtocolError::InvalidAuthHeader(m.to_owned());
        if h.len() > 512 {
            return Err(err("header is too long"));
        }
        let rest = h
            .strip_prefix(DEVICE_AUTH_SCHEME)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or_else(|| err("scheme is not Countersign-Device"))?;
        let (mut device, mut ts, mut nonce, mut sig) = (None, None, None, None);
        for part in rest.split(',') {
            let (k, v) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| err("parameter without `=`"))?;
            let slot = match k {
                "device" => &mut device,
                "ts" => &mut ts,
                "nonce" => &mut nonce,
                "sig" => &mut sig,
                _ => return Err(err("unknown parameter")),
            };
            if slot.replace(v.to_owned()).is_some() {
                return Err(err("repeated parameter"));
            }
        }
        let device = device.ok_or_else(|| err("missing device"))?;
        if device.is_empty() || device.len() > 64 {
            return Err(err("device id has a bad length"));
        }
        let ts = ts
            .ok_or_else(|| err("missing ts"))?
            .parse::<i64>()
            .map_err(|_| err("ts is not an integer"))?;
        let nonce = nonce.ok_or_else(|| err("missing nonce"))?;
        if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("nonce is not 16 bytes of hex"));
        }
        let signature = Signature::parse("sig", &sig.ok_or_else(|| err("missing sig"))?)?;
        Ok(DeviceAuth {
            device,
            ts,
            nonce,
            signature,
        })
    }

    /// Checks the signature for this method and path with the device's registered key.
    pub fn verify(&self, key: &PublicKey, method: &str, path: &str) -> Result<(), ProtocolError> {
        let body = DeviceAuthBody {
            device: &self.device,
            method,
            nonce: &self.nonce,
            path,
            ts: self.ts,
        };
        key.verify(domain::DEVICE_AUTH, &body, &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_with_domain() {
        let k = KeyPair::from_seed(&[7; 32]);
        let sig = k.sign("a", &serde_json::json!({"x": 1})).unwrap();
        k.public()
            .verify("a", &serde_json::json!({"x": 1}), &sig)
            .unwrap();
        assert_eq!(
            k.public().verify("b", &serde_json::json!({"x": 1}), &sig),
            Err(ProtocolError::BadSignature)
        );
    }

    #[test]
    fn device_auth_round_trip_and_binding() {
        let k = KeyPair::generate();
        let a = DeviceAuth::create(&k, "dev1", "GET", "/v1/stream", 100).unwrap();
        let parsed = DeviceAuth::parse_header(&a.to_header()).unwrap();
        assert_eq!(parsed, a);
        parsed.verify(&k.public(), "GET", "/v1/stream").unwrap();
        assert!(parsed.verify(&k.public(), "POST", "/v1/stream").is_err());
        assert!(parsed.verify(&k.public(), "GET", "/v1/other").is_err());
    }

    #[test]
    fn bad_headers_are_typed_errors() {
        for h in [
            "",
            "Bearer x",
            "Countersign-Device ",
            "Countersign-Device device=a",
            "Countersign-Device device=a, ts=x, nonce=00, sig=AA",
            "Countersign-Device device=a, device=b",
            "Countersign-Device evil=1",
        ] {
            assert!(matches!(
                DeviceAuth::parse_header(h),
                Err(ProtocolError::InvalidAuthHeader(_) | ProtocolError::InvalidEncoding { .. })
            ));
        }
    }

    #[test]
    fn digest_parse_rejects_uppercase_and_wrong_length() {
        assert!(Digest::parse("d", &"A".repeat(64)).is_err());
        assert!(Digest::parse("d", &"a".repeat(63)).is_err());
        assert!(Digest::parse("d", &"a".repeat(64)).is_ok());
    }

    #[test]
    fn weak_public_key_is_rejected() {
        // The identity point is a small-order key.
        let mut raw = [0u8; 32];
        raw[0] = 1;
        assert!(PublicKey::from_bytes("k", &raw).is_err());
    }
}
