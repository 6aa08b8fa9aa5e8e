//! A fake CTAP2 security key, written from the CTAP 2.1 specification, behind
//! webauthn-authenticator-rs's public [`Token`] interface: what `CtapAuthenticator` drives
//! over USB HID it drives here in process, command by command (CBOR in, status and CBOR out).
//!
//! It has what the product must handle and `SoftToken` lacks: a clientPIN with PIN/UV auth
//! protocols 1 and 2, retries that count down and block, built-in verification, CTAP 2.1
//! selection, credentials that are not there, a key pulled out, a touch that never comes, and
//! a U2F-only key. Tests change its state while a ceremony runs through a [`FakeKey`] handle.

mod host;
mod pin;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use p256::ecdh::EphemeralSecret;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use rand::rngs::OsRng;
use rand::RngCore;
use serde_cbor_2::Value;
use sha2::{Digest, Sha256};
use webauthn_authenticator_rs::error::{CtapError, WebauthnCError};
use webauthn_authenticator_rs::transport::Token;
use webauthn_authenticator_rs::ui::UiCallback;
use webauthn_rs_proto::AuthenticatorTransport;

pub use host::{Asked, FakeKeys, ScriptedPerson};
pub use pin::Protocol;

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

struct Credential {
    id: Vec<u8>,
    rp_id: String,
    user_id: Vec<u8>,
    key: SigningKey,
}

struct PinToken {
    token: Vec<u8>,
    protocol: Protocol,
    permissions: u8,
    rp_id: Option<String>,
}

struct State {
    config: KeyConfig,
    pin_hash: Option<[u8; 16]>,
    retries: u32,
    consecutive_failures: u32,
    agreement: EphemeralSecret,
    token: Option<PinToken>,
    credentials: Vec<Credential>,
    counter: u32,
    removed: bool,
    log: Vec<String>,
}

/// A handle on one fake key: make tokens for it, change what the person does, look inside.
#[derive(Clone)]
pub struct FakeKey {
    state: Arc<Mutex<State>>,
}

