//! Pairing: pinning a gateway's key, registering a passkey with it and proving possession of
//! the device key ([`Engine::pair`]), or pinning a gateway from a record obtained elsewhere
//! ([`Engine::trust_gateway`]). Both end in one place, [`Engine::record_pairing`]: the
//! gateway row and its audit entry in one transaction, then a wake-up for a running
//! [`Engine::run`], which connects to the new gateway at once.

use countersign_protocol::api::paths;
use countersign_protocol::{
    GatewayInfo, PairChallenge, PairFinish, PairStart, Paired, PairingLink, Signed,
    PROTOCOL_VERSION,
};
use url::Url;
use webauthn_rs::prelude::CreationChallengeResponse;

use crate::audit::{self, kind};
use crate::authenticator::{Authenticator, AuthenticatorKind};
use crate::clock::format_time;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::EngineEvent;
use crate::gateway::{self, upsert_gateway, GatewayRecord};

impl Engine {
    /// Pins a gateway from a record obtained elsewhere (an import, or a test that plays the
    /// gateway). The record's fingerprint must be its key's. Audited like a pairing.
    pub fn trust_gateway(&self, record: GatewayRecord) -> Result<(), EngineError> {
        if record.gateway_key.fingerprint() != record.fingerprint {
            return Err(EngineError::GatewayKeyMismatch {
                pinned: record.fingerprint.clone(),
                presented: record.gateway_key.fingerprint(),
            });
        }
        self.record_pairing(&record, "imported", None)?;
        Ok(())
    }

    /// Pairs with the gateway named in `link`: pins its key (refusing any key but the one the
    /// link names), registers a passkey with `authenticator` and proves possession of the
    /// device key. The ceremony blocks the calling thread until it ends.
    pub async fn pair(
        &self,
        link: &PairingLink,
        device_name: &str,
        authenticator: &mut dyn Authenticator,
    ) -> Result<GatewayRecord, EngineError> {
        let now = self.now();
        if now >= link.expires_at {
            return Err(EngineError::LinkExpired {
                expires_at: format_time(link.expires_at),
            });
        }
        let client = self.client_for_pin(link.tls.as_deref())?;
        let http = &client;
        let info: GatewayInfo =
            gateway::get(http, gateway::endpoint(&link.gateway, paths::INFO)?).await?;
        if info.fingerprint != link.fingerprint {
            return Err(EngineError::GatewayKeyMismatch {
                pinned: link.fingerprint.clone(),
                presented: info.fingerprint,
            });
        }
        // Before the one-time code is spent: an authenticator that cannot verify its user
        // would only waste it.
        authenticator.check_can_verify()?;
        let start = PairStart {
            v: PROTOCOL_VERSION,
            code: link.code.clone(),
            device_key: self.inner.key.public(),
            device_name: device_name.to_owned(),
        };
        let challenge: PairChallenge = gateway::post(
            http,
            gateway::endpoint(&link.gateway, paths::PAIR_START)?,
            &start,
        )
        .await?;
        // The key pin: nothing from this answer is used before its key matches the link.
        let presented = challenge.gateway_key.fingerprint();
        if presented != link.fingerprint {
            return Err(EngineError::GatewayKeyMismatch {
                pinned: link.fingerprint.clone(),
                presented,
            });
        }
        let origin = Url::parse(&challenge.webauthn_origin).map_err(|e| {
            EngineError::BadGatewayResponse(format!("webauthn_origin is not a URL: {e}"))
        })?;
        let creation: CreationChallengeResponse = serde_json::from_value(challenge.creation)
            .map_err(|e| {
                EngineError::BadGatewayResponse(format!(
                    "the registration challenge is malformed: {e}"
                ))
            })?;
        let credential = authenticator.register(&origin, creation)?;
        let credential = serde_json::to_value(&credential)
            .map_err(|e| EngineError::Ceremony(format!("cannot encode the credential: {e}")))?;
        // On the wire as WebAuthn Level 3's RegistrationResponseJSON (protocol.md 3.25).
        let credential = countersign_protocol::webauthn_json::registration_response(&credential);
        let finish = Signed::sign(
            &self.inner.key,
            PairFinish {
                v: PROTOCOL_VERSION,
                pairing_id: challenge.pairing_id.clone(),
                device_key: self.inner.key.public(),
                credential,
            },
        )?;
        let paired: Signed<Paired> = gateway::post(
            http,
            gateway::endpoint(&link.gateway, paths::PAIR_FINISH)?,
            &finish,
        )
        .await?;
        paired.verify(&challenge.gateway_key).map_err(|_| {
            EngineError::BadGatewayResponse(
                "the pairing confirmation is not signed by the pinned gateway key".into(),
            )
        })?;
        if paired.body.device_key != self.inner.key.public()
            || paired.body.approver != challenge.approver
        {
            return Err(EngineError::BadGatewayResponse(
                "the pairing confirmation names another device or approver".into(),
            ));
        }
        let record = GatewayRecord {
            fingerprint: presented,
            url: link.gateway.clone(),
            gateway_key: challenge.gateway_key,
            name: info.name,
            approver: paired.body.approver.clone(),
            device_id: paired.body.device_id.clone(),
            webauthn_origin: origin,
            paired_at: now,
            last_event_id: 0,
            tls_pin: link.tls.clone(),
        };
        self.record_pairing(&record, "link", Some(authenticator.kind()))?;
        Ok(record)
    }

    /// Stores a pairing: the gateway row (a re-pairing replaces it and restarts its stream)
    /// and the `gateway.paired` audit entry in one transaction; then tells the host and wakes
    /// a running [`Engine::run`] so that the gateway's stream connects now.
    fn record_pairing(
        &self,
        record: &GatewayRecord,
        method: &str,
        authenticator: Option<AuthenticatorKind>,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let mut detail = serde_json::json!({
            "gateway": record.fingerprint,
            "url": record.url.as_str(),
            "approver": record.approver,
            "device_id": record.device_id,
            "method": method,
        });
        if let (Some(a), Some(map)) = (authenticator, detail.as_object_mut()) {
            map.insert("authenticator".into(), serde_json::json!(a));
        }
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        upsert_gateway(&tx, record)?;
        audit::append(&tx, now, kind::GATEWAY_PAIRED, None, detail)?;
        tx.commit()?;
        drop(db);
        self.emit(EngineEvent::GatewayPaired {
            gateway: record.fingerprint.clone(),
            name: record.name.clone(),
            approver: record.approver.clone(),
        });
        self.inner.paired.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }
}
