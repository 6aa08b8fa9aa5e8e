//! Decisions (`POST /v1/decisions`): verifying a signed decision and applying it, auditing every
//! refusal with its code, and counting wrong match codes.

use countersign_protocol::types::Decode;
use countersign_protocol::{
    ApprovalRequest, Decision, PublicKey, Receipt, RequestState, Signed, Verdict, Vote,
};
use rusqlite::{params, OptionalExtension};
use serde::Deserialize as _;
use serde_json::json;
use webauthn_rs::prelude::{PasskeyAuthentication, PublicKeyCredential, WebauthnError};

use crate::error::{json_text, sql, ApiError, StoreError};
use crate::gateway::Gateway;
use crate::hub::{enqueue, Pushed};
use crate::passkeys::cred_id_text;
use crate::status::{outcome, push_status, votes_of};
use crate::store::audit_append;

/// What a decision did.
pub enum Applied {
    New(Signed<Receipt>),
    /// The same signed decision was delivered before: its original receipt.
    Replay(Signed<Receipt>),
}

impl Applied {
    pub fn receipt(self) -> Signed<Receipt> {
        match self {
            Applied::New(r) | Applied::Replay(r) => r,
        }
    }
}

/// Verifies and applies a decision. Every refusal is written to the audit log.
pub fn decide(gw: &Gateway, body: &[u8]) -> Result<Applied, ApiError> {
    let signed = match Signed::<Decision>::decode(body) {
        Ok(s) => s,
        Err(e) => {
            let err = ApiError::bad_request("invalid_decision", e.to_string());
            audit_rejection(gw, None, &err);
            return Err(err);
        }
    };
    // The decision is stored as the device sent it: those are the bytes it signed over (in
    // canonical form), and keeping them spares serialising the assertion again. A body that
    // decoded is UTF-8 JSON; the fallback only guards that.
    let signed_text = match std::str::from_utf8(body) {
        Ok(text) => text.to_owned(),
        Err(_) => json_text(&signed)?,
    };
    match apply(gw, &signed, signed_text) {
        Ok(a) => Ok(a),
        Err(err) => {
            if err.code == "wrong_match_code" {
                if let Err(e) = count_match_failure(gw, &signed.body.request_id) {
                    tracing::warn!(%e, "recording a match-code failure failed");
                }
            }
            audit_rejection(gw, Some(&signed.body), &err);
            Err(err)
        }
    }
}

fn audit_rejection(gw: &Gateway, d: Option<&Decision>, err: &ApiError) {
    let now = gw.now();
    let detail = json!({
        "decision_id": d.map(|d| d.decision_id.clone()),
        "approver": d.map(|d| d.approver.clone()),
        "device_id": d.map(|d| d.device_id.clone()),
        "code": err.code,
        "message": err.message,
    });
    let request_id = d.map(|d| d.request_id.clone());
    let r = gw.store.write(|tx| -> Result<_, StoreError> {
        audit_append(tx, now, "decision.rejected", request_id.as_deref(), detail)
    });
    if let Err(e) = r {
        tracing::error!(%e, "could not audit a rejected decision");
    }
}

/// Counts a wrong match code; at the configured limit the request is denied, so that the code
/// cannot be guessed.
fn count_match_failure(gw: &Gateway, request_id: &str) -> Result<(), ApiError> {
    let now = gw.now();
    let limit = gw.config.max_match_failures.max(1);
    gw.store
        .write_publish(|tx| -> Result<((), Vec<Pushed>), ApiError> {
            crate::store::execute(
                tx,
                "UPDATE requests SET match_failures = match_failures + 1 WHERE id = ?1",
                params![request_id],
            )
            .map_err(sql)?;
            let n = crate::store::execute(
                tx,
                "UPDATE requests SET state = 'denied', closed_at = ?3
                     WHERE id = ?1 AND state = 'pending' AND match_failures >= ?2",
                params![request_id, limit, now],
            )
            .map_err(sql)?;
            if n == 0 {
                return Ok(((), Vec::new()));
            }
            audit_append(
                tx,
                now,
                "request.denied",
                Some(request_id),
                json!({"reason": format!("{limit} wrong match codes")}),
            )?;
            Ok(((), push_status(gw, tx, request_id)?))
        })?;
    gw.changes.notify_waiters();
    Ok(())
}

