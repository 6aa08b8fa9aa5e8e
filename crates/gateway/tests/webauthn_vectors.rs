//! WebAuthn conformance: the W3C WebAuthn Level 3 "Test Vectors" section (copied verbatim into
//! `tests/data/webauthn-l3-test-vectors.bs`) run through the gateway's own verifier, the
//! `Webauthn` instance `Gateway::open` builds, with the relying party the vectors use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use countersign_gateway::{Config, Gateway};
use serde_json::{json, Value};
use webauthn_rs::prelude::*;

const VECTORS: &str = include_str!("data/webauthn-l3-test-vectors.bs");

/// One example: its slug and the `name = h'...'` values of its registration and authentication.
#[derive(Debug)]
struct Vector {
    slug: String,
    reg: BTreeMap<String, Vec<u8>>,
    auth: BTreeMap<String, Vec<u8>>,
}

fn parse() -> Vec<Vector> {
    let mut out: Vec<Vector> = Vec::new();
    let mut block: Option<&str> = None;
    for line in VECTORS.lines() {
        if let Some(rest) = line.strip_prefix("## ") {
            let slug = rest
                .split("{#sctn-test-vectors-")
                .nth(1)
                .and_then(|s| s.split('}').next());
            match slug {
                Some(s) if s != "attestation-root-cert" => out.push(Vector {
                    slug: s.to_owned(),
                    reg: BTreeMap::new(),
                    auth: BTreeMap::new(),
                }),
                _ => {}
            }
            block = None;
            continue;
        }
        if line.starts_with("[=registration ceremony|Registration=]") {
            block = Some("reg");
        } else if line.starts_with("[=authentication ceremony|Authentication=]") {
            block = Some("auth");
        }
        let (Some(b), Some(v)) = (block, out.last_mut()) else {
            continue;
        };
        let Some((name, rest)) = line.split_once(" = h'") else {
            continue;
        };
        let Some(hexval) = rest.split('\'').next() else {
            continue;
        };
        let bytes = hex::decode(hexval).unwrap();
        let map = if b == "reg" { &mut v.reg } else { &mut v.auth };
        map.insert(name.trim().to_owned(), bytes);
    }
    out
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// The gateway's verifier, configured as `Gateway::open` configures it, for the vectors' RP.
fn verifier() -> (tempfile::TempDir, std::sync::Arc<Gateway>) {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::open(Config {
        data_dir: dir.path().join("gw"),
        webauthn_rp_id: "example.org".into(),
        webauthn_origin: url::Url::parse("https://example.org").unwrap(),
        ..Config::default()
    })
    .unwrap();
    (dir, gw)
}

/// Replaces every `challenge` in a serialised ceremony state (the library always draws its own;
/// the vectors fix theirs), and the user-verification policy when given.
fn with_challenge(state: &mut Value, challenge: &str, policy: Option<&str>) {
    match state {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k == "challenge" {
                    *v = Value::String(challenge.to_owned());
                } else if k == "policy" && policy.is_some() {
                    *v = Value::String(policy.unwrap_or_default().to_owned());
                } else {
                    with_challenge(v, challenge, policy);
                }
            }
        }
        Value::Array(a) => a
            .iter_mut()
            .for_each(|v| with_challenge(v, challenge, policy)),
        _ => {}
    }
}

fn register(
    w: &Webauthn,
    v: &Vector,
    client_data: &[u8],
    attestation: &[u8],
    policy: Option<&str>,
) -> Result<Passkey, WebauthnError> {
    let (_, state) = w
        .start_passkey_registration(Uuid::new_v4(), "vector", "vector", None)
        .unwrap();
    let mut s = serde_json::to_value(&state).unwrap();
    with_challenge(&mut s, &b64(&v.reg["challenge"]), policy);
    let state: PasskeyRegistration = serde_json::from_value(s).unwrap();
    let id = b64(&v.reg["credential_id"]);
    let cred: RegisterPublicKeyCredential = serde_json::from_value(json!({
        "id": id, "rawId": id, "type": "public-key", "extensions": {},
        "response": {"attestationObject": b64(attestation), "clientDataJSON": b64(client_data)},
    }))
    .unwrap();
    w.finish_passkey_registration(&cred, &state)
}

fn authenticate(
    w: &Webauthn,
    v: &Vector,
    passkey: &Passkey,
    auth_data: &[u8],
    client_data: &[u8],
    signature: &[u8],
    policy: Option<&str>,
) -> Result<AuthenticationResult, WebauthnError> {
    let (_, state) = w
        .start_passkey_authentication(std::slice::from_ref(passkey))
        .unwrap();
    let mut s = serde_json::to_value(&state).unwrap();
    with_challenge(&mut s, &b64(&v.auth["challenge"]), policy);
    let state: PasskeyAuthentication = serde_json::from_value(s).unwrap();
    let id = b64(&v.reg["credential_id"]);
    let cred: PublicKeyCredential = serde_json::from_value(json!({
        "id": id, "rawId": id, "type": "public-key", "extensions": {},
        "response": {
            "authenticatorData": b64(auth_data),
            "clientDataJSON": b64(client_data),
            "signature": b64(signature),
            "userHandle": null,
        },
    }))
    .unwrap();
    w.finish_passkey_authentication(&cred, &state)
}

