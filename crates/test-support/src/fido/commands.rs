//! The fake key's credential commands (CTAP 2.1 sections 6.1, 6.2 and 6.4): getInfo,
//! makeCredential and getAssertion, with the user verification they check.

use std::collections::BTreeMap;

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use rand::rngs::OsRng;
use rand::RngCore;
use serde_cbor_2::Value;
use sha2::{Digest, Sha256};
use webauthn_authenticator_rs::error::CtapError;

use super::pin::Protocol;
use super::state::{
    text_key, Answer, Credential, Ctap, Params, State, Status, Step, PERMISSION_GA, PERMISSION_MC,
};

pub(super) fn get_info(s: &State) -> BTreeMap<i128, Value> {
    let c = &s.config;
    let mut versions = vec![Value::Text("U2F_V2".into()), Value::Text("FIDO_2_0".into())];
    if c.ctap == Ctap::V21 {
        versions.push(Value::Text("FIDO_2_1".into()));
    }
    let mut options = BTreeMap::new();
    let mut opt = |k: &str, v: bool| options.insert(Value::Text(k.into()), Value::Bool(v));
    opt("rk", true);
    opt("up", true);
    opt("plat", false);
    if c.supports_pin {
        opt("clientPin", s.pin_hash.is_some());
    }
    if c.builtin_uv {
        opt("uv", true);
    }
    if c.ctap == Ctap::V21 {
        opt("pinUvAuthToken", true);
    }
    let protocols: Vec<Value> = if c.ctap == Ctap::V21 {
        c.protocols
            .iter()
            .map(|p| Value::Integer(p.number().into()))
            .collect()
    } else {
        vec![Value::Integer(1)]
    };
    BTreeMap::from([
        (1, Value::Array(versions)),
        (3, Value::Bytes(c.aaguid.to_vec())),
        (4, Value::Map(options)),
        (5, Value::Integer(1200)),
        (6, Value::Array(protocols)),
    ])
}

/// Checks a command's pinUvAuthParam against the current token: `Ok(true)` when the user was
/// verified by it, `Ok(false)` when the command carries none.
pub(super) fn check_pin_uv_param(
    s: &State,
    p: &Params,
    param_key: i128,
    protocol_key: i128,
    client_data_hash: &[u8],
    permission: u8,
    rp_id: &str,
) -> Result<bool, Status> {
    let Some(param) = p.bytes(param_key) else {
        return Ok(false);
    };
    let protocol = p
        .int(protocol_key)
        .ok_or(CtapError::Ctap2MissingParameter)?;
    let protocol = Protocol::from_number(protocol).ok_or(CtapError::Ctap1InvalidParameter)?;
    let token = s.token.as_ref().ok_or(CtapError::Ctap2PinAuthInvalid)?;
    if token.protocol != protocol || !protocol.verify(&token.token, client_data_hash, &param) {
        return Err(CtapError::Ctap2PinAuthInvalid);
    }
    if token.permissions & permission == 0 || token.rp_id.as_deref().is_some_and(|r| r != rp_id) {
        return Err(CtapError::Ctap2PinAuthInvalid);
    }
    Ok(true)
}

/// Whether the command is verified, by a token or by the key's own reader (`uv` option).
pub(super) fn verification(
    s: &State,
    p: &Params,
    keys: (i128, i128, i128),
    client_data_hash: &[u8],
    permission: u8,
    rp_id: &str,
) -> Result<bool, Status> {
    let (options, param, protocol) = keys;
    // An empty pinUvAuthParam is the CTAP 2.0 "touch to select" probe.
    if p.bytes(param).is_some_and(|b| b.is_empty()) {
        return Err(if s.pin_hash.is_some() {
            CtapError::Ctap2PinInvalid
        } else {
            CtapError::Ctap2PinNotSet
        });
    }
    if check_pin_uv_param(s, p, param, protocol, client_data_hash, permission, rp_id)? {
        return Ok(true);
    }
    if p.option(options, "uv") == Some(true) {
        if !s.config.builtin_uv {
            return Err(CtapError::Ctap2InvalidOption);
        }
        return Ok(true);
    }
    Ok(false)
}

