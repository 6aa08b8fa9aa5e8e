//! The wire watched: [`Guarded`] wraps every token a ceremony drives, racing each command
//! against the person's Cancel and the ceremony's deadline (cancelling it on the key when
//! either comes first) and reading the key's PIN retries off its answers; [`Bridge`] turns the
//! library's UI callback into the person's [`KeyPrompt`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::lock::Mutex as AsyncMutex;
use webauthn_authenticator_rs::error::WebauthnCError;
use webauthn_authenticator_rs::transport::Token;
use webauthn_authenticator_rs::types::{CableRequestType, CableState, EnrollSampleStatus};
use webauthn_authenticator_rs::ui::UiCallback;

use super::prompt::{KeyPrompt, PinAsk};
use crate::key_error::KeyError;

/// The state one ceremony's tokens share: why it ended early, and what the key said.
pub(super) struct Watch {
    pub(super) prompt: Arc<dyn KeyPrompt>,
    pub(super) deadline: Instant,
    pub(super) ended: Mutex<Option<KeyError>>,
    pub(super) retries: Mutex<Option<u32>>,
    pub(super) wrong_pin: AtomicBool,
    /// Several keys blink until one is touched: the prompt says so once, not per key.
    pub(super) choosing: AtomicBool,
    /// "Touch your key" was said; the HID transport repeats the key's request every 100 ms.
    pub(super) touch_said: AtomicBool,
}

impl Watch {
    pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn end(&self, why: KeyError) {
        Watch::lock(&self.ended).get_or_insert(why);
    }

    pub(super) fn ended(&self) -> Option<KeyError> {
        Watch::lock(&self.ended).clone()
    }

    /// Why the ceremony must stop now, if it must.
    pub(super) fn check(&self, dropped: &AtomicBool) -> Option<KeyError> {
        if let Some(e) = self.ended() {
            return Some(e);
        }
        if dropped.load(Ordering::SeqCst) {
            return Some(KeyError::CeremonyCancelled);
        }
        if self.prompt.cancelled() {
            self.end(KeyError::CeremonyCancelled);
        } else if Instant::now() >= self.deadline {
            self.end(KeyError::CeremonyTimeout);
        }
        self.ended()
    }
}

/// A token driven through the ceremony's [`Watch`]: every command races Cancel and the
/// deadline, and the key's PIN retries are read off its answers.
pub struct Guarded<T: Token> {
    pub(super) inner: Arc<AsyncMutex<T>>,
    pub(super) watch: Arc<Watch>,
    /// Set when another key was chosen: this one's pending command is cancelled.
    pub(super) dropped: Arc<AtomicBool>,
}

impl<T: Token> std::fmt::Debug for Guarded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded").finish_non_exhaustive()
    }
}

/// CTAP2's clientPIN command, and its getPINRetries subcommand (CTAP 2.1 section 6.5.5).
const CLIENT_PIN: u8 = 0x06;
const GET_PIN_RETRIES: i128 = 0x01;

fn is_get_pin_retries(cbor: &[u8]) -> bool {
    use serde_cbor_2::Value;
    let Some((&CLIENT_PIN, rest)) = cbor.split_first() else {
        return false;
    };
    matches!(serde_cbor_2::from_slice::<Value>(rest), Ok(Value::Map(m))
        if m.get(&Value::Integer(2)) == Some(&Value::Integer(GET_PIN_RETRIES)))
}

fn pin_retries_in(answer: &[u8]) -> Option<u32> {
    use serde_cbor_2::Value;
    match serde_cbor_2::from_slice::<Value>(answer) {
        Ok(Value::Map(m)) => match m.get(&Value::Integer(3)) {
            Some(Value::Integer(n)) => u32::try_from(*n).ok(),
            _ => None,
        },
        _ => None,
    }
}

#[async_trait]
impl<T: Token> Token for Guarded<T> {
    type Id = T::Id;

    fn has_button(&self) -> bool {
        // Only asked through the library's selection, which always runs on a locked token.
        self.inner
            .try_lock()
            .map(|t| t.has_button())
            .unwrap_or(true)
    }

    fn get_transport(&self) -> webauthn_rs_proto::AuthenticatorTransport {
        self.inner
            .try_lock()
            .map(|t| t.get_transport())
            .unwrap_or(webauthn_rs_proto::AuthenticatorTransport::Usb)
    }

    async fn transmit_raw<U>(&mut self, cbor: &[u8], ui: &U) -> Result<Vec<u8>, WebauthnCError>
    where
        U: UiCallback,
    {
        if let Some(e) = self.watch.check(&self.dropped) {
            self.watch.end(e);
            return Err(WebauthnCError::Cancelled);
        }
        let mut token = self.inner.lock().await;
        let outcome = {
            let send = token.transmit_raw(cbor, ui);
            let stop = async {
                loop {
                    if let Some(e) = self.watch.check(&self.dropped) {
                        return e;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            futures::pin_mut!(send);
            futures::pin_mut!(stop);
            match futures::future::select(send, stop).await {
                futures::future::Either::Left((answer, _)) => Ok(answer),
                futures::future::Either::Right((why, _)) => Err(why),
            }
        };
        match outcome {
            Ok(answer) => {
                if let Ok(bytes) = &answer {
                    if is_get_pin_retries(cbor) {
                        *Watch::lock(&self.watch.retries) = pin_retries_in(bytes);
                    }
                }
                answer
            }
            Err(why) => {
                // Stop the key waiting for a touch; it may be gone already.
                let _ = token.cancel().await;
                if !self.dropped.load(Ordering::SeqCst) {
                    self.watch.end(why);
                }
                Err(WebauthnCError::Cancelled)
            }
        }
    }

    async fn cancel(&mut self) -> Result<(), WebauthnCError> {
        self.inner.lock().await.cancel().await
    }

    async fn init(&mut self) -> Result<(), WebauthnCError> {
        self.inner.lock().await.init().await
    }

    async fn close(&mut self) -> Result<(), WebauthnCError> {
        self.inner.lock().await.close().await
    }
}

/// The library's UI callback, turned into the person's [`KeyPrompt`].
#[derive(Clone)]
pub(super) struct Bridge {
    pub(super) watch: Arc<Watch>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bridge")
    }
}

impl UiCallback for Bridge {
    fn request_pin(&self) -> Option<String> {
        let retries = *Watch::lock(&self.watch.retries);
        if retries == Some(0) {
            self.watch.end(KeyError::PinBlocked { replug: false });
            return None;
        }
        self.watch.touch_said.store(false, Ordering::SeqCst);
        let ask = PinAsk {
            retries,
            again: self.watch.wrong_pin.load(Ordering::SeqCst),
        };
        match self.watch.prompt.pin(ask) {
            // The library takes the PIN as a String; it is dropped once hashed.
            Ok(pin) => Some(pin.as_str().to_owned()),
            Err(e) => {
                self.watch.end(e);
                None
            }
        }
    }
    fn request_touch(&self) {
        if !self.watch.choosing.load(Ordering::SeqCst)
            && !self.watch.touch_said.swap(true, Ordering::SeqCst)
        {
            self.watch.prompt.touch(1);
        }
    }
    fn processing(&self) {}
    fn fingerprint_enrollment_feedback(&self, _: u32, _: Option<EnrollSampleStatus>) {}
    fn cable_qr_code(&self, _: CableRequestType, _: String) {}
    fn dismiss_qr_code(&self) {}
    fn cable_status_update(&self, _: CableState) {}
}
