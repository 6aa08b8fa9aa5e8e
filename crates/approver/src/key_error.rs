//! What a security key ceremony can end in, each outcome with a stable code (shared with the UI
//! through the IPC error codes) and a sentence that says what to do.

use webauthn_authenticator_rs::ctap2::GetInfoResponse;
use webauthn_authenticator_rs::error::{CtapError, WebauthnCError};

/// How a security key ceremony failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("This security key needs its PIN, and there is no terminal to ask for it on; run the command in a terminal, or pass the PIN on standard input with --pin-stdin.")]
    PinRequired,
    #[error("The PIN is not this security key's PIN{}.", tries_left(*.retries))]
    PinInvalid { retries: Option<u32> },
    #[error("{}", if *.replug {
        "Three wrong PINs in a row: the security key refuses PINs until it is pulled out and plugged in again. Do that, then try again."
    } else {
        "This security key's PIN is blocked after too many wrong tries. It can only be used again after a reset, which deletes every passkey on it; register another key instead."
    })]
    PinBlocked { replug: bool },
    #[error("{}", if *.can_set_pin {
        "This security key has no PIN and no built-in verification, and Countersign never uses a key without verifying you. Set a PIN on it first: in the app under Settings, Security key, or with countersign key set-pin."
    } else {
        "This security key can verify nobody (it has neither a PIN nor built-in verification), so Countersign cannot use it. Use a key with a PIN or a fingerprint reader."
    })]
    UvUnavailable { can_set_pin: bool },
    #[error("This security key is not registered for {}; use the key you paired with{}.",
        whom.as_deref().unwrap_or("this approver"),
        if whom.is_some() { " (or a backup key added in Settings or with countersign passkey add)" } else { "" })]
    NoMatchingCredential { whom: Option<String> },
    #[error("The security key was not touched in time; try again and touch it when it blinks.")]
    CeremonyTimeout,
    #[error("The security key ceremony was cancelled; nothing was signed.")]
    CeremonyCancelled,
    #[error("The security key was removed (or stopped answering) during the ceremony; plug it in and try again.")]
    KeyRemoved,
    #[error("This security key only speaks U2F (CTAP1). Countersign needs a FIDO2 key, because U2F cannot verify you with a PIN or a fingerprint.")]
    U2fOnly,
    #[error("This security key is registered already; a backup passkey must be on another key.")]
    AlreadyRegistered,
    #[error("That PIN is not allowed: {0}.")]
    PinPolicy(String),
    #[error("This security key already has a PIN; change it with the key maker's tool.")]
    PinAlreadySet,
    #[error("The security key failed: {0}.")]
    Failed(String),
}

fn tries_left(retries: Option<u32>) -> String {
    match retries {
        Some(1) => "; 1 try is left before the key blocks its PIN".into(),
        Some(n) => format!("; {n} tries are left"),
        None => String::new(),
    }
}

