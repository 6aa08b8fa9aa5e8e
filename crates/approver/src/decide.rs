//! Deciding: the local checks before a person may decide, the passkey ceremony against the
//! challenge the gateway bound to the request, and the signed [`Decision`]. Recording and
//! sending it belong to [`crate::outbox`].

use countersign_protocol::api::{paths, ChallengeRequest, IssuedChallenge};
use countersign_protocol::{Decision, RequestState, Signed, Verdict, PROTOCOL_VERSION};
use webauthn_rs::prelude::RequestChallengeResponse;

use crate::authenticator::Authenticator;
use crate::clock::format_time;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::inbox::{DeliveryState, InboxItem};
use crate::outbox::Delivery;

/// What became of a decision made through [`Engine::approve`] or [`Engine::deny`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DecisionOutcome {
    pub decision: Signed<Decision>,
    pub delivery: Delivery,
}

impl Engine {
    /// Runs the passkey ceremony for `request_id` with the challenge the gateway bound to it
    /// and returns the assertion JSON. Blocks the calling thread for the ceremony.
    pub fn assertion_for(
        &self,
        request_id: &str,
        authenticator: &mut dyn Authenticator,
    ) -> Result<serde_json::Value, EngineError> {
        let item = self.show(request_id)?;
        self.assertion_over(&item, &item.challenge, authenticator)
    }

    /// The challenge to decide `item` with: the one its `request` event carried, or, for a
    /// request whose challenges are issued on demand (it came without one), one the gateway
    /// issues now (`POST /v2/challenges`), which needs the gateway to be reachable.
    pub(crate) async fn challenge_for(
        &self,
        item: &InboxItem,
    ) -> Result<serde_json::Value, EngineError> {
        if !item.challenge.is_null() {
            return Ok(item.challenge.clone());
        }
        self.challenge_now(item).await
    }

    /// A challenge the gateway issues now for `item` and this approver, to decide it or to
    /// revoke a live approval of it (`POST /v2/challenges`).
    pub(crate) async fn challenge_now(
        &self,
        item: &InboxItem,
    ) -> Result<serde_json::Value, EngineError> {
        let gw = self.gateway(&item.gateway)?;
        let issued: IssuedChallenge = self
            .device_call(
                &gw,
                reqwest::Method::POST,
                paths::CHALLENGES,
                Some(&ChallengeRequest {
                    v: PROTOCOL_VERSION,
                    request_id: item.id().to_owned(),
                    request_digest: item.digest,
                }),
            )
            .await?;
        if issued.request_id != item.id() || issued.request_digest != item.digest {
            return Err(EngineError::BadGatewayResponse(
                "the gateway issued a challenge for another request".into(),
            ));
        }
        countersign_protocol::challenge::check_bound(
            &issued.signed_challenge,
            &gw.gateway_key,
            item.id(),
            &item.digest,
            &gw.approver,
            &issued.challenge,
        )
        .map_err(EngineError::BadGatewayResponse)?;
        Ok(issued.challenge)
    }

    /// Runs the passkey ceremony for `item` over `challenge` (a WebAuthn
    /// `RequestChallengeResponse` from its gateway) and returns the assertion JSON.
    pub(crate) fn assertion_over(
        &self,
        item: &InboxItem,
        challenge: &serde_json::Value,
        authenticator: &mut dyn Authenticator,
    ) -> Result<serde_json::Value, EngineError> {
        let gw = self.gateway(&item.gateway)?;
        let challenge: RequestChallengeResponse = serde_json::from_value(challenge.clone())
            .map_err(|e| {
                EngineError::BadGatewayResponse(format!(
                    "the passkey challenge for request {} is malformed: {e}",
                    item.id()
                ))
            })?;
        let credential = authenticator
            .authenticate(&gw.webauthn_origin, challenge)
            .map_err(|e| match e {
                // Which approver at which gateway the key was asked for.
                EngineError::SecurityKey(crate::KeyError::NoMatchingCredential { .. }) => {
                    EngineError::SecurityKey(crate::KeyError::NoMatchingCredential {
                        whom: Some(format!(
                            "{} on {}",
                            crate::display::visible(&gw.approver),
                            crate::display::visible(&gw.name)
                        )),
                    })
                }
                other => other,
            })?;
        let credential = serde_json::to_value(&credential)
            .map_err(|e| EngineError::Ceremony(format!("cannot encode the assertion: {e}")))?;
        // On the wire as WebAuthn Level 3's AuthenticationResponseJSON (protocol.md 3.25).
        Ok(countersign_protocol::webauthn_json::authentication_response(&credential))
    }

