//! Refusals a peer can repeat at will, audited without letting the log be flooded: refused
//! requester calls (`request.refused`), decision bodies refused before they could be read
//! (`decision.rejected`) and refused stream connections (`stream.refused`), aggregated per
//! (kind, code, peer) through [`countersign_protocol::aggregate::Aggregator`]. The expiry
//! sweeper closes windows that have passed, and shutdown writes the rest, so none vanishes.

use countersign_protocol::aggregate::Entry;
use serde_json::json;

use crate::error::{ApiError, StoreError};
use crate::gateway::Gateway;

/// Audit kinds of refusals a peer can repeat at will.
pub(crate) const REQUEST_REFUSED: &str = "request.refused";
pub(crate) const DECISION_REJECTED: &str = "decision.rejected";
pub(crate) const STREAM_REFUSED: &str = "stream.refused";
pub(crate) const PASSKEY_REFUSED: &str = "passkey.refused";
pub(crate) const GITHUB_REFUSED: &str = "github.refused";
/// The peer of a refused call that did not authenticate.
pub(crate) const ANONYMOUS: &str = "anonymous";

/// Audits `r` if it is a refusal (a 4xx) of a call by `peer`, and returns it.
pub(crate) fn refused<T>(
    gw: &Gateway,
    kind: &'static str,
    peer: &str,
    r: Result<T, ApiError>,
) -> Result<T, ApiError> {
    if let Err(e) = &r {
        gw.audit_refused(kind, peer, e);
    }
    r
}

impl Gateway {
    /// Audits a refused call: `kind` names the endpoint family, `peer` who made it (a token's
    /// name, a device id, or "anonymous"), `err` the refusal.
    pub fn audit_refused(&self, kind: &'static str, peer: &str, err: &ApiError) {
        if !err.status.is_client_error() {
            return;
        }
        let key = format!("{kind}:{}:{peer}", err.code);
        let detail = json!({
            "peer": peer,
            "code": err.code.as_str(),
            "status": err.status.as_u16(),
            "message": err.message,
        });
        let now = self.now();
        let entries = self
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(now, kind, &key, detail);
        self.write_refusals(now, entries);
    }

    /// Writes the summaries of windows that have passed (all of them with `all`, at shutdown).
    pub fn flush_refusals(&self, all: bool) {
        let now = self.now();
        let entries = self
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close(now, all);
        self.write_refusals(now, entries);
    }

    fn write_refusals(&self, now: i64, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let r = self.store.write(|tx| -> Result<(), StoreError> {
            for (kind, detail) in entries {
                tx.audit_append(now, kind, None, detail)?;
            }
            Ok(())
        });
        if let Err(e) = r {
            tracing::error!(%e, "could not audit refused calls");
        }
    }
}