impl KeyError {
    /// The stable code for scripts and the UI.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::PinRequired => "pin_required",
            KeyError::PinInvalid { .. } => "pin_invalid",
            KeyError::PinBlocked { .. } => "pin_blocked",
            KeyError::UvUnavailable { .. } => "uv_unavailable",
            KeyError::NoMatchingCredential { .. } => "no_matching_credential",
            KeyError::CeremonyTimeout => "ceremony_timeout",
            KeyError::CeremonyCancelled => "ceremony_cancelled",
            KeyError::KeyRemoved => "key_removed",
            KeyError::U2fOnly => "u2f_only",
            KeyError::AlreadyRegistered => "key_already_registered",
            KeyError::PinPolicy(_) => "pin_policy",
            KeyError::PinAlreadySet => "pin_already_set",
            KeyError::Failed(_) => "passkey_failed",
        }
    }

    /// The transport could not list or open keys.
    pub fn from_transport(e: WebauthnCError) -> KeyError {
        match e {
            WebauthnCError::PermissionDenied => KeyError::Failed(
                "this user may not open the security key (/dev/hidraw*); the udev rules of \
                 the key maker (or the libfido2 package's) grant access"
                    .into(),
            ),
            other => KeyError::Failed(format!("{other}")),
        }
    }

    /// The outcome a library error stands for, on the key `info` describes.
    pub fn from_ctap(e: WebauthnCError, info: &GetInfoResponse) -> KeyError {
        use CtapError as C;
        match e {
            WebauthnCError::Ctap(c) => match c {
                C::Ctap2PinInvalid => KeyError::PinInvalid { retries: None },
                C::Ctap2PinBlocked => KeyError::PinBlocked { replug: false },
                C::Ctap2PinAuthBlocked => KeyError::PinBlocked { replug: true },
                C::Ctap2PinNotSet | C::Ctap2PUATRequired => KeyError::UvUnavailable {
                    can_set_pin: info.get_option("clientPin") == Some(false),
                },
                C::Ctap2UserVerificationBlocked => KeyError::Failed(
                    "its built-in verification is blocked after too many failed tries; \
                     unlock it with its PIN in the key maker's tool"
                        .into(),
                ),
                C::Ctap2NoCredentials | C::Ctap2InvalidCredential => {
                    KeyError::NoMatchingCredential { whom: None }
                }
                C::Ctap2UserActionTimeout | C::Ctap2ActionTimeout | C::Ctap1Timeout => {
                    KeyError::CeremonyTimeout
                }
                C::Ctap2KeepAliveCancel | C::Ctap2OperationDenied => KeyError::CeremonyCancelled,
                C::Ctap2CredentialExcluded => KeyError::AlreadyRegistered,
                C::Ctap2PinPolicyViolation => {
                    KeyError::PinPolicy("the key's PIN rules refuse it".into())
                }
                C::Ctap1InvalidCommand => KeyError::U2fOnly,
                other => KeyError::Failed(format!("it answered {other:?}")),
            },
            WebauthnCError::UserVerificationRequired => KeyError::UvUnavailable {
                can_set_pin: info.get_option("clientPin") == Some(false),
            },
            WebauthnCError::Cancelled => KeyError::CeremonyCancelled,
            WebauthnCError::PinTooShort => KeyError::PinPolicy(format!(
                "it must have at least {} characters",
                info.min_pin_length.unwrap_or(4)
            )),
            WebauthnCError::PinTooLong => {
                KeyError::PinPolicy("it must be at most 63 bytes long".into())
            }
            WebauthnCError::PinContainsNull => {
                KeyError::PinPolicy("it must not contain a NUL character".into())
            }
            WebauthnCError::IoError(_) | WebauthnCError::Closed | WebauthnCError::NoHidDevices => {
                KeyError::KeyRemoved
            }
            #[cfg(feature = "usb")]
            WebauthnCError::HidError(_) => KeyError::KeyRemoved,
            other => KeyError::Failed(format!("{other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_and_codes() {
        let all = [
            KeyError::PinRequired,
            KeyError::PinInvalid { retries: Some(3) },
            KeyError::PinBlocked { replug: true },
            KeyError::PinBlocked { replug: false },
            KeyError::UvUnavailable { can_set_pin: true },
            KeyError::UvUnavailable { can_set_pin: false },
            KeyError::NoMatchingCredential {
                whom: Some("alice@example.com on Acme".into()),
            },
            KeyError::CeremonyTimeout,
            KeyError::CeremonyCancelled,
            KeyError::KeyRemoved,
            KeyError::U2fOnly,
            KeyError::AlreadyRegistered,
            KeyError::PinPolicy("x".into()),
            KeyError::PinAlreadySet,
            KeyError::Failed("x".into()),
        ];
        for e in &all {
            let m = e.to_string();
            assert!(m.ends_with('.'), "{m}");
            assert!(m.chars().next().is_some_and(char::is_uppercase), "{m}");
        }
        assert_eq!(
            KeyError::PinInvalid { retries: Some(1) }.to_string(),
            "The PIN is not this security key's PIN; 1 try is left before the key blocks its PIN."
        );
        assert!(KeyError::NoMatchingCredential {
            whom: Some("alice@example.com on Acme".into())
        }
        .to_string()
        .contains("not registered for alice@example.com on Acme"));
    }
}