    /// Builds and signs a decision on `request_id` with a fresh decision id. Makes no local
    /// checks and stores nothing: [`Engine::approve`] and [`Engine::deny`] do both.
    pub fn sign_decision(
        &self,
        request_id: &str,
        verdict: Verdict,
        reason: Option<String>,
        match_code: Option<String>,
        assertion: Option<serde_json::Value>,
    ) -> Result<Signed<Decision>, EngineError> {
        let item = self.show(request_id)?;
        let gw = self.gateway(&item.gateway)?;
        let decision = Decision {
            v: PROTOCOL_VERSION,
            decision_id: uuid::Uuid::now_v7().to_string(),
            request_id: item.id().to_owned(),
            request_digest: item.digest,
            gateway: gw.fingerprint.clone(),
            approver: gw.approver.clone(),
            device_id: gw.device_id.clone(),
            verdict,
            reason,
            match_code,
            decided_at: self.now(),
            assertion,
        };
        Ok(Signed::sign(&self.inner.key, decision)?)
    }

    /// Approves `request_id`: local checks, the passkey ceremony (blocking the calling thread),
    /// signing, the audit entry and outbox row in one transaction, then one delivery attempt.
    pub async fn approve(
        &self,
        request_id: &str,
        match_code: Option<String>,
        authenticator: &mut dyn Authenticator,
    ) -> Result<DecisionOutcome, EngineError> {
        let item = self.show(request_id)?;
        self.check_decidable(&item)?;
        let match_code = match_code
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        if item.request.body.match_required && match_code.is_none() {
            return Err(EngineError::MatchCodeRequired(item.id().to_owned()));
        }
        let challenge = self.challenge_for(&item).await?;
        let assertion = self.assertion_over(&item, &challenge, authenticator)?;
        let signed = self.sign_decision(
            item.id(),
            Verdict::Approve,
            None,
            match_code,
            Some(assertion),
        )?;
        self.decide(&item, signed).await
    }

    /// Denies `request_id` without a passkey (the decision is still device-signed). A request
    /// whose gateway wants a passkey for denials too is refused with
    /// [`EngineError::DenyNeedsPasskey`]: use [`Engine::deny_with`].
    pub async fn deny(
        &self,
        request_id: &str,
        reason: &str,
    ) -> Result<DecisionOutcome, EngineError> {
        self.deny_with(request_id, reason, None).await
    }

    /// Whether denying `request_id` needs a passkey ceremony (its signed request says so).
    pub fn deny_needs_passkey(&self, request_id: &str) -> Result<bool, EngineError> {
        Ok(self.show(request_id)?.request.body.deny_needs_passkey)
    }

    /// Denies `request_id`, with a passkey assertion by `authenticator` when given (required
    /// when the request says its gateway wants one). Blocks the calling thread for the
    /// ceremony.
    pub async fn deny_with(
        &self,
        request_id: &str,
        reason: &str,
        authenticator: Option<&mut dyn Authenticator>,
    ) -> Result<DecisionOutcome, EngineError> {
        let item = self.show(request_id)?;
        self.check_decidable(&item)?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(EngineError::InvalidInput("a denial needs a reason".into()));
        }
        let assertion = match authenticator {
            Some(a) => {
                let challenge = self.challenge_for(&item).await?;
                Some(self.assertion_over(&item, &challenge, a)?)
            }
            None if item.request.body.deny_needs_passkey => {
                return Err(EngineError::DenyNeedsPasskey(item.id().to_owned()))
            }
            None => None,
        };
        let signed = self.sign_decision(
            item.id(),
            Verdict::Deny,
            Some(reason.to_owned()),
            None,
            assertion,
        )?;
        self.decide(&item, signed).await
    }

    async fn decide(
        &self,
        item: &InboxItem,
        signed: Signed<Decision>,
    ) -> Result<DecisionOutcome, EngineError> {
        self.queue_decision_inner(&signed, false)?;
        let id = &signed.body.decision_id;
        let mut delivery = self.deliver(id).await?;
        // The background flusher may have picked the row up first: wait for its attempt to end
        // so the person deciding sees the outcome, not "in flight".
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while matches!(delivery, Delivery::InFlight) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            delivery = self.deliver(id).await?;
        }
        tracing::debug!(request = item.id(), "decision recorded");
        Ok(DecisionOutcome {
            decision: signed,
            delivery,
        })
    }

    fn check_decidable(&self, item: &InboxItem) -> Result<(), EngineError> {
        let now = self.now();
        match item.effective_state(now) {
            RequestState::Pending => {}
            RequestState::Expired => {
                return Err(EngineError::RequestExpired {
                    request_id: item.id().to_owned(),
                    expires_at: format_time(item.request.body.expires_at),
                })
            }
            other => {
                return Err(EngineError::RequestNotPending {
                    request_id: item.id().to_owned(),
                    state: other.as_str().to_owned(),
                })
            }
        }
        if let Some(d) = &item.decision {
            // A refused decision (say, a mistyped match code) may be made again.
            if d.delivery != DeliveryState::Refused {
                return Err(EngineError::AlreadyDecided {
                    request_id: item.id().to_owned(),
                    decision_id: d.decision_id.clone(),
                });
            }
        }
        Ok(())
    }
}
