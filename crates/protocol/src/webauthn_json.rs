//! The WebAuthn JSON on the wire, as WebAuthn Level 3 defines it (docs/protocol.md 3.25): a
//! credential as `PublicKeyCredential.toJSON()` writes it, an `AuthenticationResponseJSON` in
//! a Decision's `assertion` and a `RegistrationResponseJSON` in a pairing's or a passkey
//! addition's `credential`. A WebAuthn library's own serialisation (webauthn-rs writes
//! `extensions` for `clientExtensionResults` and leaves out members it does not use) is turned
//! into these shapes before it is signed and sent.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

fn member(obj: &Map<String, Value>, name: &str) -> Value {
    obj.get(name).cloned().unwrap_or(Value::Null)
}

fn extensions(obj: &Map<String, Value>) -> Value {
    obj.get("clientExtensionResults")
        .or_else(|| obj.get("extensions"))
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}))
}

/// A credential from an authentication ceremony as a W3C `AuthenticationResponseJSON`:
/// `id`, `rawId`, `type`, `response` (`clientDataJSON`, `authenticatorData`, `signature`,
/// `userHandle` or null), `clientExtensionResults` and `authenticatorAttachment` (or null).
/// A value that is not an object is returned as it is.
pub fn authentication_response(v: &Value) -> Value {
    let Some(obj) = v.as_object() else {
        return v.clone();
    };
    let response = obj
        .get("response")
        .and_then(|r| r.as_object())
        .cloned()
        .unwrap_or_default();
    json!({
        "id": member(obj, "id"),
        "rawId": member(obj, "rawId"),
        "type": member(obj, "type"),
        "response": {
            "clientDataJSON": member(&response, "clientDataJSON"),
            "authenticatorData": member(&response, "authenticatorData"),
            "signature": member(&response, "signature"),
            "userHandle": member(&response, "userHandle"),
        },
        "clientExtensionResults": extensions(obj),
        "authenticatorAttachment": member(obj, "authenticatorAttachment"),
    })
}

/// A credential from a registration ceremony as a W3C `RegistrationResponseJSON`: `id`,
/// `rawId`, `type`, `response` (`clientDataJSON`, `attestationObject`, `transports`, and
/// `authenticatorData` and `publicKeyAlgorithm` read from the attestation object),
/// `clientExtensionResults` and `authenticatorAttachment` (or null). The optional
/// `response.publicKey` (a DER SubjectPublicKeyInfo) is not written: the COSE key is in the
/// attestation object's authenticator data.
pub fn registration_response(v: &Value) -> Value {
    let Some(obj) = v.as_object() else {
        return v.clone();
    };
    let response = obj
        .get("response")
        .and_then(|r| r.as_object())
        .cloned()
        .unwrap_or_default();
    let attestation = member(&response, "attestationObject");
    let (auth_data, alg) = attestation.as_str().and_then(attested_credential).map_or(
        (Value::Null, Value::Null),
        |c| {
            (
                Value::String(URL_SAFE_NO_PAD.encode(c.auth_data)),
                json!(c.alg),
            )
        },
    );
    let transports = match response.get("transports") {
        Some(Value::Array(t)) => Value::Array(t.clone()),
        _ => json!([]),
    };
    json!({
        "id": member(obj, "id"),
        "rawId": member(obj, "rawId"),
        "type": member(obj, "type"),
        "response": {
            "clientDataJSON": member(&response, "clientDataJSON"),
            "attestationObject": attestation,
            "authenticatorData": auth_data,
            "transports": transports,
            "publicKeyAlgorithm": alg,
        },
        "clientExtensionResults": extensions(obj),
        "authenticatorAttachment": member(obj, "authenticatorAttachment"),
    })
}

/// What an attestation object says of the credential it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedCredential {
    /// The authenticator data (`authData`).
    pub auth_data: Vec<u8>,
    /// The credential public key, one COSE_Key exactly as the authenticator encoded it.
    pub cose_key: Vec<u8>,
    /// The COSE key's `alg` (3), when it is an integer.
    pub alg: Option<i64>,
}

/// Reads an attestation object (unpadded base64url): its authenticator data and the credential
/// public key in its attested credential data, after the relying party hash (32 bytes), flags
/// (1), counter (4), AAGUID (16), the credential id's length (2) and the credential id. The
/// COSE key is one CBOR item; extensions may follow it.
pub fn attested_credential(attestation_object: &str) -> Option<AttestedCredential> {
    use serde::Deserialize as _;
    use serde_cbor_2::Value as Cbor;
    let bytes = URL_SAFE_NO_PAD
        .decode(attestation_object.trim_end_matches('='))
        .ok()?;
    let Ok(Cbor::Map(map)) = serde_cbor_2::from_slice::<Cbor>(&bytes) else {
        return None;
    };
    let Some(Cbor::Bytes(auth_data)) = map.get(&Cbor::Text("authData".into())) else {
        return None;
    };
    let id_len = u16::from_be_bytes(auth_data.get(53..55)?.try_into().ok()?) as usize;
    let rest = auth_data.get(55 + id_len..)?;
    let mut de = serde_cbor_2::Deserializer::from_slice(rest);
    let Cbor::Map(cose) = Cbor::deserialize(&mut de).ok()? else {
        return None;
    };
    let alg = match cose.get(&Cbor::Integer(3)) {
        Some(Cbor::Integer(a)) => i64::try_from(*a).ok(),
        _ => None,
    };
    Some(AttestedCredential {
        auth_data: auth_data.clone(),
        cose_key: rest[..de.byte_offset()].to_vec(),
        alg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_assertion_becomes_the_w3c_shape() {
        let lib = json!({
            "id": "AAEC", "rawId": "AAEC", "type": "public-key",
            "response": {"authenticatorData": "AA", "clientDataJSON": "e30", "signature": "AQ"},
            "extensions": {"appid": false},
        });
        assert_eq!(
            authentication_response(&lib),
            json!({
                "id": "AAEC", "rawId": "AAEC", "type": "public-key",
                "response": {
                    "clientDataJSON": "e30", "authenticatorData": "AA", "signature": "AQ",
                    "userHandle": null,
                },
                "clientExtensionResults": {"appid": false},
                "authenticatorAttachment": null,
            })
        );
        // Already W3C: unchanged.
        let w3c = authentication_response(&lib);
        assert_eq!(authentication_response(&w3c), w3c);
    }
}
