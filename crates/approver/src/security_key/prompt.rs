//! The person's side of a security key ceremony: the PIN (wiped when dropped), what the key
//! asks for it with, the [`KeyPrompt`] a host answers through, and where keys come from
//! ([`KeySource`]: the USB bus, or a test's fake keys).

#[cfg(feature = "usb")]
use futures::executor::block_on;
use webauthn_authenticator_rs::transport::Token;
use zeroize::Zeroizing;

use crate::key_error::KeyError;

/// A PIN as the person typed it; wiped from memory when dropped, never logged.
pub struct Pin(Zeroizing<String>);

impl Pin {
    pub fn new(pin: String) -> Pin {
        Pin(Zeroizing::new(pin))
    }
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
    /// Whether two entries are the same PIN.
    pub fn matches(&self, other: &Pin) -> bool {
        *self.0 == *other.0
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(..)")
    }
}

/// What the key asks the person for a PIN with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinAsk {
    /// Tries left, as the key said just before asking.
    pub retries: Option<u32>,
    /// The PIN given before was wrong.
    pub again: bool,
}

/// The person's side of a ceremony: the CLI's terminal, the desktop's dialog, a test's script.
/// Methods are called from the ceremony's thread; `touch` and `insert` must not block.
pub trait KeyPrompt: Send + Sync {
    /// No key is plugged in yet: "Insert your security key".
    fn insert(&self) {}
    /// "Touch your security key" (`among` = 1), or "touch the key you want to use".
    fn touch(&self, among: usize);
    /// The key's PIN. `Err(PinRequired)` when there is no way to ask (no terminal),
    /// `Err(CeremonyCancelled)` when the person cancels; any other error ends the ceremony too.
    fn pin(&self, ask: PinAsk) -> Result<Pin, KeyError>;
    /// A new PIN for a key that has none, entered twice; at least `min_length` characters.
    fn new_pin(&self, min_length: usize) -> Result<Pin, KeyError>;
    /// True once the person pressed Cancel.
    fn cancelled(&self) -> bool {
        false
    }
}

/// A host that cannot ask anything: touches are awaited, a PIN is refused with
/// [`KeyError::PinRequired`], so only keys with built-in verification work.
pub struct Unattended;

impl KeyPrompt for Unattended {
    fn touch(&self, _among: usize) {}
    fn pin(&self, _ask: PinAsk) -> Result<Pin, KeyError> {
        Err(KeyError::PinRequired)
    }
    fn new_pin(&self, _min_length: usize) -> Result<Pin, KeyError> {
        Err(KeyError::PinRequired)
    }
}

/// Where security keys come from: the USB bus, or a test's fake keys.
pub trait KeySource: Send {
    type Token: Token + 'static;
    /// The keys plugged in now (blocking; called with the key runtime entered).
    fn tokens(&mut self) -> Result<Vec<Self::Token>, KeyError>;
    /// How the authenticator is named to the person.
    fn label(&self) -> String {
        "security key".into()
    }
    /// True for a source that only development and tests use (labelled wherever it shows).
    fn development_mode(&self) -> bool {
        false
    }
}

/// The keys on the USB bus (CTAP2 over HID: `/dev/hidraw*`).
#[cfg(feature = "usb")]
pub struct UsbKeys;

#[cfg(feature = "usb")]
impl KeySource for UsbKeys {
    type Token = webauthn_authenticator_rs::usb::USBToken;
    fn tokens(&mut self) -> Result<Vec<Self::Token>, KeyError> {
        use webauthn_authenticator_rs::transport::Transport;
        use webauthn_authenticator_rs::usb::USBTransport;
        block_on(async {
            let transport = USBTransport::new()
                .await
                .map_err(KeyError::from_transport)?;
            transport.tokens().await.map_err(KeyError::from_transport)
        })
    }
}
