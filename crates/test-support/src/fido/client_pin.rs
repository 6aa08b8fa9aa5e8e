//! The fake key's clientPIN command (CTAP 2.1 section 6.5): retries, key agreement, setPIN,
//! and pinUvAuthTokens by PIN (protocols 1 and 2) or by built-in verification.

use std::collections::BTreeMap;

use p256::ecdh::EphemeralSecret;
use rand::rngs::OsRng;
use rand::RngCore;
use serde_cbor_2::Value;
use webauthn_authenticator_rs::error::CtapError;

use super::pin::{self, Protocol};
use super::state::{
    pin_hash, Answer, Params, PinToken, State, Status, Step, PERMISSION_GA, PERMISSION_MC,
    PIN_RETRIES,
};

pub(super) fn client_pin(s: &mut State, p: Params) -> Step {
    let sub = p.int(2).unwrap_or(0);
    let name = match sub {
        1 => "getPINRetries",
        2 => "getKeyAgreement",
        3 => "setPIN",
        5 => "getPinToken",
        6 => "getPinUvAuthTokenUsingUvWithPermissions",
        7 => "getUVRetries",
        9 => "getPinUvAuthTokenUsingPinWithPermissions",
        _ => "unknown",
    };
    match p.int(1) {
        Some(n) if sub == 5 || sub == 9 => s.log.push(format!("clientPIN.{name} (protocol {n})")),
        _ => s.log.push(format!("clientPIN.{name}")),
    }
    if !s.config.supports_pin && sub != 6 && sub != 2 {
        return Step::Done(Err(CtapError::Ctap1InvalidCommand));
    }
    let protocol = match p.int(1).map(Protocol::from_number) {
        Some(Some(pr)) if s.config.protocols.contains(&pr) || pr == Protocol::One => Some(pr),
        Some(_) => return Step::Done(Err(CtapError::Ctap1InvalidParameter)),
        None => None,
    };
    Step::Done(match sub {
        1 => Ok(BTreeMap::from([
            (3, Value::Integer(s.retries.into())),
            (4, Value::Bool(false)),
        ])),
        2 => Ok(BTreeMap::from([(1, pin::cose_agreement_key(&s.agreement))])),
        3 => set_pin(s, &p, protocol),
        5 | 9 => pin_token(s, &p, protocol, sub == 9),
        6 => uv_token(s, &p, protocol),
        7 => Ok(BTreeMap::from([(5, Value::Integer(8))])),
        _ => Err(CtapError::Ctap2InvalidSubcommand),
    })
}

pub(super) fn shared(
    s: &State,
    p: &Params,
    protocol: Option<Protocol>,
) -> Result<(Protocol, Vec<u8>), Status> {
    let protocol = protocol.ok_or(CtapError::Ctap2MissingParameter)?;
    let platform = p.get(3).ok_or(CtapError::Ctap2MissingParameter)?;
    let secret = protocol
        .shared_secret(&s.agreement, platform)
        .ok_or(CtapError::Ctap1InvalidParameter)?;
    Ok((protocol, secret))
}

pub(super) fn set_pin(s: &mut State, p: &Params, protocol: Option<Protocol>) -> Answer {
    let (protocol, secret) = shared(s, p, protocol)?;
    let (Some(auth), Some(new_pin_enc)) = (p.bytes(4), p.bytes(5)) else {
        return Err(CtapError::Ctap2MissingParameter);
    };
    if s.pin_hash.is_some() {
        return Err(CtapError::Ctap2PinAuthInvalid);
    }
    if !protocol.verify(&secret, &new_pin_enc, &auth) {
        return Err(CtapError::Ctap2PinAuthInvalid);
    }
    let padded = protocol
        .decrypt(&secret, &new_pin_enc)
        .ok_or(CtapError::Ctap2PinAuthInvalid)?;
    if padded.len() < 64 {
        return Err(CtapError::Ctap2PinPolicyViolation);
    }
    let end = padded.iter().position(|&b| b == 0).unwrap_or(padded.len());
    let pin =
        std::str::from_utf8(&padded[..end]).map_err(|_| CtapError::Ctap2PinPolicyViolation)?;
    if pin.chars().count() < 4 {
        return Err(CtapError::Ctap2PinPolicyViolation);
    }
    s.pin_hash = Some(pin_hash(pin));
    s.retries = PIN_RETRIES;
    Ok(BTreeMap::new())
}

pub(super) fn issue_token(
    s: &mut State,
    protocol: Protocol,
    secret: &[u8],
    permissions: u8,
    rp_id: Option<String>,
) -> Answer {
    let mut token = vec![0u8; 32];
    OsRng.fill_bytes(&mut token);
    let enc = protocol.encrypt(secret, &token);
    s.token = Some(PinToken {
        token,
        protocol,
        permissions,
        rp_id,
    });
    Ok(BTreeMap::from([(2, Value::Bytes(enc))]))
}

pub(super) fn pin_token(
    s: &mut State,
    p: &Params,
    protocol: Option<Protocol>,
    with_permissions: bool,
) -> Answer {
    let (protocol, secret) = shared(s, p, protocol)?;
    let Some(pin_hash_enc) = p.bytes(6) else {
        return Err(CtapError::Ctap2MissingParameter);
    };
    let Some(stored) = s.pin_hash else {
        return Err(CtapError::Ctap2PinNotSet);
    };
    if s.retries == 0 {
        return Err(CtapError::Ctap2PinBlocked);
    }
    if s.consecutive_failures >= 3 {
        return Err(CtapError::Ctap2PinAuthBlocked);
    }
    let given = protocol.decrypt(&secret, &pin_hash_enc);
    s.retries -= 1;
    if given.as_deref() != Some(stored.as_slice()) {
        s.agreement = EphemeralSecret::random(&mut OsRng);
        s.consecutive_failures += 1;
        return Err(if s.retries == 0 {
            CtapError::Ctap2PinBlocked
        } else if s.consecutive_failures >= 3 {
            CtapError::Ctap2PinAuthBlocked
        } else {
            CtapError::Ctap2PinInvalid
        });
    }
    s.retries = PIN_RETRIES;
    s.consecutive_failures = 0;
    let (permissions, rp_id) = if with_permissions {
        let perms = p.int(9).unwrap_or(0);
        if perms == 0 {
            return Err(CtapError::Ctap2MissingParameter);
        }
        (u8::try_from(perms).unwrap_or(u8::MAX), p.text(0x0a))
    } else {
        (PERMISSION_MC | PERMISSION_GA, None)
    };
    issue_token(s, protocol, &secret, permissions, rp_id)
}

pub(super) fn uv_token(s: &mut State, p: &Params, protocol: Option<Protocol>) -> Answer {
    if !s.config.builtin_uv {
        return Err(CtapError::Ctap2InvalidSubcommand);
    }
    let (protocol, secret) = shared(s, p, protocol)?;
    let perms = u8::try_from(p.int(9).unwrap_or(0)).unwrap_or(u8::MAX);
    if perms == 0 {
        return Err(CtapError::Ctap2MissingParameter);
    }
    issue_token(s, protocol, &secret, perms, p.text(0x0a))
}