pub(super) fn make_credential(s: &mut State, p: Params) -> Step {
    let (Some(cdh), Some(rp), Some(user)) = (p.bytes(1), p.map(2), p.map(3)) else {
        return Step::Done(Err(CtapError::Ctap2MissingParameter));
    };
    let Some(Value::Text(rp_id)) = text_key(rp, "id") else {
        return Step::Done(Err(CtapError::Ctap2MissingParameter));
    };
    let Some(Value::Bytes(user_id)) = text_key(user, "id") else {
        return Step::Done(Err(CtapError::Ctap2MissingParameter));
    };
    let es256 = matches!(p.get(4), Some(Value::Array(algs)) if algs.iter().any(|a| matches!(a,
        Value::Map(m) if m.get(&Value::Text("alg".into())) == Some(&Value::Integer(-7)))));
    if !es256 {
        return Step::Done(Err(CtapError::Ctap2UnsupportedAlgorithm));
    }
    let verified = match verification(s, &p, (7, 8, 9), &cdh, PERMISSION_MC, &rp_id) {
        Ok(v) => v,
        Err(e) => return Step::Done(Err(e)),
    };
    if !verified && (s.pin_hash.is_some() || s.config.builtin_uv) {
        return Step::Done(Err(CtapError::Ctap2PUATRequired));
    }
    let excluded = match p.get(5) {
        Some(Value::Array(list)) => list.iter().any(|d| match d {
            Value::Map(m) => matches!(text_key(m, "id"), Some(Value::Bytes(id))
                if s.credentials.iter().any(|c| c.id == id && c.rp_id == rp_id)),
            _ => false,
        }),
        _ => false,
    };
    if excluded {
        return Step::AfterTouch(Box::new(|_| Err(CtapError::Ctap2CredentialExcluded)));
    }
    Step::AfterTouch(Box::new(move |s: &mut State| {
        let mut id = vec![0u8; 32];
        OsRng.fill_bytes(&mut id);
        let key = SigningKey::random(&mut OsRng);
        let point = key.verifying_key().to_encoded_point(false);
        let coord =
            |c: Option<&p256::FieldBytes>| Value::Bytes(c.map(|b| b.to_vec()).unwrap_or_default());
        let cose = Value::Map(
            [
                (Value::Integer(1), Value::Integer(2)),
                (Value::Integer(3), Value::Integer(-7)),
                (Value::Integer(-1), Value::Integer(1)),
                (Value::Integer(-2), coord(point.x())),
                (Value::Integer(-3), coord(point.y())),
            ]
            .into_iter()
            .collect(),
        );
        let cose = serde_cbor_2::to_vec(&cose).map_err(|_| CtapError::Ctap1Unspecified)?;
        s.counter = s.counter.wrapping_add(1);
        let flags = 0x01 | 0x40 | if verified { 0x04 } else { 0 };
        let mut auth_data = auth_data_head(&rp_id, flags, s.counter);
        auth_data.extend_from_slice(&s.config.aaguid);
        auth_data.extend_from_slice(&(id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&id);
        auth_data.extend_from_slice(&cose);
        s.credentials.push(Credential {
            id,
            rp_id,
            user_id,
            key,
        });
        Ok(BTreeMap::from([
            (1, Value::Text("none".into())),
            (2, Value::Bytes(auth_data)),
            (3, Value::Map(BTreeMap::new())),
        ]))
    }))
}

pub(super) fn auth_data_head(rp_id: &str, flags: u8, counter: u32) -> Vec<u8> {
    let mut out = Sha256::digest(rp_id.as_bytes()).to_vec();
    out.push(flags);
    out.extend_from_slice(&counter.to_be_bytes());
    out
}

pub(super) fn get_assertion(s: &mut State, p: Params) -> Step {
    let (Some(rp_id), Some(cdh)) = (p.text(1), p.bytes(2)) else {
        return Step::Done(Err(CtapError::Ctap2MissingParameter));
    };
    let verified = match verification(s, &p, (5, 6, 7), &cdh, PERMISSION_GA, &rp_id) {
        Ok(v) => v,
        Err(e) => return Step::Done(Err(e)),
    };
    let allowed: Vec<Vec<u8>> = match p.get(3) {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|d| match d {
                Value::Map(m) => match text_key(m, "id") {
                    Some(Value::Bytes(id)) => Some(id),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let found = s
        .credentials
        .iter()
        .position(|c| c.rp_id == rp_id && (allowed.is_empty() || allowed.contains(&c.id)));
    let Some(index) = found else {
        return Step::Done(Err(CtapError::Ctap2NoCredentials));
    };
    let sign = move |s: &mut State, up: bool| -> Answer {
        s.counter = s.counter.wrapping_add(1);
        let flags = u8::from(up) | if verified { 0x04 } else { 0 };
        let auth_data = auth_data_head(&rp_id, flags, s.counter);
        let cred = s
            .credentials
            .get(index)
            .ok_or(CtapError::Ctap2NoCredentials)?;
        let signed: Signature = cred.key.sign(&[auth_data.as_slice(), &cdh].concat());
        let descriptor = Value::Map(BTreeMap::from([
            (Value::Text("id".into()), Value::Bytes(cred.id.clone())),
            (Value::Text("type".into()), Value::Text("public-key".into())),
        ]));
        let user = Value::Map(BTreeMap::from([(
            Value::Text("id".into()),
            Value::Bytes(cred.user_id.clone()),
        )]));
        Ok(BTreeMap::from([
            (1, descriptor),
            (2, Value::Bytes(auth_data)),
            (3, Value::Bytes(signed.to_der().as_bytes().to_vec())),
            (4, user),
        ]))
    };
    if p.option(5, "up") == Some(false) {
        return Step::Done(sign(s, false));
    }
    Step::AfterTouch(Box::new(move |s| sign(s, true)))
}
