//! The passkey side of an evidence bundle (docs/protocol.md, section 9.7): the gateway-signed
//! record of an approver's registered passkey (its COSE public key, relying party and origin),
//! and the check of a decision's WebAuthn assertion against it, as WebAuthn Level 3's
//! verification of an authentication assertion does it from signed data alone: the client
//! data (type and origin), the relying party id hash, user presence and verification, and the
//! signature over `authenticatorData || SHA-256(clientDataJSON)` with the COSE key (ES256 or
//! EdDSA). The challenge is not checked here: it is tied to the request by the device
//! signature over the Decision.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::canonical::domain;
use crate::crypto::{PublicKey, Signature};
use crate::types::SignedBody;
use crate::webauthn::{check_client_data, Ceremony};

/// An approver's passkey as the gateway registered it. Domain `countersign/v2/passkey-record`,
/// gateway-signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRecord {
    pub v: u32,
    /// Fingerprint of the gateway key.
    pub gateway: String,
    pub approver: String,
    /// The credential id, unpadded base64url.
    pub credential_id: String,
    /// The credential's COSE_Key (RFC 9052) as the authenticator gave it in its attested
    /// credential data, unpadded base64url.
    pub public_key: String,
    /// The WebAuthn relying party id and origin the gateway verifies assertions for.
    pub rp_id: String,
    pub origin: String,
    /// The AAGUID the authenticator claimed at registration, and whether a verified
    /// attestation chain vouched for it.
    pub aaguid: Option<String>,
    pub attested: bool,
    pub registered_at: i64,
    /// The device that registered it, when known.
    pub device_id: Option<String>,
}

impl SignedBody for PasskeyRecord {
    const DOMAIN: &'static str = domain::PASSKEY_RECORD;
}

fn b64(s: Option<&str>, what: &str) -> Result<Vec<u8>, String> {
    let s = s.ok_or_else(|| format!("the assertion has no {what}"))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| format!("the assertion's {what} is not base64url"))
}

/// The credential id an assertion names (`rawId`), decoded.
pub fn assertion_credential(assertion: &serde_json::Value) -> Result<Vec<u8>, String> {
    b64(assertion.get("rawId").and_then(|v| v.as_str()), "rawId")
}

/// A record's credential id, decoded.
pub fn record_credential(record: &PasskeyRecord) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(&record.credential_id)
        .map_err(|_| "the record's credential id is not base64url".to_owned())
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        h.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(h.finish().as_ref());
    out
}

/// Checks a WebAuthn assertion (webauthn-rs `PublicKeyCredential` JSON, protocol.md 3.5)
/// against the passkey it names. Returns the client data's challenge (unpadded base64url).
pub fn verify_assertion(
    assertion: &serde_json::Value,
    record: &PasskeyRecord,
) -> Result<String, String> {
    if assertion_credential(assertion)? != record_credential(record)? {
        return Err("it names another credential".into());
    }
    let response = assertion
        .get("response")
        .ok_or("the assertion has no response")?;
    let field = |name: &str| response.get(name).and_then(|v| v.as_str());
    let client_data = b64(field("clientDataJSON"), "clientDataJSON")?;
    let auth_data = b64(field("authenticatorData"), "authenticatorData")?;
    let signature = b64(field("signature"), "signature")?;
    let origin =
        url::Url::parse(&record.origin).map_err(|e| format!("the record's origin: {e}"))?;
    check_client_data(&client_data, Ceremony::Get, &origin).map_err(|e| e.to_string())?;
    let challenge = serde_json::from_slice::<serde_json::Value>(&client_data)
        .ok()
        .and_then(|v| {
            v.get("challenge")
                .and_then(|c| c.as_str())
                .map(str::to_owned)
        })
        .ok_or("the client data has no challenge")?;
    if auth_data.len() < 37 {
        return Err("the authenticator data is shorter than 37 bytes".into());
    }
    if auth_data[..32] != sha256(&[record.rp_id.as_bytes()]) {
        return Err(format!(
            "the authenticator data is for another relying party than {}",
            record.rp_id
        ));
    }
    let flags = auth_data[32];
    if flags & 0x01 == 0 {
        return Err("the authenticator data does not show user presence".into());
    }
    if flags & 0x04 == 0 {
        return Err("the authenticator data does not show user verification".into());
    }
    let signed = [auth_data.as_slice(), &sha256(&[&client_data])].concat();
    let cose = URL_SAFE_NO_PAD
        .decode(&record.public_key)
        .map_err(|_| "the record's public key is not base64url".to_owned())?;
    verify_cose(&cose, &signed, &signature)?;
    Ok(challenge)
}

/// Verifies `signature` over `message` with a COSE_Key: ES256 (kty 2, alg -7, crv 1) or EdDSA
/// (kty 1, alg -8, crv 6).
fn verify_cose(cose: &[u8], message: &[u8], signature: &[u8]) -> Result<(), String> {
    use serde_cbor_2::Value;
    let Ok(Value::Map(map)) = serde_cbor_2::from_slice::<Value>(cose) else {
        return Err("the public key is not a COSE_Key map".into());
    };
    let int = |k: i128| map.get(&Value::Integer(k));
    let bytes = |k: i128| match int(k) {
        Some(Value::Bytes(b)) => Some(b.as_slice()),
        _ => None,
    };
    match (int(1), int(3)) {
        (Some(Value::Integer(2)), Some(Value::Integer(-7))) => {
            use p256::ecdsa::signature::Verifier as _;
            if int(-1) != Some(&Value::Integer(1)) {
                return Err("an ES256 key on a curve other than P-256".into());
            }
            let (Some(x), Some(y)) = (bytes(-2), bytes(-3)) else {
                return Err("an ES256 key without its coordinates".into());
            };
            let (Ok(x), Ok(y)) = (<[u8; 32]>::try_from(x), <[u8; 32]>::try_from(y)) else {
                return Err("an ES256 key whose coordinates are not 32 bytes".into());
            };
            // The SEC 1 uncompressed point: 0x04 || x || y.
            let point = [&[0x04u8][..], &x, &y].concat();
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(|_| "the ES256 key is not a point on P-256".to_owned())?;
            let sig = p256::ecdsa::Signature::from_der(signature)
                .map_err(|_| "the signature is not a DER ECDSA signature".to_owned())?;
            key.verify(message, &sig)
                .map_err(|_| "the passkey's signature does not verify".to_owned())
        }
        (Some(Value::Integer(1)), Some(Value::Integer(-8))) => {
            let key = bytes(-2).ok_or("an EdDSA key without its x")?;
            let key = PublicKey::from_bytes("cose x", key).map_err(|e| e.to_string())?;
            let raw: [u8; 64] = signature
                .try_into()
                .map_err(|_| "an EdDSA signature is 64 bytes".to_owned())?;
            key.verify_raw(message, &Signature::from_bytes(raw))
                .map_err(|_| "the passkey's signature does not verify".to_owned())
        }
        _ => Err("the passkey's algorithm is neither ES256 nor EdDSA".into()),
    }
}