impl FakeKey {
    pub fn new(config: KeyConfig) -> FakeKey {
        let pin_hash = config.pin.as_deref().map(pin_hash);
        FakeKey {
            state: Arc::new(Mutex::new(State {
                config,
                pin_hash,
                retries: PIN_RETRIES,
                consecutive_failures: 0,
                agreement: EphemeralSecret::random(&mut OsRng),
                token: None,
                credentials: Vec::new(),
                counter: 0,
                removed: false,
                log: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection to the key, as a transport's enumeration would give it.
    pub fn token(&self) -> FakeToken {
        FakeToken { key: self.clone() }
    }

    pub fn set_presence(&self, presence: Presence) {
        self.lock().config.presence = presence;
    }

    /// Plugs the key back in: it answers again, and a power cycle clears the three-strikes
    /// PIN block (not the retries counter).
    pub fn plug_in(&self) {
        let mut s = self.lock();
        s.removed = false;
        s.consecutive_failures = 0;
        s.agreement = EphemeralSecret::random(&mut OsRng);
        s.token = None;
    }

    pub fn pull_out(&self) {
        self.lock().removed = true;
    }

    pub fn pin_retries(&self) -> u32 {
        self.lock().retries
    }

    pub fn has_pin(&self) -> bool {
        self.lock().pin_hash.is_some()
    }

    pub fn credential_count(&self) -> usize {
        self.lock().credentials.len()
    }

    /// Sets the signature counter, e.g. back, as a cloned key would show it.
    pub fn set_counter(&self, counter: u32) {
        self.lock().counter = counter;
    }

    /// The commands the key was sent, by name (`getInfo`, `clientPIN.getPINRetries`, ...).
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }
}

/// One connection to a [`FakeKey`], driven through [`Token`].
pub struct FakeToken {
    key: FakeKey,
}

impl std::fmt::Debug for FakeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeToken").finish_non_exhaustive()
    }
}

/// A CTAP status other than success.
type Status = CtapError;
type Answer = Result<BTreeMap<i128, Value>, Status>;

/// What a command needs before it can finish.
enum Step {
    Done(Answer),
    /// The answer once the person has touched the key.
    AfterTouch(Box<dyn FnOnce(&mut State) -> Answer + Send>),
}

#[async_trait]
impl Token for FakeToken {
    type Id = usize;

    fn get_transport(&self) -> AuthenticatorTransport {
        AuthenticatorTransport::Usb
    }

    async fn transmit_raw<U>(&mut self, cbor: &[u8], ui: &U) -> Result<Vec<u8>, WebauthnCError>
    where
        U: UiCallback,
    {
        let step = {
            let mut s = self.key.lock();
            if s.removed {
                return Err(removed());
            }
            handle(&mut s, cbor)
        };
        let answer = match step {
            Step::Done(a) => a,
            Step::AfterTouch(finish) => {
                ui.request_touch();
                loop {
                    let presence = {
                        let s = self.key.lock();
                        if s.removed {
                            return Err(removed());
                        }
                        s.config.presence
                    };
                    match presence {
                        Presence::Touch => break,
                        Presence::PullOut => {
                            self.key.pull_out();
                            return Err(removed());
                        }
                        Presence::Ignore => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                finish(&mut self.key.lock())
            }
        };
        match answer {
            Ok(map) if map.is_empty() => Ok(Vec::new()),
            Ok(map) => {
                let map: BTreeMap<Value, Value> = map
                    .into_iter()
                    .map(|(k, v)| (Value::Integer(k), v))
                    .collect();
                serde_cbor_2::to_vec(&Value::Map(map)).map_err(|_| WebauthnCError::Cbor)
            }
            Err(status) => Err(WebauthnCError::Ctap(status)),
        }
    }

    async fn cancel(&mut self) -> Result<(), WebauthnCError> {
        self.key.lock().log.push("cancel".into());
        Ok(())
    }

    async fn init(&mut self) -> Result<(), WebauthnCError> {
        if self.key.lock().removed {
            return Err(removed());
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), WebauthnCError> {
        Ok(())
    }
}

/// What the HID transport reports when the device node has gone.
fn removed() -> WebauthnCError {
    WebauthnCError::IoError("No such device (os error 19)".into())
}

fn pin_hash(pin: &str) -> [u8; 16] {
    let d = Sha256::digest(pin.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

fn handle(s: &mut State, cbor: &[u8]) -> Step {
    let Some((&cmd, rest)) = cbor.split_first() else {
        return Step::Done(Err(CtapError::Ctap1InvalidLength));
    };
    if s.config.ctap == Ctap::U2fOnly {
        s.log.push(format!("unknown command {cmd:#04x}"));
        return Step::Done(Err(CtapError::Ctap1InvalidCommand));
    }
    let params = if rest.is_empty() {
        BTreeMap::new()
    } else {
        match serde_cbor_2::from_slice::<Value>(rest) {
            Ok(Value::Map(m)) => m
                .into_iter()
                .filter_map(|(k, v)| match k {
                    Value::Integer(k) => Some((k, v)),
                    _ => None,
                })
                .collect(),
            _ => return Step::Done(Err(CtapError::Ctap2InvalidCBOR)),
        }
    };
    let p = Params(params);
    match cmd {
        0x01 => {
            s.log.push("makeCredential".into());
            make_credential(s, p)
        }
        0x02 => {
            s.log.push("getAssertion".into());
            get_assertion(s, p)
        }
        0x04 => {
            s.log.push("getInfo".into());
            Step::Done(Ok(get_info(s)))
        }
        0x06 => client_pin(s, p),
        0x0b if s.config.ctap == Ctap::V21 => {
            s.log.push("selection".into());
            Step::AfterTouch(Box::new(|_| Ok(BTreeMap::new())))
        }
        other => {
            s.log.push(format!("unknown command {other:#04x}"));
            Step::Done(Err(CtapError::Ctap1InvalidCommand))
        }
    }
}

struct Params(BTreeMap<i128, Value>);

impl Params {
    fn bytes(&self, k: i128) -> Option<Vec<u8>> {
        match self.0.get(&k) {
            Some(Value::Bytes(b)) => Some(b.clone()),
            _ => None,
        }
    }
    fn text(&self, k: i128) -> Option<String> {
        match self.0.get(&k) {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => None,
        }
    }
    fn int(&self, k: i128) -> Option<i128> {
        match self.0.get(&k) {
            Some(Value::Integer(i)) => Some(*i),
            _ => None,
        }
    }
    fn map(&self, k: i128) -> Option<&BTreeMap<Value, Value>> {
        match self.0.get(&k) {
            Some(Value::Map(m)) => Some(m),
            _ => None,
        }
    }
    fn option(&self, k: i128, name: &str) -> Option<bool> {
        match self.map(k)?.get(&Value::Text(name.into())) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }
    fn get(&self, k: i128) -> Option<&Value> {
        self.0.get(&k)
    }
}

fn text_key(m: &BTreeMap<Value, Value>, k: &str) -> Option<Value> {
    m.get(&Value::Text(k.into())).cloned()
}

fn get_info(s: &State) -> BTreeMap<i128, Value> {
    let c = &s.config;
    let mut versions = vec![Value::Text("U2F_V2".into()), Value::Text("FIDO_2_0".into())];
    if c.ctap == Ctap::V21 {
        versions.push(Value::Text("FIDO_2_1".into()));
    }
    let mut options = BTreeMap::new();
    let mut opt = |k: &str, v: bool| options.insert(Value::Text(k.into()), Value::Bool(v));
    opt("rk", true);
    opt("up", true);
    opt("plat", false);
    if c.supports_pin {
        opt("clientPin", s.pin_hash.is_some());
    }
    if c.builtin_uv {
        opt("uv", true);
    }
    if c.ctap == Ctap::V21 {
        opt("pinUvAuthToken", true);
    }
    let protocols: Vec<Value> = if c.ctap == Ctap::V21 {
        c.protocols
            .iter()
            .map(|p| Value::Integer(p.number().into()))
            .collect()
    } else {
        vec![Value::Integer(1)]
    };
    BTreeMap::from([
        (1, Value::Array(versions)),
        (3, Value::Bytes(c.aaguid.to_vec())),
        (4, Value::Map(options)),
        (5, Value::Integer(1200)),
        (6, Value::Array(protocols)),
    ])
}

/// The permissions a pinUvAuthToken may carry (CTAP 2.1 section 6.5.5.7).
const PERMISSION_MC: u8 = 0x01;
const PERMISSION_GA: u8 = 0x02;

/// Checks a command's pinUvAuthParam against the current token: `Ok(true)` when the user was
/// verified by it, `Ok(false)` when the command carries none.
fn check_pin_uv_param(
    s: &State,
    p: &Params,
    param_key: i128,
    protocol_key: i128,
    client_data_hash: &[u8],
    permission: u8,
    rp_id: &str,
) -> Result<bool, Status> {
    let Some(param) = p.bytes(param_key) else {
        return Ok(false);
    };
    let protocol = p
        .int(protocol_key)
        .ok_or(CtapError::Ctap2MissingParameter)?;
    let protocol = Protocol::from_number(protocol).ok_or(CtapError::Ctap1InvalidParameter)?;
    let token = s.token.as_ref().ok_or(CtapError::Ctap2PinAuthInvalid)?;
    if token.protocol != protocol || !protocol.verify(&token.token, client_data_hash, &param) {
        return Err(CtapError::Ctap2PinAuthInvalid);
    }
    if token.permissions & permission == 0 || token.rp_id.as_deref().is_some_and(|r| r != rp_id) {
        return Err(CtapError::Ctap2PinAuthInvalid);
    }
    Ok(true)
}

/// Whether the command is verified, by a token or by the key's own reader (`uv` option).
fn verification(
    s: &State,
    p: &Params,
    keys: (i128, i128, i128),
    client_data_hash: &[u8],
    permission: u8,
    rp_id: &str,
) -> Result<bool, Status> {
    let (options, param, protocol) = keys;
    // An empty pinUvAuthParam is the CTAP 2.0 "touch to select" probe.
    if p.bytes(param).is_some_and(|b| b.is_empty()) {
        return Err(if s.pin_hash.is_some() {
            CtapError::Ctap2PinInvalid
        } else {
            CtapError::Ctap2PinNotSet
        });
    }
    if check_pin_uv_param(s, p, param, protocol, client_data_hash, permission, rp_id)? {
        return Ok(true);
    }
    if p.option(options, "uv") == Some(true) {
        if !s.config.builtin_uv {
            return Err(CtapError::Ctap2InvalidOption);
        }
        return Ok(true);
    }
    Ok(false)
}

fn make_credential(s: &mut State, p: Params) -> Step {
    let (Some(cdh), Some(rp), Some(user)) = (p.bytes(1), p.map(2), p.map(3)) else {
        return Step::Done(Err(CtapError::Ctap2MissingParameter));
    };
    let Some(Value::Text(rp_id)) = text_key(rp, "id") else {
        return Step::Done(Err(CtapError::Ctap2MissingParameter));
    };
    let Some(Value::Bytes(user_id)) = text_key(user, "id") else {
        return Step::Done(Err(CtapError::Ctap2MissingParameter));
    };
    let es256 = matches!(p.get(4), Some(Value::Array(algs)) if algs.iter().any(|a| matches!(a,
        Value::Map(m) if m.get(&Value::Text("alg".into())) == Some(&Value::Integer(-7)))));
    if !es256 {
        return Step::Done(Err(CtapError::Ctap2UnsupportedAlgorithm));
    }
    let verified = match verification(s, &p, (7, 8, 9), &cdh, PERMISSION_MC, &rp_id) {
        Ok(v) => v,
        Err(e) => return Step::Done(Err(e)),
    };
    if !verified && (s.pin_hash.is_some() || s.config.builtin_uv) {
        return Step::Done(Err(CtapError::Ctap2PUATRequired));
    }
    let excluded = match p.get(5) {
        Some(Value::Array(list)) => list.iter().any(|d| match d {
            Value::Map(m) => matches!(text_key(m, "id"), Some(Value::Bytes(id))
                if s.credentials.iter().any(|c| c.id == id && c.rp_id == rp_id)),
            _ => false,
        }),
        _ => false,
    };
    if excluded {
        return Step::AfterTouch(Box::new(|_| Err(CtapError::Ctap2CredentialExcluded)));
    }
    Step::AfterTouch(Box::new(move |s: &mut State| {
        let mut id = vec![0u8; 32];
        OsRng.fill_bytes(&mut id);
        let key = SigningKey::random(&mut OsRng);
        let point = key.verifying_key().to_encoded_point(false);
        let coord =
            |c: Option<&p256::FieldBytes>| Value::Bytes(c.map(|b| b.to_vec()).unwrap_or_default());
        let cose = Value::Map(
            [
                (Value::Integer(1), Value::Integer(2)),
                (Value::Integer(3), Value::Integer(-7)),
                (Value::Integer(-1), Value::Integer(1)),
                (Value::Integer(-2), coord(point.x())),
                (Value::Integer(-3), coord(point.y())),
            ]
            .into_iter()
            .collect(),
        );
        let cose = serde_cbor_2::to_vec(&cose).map_err(|_| CtapError::Ctap1Unspecified)?;
        s.counter = s.counter.wrapping_add(1);
        let flags = 0x01 | 0x40 | if verified { 0x04 } else { 0 };
        let mut auth_data = auth_data_head(&rp_id, flags, s.counter);
        auth_data.extend_from_slice(&s.config.aaguid);
        auth_data.extend_from_slice(&(id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&id);
        auth_data.extend_from_slice(&cose);
        s.credentials.push(Credential {
            id,
            rp_id,
            user_id,
            key,
        });
        Ok(BTreeMap::from([
            (1, Value::Text("none".into())),
            (2, Value::Bytes(auth_data)),
            (3, Value::Map(BTreeMap::new())),
        ]))
    }))
}

fn auth_data_head(rp_id: &str, flags: u8, counter: u32) -> Vec<u8> {
    let mut out = Sha256::digest(rp_id.as_bytes()).to_vec();
    out.push(flags);
    out.extend_from_slice(&counter.to_be_bytes());
    out
}

fn get_assertion(s: &mut State, p: Params) -> Step {
    let (Some(rp_id), Some(cdh)) = (p.text(1), p.bytes(2)) else {
        return Step::Done(Err(CtapError::Ctap2MissingParameter));
    };
    let verified = match verification(s, &p, (5, 6, 7), &cdh, PERMISSION_GA, &rp_id) {
        Ok(v) => v,
        Err(e) => return Step::Done(Err(e)),
    };
    let allowed: Vec<Vec<u8>> = match p.get(3) {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|d| match d {
                Value::Map(m) => match text_key(m, "id") {
                    Some(Value::Bytes(id)) => Some(id),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let found = s
        .credentials
        .iter()
        .position(|c| c.rp_id == rp_id && (allowed.is_empty() || allowed.contains(&c.id)));
    let Some(index) = found else {
        return Step::Done(Err(CtapError::Ctap2NoCredentials));
    };
    let sign = move |s: &mut State, up: bool| -> Answer {
        s.counter = s.counter.wrapping_add(1);
        let flags = u8::from(up) | if verified { 0x04 } else { 0 };
        let auth_data = auth_data_head(&rp_id, flags, s.counter);
        let cred = s
            .credentials
            .get(index)
            .ok_or(CtapError::Ctap2NoCredentials)?;
        let signed: Signature = cred.key.sign(&[auth_data.as_slice(), &cdh].concat());
        let descriptor = Value::Map(BTreeMap::from([
            (Value::Text("id".into()), Value::Bytes(cred.id.clone())),
            (Value::Text("type".into()), Value::Text("public-key".into())),
        ]));
        let user = Value::Map(BTreeMap::from([(
            Value::Text("id".into()),
            Value::Bytes(cred.user_id.clone()),
        )]));
        Ok(BTreeMap::from([
            (1, descriptor),
            (2, Value::Bytes(auth_data)),
            (3, Value::Bytes(signed.to_der().as_bytes().to_vec())),
            (4, user),
        ]))
    };
    if p.option(5, "up") == Some(false) {
        return Step::Done(sign(s, false));
    }
    Step::AfterTouch(Box::new(move |s| sign(s, true)))
}

fn client_pin(s: &mut State, p: Params) -> Step {
    let sub = p.int(2).unwrap_or(0);
    let name = match sub {
        1 => "getPINRetries",
        2 => "getKeyAgreement",
        3 => "setPIN",
        5 => "getPinToken",
        6 => "getPinUvAuthTokenUsingUvWithPermissions",
        7 => "getUVRetries",
        9 => "getPinUvAuthTokenUsingPinWithPermissions",
        _ => "unknown",
    };
    match p.int(1) {
        Some(n) if sub == 5 || sub == 9 => s.log.push(format!("clientPIN.{name} (protocol {n})")),
        _ => s.log.push(format!("clientPIN.{name}")),
    }
    if !s.config.supports_pin && sub != 6 && sub != 2 {
        return Step::Done(Err(CtapError::Ctap1InvalidCommand));
    }
    let protocol = match p.int(1).map(Protocol::from_number) {
        Some(Some(pr)) if s.config.protocols.contains(&pr) || pr == Protocol::One => Some(pr),
        Some(_) => return Step::Done(Err(CtapError::Ctap1InvalidParameter)),
        None => None,
    };
    Step::Done(match sub {
        1 => Ok(BTreeMap::from([
            (3, Value::Integer(s.retries.into())),
            (4, Value::Bool(false)),
        ])),
        2 => Ok(BTreeMap::from([(1, pin::cose_agreement_key(&s.agreement))])),
        3 => set_pin(s, &p, protocol),
        5 | 9 => pin_token(s, &p, protocol, sub == 9),
        6 => uv_token(s, &p, protocol),
        7 => Ok(BTreeMap::from([(5, Value::Integer(8))])),
        _ => Err(CtapError::Ctap2InvalidSubcommand),
    })
}

fn shared(
    s: &State,
    p: &Params,
    protocol: Option<Protocol>,
) -> Result<(Protocol, Vec<u8>), Status> {
    let protocol = protocol.ok_or(CtapError::Ctap2MissingParameter)?;
    let platform = p.get(3).ok_or(CtapError::Ctap2MissingParameter)?;
    let secret = protocol
        .shared_secret(&s.agreement, platform)
        .ok_or(CtapError::Ctap1InvalidParameter)?;
    Ok((protocol, secret))
}

fn set_pin(s: &mut State, p: &Params, protocol: Option<Protocol>) -> Answer {
    let (protocol, secret) = shared(s, p, protocol)?;
    let (Some(auth), Some(new_pin_enc)) = (p.bytes(4), p.bytes(5)) else {
        return Err(CtapError::Ctap2MissingParameter);
    };
    if s.pin_hash.is_some() {
        return Err(CtapError::Ctap2PinAuthInvalid);
    }
    if !protocol.verify(&secret, &new_pin_enc, &auth) {
        return Err(CtapError::Ctap2PinAuthInvalid);
    }
    let padded = protocol
        .decrypt(&secret, &new_pin_enc)
        .ok_or(CtapError::Ctap2PinAuthInvalid)?;
    if padded.len() < 64 {
        return Err(CtapError::Ctap2PinPolicyViolation);
    }
    let end = padded.iter().position(|&b| b == 0).unwrap_or(padded.len());
    let pin =
        std::str::from_utf8(&padded[..end]).map_err(|_| CtapError::Ctap2PinPolicyViolation)?;
    if pin.chars().count() < 4 {
        return Err(CtapError::Ctap2PinPolicyViolation);
    }
    s.pin_hash = Some(pin_hash(pin));
    s.retries = PIN_RETRIES;
    Ok(BTreeMap::new())
}

fn issue_token(
    s: &mut State,
    protocol: Protocol,
    secret: &[u8],
    permissions: u8,
    rp_id: Option<String>,
) -> Answer {
    let mut token = vec![0u8; 32];
    OsRng.fill_bytes(&mut token);
    let enc = protocol.encrypt(secret, &token);
    s.token = Some(PinToken {
        token,
        protocol,
        permissions,
        rp_id,
    });
    Ok(BTreeMap::from([(2, Value::Bytes(enc))]))
}

fn pin_token(
    s: &mut State,
    p: &Params,
    protocol: Option<Protocol>,
    with_permissions: bool,
) -> Answer {
    let (protocol, secret) = shared(s, p, protocol)?;
    let Some(pin_hash_enc) = p.bytes(6) else {
        return Err(CtapError::Ctap2MissingParameter);
    };
    let Some(stored) = s.pin_hash else {
        return Err(CtapError::Ctap2PinNotSet);
    };
    if s.retries == 0 {
        return Err(CtapError::Ctap2PinBlocked);
    }
    if s.consecutive_failures >= 3 {
        return Err(CtapError::Ctap2PinAuthBlocked);
    }
    let given = protocol.decrypt(&secret, &pin_hash_enc);
    s.retries -= 1;
    if given.as_deref() != Some(stored.as_slice()) {
        s.agreement = EphemeralSecret::random(&mut OsRng);
        s.consecutive_failures += 1;
        return Err(if s.retries == 0 {
            CtapError::Ctap2PinBlocked
        } else if s.consecutive_failures >= 3 {
            CtapError::Ctap2PinAuthBlocked
        } else {
            CtapError::Ctap2PinInvalid
        });
    }
    s.retries = PIN_RETRIES;
    s.consecutive_failures = 0;
    let (permissions, rp_id) = if with_permissions {
        let perms = p.int(9).unwrap_or(0);
        if perms == 0 {
            return Err(CtapError::Ctap2MissingParameter);
        }
        (u8::try_from(perms).unwrap_or(u8::MAX), p.text(0x0a))
    } else {
        (PERMISSION_MC | PERMISSION_GA, None)
    };
    issue_token(s, protocol, &secret, permissions, rp_id)
}

fn uv_token(s: &mut State, p: &Params, protocol: Option<Protocol>) -> Answer {
    if !s.config.builtin_uv {
        return Err(CtapError::Ctap2InvalidSubcommand);
    }
    let (protocol, secret) = shared(s, p, protocol)?;
    let perms = u8::try_from(p.int(9).unwrap_or(0)).unwrap_or(u8::MAX);
    if perms == 0 {
        return Err(CtapError::Ctap2MissingParameter);
    }
    issue_token(s, protocol, &secret, perms, p.text(0x0a))
}
