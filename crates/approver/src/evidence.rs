//! `countersign evidence <id>`: a request's evidence bundle from the gateway that sent it
//! (`GET /v2/requests/{id}/evidence`, with this device's authorization), checked against the
//! gateway key pinned at pairing before it is handed out (docs/protocol.md, section 9.7).

use countersign_protocol::api::paths;
use countersign_protocol::evidence::{self, Evidence};

use crate::engine::Engine;
use crate::error::EngineError;

impl Engine {
    /// The evidence bundle of a request in the inbox, verified against the pinned gateway.
    pub async fn evidence(&self, request_id: &str) -> Result<Evidence, EngineError> {
        let item = self.show(request_id)?;
        let gw = self.gateway(&item.gateway)?;
        let path = format!("{}/{}/evidence", paths::REQUESTS, item.id());
        let bundle: Evidence = self
            .device_call::<(), _>(&gw, reqwest::Method::GET, &path, None)
            .await?;
        evidence::verify(&bundle, Some(&gw.fingerprint)).map_err(|e| {
            EngineError::BadGatewayResponse(format!(
                "the gateway's evidence for {} does not verify: {e}",
                item.id()
            ))
        })?;
        // The bundle verified, so its checkpoint does.
        let cp =
            countersign_protocol::log::verify_checkpoint(&bundle.log.checkpoint, &gw.gateway_key)
                .map_err(|e| EngineError::BadGatewayResponse(e.to_string()))?;
        let root = countersign_protocol::log::hash_to_string(&cp.root);
        let seen = crate::witness::bundle_witness(&self.db(), &gw.fingerprint, cp.size, &root)?;
        if let crate::witness::BundleWitness::Contradicted { problem } = seen {
            return Err(EngineError::BadGatewayResponse(format!(
                "the gateway's evidence for {}: {problem}",
                item.id()
            )));
        }
        Ok(bundle)
    }
}
