//! A request's evidence bundle (docs/protocol.md, section 9.7): everything signed about it,
//! gathered from the store, and its audit entries proven against a log checkpoint.
//!
//! Nothing is signed anew but the current status and the pairing records, and both are the
//! bodies the devices received: a status at a given `seq` is always the same body, a pairing
//! record is built from the stored device, and Ed25519 signatures are deterministic, so the
//! signatures are those sent.

use countersign_protocol::api::ErrorCode;
use countersign_protocol::audit::AuditEntry;
use countersign_protocol::evidence::{
    DecisionEvidence, Evidence, LogEvidence, ProvenEntry, EVIDENCE_VERSION,
};
use countersign_protocol::log::Proof;
use countersign_protocol::PROTOCOL_VERSION;
use countersign_protocol::{ApprovalRequest, Decision, Paired, PublicKey, Receipt, Signed};

use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::store::audit::StoredTree;

/// The evidence bundle of request `id`.
pub fn bundle(gw: &Gateway, id: &str) -> Result<Evidence, ApiError> {
    let gathered = gw.store.read(|tx| -> Result<_, ApiError> {
        let Some(signed) = tx.request_signed(id)? else {
            return Err(ApiError::not_found(
                ErrorCode::UnknownRequest,
                "The gateway has no request with this id.",
            ));
        };
        let request: Signed<ApprovalRequest> =
            serde_json::from_str(&signed).map_err(|e| ApiError::internal("stored request", e))?;
        let (status, _) = crate::status::status_of(gw, tx, id)?;
        let mut decisions = Vec::new();
        let mut devices: Vec<Signed<Paired>> = Vec::new();
        for (decision, receipt) in tx.decisions_with_receipts(id)? {
            let decision: Signed<Decision> = serde_json::from_str(&decision)
                .map_err(|e| ApiError::internal("stored decision", e))?;
            let receipt: Signed<Receipt> = serde_json::from_str(&receipt)
                .map_err(|e| ApiError::internal("stored receipt", e))?;
            let device_id = &decision.body.device_id;
            if !devices.iter().any(|d| &d.body.device_id == device_id) {
                let row = tx.device(device_id)?.ok_or_else(|| {
                    ApiError::internal("evidence", format!("device {device_id} is not stored"))
                })?;
                let device_key = PublicKey::parse("devices.public_key", &row.public_key)
                    .map_err(|e| ApiError::internal("stored device key", e))?;
                let paired = Paired {
                    v: PROTOCOL_VERSION,
                    device_id: device_id.clone(),
                    approver: row.approver,
                    device_key,
                    paired_at: row.paired_at,
                };
                devices.push(
                    Signed::sign(&gw.key, paired).map_err(|e| ApiError::internal("paired", e))?,
                );
            }
            decisions.push(DecisionEvidence { decision, receipt });
        }
        let entries = tx.audit_text_of_request(id)?;
        Ok((request, status, decisions, devices, entries))
    })?;
    let (request, status, decisions, devices, entries) = gathered;
    let last = entries.last().map_or(0, |(seq, _)| *seq);
    let (size, checkpoint) = crate::tlog::covering(gw, last)?;
    let entries = gw.store.read(|tx| -> Result<_, ApiError> {
        entries
            .into_iter()
            .map(|(seq, text)| {
                let entry: AuditEntry = serde_json::from_str(&text)
                    .map_err(|e| ApiError::internal("stored audit entry", e))?;
                let proof = Proof::inclusion(size, seq - 1, &StoredTree(tx))
                    .map_err(|e| ApiError::internal("inclusion proof", e))?;
                Ok(ProvenEntry {
                    index: seq - 1,
                    entry,
                    proof: proof.hashes,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })?;
    Ok(Evidence {
        v: EVIDENCE_VERSION,
        gateway_key: gw.key.public(),
        request,
        status,
        decisions,
        devices,
        log: LogEvidence {
            checkpoint,
            entries,
        },
    })
}
