//! What a dishonest operator of a stopped gateway can do to its database: edit audit entries
//! and recompute everything that would betray the edit (the hash chain, the log's tree, its
//! checkpoints and their cosignatures), so that the gateway signs the rewritten log on its
//! next start as if it had always been so. Only a checkpoint someone kept from before, a
//! witness, can catch it.

use std::path::Path;

use countersign_protocol::audit::{hash_canonical, AuditEntry, GENESIS};
use countersign_protocol::canonical::to_canonical_bytes;

/// Rewrites every audit entry of the gateway database at `db` through `edit` (entry text in,
/// entry text out), recomputes the chain, and removes the tree hashes, checkpoints,
/// cosignatures and checkpoint events, which the gateway rebuilds when it opens the store.
/// Returns how many entries `edit` changed.
pub fn rewrite_gateway_log(db: &Path, edit: impl Fn(&AuditEntry) -> Option<AuditEntry>) -> usize {
    let db = rusqlite::Connection::open(db).unwrap();
    let rows: Vec<(i64, String)> = {
        let mut st = db
            .prepare("SELECT seq, entry FROM audit ORDER BY seq")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let mut prev = GENESIS;
    let mut changed = 0;
    for (seq, text) in rows {
        let entry: AuditEntry = serde_json::from_str(&text).unwrap();
        let mut entry = match edit(&entry) {
            Some(e) => {
                changed += 1;
                e
            }
            None => entry,
        };
        entry.prev = prev;
        let text = String::from_utf8(to_canonical_bytes(&entry).unwrap()).unwrap();
        prev = hash_canonical(text.as_bytes());
        db.execute(
            "UPDATE audit SET entry = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![text, prev.to_hex(), seq],
        )
        .unwrap();
    }
    db.execute_batch(
        "DELETE FROM log_hashes; DELETE FROM log_checkpoints; DELETE FROM log_cosignatures; \
         DELETE FROM events WHERE approver = '*';",
    )
    .unwrap();
    changed
}
