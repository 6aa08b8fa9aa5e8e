//! Receiving one verified stream frame: a `checkpoint` event gets the consistency proof it
//! needs from the gateway before it is ingested, and one that was witnessed is co-signed and
//! the cosignature uploaded (docs/protocol.md, section 9.8; the checks are in `witness`).

use countersign_protocol::api::paths;
use countersign_protocol::log::{self as tlog, Proof};
use countersign_protocol::{Event, Signed, StreamEvent};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::gateway::GatewayRecord;
use crate::ingest::IngestOutcome;
use crate::witness::newest;

impl Engine {
    /// Ingests one verified stream frame from `gateway`. A `checkpoint` event first gets the
    /// consistency proof it needs from the gateway (an unreachable gateway is an error: the
    /// event is neither accepted nor refused, and arrives again on the next connection), and
    /// one that was witnessed is co-signed and the cosignature uploaded.
    pub async fn receive(
        &self,
        gateway: &str,
        envelope: &Signed<Event>,
    ) -> Result<IngestOutcome, EngineError> {
        let StreamEvent::Checkpoint { checkpoint } = &envelope.body.payload else {
            return self.ingest(gateway, envelope);
        };
        let gw = self.gateway(gateway)?;
        let proof = match self.proof_needed(&gw, checkpoint)? {
            Some((old, size)) => Some(self.consistency_proof(&gw, old, size).await?),
            None => None,
        };
        let outcome = self.ingest_with(gateway, envelope, proof.as_ref())?;
        if outcome == IngestOutcome::Accepted {
            if let Err(e) = self.cosign(&gw, checkpoint).await {
                // The checkpoint is witnessed all the same; the next one is co-signed anew.
                tracing::warn!(gateway = %gw.name, error = %e, "the cosignature was not uploaded");
            }
        }
        Ok(outcome)
    }

    /// The (held, new) tree sizes a consistency proof is needed for, when `note` is a valid
    /// checkpoint of a larger tree than the newest one witnessed.
    fn proof_needed(
        &self,
        gw: &GatewayRecord,
        note: &str,
    ) -> Result<Option<(u64, u64)>, EngineError> {
        let Ok(cp) = tlog::verify_checkpoint(note, &gw.gateway_key) else {
            return Ok(None);
        };
        Ok(match newest(&self.db(), &gw.fingerprint)? {
            Some(held) if held.size > 0 && cp.size > held.size => Some((held.size, cp.size)),
            _ => None,
        })
    }

    async fn consistency_proof(
        &self,
        gw: &GatewayRecord,
        old: u64,
        size: u64,
    ) -> Result<Proof, EngineError> {
        self.device_call_query::<(), Proof>(
            gw,
            reqwest::Method::GET,
            paths::LOG_CONSISTENCY,
            &[("old", old.to_string()), ("size", size.to_string())],
            None,
        )
        .await
    }

    async fn cosign(&self, gw: &GatewayRecord, note: &str) -> Result<(), EngineError> {
        let cp = tlog::verify_checkpoint(note, &gw.gateway_key)
            .map_err(|e| EngineError::BadGatewayResponse(e.to_string()))?;
        let timestamp = u64::try_from(self.now()).unwrap_or(0);
        let cosignature = tlog::cosign(&self.inner.key, &gw.device_id, &cp, timestamp);
        let ack: tlog::CosignatureAck = self
            .device_call(
                gw,
                reqwest::Method::POST,
                paths::LOG_COSIGNATURES,
                Some(&cosignature),
            )
            .await?;
        if ack.size != cp.size {
            return Err(EngineError::BadGatewayResponse(format!(
                "the gateway acknowledged a cosignature of {} entries, not {}",
                ack.size, cp.size
            )));
        }
        Ok(())
    }
}
