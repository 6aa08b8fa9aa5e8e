//! The answers to a decision (`docs/protocol.md` 8.6): the raw `submit` call, and what each
//! answer means. A receipt that verifies and matches is a delivery; a signed refusal that
//! verifies, names this very decision and is borne out by the request's signed status is a
//! final refusal, shown with this device's own sentence; anything else (an unsigned error, a
//! refusal that does not hold up, a 5xx, a network failure) means "not delivered yet".

use countersign_protocol::api::{paths, ErrorBody, ErrorCode};
use countersign_protocol::types::Decode;
use countersign_protocol::{Decision, Receipt, Refusal, Signed, StatusUpdate};

use crate::audit::kind;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::gateway::{self, GatewayRecord};
use crate::inbox;

/// A classified answer to a decision; anything else is an error to retry on.
pub(crate) enum Answer {
    Receipt(Box<Signed<Receipt>>),
    /// A verified, confirmed refusal.
    Refused {
        http_status: u16,
        refusal: Box<Signed<Refusal>>,
        status: Option<Box<Signed<StatusUpdate>>>,
    },
}

/// A receipt verifies under the pinned key and matches the decision that was sent.
fn check_receipt(
    gw: &GatewayRecord,
    decision: &Signed<Decision>,
    receipt: &Signed<Receipt>,
) -> Result<(), EngineError> {
    receipt.verify(&gw.gateway_key).map_err(|_| {
        EngineError::BadGatewayResponse(
            "the receipt is not signed by the pinned gateway key".into(),
        )
    })?;
    let r = &receipt.body;
    let d = &decision.body;
    if r.decision_id != d.decision_id
        || r.request_id != d.request_id
        || r.request_digest != d.request_digest
        || r.approver != d.approver
        || r.verdict != d.verdict
        || r.decision_digest != decision.digest()?
    {
        return Err(EngineError::BadGatewayResponse(
            "the receipt does not match the decision that was sent".into(),
        ));
    }
    Ok(())
}

/// A refusal verifies under the pinned key, names this gateway and this exact decision, has a
/// final code equal to the answer's, and its status (if any) verifies and is the request's at
/// the refusal's `status_seq`.
fn check_refusal(
    gw: &GatewayRecord,
    decision: &Signed<Decision>,
    code: &ErrorCode,
    refusal: &Signed<Refusal>,
    status: Option<&Signed<StatusUpdate>>,
) -> Result<(), &'static str> {
    let r = &refusal.body;
    let d = &decision.body;
    if refusal.verify(&gw.gateway_key).is_err() || r.validate().is_err() {
        return Err("the refusal is not signed by the pinned gateway key");
    }
    let digest = decision
        .digest()
        .map_err(|_| "the decision cannot be digested")?;
    if r.gateway != gw.fingerprint
        || r.decision_id != d.decision_id
        || r.decision_digest != digest
        || r.request_id != d.request_id
        || r.request_digest != d.request_digest
        || r.approver != d.approver
    {
        return Err("the refusal is for another decision");
    }
    if !r.code.is_final_refusal() || r.code != *code {
        return Err("the refusal's code is not the answer's final code");
    }
    match (status, r.status_seq) {
        (None, None) => Ok(()),
        (Some(s), Some(seq)) => {
            if s.verify(&gw.gateway_key).is_err()
                || s.body.validate().is_err()
                || s.body.request_id != d.request_id
                || s.body.request_digest != d.request_digest
                || s.body.seq != seq
            {
                Err("the refusal's status is not the request's at the refusal")
            } else {
                Ok(())
            }
        }
        _ => Err("the refusal's status does not match its status_seq"),
    }
}

/// The sentence this device shows for a confirmed refusal: its own, never the gateway's.
pub fn refusal_sentence(code: &ErrorCode) -> String {
    let s = match code {
        ErrorCode::RequestClosed => "The request was already decided before this decision arrived.",
        ErrorCode::RequestExpired => {
            "The request expired before this decision reached the gateway."
        }
        ErrorCode::AlreadyDecided => "You had already decided this request.",
        ErrorCode::ApprovalNotNeeded => {
            "Every stage you could count for already has its approvals; yours was not needed."
        }
        ErrorCode::RequestNotYetValid => "The request is not valid yet; decide again once it is.",
        ErrorCode::WrongMatchCode => "The match code does not match the one the requester sees.",
        ErrorCode::MatchCodeRequired => "This request needs the match code the requester sees.",
        ErrorCode::NotEligible => "You are not an approver of this request.",
        ErrorCode::UnknownRequest => {
            "The gateway does not know this request, although it signed it."
        }
        ErrorCode::RequestDigestMismatch | ErrorCode::WrongGateway => {
            "The gateway disowns the version of the request it signed and you decided on."
        }
        ErrorCode::UnknownDevice | ErrorCode::DeviceRevoked | ErrorCode::DeviceNotForApprover => {
            "This device is no longer paired for you at the gateway; pair it again."
        }
        ErrorCode::UserNotVerified => "The passkey did not verify you; decide again.",
        ErrorCode::PasskeyCounterRegressed => {
            "The gateway suspects a cloned passkey (its counter went backwards)."
        }
        _ => "The gateway refused this decision.",
    };
    format!("{s} (code {code}, signed by the gateway)")
}

