//! How a user's choice (`--authenticator soft|usb|dev-key`, or none) becomes an authenticator:
//! the development-mode software one, a security key (the default), or the development-mode
//! key behind a test harness's socket.

use std::path::Path;
use std::sync::Arc;

use crate::authenticator::{
    Authenticator, AuthenticatorChoice, SoftAuthenticator, SOFT_AUTHENTICATOR_FILE,
};
use crate::error::EngineError;
use crate::security_key::KeyPrompt;

/// Opens the chosen authenticator; with no choice, a security key. The software authenticator
/// is never picked implicitly. A security key talks to the person through `prompt` (PIN,
/// touch, Cancel).
pub fn open_authenticator(
    choice: Option<AuthenticatorChoice>,
    data_dir: &Path,
    prompt: Arc<dyn KeyPrompt>,
) -> Result<Box<dyn Authenticator>, EngineError> {
    match choice.unwrap_or(AuthenticatorChoice::Usb) {
        AuthenticatorChoice::Soft => Ok(Box::new(SoftAuthenticator::open(
            &data_dir.join(SOFT_AUTHENTICATOR_FILE),
        )?)),
        AuthenticatorChoice::DevKey => Ok(Box::new(crate::security_key::SecurityKey::new(
            crate::security_key::DevKeySocket::new(
                data_dir.join(crate::security_key::DEV_KEY_SOCKET_FILE),
            ),
            prompt,
        )?)),
        #[cfg(not(feature = "usb"))]
        AuthenticatorChoice::Usb => {
            let _ = prompt;
            Err(EngineError::SecurityKeyUnsupported)
        }
        #[cfg(feature = "usb")]
        AuthenticatorChoice::Usb => Ok(Box::new(crate::security_key::SecurityKey::new(
            crate::security_key::UsbKeys,
            prompt,
        )?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authenticator::AuthenticatorKind;

    #[test]
    fn choice_is_explicit() {
        let dir = tempfile::tempdir().unwrap();
        // No choice is a security key, never the software authenticator.
        let a = open_authenticator(None, dir.path(), Arc::new(crate::security_key::Unattended))
            .unwrap();
        assert_eq!(a.kind(), AuthenticatorKind::SecurityKey);
        assert!(!dir.path().join(SOFT_AUTHENTICATOR_FILE).exists());
        assert!(matches!(
            "bluetooth".parse::<AuthenticatorChoice>(),
            Err(EngineError::UnknownAuthenticator(_))
        ));
        let a = open_authenticator(
            Some(AuthenticatorChoice::Soft),
            dir.path(),
            Arc::new(crate::security_key::Unattended),
        )
        .unwrap();
        assert_eq!(a.kind(), AuthenticatorKind::Software);
        assert!(a.label().contains("development mode"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SOFT_AUTHENTICATOR_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
