//! The once-only WebAuthn ceremony of a decision. Each (request, approver) pair has one stored
//! ceremony state (table `challenges`, written when the request is created); a decision's
//! assertion is verified against it before the write lock, and the state is marked used in the
//! transaction that accepts the decision, so an assertion made for request A never approves B
//! and none is accepted twice. The webauthn-rs library neither consumes state nor checks time;
//! this module consumes it, and the decision's checks judge time on the gateway's clock.

use countersign_protocol::api::ErrorCode;
use countersign_protocol::webauthn::{Ceremony, ClientDataError};
use countersign_protocol::{Decision, Verdict};
use serde::Deserialize as _;
use webauthn_rs::prelude::{
    AuthenticationResult, PasskeyAuthentication, PublicKeyCredential, WebauthnError,
};

use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::passkeys::record_assertion;
use crate::store::challenges::Challenge;
use crate::store::Tx;

/// The stored ceremony state of an addressee who has no challenge yet: one told after the fact
/// (break-glass), or one of a request whose challenges are issued on demand.
pub(crate) const NO_CEREMONY: &str = "null";

/// An approval (and a revocation) always needs a passkey assertion; a denial needs one if the gateway is set so,
/// or if the device sent one anyway (then it must verify).
pub(crate) fn needs_passkey(gw: &Gateway, d: &Decision) -> bool {
    d.verdict != Verdict::Deny || gw.config.deny_requires_passkey || d.assertion.is_some()
}

/// Verifies the WebAuthn assertion against the stored ceremony state, before the lock, when
/// `wanted` and the decision carries an assertion for a ceremony not used yet. Otherwise it
/// returns `None`, and the transaction names what is missing or already used.
pub(crate) fn verify_assertion(
    gw: &Gateway,
    d: &Decision,
    wanted: bool,
    challenge: Option<&Challenge>,
) -> Result<Option<AuthenticationResult>, ApiError> {
    let (
        true,
        Some(assertion),
        Some(Challenge {
            state,
            used_at: None,
        }),
    ) = (wanted, &d.assertion, challenge)
    else {
        return Ok(None);
    };
    if state == NO_CEREMONY {
        return Ok(None);
    }
    let cred: PublicKeyCredential = PublicKeyCredential::deserialize(assertion).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::BadAssertion,
            format!("The passkey assertion is malformed: {e}."),
        )
    })?;
    check_client_data(gw, cred.response.client_data_json.as_ref(), Ceremony::Get)?;
    let state: PasskeyAuthentication =
        serde_json::from_str(state).map_err(|e| ApiError::internal("stored challenge", e))?;
    let verified = gw
        .webauthn
        .finish_passkey_authentication(&cred, &state)
        .map_err(passkey_error)?;
    Ok(Some(verified))
}

/// The once-only ceremony: the decision carries an assertion, verified before the lock against
/// this request's and approver's ceremony state while it was unused; the state is marked used
/// here, and the passkey's counter columns take the assertion's values.
pub(crate) fn consume(
    tx: &dyn Tx,
    d: &Decision,
    verified: Option<&AuthenticationResult>,
    now: i64,
) -> Result<(), ApiError> {
    let assertion = d.assertion.as_ref().ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::PasskeyRequired,
            "This decision needs a passkey assertion.",
        )
    })?;
    if verified.is_none() {
        // Not parsed before the transaction: name a malformed assertion as such.
        PublicKeyCredential::deserialize(assertion).map_err(|e| {
            ApiError::bad_request(
                ErrorCode::BadAssertion,
                format!("The passkey assertion is malformed: {e}."),
            )
        })?;
    }
    let no_challenge = |why: &str| ApiError::conflict(ErrorCode::NoChallenge, why.to_owned());
    let stored = tx.challenge(&d.request_id, &d.approver)?.ok_or_else(|| {
        no_challenge("There is no passkey challenge for this request and approver.")
    })?;
    if stored.state == NO_CEREMONY && stored.used_at.is_none() {
        return Err(no_challenge(
            "No passkey challenge was issued for this request and approver yet: ask for one (POST /v2/challenges).",
        ));
    }
    if stored.used_at.is_some() {
        return Err(ApiError::conflict(
            ErrorCode::AssertionReplayed,
            "The passkey challenge for this request was already used; an assertion is accepted only once.",
        ));
    }
    // Verified before the transaction against this challenge while it was unused.
    let result = verified.ok_or_else(|| {
        ApiError::conflict(
            ErrorCode::AssertionReplayed,
            "The passkey challenge for this request was already used.",
        )
    })?;
    if !tx.consume_challenge(&d.request_id, &d.approver, now)? {
        return Err(ApiError::conflict(
            ErrorCode::AssertionReplayed,
            "The passkey challenge for this request was already used.",
        ));
    }
    record_assertion(tx, &d.approver, result, now)
}

/// The refusal for an assertion webauthn-rs does not accept. The common reasons get codes of
/// their own, so the approver's device can tell the person what went wrong.
/// The WebAuthn client data checks of docs/protocol.md 5a, made before the library's own: the
/// type, the origin compared as an origin with the gateway's, no cross-origin ceremony, and a
/// `tokenBinding` that is absent or a dictionary (never `null`).
pub(crate) fn check_client_data(
    gw: &Gateway,
    bytes: &[u8],
    ceremony: Ceremony,
) -> Result<(), ApiError> {
    countersign_protocol::webauthn::check_client_data(bytes, ceremony, &gw.config.webauthn_origin)
        .map_err(|e| match e {
            ClientDataError::Malformed(_) => {
                ApiError::bad_request(ErrorCode::BadClientData, format!("{e}."))
            }
            ClientDataError::WrongOrigin(_) => {
                ApiError::forbidden(ErrorCode::WrongWebauthnOrigin, format!("{e}."))
            }
        })
}

pub(crate) fn passkey_error(e: WebauthnError) -> ApiError {
    match e {
        WebauthnError::UserNotVerified => ApiError::forbidden(
            ErrorCode::UserNotVerified,
            "The passkey assertion lacks user verification, which approvals require.",
        ),
        WebauthnError::MismatchedChallenge => ApiError::forbidden(
            ErrorCode::AssertionNotForThisRequest,
            "The passkey assertion was made for a different challenge, not for this request.",
        ),
        WebauthnError::CredentialPossibleCompromise => ApiError::forbidden(
            ErrorCode::PasskeyCounterRegressed,
            "The passkey's signature counter went backwards; the credential may be cloned.",
        ),
        WebauthnError::InvalidRPOrigin => ApiError::forbidden(
            ErrorCode::WrongWebauthnOrigin,
            "The passkey assertion names a different WebAuthn origin.",
        ),
        other => ApiError::forbidden(
            ErrorCode::PasskeyRejected,
            format!("The passkey assertion does not verify: {other}."),
        ),
    }
}
