//! The passkey of a hoop connection. hoop asks for no passkey, so for a hoop gateway this
//! device is its own relying party: a passkey (a security key, or the development software
//! authenticator) registered when the connection is made, under the relying party id
//! `localhost`, and asserted with user verification before every decision on that
//! connection's reviews. It protects the approver's own device and audit trail: hoop never
//! sees it and does not check it (docs/security.md).

use url::Url;
use webauthn_rs::prelude::{
    AuthenticationResult, Passkey, PublicKeyCredential, Uuid, Webauthn, WebauthnBuilder,
};

use crate::authenticator::Authenticator;
use crate::error::EngineError;

/// The relying party id of every hoop connection's passkey.
pub const RP_ID: &str = "localhost";

fn origin() -> Result<Url, EngineError> {
    Url::parse("https://localhost").map_err(|e| EngineError::Ceremony(e.to_string()))
}

fn rp() -> Result<Webauthn, EngineError> {
    WebauthnBuilder::new(RP_ID, &origin()?)
        .and_then(|b| b.rp_name("Countersign hoop connections").build())
        .map_err(|e| EngineError::Ceremony(format!("the local relying party: {e}")))
}

/// Registers a new passkey for the hoop user `user` with `authenticator`.
pub(crate) fn register(
    authenticator: &mut dyn Authenticator,
    user: &str,
) -> Result<Passkey, EngineError> {
    let rp = rp()?;
    let (creation, state) = rp
        .start_passkey_registration(Uuid::new_v4(), user, user, None)
        .map_err(|e| EngineError::Ceremony(format!("the registration could not start: {e}")))?;
    let credential = authenticator.register(&origin()?, creation)?;
    rp.finish_passkey_registration(&credential, &state)
        .map_err(|e| EngineError::Ceremony(format!("the new passkey does not verify: {e}")))
}

/// Asks `authenticator` for an assertion of `passkey`, with user verification, and checks it.
pub(crate) fn confirm(
    authenticator: &mut dyn Authenticator,
    passkey: &Passkey,
) -> Result<(PublicKeyCredential, AuthenticationResult), EngineError> {
    let rp = rp()?;
    let (challenge, state) = rp
        .start_passkey_authentication(std::slice::from_ref(passkey))
        .map_err(|e| EngineError::Ceremony(format!("the confirmation could not start: {e}")))?;
    let assertion = authenticator.authenticate(&origin()?, challenge)?;
    let result = rp
        .finish_passkey_authentication(&assertion, &state)
        .map_err(|e| {
            EngineError::Ceremony(format!("the passkey assertion does not verify: {e}"))
        })?;
    if !result.user_verified() {
        return Err(EngineError::Ceremony(
            "the authenticator did not verify its user".into(),
        ));
    }
    Ok((assertion, result))
}
