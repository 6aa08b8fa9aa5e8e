//! Security keys: FIDO2 (CTAP2) authenticators driven by webauthn-authenticator-rs's
//! `CtapAuthenticator`, over USB HID in the product ([`UsbKeys`], feature `usb`) or over any
//! other [`Token`] transport a [`KeySource`] gives (the test harness's fake key).
//!
//! Every ceremony requires user verification: the key's PIN (clientPIN, PIN/UV auth protocol 2,
//! or 1 where that is all the key has) or its built-in verification. A key with neither is never
//! used without; [`SecurityKey::set_pin`] sets a first PIN.
//!
//! The library leaves gaps this module fills by watching the wire through [`Guarded`], the
//! wrapper every token is driven through:
//! - `request_pin` is not told how many tries are left: the wrapper reads the key's own answer to
//!   the `getPINRetries` the library sends before it asks, and after a wrong PIN it asks the key
//!   itself;
//! - `CtapAuthenticator::new` answers `None` for a U2F-only key and a failed initialisation
//!   alike: the key's `getInfo` is read first to tell them apart;
//! - there is no cancel or timeout: the wrapper races every command against the person's Cancel
//!   and the ceremony's deadline, and cancels the command on the key when either comes first.

mod guard;
mod prompt;
pub mod socket;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use futures::lock::Mutex as AsyncMutex;
use url::Url;
use webauthn_authenticator_rs::ctap2::{CtapAuthenticator, GetInfoResponse};
use webauthn_authenticator_rs::error::{CtapError, WebauthnCError};
use webauthn_authenticator_rs::transport::Token;
use webauthn_rs::prelude::{
    CreationChallengeResponse, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse,
};

use crate::authenticator::{
    authenticate_with, register_with, Authenticator, AuthenticatorKind, CeremonyError,
};
use crate::error::EngineError;
use crate::key_error::KeyError;
pub use guard::Guarded;
use guard::{Bridge, Watch};
#[cfg(feature = "usb")]
pub use prompt::UsbKeys;
pub use prompt::{KeyPrompt, KeySource, Pin, PinAsk, Unattended};
pub use socket::{DevKeySocket, DEV_KEY_SOCKET_FILE};

/// How long a ceremony may take, from its start to the key's answer.
pub const CEREMONY_TIMEOUT: Duration = Duration::from_secs(60);

/// A security key as the engine's [`Authenticator`].
pub struct SecurityKey<S: KeySource> {
    source: S,
    prompt: Arc<dyn KeyPrompt>,
    timeout: Duration,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
    label: String,
}

