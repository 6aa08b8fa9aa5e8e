//! Verifying an approver's audit export (`countersign audit export`, docs/protocol.md 9.3):
//! the chain, the device's checkpoints over it, and the gateways' acknowledgements of the
//! checkpoints they hold, so that an export cut back below an acknowledged checkpoint fails.

use serde::{Deserialize, Serialize};

use crate::api::CheckpointAck;
use crate::audit::{verify_checkpoints, verify_slice, AuditEntry, ChainBreak, Checkpoint, Damage};
use crate::crypto::{Digest, PublicKey};
use crate::types::Signed;

/// One line of an approver export.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum ExportLine {
    Entry {
        entry: AuditEntry,
        hash: Digest,
    },
    Checkpoint {
        checkpoint: Signed<Checkpoint>,
        public_key: String,
    },
    Ack {
        ack: Signed<CheckpointAck>,
        gateway_key: String,
    },
}

/// What a verified export shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportVerified {
    pub entries: u64,
    pub head: Digest,
    /// The fingerprint of the device key that signed the checkpoints.
    pub device: String,
    /// Each gateway that acknowledged a checkpoint: (gateway fingerprint, acknowledged entry).
    pub acked: Vec<(String, u64)>,
}

fn broken(position: u64, damage: Damage, problem: impl Into<String>) -> ChainBreak {
    ChainBreak {
        position,
        damage,
        problem: problem.into(),
    }
}

/// Verifies an export given as its text. `device` is the device fingerprint learnt out of
/// band (without it, the export is checked against the key it carries); `gateway`, when
/// given, is a gateway whose acknowledgement the export must carry.
pub fn verify_export(
    text: &str,
    device: Option<&str>,
    gateway: Option<&str>,
) -> Result<ExportVerified, ChainBreak> {
    let mut chain = Vec::new();
    let mut checkpoints = Vec::new();
    let mut acks = Vec::new();
    let mut key: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let parsed: ExportLine = serde_json::from_str(line).map_err(|e| {
            broken(
                chain.len() as u64 + 1,
                Damage::Unreadable,
                format!("line {} is not an export line: {e}", i + 1),
            )
        })?;
        match parsed {
            ExportLine::Entry { entry, hash } if checkpoints.is_empty() && acks.is_empty() => {
                chain.push((entry, hash))
            }
            ExportLine::Checkpoint {
                checkpoint,
                public_key,
            } if acks.is_empty() => {
                if key.as_ref().is_some_and(|k| *k != public_key) {
                    return Err(broken(
                        checkpoint.body.seq,
                        Damage::CheckpointForged,
                        "the checkpoints name different device keys",
                    ));
                }
                key = Some(public_key);
                checkpoints.push(checkpoint);
            }
            ExportLine::Ack { ack, gateway_key } => acks.push((ack, gateway_key)),
            _ => {
                return Err(broken(
                    chain.len() as u64 + 1,
                    Damage::Unreadable,
                    format!(
                        "line {}: entries, then checkpoints, then acknowledgements",
                        i + 1
                    ),
                ))
            }
        }
    }
    let (entries, head, hashes) = verify_slice(&chain)?;
    let Some(key) = key else {
        return Err(broken(
            entries,
            Damage::Truncation,
            "the export has no checkpoint",
        ));
    };
    let key = PublicKey::parse("public_key", &key)
        .map_err(|e| broken(entries, Damage::CheckpointForged, e.to_string()))?;
    let fingerprint = key.fingerprint();
    if device.is_some_and(|d| d != fingerprint) {
        return Err(broken(
            entries,
            Damage::CheckpointForged,
            format!("the checkpoints are signed by device key {fingerprint}, not the one expected"),
        ));
    }
    verify_checkpoints(&hashes, &checkpoints, &key)?;
    match checkpoints.last() {
        Some(last) if last.body.seq == entries && last.body.head.ct_eq(&head) => {}
        _ => {
            return Err(broken(
                entries,
                Damage::Truncation,
                "the last checkpoint does not cover the whole export",
            ))
        }
    }
    let mut acked = Vec::new();
    for (ack, gateway_key) in &acks {
        let seq = ack.body.seq;
        let gw = PublicKey::parse("gateway_key", gateway_key)
            .map_err(|e| broken(seq, Damage::CheckpointForged, e.to_string()))?;
        let gw_fp = gw.fingerprint();
        if ack.verify(&gw).is_err() || ack.body.gateway != gw_fp {
            return Err(broken(
                seq,
                Damage::CheckpointForged,
                format!("the acknowledgement at entry {seq} is not signed by gateway {gw_fp}"),
            ));
        }
        if ack.body.signer != fingerprint {
            return Err(broken(
                seq,
                Damage::CheckpointForged,
                format!("gateway {gw_fp} acknowledged a checkpoint of another device key"),
            ));
        }
        let Some(at) = usize::try_from(seq)
            .ok()
            .and_then(|s| s.checked_sub(1))
            .and_then(|s| hashes.get(s))
        else {
            return Err(broken(
                entries + 1,
                Damage::RolledBack,
                format!(
                    "the export ends after {entries} entries, but gateway {gw_fp} acknowledged a \
                     checkpoint of this device at entry {seq}: the export was cut back"
                ),
            ));
        };
        if !at.ct_eq(&ack.body.head) {
            return Err(broken(
                seq,
                Damage::Rewritten,
                format!("entry {seq} is not the one gateway {gw_fp} acknowledged a checkpoint of"),
            ));
        }
        acked.push((gw_fp, seq));
    }
    if let Some(g) = gateway {
        if !acked.iter().any(|(fp, _)| fp == g) {
            return Err(broken(
                entries,
                Damage::Truncation,
                format!("the export carries no acknowledgement by gateway {g}"),
            ));
        }
    }
    Ok(ExportVerified {
        entries,
        head,
        device: fingerprint,
        acked,
    })
}
