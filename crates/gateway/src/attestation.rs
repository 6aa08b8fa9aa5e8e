//! The attestation policy (`attestation`, `attestation_ca`, `allowed_aaguids`): which
//! authenticators may register a passkey, for pairing and for adding one. With `none` any
//! authenticator registers and its AAGUID is only what it claims. With `direct` the
//! registration's attestation statement must verify up to one of the configured root CAs
//! (webauthn-rs's attested passkeys), and, when `allowed_aaguids` is set, name one of those
//! AAGUIDs: an AAGUID filter only means something on top of a verified chain, so it is refused
//! without one.

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::prelude::{
    AttestationCaList, AttestationCaListBuilder, AttestedPasskeyRegistration,
    CreationChallengeResponse, CredentialID, Passkey, PasskeyRegistration,
    RegisterPublicKeyCredential,
};

use countersign_protocol::api::ErrorCode;

use crate::config::{Attestation, Config};
use crate::error::{ApiError, GatewayError};
use crate::gateway::Gateway;

/// The CA list the configuration names, or None for `attestation = "none"`.
pub fn ca_list(config: &Config) -> Result<Option<AttestationCaList>, GatewayError> {
    let invalid = |why: String| GatewayError::Invalid(why);
    match config.attestation {
        Attestation::None => {
            if !config.allowed_aaguids.is_empty() {
                return Err(invalid(
                    "allowed_aaguids needs attestation = \"direct\": an AAGUID is only what a key claims until its attestation chain is verified."
                        .into(),
                ));
            }
            Ok(None)
        }
        Attestation::Direct => {
            if config.attestation_ca.is_empty() {
                return Err(invalid(
                    "attestation = \"direct\" needs attestation_ca: the PEM files of the root CAs to trust."
                        .into(),
                ));
            }
            let mut list = AttestationCaList::default();
            let mut builder = AttestationCaListBuilder::new();
            for path in &config.attestation_ca {
                let pem = std::fs::read(path)
                    .map_err(|e| invalid(format!("attestation_ca {}: {e}.", path.display())))?;
                let bad = |e: &dyn std::fmt::Debug| {
                    invalid(format!(
                        "attestation_ca {} is not a PEM certificate: {e:?}.",
                        path.display()
                    ))
                };
                if config.allowed_aaguids.is_empty() {
                    let one = AttestationCaList::try_from(pem.as_slice()).map_err(|e| bad(&e))?;
                    list.union(&one);
                } else {
                    for aaguid in &config.allowed_aaguids {
                        builder
                            .insert_device_pem(
                                &pem,
                                *aaguid,
                                aaguid.to_string(),
                                Default::default(),
                            )
                            .map_err(|e| bad(&e))?;
                    }
                }
            }
            if !config.allowed_aaguids.is_empty() {
                list = builder.build();
            }
            Ok(Some(list))
        }
    }
}

/// A registration's stored state: a plain passkey's, or an attested one's.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
pub enum Registration {
    Attested(AttestedPasskeyRegistration),
    Plain(PasskeyRegistration),
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
