//! Push-bombing containment: "I did not expect this" reports (`POST /v1/reports`).
//!
//! An approver's device signs a [`Report`] naming a request it received. The gateway then blocks
//! that request's requester from that approver (table `blocks`): every pending request from the
//! requester addressed to the approver is denied at once, and new requests from the requester
//! naming the approver are refused (`requester_blocked`) until an operator lifts the block with
//! `countersign-gateway unblock`. Reports, the denials and lifting are in the audit chain.

use countersign_protocol::api::{ErrorCode, ReportAck};
use countersign_protocol::types::Decode;
use countersign_protocol::{Digest, Report, Signed, PROTOCOL_VERSION};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

use crate::error::{sql, ApiError};
use crate::gateway::Gateway;
use crate::hub::Pushed;
use crate::store::audit_append;

/// Checks a signed report and applies it: block, deny, audit, push. Idempotent on `report_id`.
pub fn report(gw: &Gateway, body: &[u8]) -> Result<ReportAck, ApiError> {
    let signed = Signed::<Report>::decode(body)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidMessage, e.to_string()))?;
    let r = &signed.body;
    if r.gateway != gw.fingerprint {
        return Err(ApiError::bad_request(
            ErrorCode::WrongGateway,
            "The report names another gateway.",
        ));
    }
    let (approver, key) = crate::devices::paired_device(gw, &r.device_id)?;
    signed.verify(&key).map_err(|_| {
        ApiError::unauthorized(
            ErrorCode::BadReportSignature,
            "The report's signature does not verify with the device key.",
        )
    })?;
    if approver != r.approver {
        return Err(ApiError::forbidden(
            ErrorCode::DeviceNotForApprover,
            "This device is paired to another approver.",
        ));
    }
    let now = gw.now();
    let text = serde_json::to_string(&signed).map_err(|e| ApiError::internal("report", e))?;
    let ack = gw
        .store
        .write_publish(|tx| -> Result<(ReportAck, Vec<Pushed>), ApiError> {
            if let Some(ack) = stored_ack(tx, &r.report_id)? {
                return Ok((ack, Vec::new()));
            }
            let request: Option<(String, String)> = crate::store::query_row(
                tx,
                "SELECT requester, digest FROM requests WHERE id = ?1",
                params![r.request_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(sql)?;
            let (requester, digest) = request.ok_or_else(|| {
                ApiError::not_found(ErrorCode::UnknownRequest, "There is no such request.")
            })?;
            let digest = Digest::parse("requests.digest", &digest)
                .map_err(|e| ApiError::internal("stored digest", e))?;
            if !digest.ct_eq(&r.request_digest) {
                return Err(ApiError::conflict(
                    ErrorCode::RequestDigestMismatch,
                    "The report names a different version of this request.",
                ));
            }
            let eligible: Option<i64> = crate::store::query_row(
                tx,
                "SELECT 1 FROM challenges WHERE request_id = ?1 AND approver = ?2",
                params![r.request_id, r.approver],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql)?;
            if eligible.is_none() {
                return Err(ApiError::forbidden(
                    ErrorCode::NotEligible,
                    "The request was not addressed to this approver.",
                ));
            }
            crate::store::execute(
                tx,
                "INSERT OR IGNORE INTO blocks(requester, approver, report_id, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![requester, r.approver, r.report_id, now],
            )
            .map_err(sql)?;
            let pending: Vec<String> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT r.id FROM requests r JOIN challenges c ON c.request_id = r.id
                         WHERE r.requester = ?1 AND c.approver = ?2 AND r.state = 'pending'
                         ORDER BY r.created_at, r.id",
                    )
                    .map_err(sql)?;
                let rows = stmt
                    .query_map(params![requester, r.approver], |row| row.get(0))
                    .map_err(sql)?
                    .collect::<Result<Vec<String>, _>>()
                    .map_err(sql)?;
                rows
            };
            let mut pushed = Vec::new();
            for id in &pending {
                crate::store::execute(
                    tx,
                    "UPDATE requests SET state = 'denied', closed_at = ?2 WHERE id = ?1",
                    params![id, now],
                )
                .map_err(sql)?;
                audit_append(
                    tx,
                    now,
                    "request.blocked",
                    Some(id),
                    json!({"report_id": r.report_id, "approver": r.approver, "requester": requester}),
                )?;
                pushed.extend(crate::status::push_status(gw, tx, id)?);
            }
            let ack = ReportAck {
                v: PROTOCOL_VERSION,
                report_id: r.report_id.clone(),
                request_id: r.request_id.clone(),
                requester: requester.clone(),
                denied: pending,
            };
            crate::store::execute(
                tx,
                "INSERT INTO reports(report_id, request_id, approver, device_id, requester, signed, ack, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    r.report_id,
                    r.request_id,
                    r.approver,
                    r.device_id,
                    requester,
                    text,
                    serde_json::to_string(&ack).map_err(|e| ApiError::internal("ack", e))?,
                    now
                ],
            )
            .map_err(sql)?;
            audit_append(
                tx,
                now,
                "report.unexpected",
                Some(&r.request_id),
                json!({
                    "report_id": r.report_id,
                    "approver": r.approver,
                    "device_id": r.device_id,
                    "requester": requester,
                    "denied": ack.denied,
                }),
            )?;
            Ok((ack, pushed))
        })?;
    gw.changes.notify_waiters();
    tracing::warn!(approver = %ack.report_id, requester = %ack.requester, denied = ack.denied.len(), "unexpected request reported; requester blocked for this approver");
    Ok(ack)
}

fn stored_ack(tx: &Connection, report_id: &str) -> Result<Option<ReportAck>, ApiError> {
    let ack: Option<String> = crate::store::query_row(
        tx,
        "SELECT ack FROM reports WHERE report_id = ?1",
        params![report_id],
        |row| row.get(0),
    )
    .optional()
    .map_err(sql)?;
    ack.map(|a| ReportAck::decode(a.as_bytes()).map_err(|e| ApiError::internal("stored ack", e)))
        .transpose()
}

/// The approvers among `approvers` who blocked `requester`, inside the caller's transaction.
pub fn blocked_by(
    tx: &Connection,
    requester: &str,
    approvers: &[String],
) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for a in approvers {
        let hit: Option<i64> = crate::store::query_row(
            tx,
            "SELECT 1 FROM blocks WHERE requester = ?1 AND approver = ?2",
            params![requester, a],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql)?;
        if hit.is_some() {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// Lifts a block (operator action, audited). Returns whether there was one.
pub fn unblock(gw: &Gateway, requester: &str, approver: &str) -> Result<bool, ApiError> {
    let now = gw.now();
    gw.store.write(|tx| -> Result<bool, ApiError> {
        let n = crate::store::execute(
            tx,
            "DELETE FROM blocks WHERE requester = ?1 AND approver = ?2",
            params![requester, approver],
        )
        .map_err(sql)?;
        if n > 0 {
            audit_append(
                tx,
                now,
                "block.lifted",
                None,
                json!({"requester": requester, "approver": approver}),
            )?;
        }
        Ok(n > 0)
    })
}