fn passkey_error(e: WebauthnError) -> ApiError {
    match e {
        WebauthnError::UserNotVerified => ApiError::forbidden(
            "user_not_verified",
            "The passkey assertion lacks user verification, which approvals require.",
        ),
        WebauthnError::MismatchedChallenge => ApiError::forbidden(
            "assertion_not_for_this_request",
            "The passkey assertion was made for a different challenge, not for this request.",
        ),
        WebauthnError::CredentialPossibleCompromise => ApiError::forbidden(
            "passkey_counter_regressed",
            "The passkey's signature counter went backwards; the credential may be cloned.",
        ),
        WebauthnError::InvalidRPOrigin => ApiError::forbidden(
            "wrong_webauthn_origin",
            "The passkey assertion names a different WebAuthn origin.",
        ),
        other => ApiError::forbidden(
            "passkey_rejected",
            format!("The passkey assertion does not verify: {other}."),
        ),
    }
}

/// A stored WebAuthn ceremony state and when it was used.
type ChallengeRow = (String, Option<i64>);

/// What a decision needs read before the write lock: the device key, the challenge, the
/// stored request and the votes recorded so far.
type PreRead = (
    Option<String>,
    Option<ChallengeRow>,
    Option<String>,
    Vec<Vote>,
);

fn apply(
    gw: &Gateway,
    signed: &Signed<Decision>,
    signed_text: String,
) -> Result<Applied, ApiError> {
    let now = gw.now();
    let d = &signed.body;

    // The expensive checks (the device signature and the WebAuthn assertion) run before the
    // write transaction, outside the store's lock, so decisions verify in parallel. The
    // transaction then re-checks everything that could have changed meanwhile: the device
    // row, and the challenge, which is consumed atomically (`used_at IS NULL`).
    let (device_key_text, challenge, stored_request, votes_before) =
        gw.store.read(|c| -> Result<PreRead, ApiError> {
            let key: Option<String> = c
                .prepare_cached("SELECT public_key FROM devices WHERE id = ?1")
                .and_then(|mut st| st.query_row(params![d.device_id], |r| r.get(0)).optional())
                .map_err(sql)?;
            let challenge: Option<ChallengeRow> = c
                .prepare_cached(
                    "SELECT state, used_at FROM challenges WHERE request_id = ?1 AND approver = ?2",
                )
                .and_then(|mut st| {
                    st.query_row(params![d.request_id, d.approver], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                })
                .map_err(sql)?;
            // A request's signed content never changes after creation; only its state does,
            // and that is read again inside the transaction.
            let request: Option<String> = crate::store::query_row(
                c,
                "SELECT signed FROM requests WHERE id = ?1",
                params![d.request_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
            let votes = votes_of(c, &d.request_id)?;
            Ok((key, challenge, request, votes))
        })?;
    let decision_digest = match &device_key_text {
        Some(text) => {
            let key = PublicKey::parse("devices.public_key", text)
                .map_err(|e| ApiError::internal("stored device key", e))?;
            signed.verify_and_digest(&key).map_err(|e| match e {
                countersign_protocol::ProtocolError::BadSignature => ApiError::unauthorized(
                    "bad_decision_signature",
                    "The decision's device signature does not verify.",
                ),
                other => ApiError::from(other),
            })?
        }
        None => signed.digest()?,
    };
    let request: Option<Signed<ApprovalRequest>> = stored_request
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| ApiError::internal("stored request", e))?;
    // Sign the receipt and the status outside the lock (see `Outcome`), once the device's
    // signature has verified.
    let prepared = match (&request, &device_key_text) {
        (Some(r), Some(_)) => Some(outcome(gw, d, r, decision_digest, now, votes_before)?),
        _ => None,
    };
    let needs_passkey =
        d.verdict == Verdict::Approve || gw.config.deny_requires_passkey || d.assertion.is_some();
    let mut verified: Option<webauthn_rs::prelude::AuthenticationResult> = None;
    if let (true, Some(assertion), Some((state, None))) = (
        needs_passkey && device_key_text.is_some(),
        &d.assertion,
        &challenge,
    ) {
        let cred: PublicKeyCredential =
            PublicKeyCredential::deserialize(assertion).map_err(|e| {
                ApiError::bad_request(
                    "bad_assertion",
                    format!("The passkey assertion is malformed: {e}."),
                )
            })?;
        let state: PasskeyAuthentication =
            serde_json::from_str(state).map_err(|e| ApiError::internal("stored challenge", e))?;
        verified = Some(
            gw.webauthn
                .finish_passkey_authentication(&cred, &state)
                .map_err(passkey_error)?,
        );
    }

    let out = gw.store.write_publish(
        |tx| -> Result<(Applied, Vec<Pushed>), ApiError> {
            let device: Option<(String, String, Option<i64>)> = crate::store::query_row(tx,
                    "SELECT approver, public_key, revoked_at FROM devices WHERE id = ?1",
                    params![d.device_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(sql)?;
            let (device_approver, device_key, revoked) = device.ok_or_else(|| {
                ApiError::forbidden("unknown_device", "The deciding device is not paired here.")
            })?;
            if revoked.is_some() {
                return Err(ApiError::forbidden(
                    "device_revoked",
                    "The deciding device's pairing was revoked.",
                ));
            }
            if device_approver != d.approver {
                return Err(ApiError::forbidden(
                    "device_not_for_approver",
                    format!("The device is paired to {device_approver}, not to {}.", d.approver),
                ));
            }
            // The signature was verified above against this same key.
            if device_key_text.as_deref() != Some(device_key.as_str()) {
                return Err(ApiError::conflict(
                    "device_changed",
                    "The device's pairing changed while the decision was being verified.",
                ));
            }

            // Idempotency is checked only after the signature, so a copied body earns nothing.
            let earlier: Option<(String, String)> = crate::store::query_row(tx,
                    "SELECT digest, receipt FROM decisions WHERE decision_id = ?1",
                    params![d.decision_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql)?;
            if let Some((digest, receipt)) = earlier {
                if digest == decision_digest.to_hex() {
                    let receipt = serde_json::from_str(&receipt)
                        .map_err(|e| ApiError::internal("stored receipt", e))?;
                    return Ok((Applied::Replay(receipt), Vec::new()));
                }
                return Err(ApiError::conflict(
                    "decision_id_reused",
                    "This decision id was already used for a different decision.",
                ));
            }

            let unknown = || {
                ApiError::not_found(
                    "unknown_request",
                    format!("There is no request {} on this gateway.", d.request_id),
                )
            };
            let row: Option<(String, String, i64, Option<String>)> = crate::store::query_row(
                tx,
                "SELECT digest, state, expires_at, match_code FROM requests WHERE id = ?1",
                params![d.request_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(sql)?;
            let (digest, state, expires_at, match_code) = row.ok_or_else(unknown)?;
            let request = request.as_ref().ok_or_else(unknown)?;
            if d.gateway != gw.fingerprint {
                return Err(ApiError::bad_request(
                    "wrong_gateway",
                    "The decision names a different gateway key.",
                ));
            }
            if d.request_digest.to_hex() != digest {
                return Err(ApiError::conflict(
                    "request_digest_mismatch",
                    "The decision was made for a different version of this request.",
                ));
            }
            if !request.body.approvers.iter().any(|a| a == &d.approver) {
                return Err(ApiError::forbidden(
                    "not_eligible",
                    format!("{} is not an approver of this request.", d.approver),
                ));
            }
            if state == "expired" {
                return Err(ApiError::gone(
                    "request_expired",
                    "The request expired before the decision reached the gateway.",
                ));
            }
            if state != "pending" {
                return Err(ApiError::conflict(
                    "request_closed",
                    format!("The request is already {state}."),
                ));
            }
            if now >= expires_at {
                return Err(ApiError::gone(
                    "request_expired",
                    "The request expired before the decision reached the gateway.",
                ));
            }
            if now < request.body.not_before {
                return Err(ApiError::conflict(
                    "request_not_yet_valid",
                    "The request is not valid yet.",
                ));
            }
            if d.verdict == Verdict::Approve {
                if let Some(expected) = &match_code {
                    let typed = d.match_code.as_deref().ok_or_else(|| {
                        ApiError::bad_request(
                            "match_code_required",
                            "This request requires the match code the requester sees.",
                        )
                    })?;
                    use subtle::ConstantTimeEq;
                    let ok: bool = typed.trim().as_bytes().ct_eq(expected.as_bytes()).into();
                    if !ok {
                        return Err(ApiError::forbidden(
                            "wrong_match_code",
                            "The match code does not match the one the requester was shown.",
                        ));
                    }
                }
            }
            if needs_passkey {
                let assertion = d.assertion.as_ref().ok_or_else(|| {
                    ApiError::bad_request(
                        "passkey_required",
                        "This decision needs a passkey assertion.",
                    )
                })?;
                if verified.is_none() {
                    // Not parsed before the transaction: name a malformed assertion as such.
                    PublicKeyCredential::deserialize(assertion).map_err(
                        |e| {
                            ApiError::bad_request(
                                "bad_assertion",
                                format!("The passkey assertion is malformed: {e}."),
                            )
                        },
                    )?;
                }
                let challenge: Option<Option<i64>> = crate::store::query_row(
                    tx,
                    "SELECT used_at FROM challenges WHERE request_id = ?1 AND approver = ?2",
                    params![d.request_id, d.approver],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
                let used = challenge.ok_or_else(|| {
                    ApiError::conflict(
                        "no_challenge",
                        "There is no passkey challenge for this request and approver.",
                    )
                })?;
                if used.is_some() {
                    return Err(ApiError::conflict(
                        "assertion_replayed",
                        "The passkey challenge for this request was already used; an assertion is accepted only once.",
                    ));
                }
                // Verified before the transaction against this challenge while it was unused.
                let result = verified.as_ref().ok_or_else(|| {
                    ApiError::conflict(
                        "assertion_replayed",
                        "The passkey challenge for this request was already used.",
                    )
                })?;
                let consumed = crate::store::execute(tx,
                        "UPDATE challenges SET used_at = ?3
                         WHERE request_id = ?1 AND approver = ?2 AND used_at IS NULL",
                        params![d.request_id, d.approver, now],
                    )
                    .map_err(sql)?;
                if consumed != 1 {
                    return Err(ApiError::conflict(
                        "assertion_replayed",
                        "The passkey challenge for this request was already used.",
                    ));
                }
                if result.needs_update() {
                    // Only the credential that made the assertion changes, as
                    // `Passkey::update_credential` would change it: the counter only forward
                    // (approvals by one passkey may arrive out of order), backup eligibility
                    // only from false to true, the backup state to the one of the assertion
                    // with the highest counter so far (the right-hand side reads old values).
                    crate::store::execute(
                        tx,
                        "UPDATE passkeys SET counter = max(counter, ?3),
                             backup_eligible = max(backup_eligible, ?4),
                             backup_state = CASE WHEN ?3 >= counter THEN ?5 ELSE backup_state END
                         WHERE cred_id = ?1 AND approver = ?2",
                        params![
                            cred_id_text(result.cred_id().as_ref()),
                            d.approver,
                            result.counter(),
                            result.backup_eligible(),
                            result.backup_state()
                        ],
                    )
                    .map_err(sql)?;
                }
            }

            // Checked after the passkey so that a replayed assertion is named as such.
            let already: bool = crate::store::query_row(tx,
                    "SELECT 1 FROM decisions WHERE request_id = ?1 AND approver = ?2",
                    params![d.request_id, d.approver],
                    |_| Ok(()),
                )
                .optional()
                .map_err(sql)?
                .is_some();
            if already {
                return Err(ApiError::conflict(
                    "already_decided",
                    format!("{} has already decided this request.", d.approver),
                ));
            }
            // The outcome was signed before the lock from the votes then recorded; it is used
            // only if those votes are still exactly the recorded ones.
            let before = votes_of(tx, &d.request_id)?;
            let outcome = match prepared {
                Some(p) if p.votes_before == before => p,
                _ => outcome(gw, d, request, decision_digest, now, before)?,
            };
            let new_state = outcome.new_state;
            crate::store::execute(tx,
                "INSERT INTO decisions(decision_id, request_id, approver, verdict, digest, signed, receipt, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    d.decision_id,
                    d.request_id,
                    d.approver,
                    d.verdict.as_str(),
                    decision_digest.to_hex(),
                    signed_text,
                    outcome.receipt_text,
                    now
                ],
            )
            .map_err(sql)?;
            if new_state != RequestState::Pending {
                crate::store::execute(tx,
                    "UPDATE requests SET state = ?2, closed_at = ?3 WHERE id = ?1",
                    params![d.request_id, new_state.as_str(), now],
                )
                .map_err(sql)?;
            }
            audit_append(
                tx,
                now,
                "decision.accepted",
                Some(&d.request_id),
                json!({
                    "decision_id": d.decision_id,
                    "approver": d.approver,
                    "device_id": d.device_id,
                    "verdict": d.verdict,
                    "decision_digest": decision_digest,
                    "request_state": new_state,
                }),
            )?;
            let data = outcome.status_data;
            let pushed = enqueue(tx, &request.body.approvers, "status", |_| Ok(data.clone()))?;
            Ok((Applied::New(outcome.receipt), pushed))
        }
    )?;
    gw.changes.notify_waiters();
    Ok(out)
}
