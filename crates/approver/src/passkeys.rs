//! The approver's passkeys at a gateway, changed from this device (docs/protocol.md 8.8):
//! adding one (a backup security key) runs an assertion with a passkey already registered and
//! then the new registration, and sends both in one device-signed message; listing and
//! removing. Every change is written to the local audit log too.

use countersign_protocol::api::paths;
use countersign_protocol::types::Decode as _;
use countersign_protocol::{
    PasskeyAdd, PasskeyEnrolment, PasskeyList, PasskeyRemove, Signed, PROTOCOL_VERSION,
};
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};

use crate::audit::{self, kind};
use crate::authenticator::Authenticator;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::gateway::GatewayRecord;

/// Between the two ceremonies of [`Engine::add_passkey`]: the proof is done, the new key's
/// registration comes next (the CLI asks for the new key to be plugged in).
pub trait BetweenCeremonies: Send {
    fn proof_done(&mut self) -> Result<(), EngineError>;
}

impl<F: FnMut() -> Result<(), EngineError> + Send> BetweenCeremonies for F {
    fn proof_done(&mut self) -> Result<(), EngineError> {
        self()
    }
}

impl Engine {
    /// The approver's passkeys at `gateway`, as it signs them.
    pub async fn passkeys(&self, gateway: &str) -> Result<PasskeyList, EngineError> {
        let gw = self.gateway(gateway)?;
        let list: Signed<PasskeyList> = self
            .device_call::<(), _>(&gw, reqwest::Method::GET, paths::PASSKEYS, None)
            .await?;
        verified_list(&gw, list)
    }

    /// Adds a passkey at `gateway`: an assertion by a registered passkey first (the proof),
    /// then the registration of the new one, both with `authenticator`; `between` runs after
    /// the proof. Blocks the calling thread for the ceremonies.
    pub async fn add_passkey(
        &self,
        gateway: &str,
        authenticator: &mut dyn Authenticator,
        between: &mut dyn BetweenCeremonies,
    ) -> Result<PasskeyList, EngineError> {
        let gw = self.gateway(gateway)?;
        let enrolment: PasskeyEnrolment = self
            .device_call::<(), _>(&gw, reqwest::Method::POST, paths::PASSKEYS_ENROL, None)
            .await?;
        if enrolment.approver != gw.approver {
            return Err(EngineError::BadGatewayResponse(format!(
                "the passkey enrolment is for {}, not for {}",
                enrolment.approver, gw.approver
            )));
        }
        let bad = |what: &str, e: serde_json::Error| {
            EngineError::BadGatewayResponse(format!("the enrolment's {what} is malformed: {e}"))
        };
        let proof: RequestChallengeResponse =
            serde_json::from_value(enrolment.proof.clone()).map_err(|e| bad("proof", e))?;
        let creation: CreationChallengeResponse =
            serde_json::from_value(enrolment.creation.clone()).map_err(|e| bad("creation", e))?;
        let proof = authenticator.authenticate(&gw.webauthn_origin, proof)?;
        between.proof_done()?;
        let credential = authenticator.register(&gw.webauthn_origin, creation)?;
        let encode = |e: serde_json::Error| EngineError::Ceremony(format!("cannot encode: {e}"));
        let add = Signed::sign(
            &self.inner.key,
            PasskeyAdd {
                v: PROTOCOL_VERSION,
                enrolment_id: enrolment.enrolment_id.clone(),
                device_id: gw.device_id.clone(),
                // The W3C shapes (protocol.md 3.25).
                proof: countersign_protocol::webauthn_json::authentication_response(
                    &serde_json::to_value(&proof).map_err(encode)?,
                ),
                credential: countersign_protocol::webauthn_json::registration_response(
                    &serde_json::to_value(&credential).map_err(encode)?,
                ),
            },
        )?;
        let list: Signed<PasskeyList> = self
            .device_call(&gw, reqwest::Method::POST, paths::PASSKEYS, Some(&add))
            .await?;
        let list = verified_list(&gw, list)?;
        self.audit_passkey_change(
            kind::PASSKEY_ADDED,
            &gw,
            &credential.id,
            Some(authenticator.kind()),
        )?;
        Ok(list)
    }

    /// Removes the passkey `cred_id` at `gateway` (the gateway keeps the last one).
    pub async fn remove_passkey(
        &self,
        gateway: &str,
        cred_id: &str,
    ) -> Result<PasskeyList, EngineError> {
        let gw = self.gateway(gateway)?;
        let remove = Signed::sign(
            &self.inner.key,
            PasskeyRemove {
                v: PROTOCOL_VERSION,
                device_id: gw.device_id.clone(),
                cred_id: cred_id.to_owned(),
                at: self.now(),
            },
        )?;
        let list: Signed<PasskeyList> = self
            .device_call(
                &gw,
                reqwest::Method::POST,
                paths::PASSKEYS_REMOVE,
                Some(&remove),
            )
            .await?;
        let list = verified_list(&gw, list)?;
        self.audit_passkey_change(kind::PASSKEY_REMOVED, &gw, cred_id, None)?;
        Ok(list)
    }

    fn audit_passkey_change(
        &self,
        what: &str,
        gw: &GatewayRecord,
        cred_id: &str,
        authenticator: Option<crate::AuthenticatorKind>,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let mut detail = serde_json::json!({
            "gateway": gw.fingerprint,
            "approver": gw.approver,
            "cred_id": cred_id,
        });
        if let (Some(a), Some(map)) = (authenticator, detail.as_object_mut()) {
            map.insert("authenticator".into(), serde_json::json!(a));
        }
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        audit::append(&tx, now, what, None, detail)?;
        tx.commit()?;
        Ok(())
    }
}

/// The list, if the gateway signed it and it is this device's approver's.
fn verified_list(
    gw: &GatewayRecord,
    list: Signed<PasskeyList>,
) -> Result<PasskeyList, EngineError> {
    list.verify(&gw.gateway_key).map_err(|_| {
        EngineError::BadGatewayResponse("the passkey list is not signed by the gateway".into())
    })?;
    list.body.validate()?;
    if list.body.approver != gw.approver {
        return Err(EngineError::BadGatewayResponse(format!(
            "the passkey list is {}'s, not {}'s",
            list.body.approver, gw.approver
        )));
    }
    Ok(list.body)
}
