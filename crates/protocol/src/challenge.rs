//! The gateway-signed WebAuthn challenge (docs/protocol.md 3.24): one authentication challenge
//! bound to one request and one approver. The WebAuthn challenge bytes are the 32 bytes of the
//! Challenge's digest, so the passkey's signature covers, through `clientDataJSON`, a digest of
//! a body that names the request digest and the approver, and the gateway's signature shows
//! that the gateway issued it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::canonical::domain;
use crate::crypto::Digest;
use crate::error::ProtocolError;
use crate::fields::{check_ident, check_u53, check_version, limits};
use crate::types::{Decode, SignedBody};

/// The most credential ids one challenge allows.
pub const MAX_CREDENTIALS: usize = 32;

/// One WebAuthn authentication challenge, issued by the gateway to `approver` for `request_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    pub v: u32,
    /// The gateway's fingerprint.
    pub gateway: String,
    pub request_id: String,
    pub request_digest: Digest,
    pub approver: String,
    /// 32 random bytes drawn for this challenge (unpadded base64url).
    pub nonce: String,
    pub rp_id: String,
    /// The origin the ceremony must use, as an origin serialisation.
    pub origin: String,
    /// The credential ids of the approver's passkeys (unpadded base64url).
    pub allow_credentials: Vec<String>,
    /// Always `required`.
    pub user_verification: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

impl SignedBody for Challenge {
    const DOMAIN: &'static str = domain::CHALLENGE;
}

impl Decode for Challenge {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("gateway", &self.gateway, limits::ID)?;
        check_ident("request_id", &self.request_id, limits::ID)?;
        check_ident("approver", &self.approver, limits::NAME)?;
        check_ident("rp_id", &self.rp_id, 253)?;
        check_ident("origin", &self.origin, limits::URL)?;
        let nonce =
            URL_SAFE_NO_PAD
                .decode(&self.nonce)
                .map_err(|_| ProtocolError::InvalidEncoding {
                    field: "nonce",
                    encoding: "unpadded base64url",
                })?;
        if nonce.len() != 32 {
            return Err(ProtocolError::InvalidField {
                field: "nonce",
                reason: "must be 32 bytes".into(),
            });
        }
        if self.allow_credentials.is_empty() || self.allow_credentials.len() > MAX_CREDENTIALS {
            return Err(ProtocolError::InvalidField {
                field: "allow_credentials",
                reason: format!("must list 1 to {MAX_CREDENTIALS} credential ids"),
            });
        }
        for c in &self.allow_credentials {
            check_ident("allow_credentials", c, limits::CRED_ID)?;
        }
        if self.user_verification != "required" {
            return Err(ProtocolError::InvalidField {
                field: "user_verification",
                reason: "must be \"required\"".into(),
            });
        }
        check_u53("issued_at", u64::try_from(self.issued_at).unwrap_or(0), 0)?;
        if self.expires_at < self.issued_at {
            return Err(ProtocolError::InvalidField {
                field: "expires_at",
                reason: "is before issued_at".into(),
            });
        }
        Ok(())
    }
}

/// The WebAuthn challenge of a challenge digest: its 32 bytes, as `clientDataJSON.challenge`
/// carries them (unpadded base64url).
pub fn webauthn_challenge(digest: &Digest) -> String {
    URL_SAFE_NO_PAD.encode(digest.0)
}

/// Puts a challenge digest into the JSON of a ceremony a WebAuthn library started: the
/// options' `publicKey.challenge` and the state's `ast.challenge` (webauthn-rs's
/// `RequestChallengeResponse` and `PasskeyAuthentication`). Fails, changing nothing it could
/// not find, when either member is missing.
pub fn bind_json(
    options: &mut serde_json::Value,
    state: &mut serde_json::Value,
    digest: &Digest,
) -> Result<(), &'static str> {
    let bytes = serde_json::Value::String(webauthn_challenge(digest));
    if state.pointer("/ast/challenge").is_none() {
        return Err("no ast.challenge in the ceremony state");
    }
    *options
        .pointer_mut("/publicKey/challenge")
        .ok_or("no publicKey.challenge in the options")? = bytes.clone();
    if let Some(c) = state.pointer_mut("/ast/challenge") {
        *c = bytes;
    }
    Ok(())
}

/// What a device checks of a challenge it is given for a request (docs/protocol.md 3.24):
/// the gateway's signature, that it names this gateway, request, digest and approver, and that
/// the options' WebAuthn challenge is its digest. Returns the digest.
pub fn check_bound(
    signed: &crate::types::Signed<Challenge>,
    gateway: &crate::crypto::PublicKey,
    request_id: &str,
    request_digest: &Digest,
    approver: &str,
    options: &serde_json::Value,
) -> Result<Digest, String> {
    let digest = signed
        .verify_and_digest(gateway)
        .map_err(|_| "the challenge is not signed by the pinned gateway key".to_owned())?;
    let b = &signed.body;
    if b.gateway != gateway.fingerprint()
        || b.request_id != request_id
        || !b.request_digest.ct_eq(request_digest)
        || b.approver != approver
    {
        return Err("the challenge was issued for another gateway, request or approver".into());
    }
    if options
        .pointer("/publicKey/challenge")
        .and_then(|v| v.as_str())
        != Some(webauthn_challenge(&digest).as_str())
    {
        return Err("the WebAuthn challenge is not the signed challenge's digest".into());
    }
    Ok(digest)
}
