//! What an administrator does to devices and passkeys (`countersign-gateway devices`): list
//! each approver's devices and passkeys, revoke a device (its stream closes at once and its
//! later decisions are refused with `device_revoked`) or retire one passkey. Every change is
//! audited.
//!
//! The command runs in its own process on the gateway's database; a running gateway learns of
//! a revocation from the database on its next sweep ([`close_revoked_streams`]).

use serde::Serialize;
use serde_json::json;

use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::store::devices::DeviceListing;
use crate::store::passkeys::PasskeyListing;

/// One approver's devices and passkeys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApproverListing {
    pub approver: String,
    pub devices: Vec<DeviceListing>,
    pub passkeys: Vec<PasskeyListing>,
}

/// Every approver's devices and passkeys (or one approver's), by approver name.
pub fn list(gw: &Gateway, approver: Option<&str>) -> Result<Vec<ApproverListing>, ApiError> {
    let (devices, passkeys) = gw.store.read(|tx| -> Result<_, ApiError> {
        Ok((tx.device_listing(approver)?, tx.passkey_listing(approver)?))
    })?;
    let mut names: Vec<String> = devices
        .iter()
        .map(|d| d.approver.clone())
        .chain(passkeys.iter().map(|p| p.approver.clone()))
        .collect();
    names.sort();
    names.dedup();
    Ok(names
        .into_iter()
        .map(|name| ApproverListing {
            devices: devices
                .iter()
                .filter(|d| d.approver == name)
                .cloned()
                .collect(),
            passkeys: passkeys
                .iter()
                .filter(|p| p.approver == name)
                .cloned()
                .collect(),
            approver: name,
        })
        .collect())
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    Device {
        approver: String,
    },
    Passkey {
        approver: String,
    },
    /// Nothing by that id is active.
    Nothing,
}

/// Revokes the device `id`, audited `device.revoked`.
pub fn revoke_device(gw: &Gateway, id: &str) -> Result<Revoked, ApiError> {
    let now = gw.now();
    let outcome = gw.store.write(|tx| -> Result<Revoked, ApiError> {
        let Some(device) = tx.device(id)? else {
            return Ok(Revoked::Nothing);
        };
        if !tx.revoke_device(id, now)? {
            return Ok(Revoked::Nothing);
        }
        tx.audit_append(
            now,
            "device.revoked",
            None,
            json!({"device_id": id, "approver": device.approver, "by": "admin"}),
        )?;
        Ok(Revoked::Device {
            approver: device.approver,
        })
    })?;
    if matches!(outcome, Revoked::Device { .. }) {
        gw.hub.revoke(id);
    }
    Ok(outcome)
}

/// Retires the passkey `cred_id` (unpadded base64url, as `list` shows it): never offered or
/// accepted again. Audited `passkey.revoked`.
pub fn revoke_passkey(gw: &Gateway, cred_id: &str) -> Result<Revoked, ApiError> {
    let now = gw.now();
    gw.store.write(|tx| -> Result<Revoked, ApiError> {
        let Some(approver) = tx.retire_passkey(cred_id, now)? else {
            return Ok(Revoked::Nothing);
        };
        tx.audit_append(
            now,
            "passkey.revoked",
            None,
            json!({"cred_id": cred_id, "approver": approver, "by": "admin"}),
        )?;
        Ok(Revoked::Passkey { approver })
    })
}

/// Closes the streams of devices revoked since `since` (by this process or another on the same
/// database); returns the time to ask from next. Run by the sweeper.
pub fn close_revoked_streams(gw: &Gateway, since: i64) -> Result<i64, ApiError> {
    let now = gw.now();
    let ids = gw
        .store
        .read(|tx| -> Result<_, ApiError> { Ok(tx.revoked_since(since)?) })?;
    for id in ids {
        gw.hub.revoke(&id);
    }
    // A second's overlap: a revocation in the same second as the last sweep is not missed
    // (closing a closed stream again does nothing).
    Ok(now - 1)
}