/// What the gateway's verifier must do with each vector, under its own policy (user
/// verification required, same origin only).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Accepted as it is.
    Accept,
    /// Refused only because the authenticator did not verify the user (UV flag clear); with the
    /// UV policy relaxed the same bytes verify.
    RefuseNoUv,
    /// Refused: `crossOrigin` is true (an embedded iframe); the gateway accepts its own origin only.
    RefuseCrossOrigin,
    /// A kind webauthn-rs does not support (see docs/security.md), refused with this error.
    Unsupported(&'static str),
}

use Expect::*;

/// (slug, registration, authentication). Authentication is checked when registration succeeds
/// under either policy.
const TABLE: &[(&str, Expect, Expect)] = &[
    ("none-es256", RefuseNoUv, RefuseNoUv),
    // Registered with UV, so webauthn-rs requires UV for this credential from then on: its
    // authentication (UV clear) is refused under any policy.
    ("packed-self-es256", Accept, RefuseNoUv),
    (
        "none-es256-crossOrigin",
        RefuseCrossOrigin,
        RefuseCrossOrigin,
    ),
    ("none-es256-topOrigin", RefuseCrossOrigin, RefuseCrossOrigin),
    ("none-es256-long-credential-id", RefuseNoUv, Accept),
    ("packed-es256", Accept, Accept),
    ("packed-es384", RefuseNoUv, Accept),
    (
        "packed-es512",
        Unsupported("CredentialAlteredAlgFromRequest"),
        Unsupported(""),
    ),
    (
        "packed-rs256",
        Unsupported("COSEKeyRSANEInvalid"),
        Unsupported(""),
    ),
    (
        "packed-eddsa",
        Unsupported("SshPublicKeyEDUnsupported"),
        Unsupported(""),
    ),
    (
        "packed-ed448",
        Unsupported("COSEKeyInvalidAlgorithm"),
        Unsupported(""),
    ),
    (
        "tpm-es256",
        Unsupported("COSEKeyInvalidType"),
        Unsupported(""),
    ),
    (
        "android-key-es256",
        Unsupported("AttestationStatementX5CInvalid"),
        Unsupported(""),
    ),
    ("apple-es256", RefuseNoUv, RefuseNoUv),
    ("fido-u2f-es256", RefuseNoUv, RefuseNoUv),
];

const RELAXED: Option<&str> = Some("preferred");

fn check<T>(
    what: &str,
    expect: Expect,
    strict: Result<T, WebauthnError>,
    relaxed: impl FnOnce() -> Result<T, WebauthnError>,
) {
    match expect {
        Accept => {
            strict.unwrap_or_else(|e| panic!("{what}: refused: {e:?}"));
        }
        RefuseNoUv => {
            assert!(
                matches!(strict, Err(WebauthnError::UserNotVerified)),
                "{what}: not refused for missing UV"
            );
        }
        RefuseCrossOrigin => {
            assert!(
                matches!(strict, Err(WebauthnError::CredentialCrossOrigin)),
                "{what}: cross origin not refused"
            );
            assert!(
                matches!(relaxed(), Err(WebauthnError::CredentialCrossOrigin)),
                "{what}: cross origin not refused"
            );
        }
        Unsupported(name) => {
            let e = strict
                .err()
                .unwrap_or_else(|| panic!("{what}: an unsupported kind was accepted"));
            let r = relaxed()
                .err()
                .unwrap_or_else(|| panic!("{what}: an unsupported kind was accepted"));
            if !name.is_empty() {
                assert!(
                    format!("{e:?} {r:?}").contains(name),
                    "{what}: {e:?} / {r:?}"
                );
            }
        }
    }
}