impl Engine {
    /// Sends a signed decision and classifies the answer (docs/protocol.md 8.6): a receipt that
    /// verifies and matches; a signed refusal that verifies, matches this decision and is borne
    /// out by the request's signed status ([`EngineError::GatewayRefused`]); or anything else,
    /// which is "not delivered yet" and is retried. An unsigned error answer is never final,
    /// and the gateway's sentence is never shown: the refusal's sentence is this device's own.
    pub async fn submit(
        &self,
        gateway: &str,
        decision: &Signed<Decision>,
    ) -> Result<Signed<Receipt>, EngineError> {
        match self.send_decision(gateway, decision).await? {
            Answer::Receipt(r) => Ok(*r),
            Answer::Refused {
                http_status,
                refusal,
                ..
            } => Err(EngineError::GatewayRefused {
                status: http_status,
                code: refusal.body.code.clone(),
                message: refusal_sentence(&refusal.body.code),
            }),
        }
    }

    /// [`Engine::submit`], with the signed refusal and status of a confirmed refusal.
    pub(crate) async fn send_decision(
        &self,
        gateway: &str,
        decision: &Signed<Decision>,
    ) -> Result<Answer, EngineError> {
        let gw = self.gateway(gateway)?;
        let url = gateway::endpoint(&gw.url, paths::DECISIONS)?;
        let resp = self
            .http_for(&gw)?
            .post(url.clone())
            .timeout(gateway::DELIVERY_TIMEOUT)
            .json(decision)
            .send()
            .await
            .map_err(|e| gateway::send_failed(&url, e))?;
        let http_status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| gateway::unreachable(&url, e))?;
        if http_status.is_success() {
            let receipt = Signed::<Receipt>::decode(&bytes)
                .map_err(|e| EngineError::BadGatewayResponse(format!("the receipt: {e}")))?;
            check_receipt(&gw, decision, &receipt)?;
            return Ok(Answer::Receipt(Box::new(receipt)));
        }
        let body = serde_json::from_slice::<ErrorBody>(&bytes).ok();
        let code = body
            .as_ref()
            .map(|b| b.error.code.clone())
            .unwrap_or_else(|| ErrorCode::Unknown(format!("http_{}", http_status.as_u16())));
        // The answer's sentence is never used: it is not signed.
        let transient = |why: &str| {
            EngineError::BadGatewayResponse(format!(
                "the gateway's answer (HTTP {}, code {code}) is not a verified refusal: {why}; \
                 the decision will be sent again",
                http_status.as_u16()
            ))
        };
        let Some(body) = body.filter(|_| http_status.is_client_error()) else {
            return Err(transient("no signed refusal"));
        };
        let Some(refusal) = body.refusal.as_ref() else {
            return Err(transient("no signed refusal"));
        };
        if let Err(why) = check_refusal(
            &gw,
            decision,
            &body.error.code,
            refusal,
            body.status.as_ref(),
        ) {
            return Err(transient(why));
        }
        match self.confirm_refusal(&gw, decision, refusal, body.status.as_ref())? {
            Ok(()) => Ok(Answer::Refused {
                http_status: http_status.as_u16(),
                refusal: Box::new(refusal.clone()),
                status: body.status.clone().map(Box::new),
            }),
            Err(why) => {
                self.audit_stream(
                    kind::REFUSAL_UNCONFIRMED,
                    serde_json::json!({
                        "gateway": gw.fingerprint,
                        "decision_id": decision.body.decision_id,
                        "request_id": decision.body.request_id,
                        "code": refusal.body.code.as_str(),
                        "status_seq": refusal.body.status_seq,
                        "refusal_digest": refusal.digest()?,
                        "why": why,
                    }),
                )?;
                Err(transient(why))
            }
        }
    }

    /// Whether the request's signed status bears a verified refusal out (docs/protocol.md 8.6):
    /// a refusal about the request's state is confirmed by a status at least as new that shows
    /// that state; one about the decision itself by the signature alone.
    fn confirm_refusal(
        &self,
        gw: &GatewayRecord,
        decision: &Signed<Decision>,
        refusal: &Signed<Refusal>,
        status: Option<&Signed<StatusUpdate>>,
    ) -> Result<Result<(), &'static str>, EngineError> {
        let r = &refusal.body;
        let d = &decision.body;
        let status = status.map(|s| &s.body);
        Ok(match r.code {
            ErrorCode::RequestClosed => match status {
                Some(s) if s.state.is_final() => Ok(()),
                _ => Err("the request's signed status is not final"),
            },
            ErrorCode::RequestExpired => {
                let expires_at = inbox::get(&self.db(), &gw.fingerprint, &d.request_id)
                    .map(|i| i.request.body.expires_at)
                    .ok();
                match status {
                    Some(s) if s.state.is_final() => Ok(()),
                    Some(_) if expires_at.is_some_and(|e| e <= r.refused_at) => Ok(()),
                    _ => Err("the request's signed status shows it neither closed nor expired"),
                }
            }
            ErrorCode::AlreadyDecided => match status {
                Some(s) if s.votes.iter().any(|v| v.approver == d.approver) => Ok(()),
                _ => Err("the request's signed status has no vote by this approver"),
            },
            _ => Ok(()),
        })
    }
}
