//! The pairing messages (`docs/protocol.md`, sections 3.7 to 3.11 and 8.1): PairStart and the
//! gateway's PairChallenge, the device-signed PairFinish, the gateway-signed Paired, and the
//! public GatewayInfo a device reads before it pins a key.

use serde::{Deserialize, Serialize};

use crate::canonical::domain;
use crate::crypto::PublicKey;
use crate::error::ProtocolError;
use crate::types::{
    check_ident, check_nonempty, check_origin, check_version, limits, Decode, SignedBody,
};

/// First pairing step, sent by the device with the one-time code from the link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairStart {
    pub v: u32,
    pub code: String,
    pub device_key: PublicKey,
    pub device_name: String,
}

impl Decode for PairStart {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("code", &self.code, limits::ID)?;
        check_nonempty("device_name", &self.device_name, limits::NAME)?;
        Ok(())
    }
}

/// The gateway's answer to [`PairStart`]: who the code was issued to, the gateway key (the
/// device checks its fingerprint against the link) and a WebAuthn registration challenge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairChallenge {
    pub v: u32,
    pub pairing_id: String,
    pub approver: String,
    pub gateway_key: PublicKey,
    /// The WebAuthn origin the device must use for every ceremony with this gateway.
    pub webauthn_origin: String,
    /// WebAuthn `CreationChallengeResponse` JSON.
    pub creation: serde_json::Value,
}

impl Decode for PairChallenge {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("pairing_id", &self.pairing_id, limits::ID)?;
        check_ident("approver", &self.approver, limits::NAME)?;
        check_nonempty("webauthn_origin", &self.webauthn_origin, limits::URL)?;
        check_origin(&self.webauthn_origin)?;
        Ok(())
    }
}

/// Second pairing step, signed by the new device key (proof of possession).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairFinish {
    pub v: u32,
    pub pairing_id: String,
    pub device_key: PublicKey,
    /// WebAuthn `RegisterPublicKeyCredential` JSON.
    pub credential: serde_json::Value,
}

impl SignedBody for PairFinish {
    const DOMAIN: &'static str = domain::PAIRING;
}

impl Decode for PairFinish {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("pairing_id", &self.pairing_id, limits::ID)?;
        Ok(())
    }
}

/// The gateway's signed confirmation that a device is paired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paired {
    pub v: u32,
    pub device_id: String,
    pub approver: String,
    pub device_key: PublicKey,
    pub paired_at: i64,
}

impl SignedBody for Paired {
    const DOMAIN: &'static str = domain::PAIRED;
}

impl Decode for Paired {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("device_id", &self.device_id, limits::ID)?;
        check_ident("approver", &self.approver, limits::NAME)?;
        Ok(())
    }
}

/// Public facts about a gateway (`GET /v2/info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayInfo {
    pub v: u32,
    pub name: String,
    pub gateway_key: PublicKey,
    pub fingerprint: String,
    pub webauthn_origin: String,
}

impl Decode for GatewayInfo {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_origin(&self.webauthn_origin)?;
        if self.gateway_key.fingerprint() != self.fingerprint {
            return Err(ProtocolError::InvalidField {
                field: "fingerprint",
                reason: "does not match gateway_key".into(),
            });
        }
        Ok(())
    }
}
