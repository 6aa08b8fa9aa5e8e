//! The audit chain (table `audit`): appending an entry inside a write, linked to the one
//! before by its hash, and reading the chain back in order. The chain is also the gateway's
//! transparency log (docs/protocol.md, section 9.6): each entry is a leaf of a Merkle tree whose
//! stored hashes (table `log_hashes`) are written in the same write as the entry, so leaf
//! indices follow commit order without gaps; the checkpoints signed over it are in
//! `log_checkpoints`.
//!
//! Building and hashing an entry is the same for every backend, so [`AuditRows`] does it in
//! provided methods over a few statements a backend implements.

use crate::args;
use countersign_protocol::audit::{hash_canonical, AuditEntry, GENESIS};
use countersign_protocol::canonical::to_canonical_bytes;
use countersign_protocol::log::{self as tlog, Hash};
use countersign_protocol::{Digest, AUDIT_VERSION};

use super::sql::{Db, Dialect};
use crate::error::StoreError;

/// The rows of the audit chain.
pub trait AuditRows {
    /// The last entry's sequence number and hash (hex), if the chain has any.
    fn audit_last(&self) -> Result<Option<(u64, String)>, StoreError>;

    /// Stores an entry as its canonical `text` with its `hash` (hex).
    fn audit_insert(&self, seq: u64, text: &str, hash: &str) -> Result<(), StoreError>;

    /// Every entry's canonical text and hash (hex), in order.
    fn audit_rows(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// The canonical text of the entries with `start <= seq < end`, in order, with their `seq`.
    fn audit_text_range(&self, start: u64, end: u64) -> Result<Vec<(u64, String)>, StoreError>;

    /// The canonical text of the entries of one request, in order, with their `seq`.
    fn audit_text_of_request(&self, request_id: &str) -> Result<Vec<(u64, String)>, StoreError>;

    /// The tree's stored hashes at these stored-hash indexes, in the order asked.
    fn log_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError>;

    /// The number of stored hashes.
    fn log_hash_count(&self) -> Result<u64, StoreError>;

    /// Stores `hashes` at the stored-hash indexes from `first` on.
    fn log_hashes_insert(&self, first: u64, hashes: &[Hash]) -> Result<(), StoreError>;

    /// The newest log checkpoint: its size and note.
    fn log_checkpoint_latest(&self) -> Result<Option<(u64, String)>, StoreError>;

    /// The smallest stored checkpoint of at least `size` leaves: its size and note.
    fn log_checkpoint_covering(&self, size: u64) -> Result<Option<(u64, String)>, StoreError>;

    /// Stores a signed checkpoint.
    fn log_checkpoint_put(
        &self,
        size: u64,
        root: &str,
        note: &str,
        at: i64,
    ) -> Result<(), StoreError>;

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
        self.log_append(seq - 1, tlog::leaf_hash_of_text(&text))?;
        let text = String::from_utf8(text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.audit_insert(seq, &text, &hash.to_hex())?;
        Ok(hash)
    }

    /// Adds leaf `index` to the tree: the hashes it stores, after those of the leaves before it.
    fn log_append(&self, index: u64, leaf: Hash) -> Result<(), StoreError> {
        let first = tlog::first_stored_index(index);
        let held = self.log_hash_count()?;
        if held != first {
            return Err(StoreError::Corrupt(format!(
                "the log holds {held} tree hashes where leaf {index} needs {first}"
            )));
        }
        let new = tlog::hashes_to_store(index, leaf, &StoredTree(self))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.log_hashes_insert(first, &new)
    }

    /// Whether some audit entries have no tree hashes yet ([`AuditRows::log_backfill`] adds them).
    fn log_behind(&self) -> Result<bool, StoreError> {
        let size = self.audit_last()?.map_or(0, |(seq, _)| seq);
        Ok(tlog::leaves_of_stored(self.log_hash_count()?) != size)
    }

    /// Fills in the tree for entries written before the log existed (or by an older build):
    /// every entry from the first without stored hashes on. Returns how many were added.
    fn log_backfill(&self) -> Result<u64, StoreError> {
        let size = self.audit_last()?.map_or(0, |(seq, _)| seq);
        let held = tlog::leaves_of_stored(self.log_hash_count()?);
        if held > size {
            return Err(StoreError::Corrupt(format!(
                "the log holds tree hashes for {held} entries, the audit chain has {size}"
            )));
        }
        let mut start = held + 1;
        while start <= size {
            let end = (start + 1000).min(size + 1);
            for (seq, text) in self.audit_text_range(start, end)? {
                self.log_append(seq - 1, tlog::leaf_hash_of_text(text.as_bytes()))?;
            }
            start = end;
        }
        Ok(size - held)
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

/// The stored hashes of a transaction, as the tree functions read them.
pub struct StoredTree<'a, T: AuditRows + ?Sized>(pub &'a T);

impl<T: AuditRows + ?Sized> tlog::HashReader for StoredTree<'_, T> {
    fn read_hashes(
        &self,
        indexes: &[u64],
    ) -> Result<Vec<Hash>, countersign_protocol::log::TreeError> {
        let hashes = self
            .0
            .log_hashes(indexes)
            .map_err(|e| countersign_protocol::log::TreeError::InvalidInput(e.to_string()))?;
        if hashes.len() != indexes.len() {
            return Err(countersign_protocol::log::TreeError::IndexesNotInTree);
        }
        Ok(hashes)
    }
}

fn parse_hash(hex: &str) -> Result<Digest, StoreError> {
    Digest::parse("audit.hash", hex).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl AuditRows for Db<'_> {
    fn audit_last(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            args![],
            |r| Ok((r.get::<i64>(0)? as u64, r.get(1)?)),
        )
    }

