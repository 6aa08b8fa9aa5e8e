//! The authenticator's half of the PIN/UV auth protocols 1 and 2 (CTAP 2.1 section 6.5.6 and
//! 6.5.7): its key-agreement key, the shared secret, `encrypt`, `decrypt` and `verify`.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use p256::ecdh::EphemeralSecret;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use p256::{EncodedPoint, PublicKey};
use rand::RngCore;
use serde_cbor_2::Value;
use sha2::{Digest, Sha256};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// One PIN/UV auth protocol, by its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    One,
    Two,
}

impl Protocol {
    pub fn from_number(n: i128) -> Option<Protocol> {
        match n {
            1 => Some(Protocol::One),
            2 => Some(Protocol::Two),
            _ => None,
        }
    }

    pub fn number(self) -> u32 {
        match self {
            Protocol::One => 1,
            Protocol::Two => 2,
        }
    }

    /// `ecdh(peerCoseKey)` then `kdf(Z)`: the shared secret from the platform's public key.
    pub fn shared_secret(self, ours: &EphemeralSecret, platform: &Value) -> Option<Vec<u8>> {
        let Value::Map(m) = platform else { return None };
        let get = |k: i128| match m.get(&Value::Integer(k)) {
            Some(Value::Bytes(b)) if b.len() == 32 => Some(b.clone()),
            _ => None,
        };
        let (x, y) = (get(-2)?, get(-3)?);
        let point =
            EncodedPoint::from_affine_coordinates(x.as_slice().into(), y.as_slice().into(), false);
        let peer = Option::<PublicKey>::from(PublicKey::from_encoded_point(&point))?;
        let z = ours.diffie_hellman(&peer);
        let z = z.raw_secret_bytes();
        Some(match self {
            Protocol::One => Sha256::digest(z.as_slice()).to_vec(),
            Protocol::Two => {
                let hk = hkdf::Hkdf::<Sha256>::new(Some(&[0u8; 32]), z.as_slice());
                let mut out = vec![0u8; 64];
                hk.expand(b"CTAP2 HMAC key", &mut out[..32]).ok()?;
                hk.expand(b"CTAP2 AES key", &mut out[32..]).ok()?;
                out
            }
        })
    }

    fn aes_key(self, key: &[u8]) -> &[u8] {
        match self {
            Protocol::One => &key[..32],
            Protocol::Two => &key[32..64],
        }
    }

    /// `encrypt(key, demPlaintext)`: AES-256-CBC, a zero IV (protocol 1) or a random one sent
    /// first (protocol 2).
    pub fn encrypt(self, key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut iv = [0u8; 16];
        if self == Protocol::Two {
            rand::thread_rng().fill_bytes(&mut iv);
        }
        let ct = Aes256CbcEnc::new(self.aes_key(key).into(), &iv.into())
            .encrypt_padded_vec_mut::<NoPadding>(plaintext);
        match self {
            Protocol::One => ct,
            Protocol::Two => [iv.as_slice(), &ct].concat(),
        }
    }

    /// `decrypt(key, demCiphertext)`; `None` when the length is not whole blocks.
    pub fn decrypt(self, key: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
        let (iv, ct) = match self {
            Protocol::One => ([0u8; 16], ciphertext),
            Protocol::Two => {
                let iv: [u8; 16] = ciphertext.get(..16)?.try_into().ok()?;
                (iv, &ciphertext[16..])
            }
        };
        if ct.is_empty() || ct.len() % 16 != 0 {
            return None;
        }
        Aes256CbcDec::new(self.aes_key(key).into(), &iv.into())
            .decrypt_padded_vec_mut::<NoPadding>(ct)
            .ok()
    }

    /// `verify(key, message, signature)`: HMAC-SHA-256, its first 16 bytes in protocol 1, keyed
    /// by the shared secret's HMAC half or by a pinUvAuthToken.
    pub fn verify(self, key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        let key = match self {
            Protocol::One => key,
            Protocol::Two => &key[..32.min(key.len())],
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            return false;
        };
        mac.update(message);
        let full = mac.finalize().into_bytes();
        let want = match self {
            Protocol::One => &full[..16],
            Protocol::Two => &full[..],
        };
        want == signature
    }
}

/// The COSE_Key of the authenticator's key-agreement key, as `getPublicKey()` gives it (alg
/// -25, whatever the protocol).
pub fn cose_agreement_key(ours: &EphemeralSecret) -> Value {
    let point = ours.public_key().to_encoded_point(false);
    let coord =
        |c: Option<&p256::FieldBytes>| Value::Bytes(c.map(|b| b.to_vec()).unwrap_or_default());
    Value::Map(
        [
            (Value::Integer(1), Value::Integer(2)),
            (Value::Integer(3), Value::Integer(-25)),
            (Value::Integer(-1), Value::Integer(1)),
            (Value::Integer(-2), coord(point.x())),
            (Value::Integer(-3), coord(point.y())),
        ]
        .into_iter()
        .collect(),
    )
}