/// Every vector of a kind webauthn-rs supports (ES256 and ES384 credentials; none, packed
/// (self and full), FIDO U2F and Apple anonymous attestation) verifies through the gateway's
/// verifier, except where the gateway's policy refuses it on purpose: no user verification
/// (the UV flag is clear in those vectors; with the policy relaxed the same bytes verify) or a
/// cross-origin client. Vectors of unsupported kinds are refused, never accepted.
#[test]
fn every_supported_vector_verifies_through_the_gateways_verifier() {
    let (_d, gw) = verifier();
    let w = &gw.webauthn;
    let vectors = parse();
    assert_eq!(vectors.len(), TABLE.len(), "the vector file changed");
    let mut accepted = 0;
    for (v, (slug, reg_expect, auth_expect)) in vectors.iter().zip(TABLE) {
        assert_eq!(&v.slug, slug);
        let (cd, ao) = (&v.reg["clientDataJSON"], &v.reg["attestationObject"]);
        let strict = register(w, v, cd, ao, None);
        let relaxed = register(w, v, cd, ao, RELAXED);
        let strict_ok = strict.is_ok();
        check(&format!("{slug} registration"), *reg_expect, strict, || {
            register(w, v, cd, ao, RELAXED)
        });
        let Ok(passkey) = relaxed else {
            assert!(
                matches!(reg_expect, Unsupported(_) | RefuseCrossOrigin),
                "{slug}: registration fails even with UV relaxed"
            );
            continue;
        };
        let (ad, cd, sig) = (
            &v.auth["authenticatorData"],
            &v.auth["clientDataJSON"],
            &v.auth["signature"],
        );
        let strict = authenticate(w, v, &passkey, ad, cd, sig, None);
        check(
            &format!("{slug} authentication"),
            *auth_expect,
            strict,
            || authenticate(w, v, &passkey, ad, cd, sig, RELAXED),
        );
        if *auth_expect == RefuseNoUv && *slug != "packed-self-es256" {
            authenticate(w, v, &passkey, ad, cd, sig, RELAXED).unwrap_or_else(|e| {
                panic!("{slug}: the assertion does not verify even with UV relaxed: {e:?}")
            });
        }
        if strict_ok && *auth_expect == Accept {
            accepted += 1;
        }
    }
    // packed-es256 passes both ceremonies under the gateway's own policy.
    assert!(accepted >= 1);
}

/// A vector with one byte changed is refused. Assertions: every byte of authenticatorData,
/// clientDataJSON and the signature, one at a time (all are covered by the signature).
/// Registrations: a byte of the challenge inside clientDataJSON and the first byte of the RP ID
/// hash inside the attestation object for every vector; for signed attestations (packed, FIDO
/// U2F, Apple) every byte of clientDataJSON, which the attestation signature covers. ("none"
/// attestation signs nothing, so the rest of its clientDataJSON is not protected by design.)
#[test]
fn one_changed_byte_is_refused() {
    let (_d, gw) = verifier();
    let w = &gw.webauthn;
    let rp_hash = {
        use sha2::Digest as _;
        sha2::Sha256::digest(b"example.org").to_vec()
    };
    let flip = |b: &[u8], i: usize| {
        let mut m = b.to_vec();
        m[i] ^= 0x01;
        m
    };
    let mut refused = 0usize;
    for v in parse() {
        let (cd, ao) = (&v.reg["clientDataJSON"], &v.reg["attestationObject"]);
        let Ok(passkey) = register(w, &v, cd, ao, RELAXED) else {
            continue;
        };
        let slug = &v.slug;
        // Registration.
        let text = String::from_utf8(cd.clone()).unwrap();
        let challenge = b64(&v.reg["challenge"]);
        let at = text.find(&challenge).unwrap() + 5;
        assert!(
            register(w, &v, &flip(cd, at), ao, RELAXED).is_err(),
            "{slug}: changed challenge accepted"
        );
        let rp_at = ao
            .windows(32)
            .position(|x| x == rp_hash.as_slice())
            .unwrap();
        assert!(
            register(w, &v, cd, &flip(ao, rp_at), RELAXED).is_err(),
            "{slug}: changed RP ID hash accepted"
        );
        refused += 2;
        if !slug.starts_with("none") {
            for i in 0..cd.len() {
                assert!(
                    register(w, &v, &flip(cd, i), ao, RELAXED).is_err(),
                    "{slug}: clientDataJSON byte {i} changed, still accepted"
                );
                refused += 1;
            }
        }
        // Authentication.
        let (ad, acd, sig) = (
            &v.auth["authenticatorData"],
            &v.auth["clientDataJSON"],
            &v.auth["signature"],
        );
        if authenticate(w, &v, &passkey, ad, acd, sig, RELAXED).is_err() {
            continue; // packed-self-es256: see the table above
        }
        for i in 0..ad.len() {
            assert!(
                authenticate(w, &v, &passkey, &flip(ad, i), acd, sig, RELAXED).is_err(),
                "{slug}: authenticatorData byte {i}"
            );
        }
        for i in 0..acd.len() {
            assert!(
                authenticate(w, &v, &passkey, ad, &flip(acd, i), sig, RELAXED).is_err(),
                "{slug}: clientDataJSON byte {i}"
            );
        }
        for i in 0..sig.len() {
            assert!(
                authenticate(w, &v, &passkey, ad, acd, &flip(sig, i), RELAXED).is_err(),
                "{slug}: signature byte {i}"
            );
        }
        refused += ad.len() + acd.len() + sig.len();
    }
    println!("one-byte changes refused: {refused}");
    assert!(refused > 1000);
}