    fn audit_insert(&self, seq: u64, text: &str, hash: &str) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO audit(seq, entry, hash) VALUES (?1, ?2, ?3)",
            args![seq as i64, text, hash],
        )?;
        Ok(())
    }

    fn audit_rows(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.rows("SELECT entry, hash FROM audit ORDER BY seq", args![], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    }

    fn audit_text_range(&self, start: u64, end: u64) -> Result<Vec<(u64, String)>, StoreError> {
        self.rows(
            "SELECT seq, entry FROM audit WHERE seq >= ?1 AND seq < ?2 ORDER BY seq",
            args![start as i64, end as i64],
            |r| Ok((r.get::<i64>(0)? as u64, r.get(1)?)),
        )
    }

    fn audit_text_of_request(&self, request_id: &str) -> Result<Vec<(u64, String)>, StoreError> {
        self.rows(
            match self.dialect() {
                Dialect::Sqlite => {
                    "SELECT seq, entry FROM audit WHERE json_extract(entry, '$.request_id') = ?1 \
                     ORDER BY seq"
                }
                Dialect::Postgres => {
                    "SELECT seq, entry FROM audit WHERE entry::json ->> 'request_id' = ?1 \
                     ORDER BY seq"
                }
            },
            args![request_id],
            |r| Ok((r.get::<i64>(0)? as u64, r.get(1)?)),
        )
    }

    fn log_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        let mut out = Vec::with_capacity(indexes.len());
        for &i in indexes {
            let raw: Option<Vec<u8>> = self.row(
                "SELECT hash FROM log_hashes WHERE idx = ?1",
                args![i as i64],
                |r| r.get(0),
            )?;
            let raw =
                raw.ok_or_else(|| StoreError::Corrupt(format!("the log has no tree hash at {i}")))?;
            let raw: [u8; 32] = raw.try_into().map_err(|_| {
                StoreError::Corrupt(format!("the tree hash at {i} is not 32 bytes"))
            })?;
            out.push(Hash(raw));
        }
        Ok(out)
    }

    fn log_hash_count(&self) -> Result<u64, StoreError> {
        let n: Option<i64> = self
            .row("SELECT max(idx) + 1 FROM log_hashes", args![], |r| r.get(0))?
            .flatten();
        Ok(n.unwrap_or(0) as u64)
    }

    fn log_hashes_insert(&self, first: u64, hashes: &[Hash]) -> Result<(), StoreError> {
        for (i, h) in hashes.iter().enumerate() {
            self.exec(
                "INSERT INTO log_hashes(idx, hash) VALUES (?1, ?2)",
                args![(first + i as u64) as i64, h.0.as_slice()],
            )?;
        }
        Ok(())
    }

    fn log_checkpoint_latest(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.row(
            "SELECT size, note FROM log_checkpoints ORDER BY size DESC LIMIT 1",
            args![],
            |r| Ok((r.get::<i64>(0)? as u64, r.get(1)?)),
        )
    }

    fn log_checkpoint_covering(&self, size: u64) -> Result<Option<(u64, String)>, StoreError> {
        self.row(
            "SELECT size, note FROM log_checkpoints WHERE size >= ?1 ORDER BY size LIMIT 1",
            args![size as i64],
            |r| Ok((r.get::<i64>(0)? as u64, r.get(1)?)),
        )
    }

    fn log_checkpoint_put(
        &self,
        size: u64,
        root: &str,
        note: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO log_checkpoints(size, root, note, signed_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT DO NOTHING",
            args![size as i64, root, note, at],
        )?;
        Ok(())
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