impl<S: KeySource> Drop for SecurityKey<S> {
    fn drop(&mut self) {
        // Dropping a runtime may not block inside another runtime's task (the CLI's).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The library's authenticator over one guarded key.
type KeyAuthenticator<'a, T> = CtapAuthenticator<'a, Guarded<T>, Bridge>;

/// One key, opened for a ceremony.
struct Opened<T: Token> {
    token: Arc<AsyncMutex<T>>,
    dropped: Arc<AtomicBool>,
    info: GetInfoResponse,
}

impl<S: KeySource> SecurityKey<S> {
    pub fn new(source: S, prompt: Arc<dyn KeyPrompt>) -> Result<Self, EngineError> {
        // The HID transport's reads and timers need a Tokio reactor that keeps running while
        // the library blocks the ceremony's thread: a runtime of the key's own.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("security-key")
            .enable_all()
            .build()?;
        let label = source.label();
        Ok(SecurityKey {
            source,
            prompt,
            timeout: CEREMONY_TIMEOUT,
            runtime: Some(runtime),
            label,
        })
    }

    /// A shorter or longer limit for each ceremony than [`CEREMONY_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn watch(&self) -> Arc<Watch> {
        Arc::new(Watch {
            prompt: self.prompt.clone(),
            deadline: Instant::now() + self.timeout,
            ended: Mutex::new(None),
            retries: Mutex::new(None),
            wrong_pin: AtomicBool::new(false),
            choosing: AtomicBool::new(false),
            touch_said: AtomicBool::new(false),
        })
    }

    /// The CTAP2 keys plugged in, waiting for one until the deadline; a U2F-only key is
    /// refused with its reason when it is all there is.
    fn open_keys(&mut self, watch: &Arc<Watch>) -> Result<Vec<Opened<S::Token>>, KeyError> {
        let mut asked = false;
        loop {
            let mut opened = Vec::new();
            let mut u2f_only = false;
            let mut removed = false;
            for token in self.source.tokens()? {
                let token = Arc::new(AsyncMutex::new(token));
                let dropped = Arc::new(AtomicBool::new(false));
                let mut guarded = Guarded {
                    inner: token.clone(),
                    watch: watch.clone(),
                    dropped: dropped.clone(),
                };
                let bridge = Bridge {
                    watch: watch.clone(),
                };
                let info = block_on(async {
                    guarded.init().await?;
                    guarded
                        .transmit(
                            webauthn_authenticator_rs::ctap2::commands::GetInfoRequest {},
                            &bridge,
                        )
                        .await
                });
                match info {
                    Ok(info) if speaks_ctap2(&info) => opened.push(Opened {
                        token,
                        dropped,
                        info,
                    }),
                    Ok(_) | Err(WebauthnCError::Ctap(CtapError::Ctap1InvalidCommand)) => {
                        u2f_only = true
                    }
                    // A key that does not initialise is skipped, as a browser would; one that
                    // went away while answering was pulled out.
                    Err(e) => {
                        tracing::warn!(error = ?e, "a security key did not initialise");
                        removed |= KeyError::from_ctap(e, &GetInfoResponse::default())
                            == KeyError::KeyRemoved;
                    }
                }
            }
            if !opened.is_empty() {
                return Ok(opened);
            }
            if u2f_only {
                return Err(KeyError::U2fOnly);
            }
            if removed {
                return Err(KeyError::KeyRemoved);
            }
            if let Some(e) = watch.check(&AtomicBool::new(false)) {
                return Err(e);
            }
            if !asked {
                self.prompt.insert();
                asked = true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `op` on the one key the person uses: the only one plugged in, or the one touched
    /// among several (CTAP 2.1 selection). A wrong PIN is asked again while the key allows.
    fn ceremony<R>(
        &mut self,
        op: impl Fn(&mut KeyAuthenticator<'_, S::Token>) -> Result<R, OpError>,
    ) -> Result<R, KeyError> {
        let _entered = match &self.runtime {
            Some(rt) => rt.enter(),
            None => return Err(KeyError::Failed("the key's runtime has stopped".into())),
        };
        let watch = self.watch();
        let bridge = Bridge {
            watch: watch.clone(),
        };
        let keys = self.open_keys(&watch)?;
        let mut authenticators = Vec::new();
        for key in &keys {
            let guarded = Guarded {
                inner: key.token.clone(),
                watch: watch.clone(),
                dropped: key.dropped.clone(),
            };
            let a = block_on(CtapAuthenticator::new(guarded, &bridge));
            match a {
                Some(a) => authenticators.push((a, key)),
                None => return Err(watch.ended().unwrap_or(KeyError::KeyRemoved)),
            }
        }
        let (mut chosen, key) = if authenticators.len() == 1 {
            authenticators.remove(0)
        } else {
            self.prompt.touch(authenticators.len());
            watch.choosing.store(true, Ordering::SeqCst);
            let index = choose(&mut authenticators, &watch);
            watch.choosing.store(false, Ordering::SeqCst);
            authenticators.swap_remove(index?)
        };
        // The others stop blinking.
        drop(authenticators);
        for other in keys.iter().filter(|k| !Arc::ptr_eq(&k.token, &key.token)) {
            let _ = block_on(async { other.token.lock().await.cancel().await });
        }
        loop {
            let e = match op(&mut chosen) {
                Ok(r) => return Ok(r),
                Err(OpError::Key(e)) => return Err(e),
                Err(OpError::Ctap(e)) => e,
            };
            if let Some(why) = watch.ended() {
                return Err(why);
            }
            match KeyError::from_ctap(e, &key.info) {
                // Asked again, with the tries the key says are left.
                KeyError::PinInvalid { .. } => watch.wrong_pin.store(true, Ordering::SeqCst),
                other => return Err(other),
            }
        }
    }

    /// Whether a key plugged in can verify its user, asked of the keys' `getInfo` alone (no
    /// touch): a key with neither a PIN nor built-in verification is refused with
    /// `uv_unavailable` before anything is spent at the gateway.
    pub fn keys_can_verify(&mut self) -> Result<(), KeyError> {
        let _entered = match &self.runtime {
            Some(rt) => rt.enter(),
            None => return Err(KeyError::Failed("the key's runtime has stopped".into())),
        };
        let watch = self.watch();
        let keys = self.open_keys(&watch)?;
        if keys.iter().any(|k| verifies(&k.info)) {
            return Ok(());
        }
        Err(KeyError::UvUnavailable {
            can_set_pin: keys
                .iter()
                .any(|k| k.info.get_option("clientPin") == Some(false)),
        })
    }

    /// Sets a first PIN on a key that supports one and has none (CTAP2 setPIN), with the PIN
    /// the person enters twice.
    pub fn set_first_pin(&mut self) -> Result<(), EngineError> {
        let prompt = self.prompt.clone();
        self.ceremony(|a| {
            match a.get_info().get_option("clientPin") {
                Some(true) => return Err(OpError::Key(KeyError::PinAlreadySet)),
                None => return Err(OpError::Key(KeyError::UvUnavailable { can_set_pin: false })),
                Some(false) => {}
            }
            let min = a.get_info().min_pin_length.unwrap_or(4);
            let pin = prompt.new_pin(min).map_err(OpError::Key)?;
            if pin.as_str().chars().count() < min {
                return Err(OpError::Key(KeyError::PinPolicy(format!(
                    "it must have at least {min} characters"
                ))));
            }
            Ok(block_on(a.set_new_pin(pin.as_str()))?)
        })
        .map_err(EngineError::from)
    }
}

/// Whether a key can verify its user: a PIN is set, or built-in verification is enrolled.
fn verifies(info: &GetInfoResponse) -> bool {
    info.get_option("clientPin") == Some(true) || info.get_option("uv") == Some(true)
}

/// How one attempt at a ceremony's operation failed.
enum OpError {
    /// As the library reports it; a wrong PIN is asked again.
    Ctap(WebauthnCError),
    /// An outcome decided before the key was asked.
    Key(KeyError),
}

impl From<CeremonyError> for OpError {
    fn from(e: CeremonyError) -> Self {
        match e {
            CeremonyError::Key(e) => OpError::Ctap(e),
            CeremonyError::Refused(why) => OpError::Key(KeyError::Failed(why.to_string())),
        }
    }
}

impl From<WebauthnCError> for OpError {
    fn from(e: WebauthnCError) -> Self {
        OpError::Ctap(e)
    }
}

/// Whether `getInfo` names a CTAP2 version this library drives.
fn speaks_ctap2(info: &GetInfoResponse) -> bool {
    info.versions
        .iter()
        .any(|v| v == "FIDO_2_0" || v == "FIDO_2_1" || v == "FIDO_2_1_PRE")
}

/// The key the person touches among several: CTAP 2.1 keys by the selection command, older
/// keys by the probe the library sends them.
fn choose<T: Token>(
    keys: &mut [(KeyAuthenticator<'_, T>, &Opened<T>)],
    watch: &Watch,
) -> Result<usize, KeyError> {
    use futures::stream::{FuturesUnordered, StreamExt};
    let dropped: Vec<Arc<AtomicBool>> = keys.iter().map(|(_, k)| k.dropped.clone()).collect();
    let chosen = block_on(async {
        let mut pending: FuturesUnordered<_> = keys
            .iter_mut()
            .enumerate()
            .map(|(i, (a, _))| async move { (i, a.selection().await) })
            .collect();
        while let Some((i, outcome)) = pending.next().await {
            if outcome.is_ok() {
                return Some(i);
            }
        }
        None
    });
    for (i, flag) in dropped.iter().enumerate() {
        if Some(i) != chosen {
            flag.store(true, Ordering::SeqCst);
        }
    }
    chosen.ok_or_else(|| watch.ended().unwrap_or(KeyError::KeyRemoved))
}

impl<S: KeySource> Authenticator for SecurityKey<S> {
    fn kind(&self) -> AuthenticatorKind {
        AuthenticatorKind::SecurityKey
    }

    fn set_pin(&mut self) -> Result<(), EngineError> {
        self.set_first_pin()
    }

    fn check_can_verify(&mut self) -> Result<(), EngineError> {
        Ok(self.keys_can_verify()?)
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn development_mode(&self) -> bool {
        self.source.development_mode()
    }

    fn register(
        &mut self,
        origin: &Url,
        creation: CreationChallengeResponse,
    ) -> Result<RegisterPublicKeyCredential, EngineError> {
        let mut credential =
            self.ceremony(|a| register_with(a, origin, creation.clone()).map_err(OpError::from))?;
        fill_credential_id(&mut credential)?;
        Ok(credential)
    }

    fn authenticate(
        &mut self,
        origin: &Url,
        challenge: RequestChallengeResponse,
    ) -> Result<PublicKeyCredential, EngineError> {
        Ok(self
            .ceremony(|a| authenticate_with(a, origin, challenge.clone()).map_err(OpError::from))?)
    }
}

/// The library leaves a CTAP2 registration's credential id empty; it is the one in the
/// attested credential data (WebAuthn section 6.5.1).
fn fill_credential_id(c: &mut RegisterPublicKeyCredential) -> Result<(), EngineError> {
    use base64::Engine as _;
    use serde_cbor_2::Value;
    if !c.raw_id.is_empty() {
        return Ok(());
    }
    let bad = |why: &str| EngineError::Ceremony(format!("the security key's registration {why}"));
    let Ok(Value::Map(m)) =
        serde_cbor_2::from_slice::<Value>(c.response.attestation_object.as_ref())
    else {
        return Err(bad("is not a CBOR map"));
    };
    let Some(Value::Bytes(auth_data)) = m.get(&Value::Text("authData".into())) else {
        return Err(bad("has no authenticator data"));
    };
    // rpIdHash (32), flags (1), signCount (4), aaguid (16), credentialIdLength (2), id.
    let len = auth_data
        .get(53..55)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or_else(|| bad("has no attested credential"))?;
    let id = auth_data
        .get(55..55 + len)
        .ok_or_else(|| bad("has a truncated credential id"))?
        .to_vec();
    c.id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&id);
    c.raw_id = id;
    Ok(())
}
