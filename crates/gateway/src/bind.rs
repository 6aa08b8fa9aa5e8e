//! Binding a WebAuthn authentication to one request and one approver (docs/protocol.md 3.24):
//! the gateway signs a Challenge naming the request's digest and the approver, and its digest
//! becomes the WebAuthn challenge of the ceremony webauthn-rs started, in the options sent to
//! the device and in the state the assertion is verified against. The passkey's signature then
//! covers a digest of a body that names the request and the approver.
//!
//! webauthn-rs draws the challenge itself and has no way to be given one, so it is replaced in
//! the two JSON documents it produces (the `RequestChallengeResponse` and, with the state
//! serialisation feature, the `PasskeyAuthentication`): their `publicKey.challenge` and
//! `ast.challenge` members. A change of that layout makes this fail loudly, never bind
//! silently to a random challenge (the tests' ceremonies go through it).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use countersign_protocol::challenge::{bind_json, Challenge};
use countersign_protocol::{Digest, Signed, PROTOCOL_VERSION};
use webauthn_rs::prelude::{PasskeyAuthentication, RequestChallengeResponse};

use crate::error::{json_text, ApiError};
use crate::gateway::Gateway;
use crate::store::Tx;

/// A ceremony bound to a signed Challenge: the options for the device (JSON), the state to
/// store (JSON), the signed Challenge and its digest.
pub(crate) struct Bound {
    pub options: serde_json::Value,
    pub state: String,
    pub signed: Signed<Challenge>,
    pub digest: Digest,
}

/// The request a challenge is for.
pub(crate) struct For<'a> {
    pub request_id: &'a str,
    pub request_digest: Digest,
    pub approver: &'a str,
    pub expires_at: i64,
}

/// Signs a Challenge for `to`, puts its digest into the ceremony as its WebAuthn challenge,
/// and keeps the signed Challenge (`issued_challenges`).
pub(crate) fn bind(
    gw: &Gateway,
    tx: &dyn Tx,
    to: &For<'_>,
    (rcr, state): (RequestChallengeResponse, PasskeyAuthentication),
) -> Result<Bound, ApiError> {
    let broken = |what: &str| ApiError::internal("bind challenge", what.to_owned());
    let mut options = serde_json::to_value(&rcr).map_err(|e| ApiError::internal("challenge", e))?;
    let mut state = serde_json::to_value(&state).map_err(|e| ApiError::internal("challenge", e))?;
    let allow_credentials = options
        .pointer("/publicKey/allowCredentials")
        .and_then(|v| v.as_array())
        .ok_or_else(|| broken("no publicKey.allowCredentials in the options"))?
        .iter()
        .map(|c| {
            c.get("id")
                .and_then(|v| v.as_str())
                .map(|s| s.trim_end_matches('=').to_owned())
                .ok_or_else(|| broken("a credential without an id"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let now = gw.now();
    let challenge = Challenge {
        v: PROTOCOL_VERSION,
        gateway: gw.fingerprint.clone(),
        request_id: to.request_id.to_owned(),
        request_digest: to.request_digest,
        approver: to.approver.to_owned(),
        nonce: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()),
        rp_id: gw.config.webauthn_rp_id.clone(),
        origin: gw.origin(),
        allow_credentials,
        user_verification: "required".into(),
        issued_at: now,
        // A revocation may be asked for after the request's own expiry, within its grant.
        expires_at: to.expires_at.max(now),
    };
    let signed = Signed::sign(&gw.key, challenge)?;
    let digest = signed.digest()?;
    bind_json(&mut options, &mut state, &digest).map_err(broken)?;
    // The state must still be one webauthn-rs reads.
    let state: PasskeyAuthentication =
        serde_json::from_value(state).map_err(|e| ApiError::internal("bind challenge", e))?;
    let state = json_text(&state)?;
    tx.insert_issued_challenge(
        &digest.to_hex(),
        to.request_id,
        to.approver,
        &json_text(&signed)?,
        now,
    )?;
    Ok(Bound {
        options,
        state,
        signed,
        digest,
    })
}

/// The challenge an accepted decision's assertion answered: the digest its client data's
/// `challenge` carries (the assertion verified against the bound ceremony, so this is the
/// bound Challenge's digest). `None` without an assertion.
pub(crate) fn answered(assertion: Option<&serde_json::Value>) -> Option<Digest> {
    let client_data = assertion?
        .pointer("/response/clientDataJSON")?
        .as_str()?
        .trim_end_matches('=');
    let client_data = URL_SAFE_NO_PAD.decode(client_data).ok()?;
    let client_data: serde_json::Value = serde_json::from_slice(&client_data).ok()?;
    let challenge = client_data.get("challenge")?.as_str()?;
    let bytes: [u8; 32] = URL_SAFE_NO_PAD.decode(challenge).ok()?.try_into().ok()?;
    Some(Digest(bytes))
}
