//! A fake CTAP2 security key, written from the CTAP 2.1 specification, behind
//! webauthn-authenticator-rs's public [`Token`] interface: what `CtapAuthenticator` drives
//! over USB HID it drives here in process, command by command (CBOR in, status and CBOR out).
//!
//! It has what the product must handle and `SoftToken` lacks: a clientPIN with PIN/UV auth
//! protocols 1 and 2, retries that count down and block, built-in verification, CTAP 2.1
//! selection, credentials that are not there, a key pulled out, a touch that never comes, and
//! a U2F-only key. Tests change its state while a ceremony runs through a [`FakeKey`] handle.
mod client_pin;
mod commands;
mod host;
mod pin;
mod socket;
mod state;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use p256::ecdh::EphemeralSecret;
use rand::rngs::OsRng;
use serde_cbor_2::Value;
use webauthn_authenticator_rs::error::{CtapError, WebauthnCError};
use webauthn_authenticator_rs::transport::Token;
use webauthn_authenticator_rs::ui::UiCallback;
use webauthn_rs_proto::AuthenticatorTransport;

pub use host::{Asked, FakeKeys, ScriptedPerson};
pub use pin::Protocol;
pub use socket::KeySocket;
use state::{pin_hash, Params, State, Step};
pub use state::{Ctap, KeyConfig, Presence, PIN_RETRIES};

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
            commands::make_credential(s, p)
        }
        0x02 => {
            s.log.push("getAssertion".into());
            commands::get_assertion(s, p)
        }
        0x04 => {
            s.log.push("getInfo".into());
            Step::Done(Ok(commands::get_info(s)))
        }
        0x06 => client_pin::client_pin(s, p),
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
