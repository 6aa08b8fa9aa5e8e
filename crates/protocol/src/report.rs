//! "I did not expect this": the device-signed [`Report`] of a request that reached its
//! approver unwanted (protocol.md 3.6a).

use serde::{Deserialize, Serialize};

use crate::canonical::domain;
use crate::crypto::Digest;
use crate::error::ProtocolError;
use crate::fields::{check_ident, check_version, limits};
use crate::types::{Decode, SignedBody};

/// "I did not expect this": an approver tells the gateway that a request reached them unwanted.
/// Signed by the device key. The gateway blocks the request's requester from this approver:
/// their pending requests to the approver are denied and new ones are refused until an
/// operator lifts the block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub v: u32,
    /// Random UUID chosen by the device; the gateway is idempotent on it.
    pub report_id: String,
    pub request_id: String,
    pub request_digest: Digest,
    /// Fingerprint of the gateway key the request was signed with.
    pub gateway: String,
    pub approver: String,
    pub device_id: String,
    pub reported_at: i64,
}

impl SignedBody for Report {
    const DOMAIN: &'static str = domain::REPORT;
}

impl Decode for Report {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("report_id", &self.report_id, limits::ID)?;
        check_ident("request_id", &self.request_id, limits::ID)?;
        check_ident("gateway", &self.gateway, limits::ID)?;
        check_ident("approver", &self.approver, limits::NAME)?;
        check_ident("device_id", &self.device_id, limits::ID)?;
        Ok(())
    }
}
