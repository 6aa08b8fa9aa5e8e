//! Adding, listing and removing an approver's passkeys (`docs/protocol.md`, sections 3.13 to
//! 3.16 and 8.8): the gateway's PasskeyEnrolment with its two WebAuthn challenges, the
//! device-signed PasskeyAdd and PasskeyRemove, and the gateway-signed PasskeyList.

use serde::{Deserialize, Serialize};

use crate::canonical::domain;
use crate::error::ProtocolError;
use crate::types::{
    check_ident, check_nonempty, check_origin, check_version, limits, Decode, SignedBody,
};

/// The gateway's answer to `POST /v2/passkeys/enrol`: an assertion challenge any of the
/// approver's passkeys answers (the proof), and a registration challenge for the new passkey
/// (which excludes the registered ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyEnrolment {
    pub v: u32,
    pub enrolment_id: String,
    pub approver: String,
    pub webauthn_origin: String,
    /// WebAuthn `RequestChallengeResponse` JSON.
    pub proof: serde_json::Value,
    /// WebAuthn `CreationChallengeResponse` JSON.
    pub creation: serde_json::Value,
    pub expires_at: i64,
}

impl Decode for PasskeyEnrolment {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("enrolment_id", &self.enrolment_id, limits::ID)?;
        check_ident("approver", &self.approver, limits::NAME)?;
        check_nonempty("webauthn_origin", &self.webauthn_origin, limits::URL)?;
        check_origin(&self.webauthn_origin)
    }
}

/// Adds a passkey: the proof by a registered passkey and the new registration, signed by the
/// device that ran both ceremonies (`POST /v2/passkeys`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyAdd {
    pub v: u32,
    pub enrolment_id: String,
    pub device_id: String,
    /// WebAuthn `PublicKeyCredential` JSON: the assertion answering the enrolment's proof.
    pub proof: serde_json::Value,
    /// WebAuthn `RegisterPublicKeyCredential` JSON: the new passkey.
    pub credential: serde_json::Value,
}

impl SignedBody for PasskeyAdd {
    const DOMAIN: &'static str = domain::PASSKEY_CHANGE;
}

impl Decode for PasskeyAdd {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("enrolment_id", &self.enrolment_id, limits::ID)?;
        check_ident("device_id", &self.device_id, limits::ID)
    }
}

/// Removes one of the approver's passkeys, signed by one of its devices
/// (`POST /v2/passkeys/remove`). The last one is never removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRemove {
    pub v: u32,
    pub device_id: String,
    /// The credential id, unpadded base64url.
    pub cred_id: String,
    /// When the device signed it (Unix seconds); the gateway takes it within 300 s of its clock.
    pub at: i64,
}

impl SignedBody for PasskeyRemove {
    const DOMAIN: &'static str = domain::PASSKEY_CHANGE;
}

impl Decode for PasskeyRemove {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("device_id", &self.device_id, limits::ID)?;
        check_ident("cred_id", &self.cred_id, limits::CRED_ID)
    }
}

/// One registered passkey, as [`PasskeyList`] names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyInfo {
    /// The credential id, unpadded base64url.
    pub cred_id: String,
    /// The AAGUID the authenticator claimed at registration (hyphenated hex).
    pub aaguid: Option<String>,
    /// The device that registered it.
    pub device_id: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// The approver's active passkeys, signed by the gateway (`GET /v2/passkeys`, and the answer to
/// adding and removing one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyList {
    pub v: u32,
    pub approver: String,
    pub passkeys: Vec<PasskeyInfo>,
    pub at: i64,
}

impl SignedBody for PasskeyList {
    const DOMAIN: &'static str = domain::PASSKEYS;
}

impl Decode for PasskeyList {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("approver", &self.approver, limits::NAME)?;
        for p in &self.passkeys {
            check_ident("cred_id", &p.cred_id, limits::CRED_ID)?;
        }
        Ok(())
    }
}
