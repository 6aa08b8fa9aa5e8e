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
    DecisionEvidence, Evidence, LogEvidence, PasskeyEvidence, PasskeyRecord, ProvenEntry,
    EVIDENCE_VERSION,
};
use countersign_protocol::log::{self as tlog, Proof};
use countersign_protocol::PROTOCOL_VERSION;
use countersign_protocol::{
    ApprovalRequest, Decision, Paired, PublicKey, Receipt, Signed, StatusUpdate,
};

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
        let mut statuses: Vec<Signed<StatusUpdate>> = tx
            .statuses_pushed(id)?
            .iter()
            .map(|t| serde_json::from_str(t).map_err(|e| ApiError::internal("stored status", e)))
            .collect::<Result<_, ApiError>>()?;
        // The current status ends the list, also when it was not pushed (no addressee).
        statuses.retain(|s| s.body.seq < status.body.seq);
        statuses.push(status.clone());
        let mut decisions = Vec::new();
        let mut devices: Vec<Signed<Paired>> = Vec::new();
        let mut passkeys: Vec<PasskeyEvidence> = Vec::new();
        for (decision, receipt) in tx.decisions_with_receipts(id)? {
            let decision: Signed<Decision> = serde_json::from_str(&decision)
                .map_err(|e| ApiError::internal("stored decision", e))?;
            let receipt: Signed<Receipt> = serde_json::from_str(&receipt)
                .map_err(|e| ApiError::internal("stored receipt", e))?;
            let device_id = &decision.body.device_id;
            if !devices.iter().any(|d| &d.body.device_id == device_id) {
                devices.push(paired_record(gw, tx, device_id)?);
            }
            if let Some(assertion) = &decision.body.assertion {
                let cred_id = assertion
                    .get("rawId")
                    .and_then(|v| v.as_str())
                    .map(|s| s.trim_end_matches('=').to_owned())
                    .unwrap_or_default();
                if !passkeys
                    .iter()
                    .any(|p| p.record.body.credential_id == cred_id)
                {
                    passkeys.push(passkey_evidence(gw, tx, &decision.body.approver, &cred_id)?);
                }
            }
            let challenge = match &receipt.body.challenge_digest {
                Some(d) => {
                    let text = tx.issued_challenge(&d.to_hex())?.ok_or_else(|| {
                        ApiError::internal("evidence", format!("challenge {d} is not stored"))
                    })?;
                    Some(
                        serde_json::from_str(&text)
                            .map_err(|e| ApiError::internal("stored challenge", e))?,
                    )
                }
                None => None,
            };
            decisions.push(DecisionEvidence {
                decision,
                receipt,
                challenge,
            });
        }
        let entries = tx.audit_text_of_request(id)?;
        Ok((
            request,
            (status, statuses),
            decisions,
            devices,
            passkeys,
            entries,
        ))
    })?;
    let (request, (status, statuses), decisions, devices, passkeys, entries) = gathered;
    let last = entries.last().map_or(0, |(seq, _)| *seq);
    let (size, checkpoint) = crate::tlog::covering(gw, last)?;
    let (entries, checkpoint, witnesses) = gw.store.read(|tx| -> Result<_, ApiError> {
        let entries = entries
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
            .collect::<Result<Vec<_>, ApiError>>()?;
        let mut lines = Vec::new();
        let mut witnesses = Vec::new();
        for (device, line) in tx.cosignatures_of(size)? {
            witnesses.push(paired_record(gw, tx, &device)?);
            lines.push(line);
        }
        Ok((
            entries,
            tlog::with_cosignatures(&checkpoint, &lines),
            witnesses,
        ))
    })?;
    Ok(Evidence {
        v: EVIDENCE_VERSION,
        gateway_key: gw.key.public(),
        request,
        status,
        statuses,
        decisions,
        devices,
        passkeys,
        log: LogEvidence {
            checkpoint,
            entries,
            witnesses,
        },
    })
}

/// The pairing record of device `id` as the gateway signed it at pairing (Ed25519 is
/// deterministic, so this is the record the device got).
fn paired_record(
    gw: &Gateway,
    tx: &dyn crate::store::Tx,
    id: &str,
) -> Result<Signed<Paired>, ApiError> {
    let row = tx
        .device(id)?
        .ok_or_else(|| ApiError::internal("evidence", format!("device {id} is not stored")))?;
    let device_key = PublicKey::parse("devices.public_key", &row.public_key)
        .map_err(|e| ApiError::internal("stored device key", e))?;
    let paired = Paired {
        v: PROTOCOL_VERSION,
        device_id: id.to_owned(),
        approver: row.approver,
        device_key,
        paired_at: row.paired_at,
    };
    Signed::sign(&gw.key, paired).map_err(|e| ApiError::internal("paired", e))
}

/// The gateway-signed record of the passkey `cred_id` (unpadded base64url) of `approver`, with
/// its registration response. The COSE key is the one in the registration's attested
/// credential data, as the authenticator gave it.
fn passkey_evidence(
    gw: &Gateway,
    tx: &dyn crate::store::Tx,
    approver: &str,
    cred_id: &str,
) -> Result<PasskeyEvidence, ApiError> {
    let missing = |why: &str| ApiError::internal("evidence", format!("passkey {cred_id}: {why}"));
    let listing = tx
        .passkey_listing(Some(approver))?
        .into_iter()
        .find(|p| p.cred_id == cred_id)
        .ok_or_else(|| missing("not stored for its approver"))?;
    let registration = tx
        .passkey_registration(cred_id)?
        .flatten()
        .ok_or_else(|| missing("its registration response was not kept"))?;
    let registration: serde_json::Value = serde_json::from_str(&registration)
        .map_err(|e| ApiError::internal("stored registration", e))?;
    let public_key =
        cose_key_of(&registration).ok_or_else(|| missing("no COSE key in its registration"))?;
    let record = PasskeyRecord {
        v: PROTOCOL_VERSION,
        gateway: gw.fingerprint.clone(),
        approver: approver.to_owned(),
        credential_id: cred_id.to_owned(),
        public_key,
        rp_id: gw.config.webauthn_rp_id.clone(),
        origin: gw.origin(),
        aaguid: listing.aaguid,
        attested: listing.attested,
        registered_at: listing.created_at,
        device_id: listing.device_id,
    };
    Ok(PasskeyEvidence {
        record: Signed::sign(&gw.key, record)
            .map_err(|e| ApiError::internal("passkey record", e))?,
        registration: Some(registration),
    })
}

/// The credential public key (COSE_Key, unpadded base64url) in a registration response's
/// attestation object: the attested credential data of its authenticator data, after the
/// relying party hash (32 bytes), flags (1), counter (4), AAGUID (16), the credential id's
/// length (2) and the credential id.
fn cose_key_of(registration: &serde_json::Value) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let object = registration
        .pointer("/response/attestationObject")?
        .as_str()?;
    let credential = countersign_protocol::webauthn_json::attested_credential(object)?;
    Some(URL_SAFE_NO_PAD.encode(credential.cose_key))
}
