//! Aggregated audit entries at the approver: refused stream frames and decision retries are
//! audited through [`countersign_protocol::aggregate::Aggregator`], so that a peer cannot flood
//! the log and no occurrence is lost. Windows still open are written at the end of
//! [`crate::Engine::run`] and when the engine closes.

use countersign_protocol::aggregate::{Aggregator, Entry};

use crate::audit;
use crate::engine::Engine;
use crate::error::EngineError;

impl Engine {
    /// Audits one occurrence of `kind` under `key` (see the protocol crate's `aggregate`).
    pub(crate) fn audit_aggregated(
        &self,
        kind: &'static str,
        key: &str,
        detail: serde_json::Value,
    ) -> Result<(), EngineError> {
        self.with_windows(|w, now| w.record(now, kind, key, detail))
    }

    /// Writes the summaries of every open window (at the end of a run, so none is lost).
    pub(crate) fn flush_aggregated(&self) -> Result<(), EngineError> {
        self.with_windows(|w, now| w.close(now, true))
    }

    /// Runs `f` on the open windows at the engine's time, and writes the entries it gives.
    fn with_windows(
        &self,
        f: impl FnOnce(&mut Aggregator, i64) -> Vec<Entry>,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let entries = f(
            &mut self
                .inner
                .aggregated
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            now,
        );
        audit::append_all(&mut self.db(), now, entries)
    }
}
