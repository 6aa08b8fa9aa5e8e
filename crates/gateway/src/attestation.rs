//! The attestation policy (`attestation`, `attestation_ca`, `allowed_aaguids`; the CA list is
//! built from the configuration by `config::attestation_cas`): which
//! authenticators may register a passkey, for pairing and for adding one. With `none` any
//! authenticator registers and its AAGUID is only what it claims. With `direct` the
//! registration's attestation statement must verify up to one of the configured root CAs
//! (webauthn-rs's attested passkeys), and, when `allowed_aaguids` is set, name one of those
//! AAGUIDs: an AAGUID filter only means something on top of a verified chain, so it is refused
//! without one.

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::prelude::{
    AttestedPasskeyRegistration, CreationChallengeResponse, CredentialID, Passkey,
    PasskeyRegistration, RegisterPublicKeyCredential,
};

use countersign_protocol::api::ErrorCode;

use crate::error::ApiError;
use crate::gateway::Gateway;

/// A registration's stored state: a plain passkey's, or an attested one's.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
pub enum Registration {
    Attested(AttestedPasskeyRegistration),
    Plain(PasskeyRegistration),
}

impl Registration {
    /// Whether the registration verifies an attestation chain: its passkey's AAGUID is then
    /// attested, not only claimed.
    pub fn attested(&self) -> bool {
        matches!(self, Registration::Attested(_))
    }
}

/// Starts a passkey registration under the gateway's attestation policy.
pub fn start(
    gw: &Gateway,
    user_id: Uuid,
    approver: &str,
    exclude: Vec<CredentialID>,
) -> Result<(CreationChallengeResponse, Registration), ApiError> {
    match &gw.attestation_cas {
        None => gw
            .webauthn
            .start_passkey_registration(user_id, approver, approver, Some(exclude))
            .map(|(c, s)| (c, Registration::Plain(s))),
        Some(cas) => gw
            .webauthn
            .start_attested_passkey_registration(
                user_id,
                approver,
                approver,
                Some(exclude),
                cas.clone(),
                None,
            )
            .map(|(c, s)| (c, Registration::Attested(s))),
    }
    .map_err(|e| ApiError::internal("start passkey registration", e))
}

/// Finishes a registration; one outside the policy is refused with `attestation_rejected`.
pub fn finish(
    gw: &Gateway,
    cred: &RegisterPublicKeyCredential,
    state: &Registration,
) -> Result<Passkey, ApiError> {
    match state {
        Registration::Plain(s) => gw.webauthn.finish_passkey_registration(cred, s).map_err(|e| {
            ApiError::forbidden(
                ErrorCode::PasskeyRegistrationRejected,
                format!("The passkey registration does not verify: {e}."),
            )
        }),
        Registration::Attested(s) => gw
            .webauthn
            .finish_attested_passkey_registration(cred, s)
            .map(Passkey::from)
            .map_err(|e| {
                ApiError::forbidden(
                    ErrorCode::AttestationRejected,
                    format!(
                        "This gateway accepts only security keys whose attestation it trusts, and this one's does not pass ({e}). Ask the gateway's administrator which keys are allowed."
                    ),
                )
            }),
    }
}
