//! Revoking this approver's own approval while its grant is live: the gateway issues a
//! challenge now (`POST /v2/challenges`, the one that came with the request was spent
//! approving), the person confirms with their passkey, and the device signs a decision with the
//! verdict `revoke`. It is sent at once rather than queued: a revocation matters only while the
//! grant is live, so one that cannot reach the gateway is an error the person sees, not a
//! delivery for later. The gateway's receipt is verified and written to the audit log; the new
//! status (the grant's `revoked_at`) comes on the stream.

use countersign_protocol::api::paths;
use countersign_protocol::{Receipt, Signed, Verdict};
use serde_json::json;

use crate::audit::{self, kind};
use crate::authenticator::Authenticator;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::gateway;
use crate::inbox::DeliveryState;

impl Engine {
    /// Revokes this approver's delivered approval of `request_id`, with `reason`, confirmed by
    /// `authenticator`. Blocks the calling thread for the ceremony.
    pub async fn revoke(
        &self,
        request_id: &str,
        reason: &str,
        authenticator: &mut dyn Authenticator,
    ) -> Result<Signed<Receipt>, EngineError> {
        let item = self.show(request_id)?;
        let approved_here = item.decision.as_ref().is_some_and(|d| {
            d.verdict == Verdict::Approve && d.delivery == DeliveryState::Delivered
        });
        if !approved_here {
            return Err(EngineError::InvalidInput(format!(
                "{} has no approval of yours that the gateway accepted, so there is nothing to revoke",
                item.id()
            )));
        }
        if !item.grant.as_ref().is_some_and(|g| g.is_live(self.now())) {
            return Err(EngineError::InvalidInput(format!(
                "the approval of {} is no longer live (revoked, used or past its window)",
                item.id()
            )));
        }
        let gw = self.gateway(&item.gateway)?;
        let challenge = self.challenge_now(&item).await?;
        let assertion = self.assertion_over(&item, &challenge, authenticator)?;
        let reason = reason.trim();
        let signed = self.sign_decision(
            item.id(),
            Verdict::Revoke,
            (!reason.is_empty()).then(|| reason.to_owned()),
            None,
            Some(assertion),
        )?;
        let url = gateway::endpoint(&gw.url, paths::DECISIONS)?;
        let receipt: Signed<Receipt> = gateway::post(&self.http_for(&gw)?, url, &signed).await?;
        let r = &receipt.body;
        if receipt.verify(&gw.gateway_key).is_err()
            || r.decision_id != signed.body.decision_id
            || r.verdict != Verdict::Revoke
            || r.request_digest != item.digest
        {
            return Err(EngineError::BadGatewayResponse(
                "the gateway's receipt for the revocation does not match it, or is not signed by its key".into(),
            ));
        }
        let now = self.now();
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        audit::append(
            &tx,
            now,
            kind::APPROVAL_REVOKED,
            Some(item.id()),
            json!({
                "gateway": gw.fingerprint,
                "decision_id": r.decision_id,
                "decision_digest": r.decision_digest,
                "reason": reason,
                "status_seq": r.status_seq,
                "receipt_digest": receipt.digest()?,
            }),
        )?;
        tx.commit()?;
        Ok(receipt)
    }
}
