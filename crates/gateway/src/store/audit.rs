//! The audit chain (table `audit`): appending an entry inside a write, linked to the one
//! before by its hash, and reading the chain back in order.
//!
//! Building and hashing an entry is the same for every backend, so [`AuditRows`] does it in
//! provided methods over three statements a backend implements.

use countersign_protocol::audit::{hash_canonical, AuditEntry, GENESIS};
use countersign_protocol::canonical::to_canonical_bytes;
use countersign_protocol::{Digest, AUDIT_VERSION};
use rusqlite::params;

use super::sqlite::SqliteTx;
use crate::error::StoreError;

/// The rows of the audit chain.
pub trait AuditRows {
    /// The last entry's sequence number and hash (hex), if the chain has any.
    fn audit_last(&self) -> Result<Option<(u64, String)>, StoreError>;

    /// Stores an entry as its canonical `text` with its `hash` (hex).
    fn audit_insert(&self, seq: u64, text: &str, hash: &str) -> Result<(), StoreError>;

    /// Every entry's canonical text and hash (hex), in order.
    fn audit_rows(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Appends one entry to the audit chain inside the write, returning its hash.
    fn audit_append(
        &self,
        at: i64,
        kind: &str,
        request_id: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<Digest, StoreError> {
        let (seq, prev) = match self.audit_last()? {
            Some((seq, hash)) => (seq + 1, parse_hash(&hash)?),
            None => (1, GENESIS),
        };
        let entry = AuditEntry {
            v: AUDIT_VERSION,
            seq,
            at,
            kind: kind.to_string(),
            request_id: request_id.map(str::to_string),
            detail,
            prev,
        };
        // The entry is stored as its canonical text, and its hash is over exactly those bytes
        // (`AuditEntry::hash`), so it is canonicalised once.
        let text = to_canonical_bytes(&entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let hash = hash_canonical(&text);
        let text = String::from_utf8(text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.audit_insert(seq, &text, &hash.to_hex())?;
        Ok(hash)
    }

    /// The whole audit chain in order, each entry with its stored hash.
    fn audit_entries(&self) -> Result<Vec<(AuditEntry, Digest)>, StoreError> {
        let mut out = Vec::new();
        for (entry, hash) in self.audit_rows()? {
            let entry: AuditEntry =
                serde_json::from_str(&entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push((entry, parse_hash(&hash)?));
        }
        Ok(out)
    }
}

fn parse_hash(hex: &str) -> Result<Digest, StoreError> {
    Digest::parse("audit.hash", hex).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl AuditRows for SqliteTx<'_> {
    fn audit_last(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
        )
    }

    fn audit_insert(&self, seq: u64, text: &str, hash: &str) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO audit(seq, entry, hash) VALUES (?1, ?2, ?3)",
            params![seq as i64, text, hash],
        )?;
        Ok(())
    }

    fn audit_rows(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.rows("SELECT entry, hash FROM audit ORDER BY seq", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::store::Store;

    #[test]
    fn audit_chain_appends_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("g.db"), Arc::default()).unwrap();
        for i in 0..3 {
            store
                .write(|tx| tx.audit_append(i, "x", None, serde_json::json!({"i": i})))
                .unwrap();
        }
        let entries = store.read(crate::store::audit_entries).unwrap();
        assert_eq!(
            countersign_protocol::audit::verify_chain(entries)
                .unwrap()
                .0,
            3
        );
    }
}
