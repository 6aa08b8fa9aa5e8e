//! Audit export verification on hostile input: the JSON Lines of `countersign audit export`
//! (entries, then checkpoints) and raw stored entry texts. Never a panic; a chain that verifies
//! has consistent hashes.
#![no_main]

use countersign_protocol::audit::{
    verify_chain, verify_checkpoints, verify_links, AuditEntry, Checkpoint, Link,
};
use countersign_protocol::{Digest, PublicKey, Signed};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

#[derive(Deserialize)]
struct EntryLine {
    entry: AuditEntry,
    hash: Digest,
}

#[derive(Deserialize)]
struct CheckpointLine {
    checkpoint: Signed<Checkpoint>,
    public_key: String,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut entries = Vec::new();
    let mut checkpoints = Vec::new();
    let mut links = Vec::new();
    for line in text.lines() {
        if let Ok(e) = serde_json::from_str::<EntryLine>(line) {
            entries.push((e.entry, e.hash));
        } else if let Ok(c) = serde_json::from_str::<CheckpointLine>(line) {
            checkpoints.push(c);
        }
        // Also as a stored row: canonical text with a stored hash of zeros.
        if let Ok(l) = Link::from_canonical_text(line.as_bytes(), Digest([0; 32])) {
            links.push(l);
        }
    }
    let _ = verify_links(&links);
    if let Ok((n, head)) = verify_chain(entries.clone()) {
        assert_eq!(n, entries.len() as u64);
        if let Some((_, last)) = entries.last() {
            assert_eq!(&head, last);
        }
        let hashes: Vec<Digest> = entries.iter().map(|(_, h)| *h).collect();
        for c in &checkpoints {
            if let Ok(key) = PublicKey::parse("public_key", &c.public_key) {
                let _ = verify_checkpoints(&hashes, std::iter::once(&c.checkpoint), &key);
            }
        }
    }
});
