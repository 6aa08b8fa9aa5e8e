//! The security key's side of the page: what the key asks the person while a ceremony runs
//! ([`KeyAsk`], pushed as `UiEvent::SecurityKey`), what the person answers ([`KeyAnswer`],
//! the `key_answer` command), and the approver's passkeys at a gateway ([`PasskeyView`]).
//!
//! A PIN crosses the page, the window and the agent as a [`Secret`]: never printed by `Debug`,
//! wiped from memory when dropped, never stored.

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use zeroize::Zeroizing;

/// What the security key needs from the person now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyAsk {
    /// No key is plugged in: "Insert your security key".
    Insert,
    /// "Touch your security key" (`among` = 1), or "touch the key you want to use".
    Touch { among: u32 },
    /// The key's PIN, with the tries it says are left; `again` after a wrong one.
    Pin { retries: Option<u32>, again: bool },
    /// A first PIN for a key that has none, entered twice, of at least `min_length` characters.
    NewPin { min_length: u32 },
    /// Adding a backup key: the registered key has proven this approver; plug in the new key
    /// (and remove the first) and continue.
    NextKey,
}

/// Text that must not be logged or kept here: a PIN, or a hoop token on its way to the key
/// store. `Debug` shows `Secret(..)`; the memory is wiped when it is dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(text: String) -> Secret {
        Secret(Zeroizing::new(text))
    }

    /// The text, moved out; what is left behind is empty.
    pub fn take(mut self) -> String {
        std::mem::take(&mut *self.0)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The person's answer to a [`KeyAsk`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum KeyAnswer {
    /// The PIN asked for (`pin`), or the new PIN (`new_pin`; the page checks both entries).
    Pin {
        #[ts(type = "string")]
        pin: Secret,
    },
    /// The new key is plugged in (`next_key`).
    Continue,
    /// Cancel the ceremony, whatever it waits for.
    Cancel,
}

/// One of the approver's passkeys at a gateway, as the gateway signed the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct PasskeyView {
    pub cred_id: String,
    /// The AAGUID the key claimed at registration; only a claim unless attested.
    pub aaguid: Option<String>,
    /// Registered from this device.
    pub this_device: bool,
    #[ts(type = "number")]
    pub created_at: i64,
    #[ts(type = "number | null")]
    pub last_used_at: Option<i64>,
}

impl PasskeyView {
    /// The rows of a gateway's signed list; `device_id` is this device's id there.
    pub fn list(list: &countersign_protocol::PasskeyList, device_id: &str) -> Vec<PasskeyView> {
        list.passkeys
            .iter()
            .map(|p| PasskeyView {
                cred_id: p.cred_id.clone(),
                aaguid: p.aaguid.clone(),
                this_device: p.device_id.as_deref() == Some(device_id),
                created_at: p.created_at,
                last_used_at: p.last_used_at,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_is_never_printed_and_has_the_documented_shape() {
        let answer: KeyAnswer = serde_json::from_str(r#"{"answer":"pin","pin":"123456"}"#).unwrap();
        assert!(!format!("{answer:?}").contains("123456"));
        let KeyAnswer::Pin { pin } = answer else {
            panic!("a PIN answer")
        };
        assert_eq!(pin.take(), "123456");
        assert_eq!(
            serde_json::to_string(&KeyAnswer::Cancel).unwrap(),
            r#"{"answer":"cancel"}"#
        );
        assert_eq!(
            serde_json::to_string(&KeyAsk::Pin {
                retries: Some(7),
                again: true
            })
            .unwrap(),
            r#"{"kind":"pin","retries":7,"again":true}"#
        );
    }
}
