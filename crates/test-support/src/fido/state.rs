//! The fake key's state and the shapes its commands share: how it is made ([`KeyConfig`]),
//! what it holds, a command's parameters and what a command answers.

use std::collections::BTreeMap;

use p256::ecdh::EphemeralSecret;
use p256::ecdsa::SigningKey;
use serde_cbor_2::Value;
use sha2::{Digest, Sha256};
use webauthn_authenticator_rs::error::CtapError;

use super::pin::Protocol;

/// The CTAP versions a fake key speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctap {
    /// CTAP 2.0 only: PIN protocol 1, no selection command.
    V20,
    /// CTAP 2.1: selection, pinUvAuthToken with permissions.
    V21,
    /// A U2F (CTAP1) key: every CTAP2 command is unknown to it.
    U2fOnly,
}

/// What the fake person does when the key asks for a touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Touches at once.
    Touch,
    /// Never touches: the key waits until the platform cancels or gives up.
    Ignore,
    /// Pulls the key out instead of touching it.
    PullOut,
}

/// How a fake key is made.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub ctap: Ctap,
    /// Whether the key has the clientPIN feature at all.
    pub supports_pin: bool,
    /// A PIN already set.
    pub pin: Option<String>,
    /// PIN/UV auth protocols, in the key's order of preference.
    pub protocols: Vec<Protocol>,
    /// Built-in verification (a fingerprint reader) with a finger enrolled.
    pub builtin_uv: bool,
    pub aaguid: [u8; 16],
    pub presence: Presence,
}

impl KeyConfig {
    /// A CTAP 2.1 key with PIN protocols 2 and 1 and `pin` set.
    pub fn with_pin(pin: &str) -> KeyConfig {
        KeyConfig {
            ctap: Ctap::V21,
            supports_pin: true,
            pin: Some(pin.to_owned()),
            protocols: vec![Protocol::Two, Protocol::One],
            builtin_uv: false,
            aaguid: *b"countersign-fake",
            presence: Presence::Touch,
        }
    }
}

/// PIN attempts a key allows before it blocks (CTAP 2.1 section 6.5.2.1).
pub const PIN_RETRIES: u32 = 8;

pub(super) struct Credential {
    pub(super) id: Vec<u8>,
    pub(super) rp_id: String,
    pub(super) user_id: Vec<u8>,
    pub(super) key: SigningKey,
}

pub(super) struct PinToken {
    pub(super) token: Vec<u8>,
    pub(super) protocol: Protocol,
    pub(super) permissions: u8,
    pub(super) rp_id: Option<String>,
}

pub(super) struct State {
    pub(super) config: KeyConfig,
    pub(super) pin_hash: Option<[u8; 16]>,
    pub(super) retries: u32,
    pub(super) consecutive_failures: u32,
    pub(super) agreement: EphemeralSecret,
    pub(super) token: Option<PinToken>,
    pub(super) credentials: Vec<Credential>,
    pub(super) counter: u32,
    pub(super) removed: bool,
    pub(super) log: Vec<String>,
}

/// A CTAP status other than success.
pub(super) type Status = CtapError;
pub(super) type Answer = Result<BTreeMap<i128, Value>, Status>;

/// What a command needs before it can finish.
pub(super) enum Step {
    Done(Answer),
    /// The answer once the person has touched the key.
    AfterTouch(Box<dyn FnOnce(&mut State) -> Answer + Send>),
}

pub(super) struct Params(pub(super) BTreeMap<i128, Value>);

impl Params {
    pub(super) fn bytes(&self, k: i128) -> Option<Vec<u8>> {
        match self.0.get(&k) {
            Some(Value::Bytes(b)) => Some(b.clone()),
            _ => None,
        }
    }
    pub(super) fn text(&self, k: i128) -> Option<String> {
        match self.0.get(&k) {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => None,
        }
    }
    pub(super) fn int(&self, k: i128) -> Option<i128> {
        match self.0.get(&k) {
            Some(Value::Integer(i)) => Some(*i),
            _ => None,
        }
    }
    pub(super) fn map(&self, k: i128) -> Option<&BTreeMap<Value, Value>> {
        match self.0.get(&k) {
            Some(Value::Map(m)) => Some(m),
            _ => None,
        }
    }
    pub(super) fn option(&self, k: i128, name: &str) -> Option<bool> {
        match self.map(k)?.get(&Value::Text(name.into())) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }
    pub(super) fn get(&self, k: i128) -> Option<&Value> {
        self.0.get(&k)
    }
}

pub(super) fn text_key(m: &BTreeMap<Value, Value>, k: &str) -> Option<Value> {
    m.get(&Value::Text(k.into())).cloned()
}

pub(super) fn pin_hash(pin: &str) -> [u8; 16] {
    let d = Sha256::digest(pin.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// The permissions a pinUvAuthToken may carry (CTAP 2.1 section 6.5.5.7).
pub(super) const PERMISSION_MC: u8 = 0x01;
pub(super) const PERMISSION_GA: u8 = 0x02;
