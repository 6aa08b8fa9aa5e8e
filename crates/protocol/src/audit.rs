//! The audit chain rule shared by the approver and the gateway, and by any independent verifier.
//!
//! Entry `n` (from 1) is the JCS of an [`AuditEntry`] whose `prev` is the hash of entry `n-1`
//! (32 zero bytes for the first). Its hash is SHA-256 over
//! `countersign/v1/audit-entry || 0x00 || JCS(entry)`. A [`Checkpoint`] signs a chain head.

use serde::{Deserialize, Serialize};

use crate::canonical::domain;
use crate::crypto::Digest;
use crate::error::ProtocolError;
use crate::types::{Decode, SignedBody};
use crate::AUDIT_VERSION;

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub v: u32,
    pub seq: u64,
    pub at: i64,
    /// What happened: `request.received`, `request.rejected`, `decision.made`, ...
    pub kind: String,
    pub request_id: Option<String>,
    /// Free-form, kind-specific facts (canonicalised with the rest).
    pub detail: serde_json::Value,
    pub prev: Digest,
}

impl AuditEntry {
    pub fn hash(&self) -> Result<Digest, ProtocolError> {
        Digest::of(domain::AUDIT_ENTRY, self)
    }
}

impl Decode for AuditEntry {
    fn validate(&self) -> Result<(), ProtocolError> {
        if self.v != AUDIT_VERSION {
            return Err(ProtocolError::UnsupportedVersion {
                found: self.v,
                supported: AUDIT_VERSION,
            });
        }
        Ok(())
    }
}

/// The hash that the first entry's `prev` holds.
pub const GENESIS: Digest = Digest([0; 32]);

/// A signed statement that the chain had `seq` entries ending in `head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub v: u32,
    /// Fingerprint of the key that signs this checkpoint.
    pub signer: String,
    pub seq: u64,
    pub head: Digest,
    pub at: i64,
}

impl SignedBody for Checkpoint {
    const DOMAIN: &'static str = domain::CHECKPOINT;
}

impl Decode for Checkpoint {
    fn validate(&self) -> Result<(), ProtocolError> {
        if self.v != AUDIT_VERSION {
            return Err(ProtocolError::UnsupportedVersion {
                found: self.v,
                supported: AUDIT_VERSION,
            });
        }
        Ok(())
    }
}

/// The kind of damage a broken chain shows, as far as the chain and its checkpoints can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Damage {
    /// An entry's content no longer matches its hash, or it was changed and its hash recomputed
    /// (then the next entry's `prev` no longer matches).
    Edit,
    /// Entries are missing from the middle of the chain: a sequence number is skipped.
    Deletion,
    /// An entry was added: a sequence number occurs twice, or an entry links to the wrong
    /// predecessor without being an edited one.
    Insertion,
    /// Entries are out of order: a sequence number appears before its turn.
    Reorder,
    /// The chain ends before a checkpoint signed over a longer chain.
    Truncation,
    /// The chain is consistent in itself but differs from what the device signed at a
    /// checkpoint: entries up to it were edited, inserted or deleted and every later hash
    /// recomputed.
    Rewritten,
    /// A checkpoint's signature does not verify under the device key, or it names another key.
    CheckpointForged,
    /// A row cannot be read as an audit entry at all.
    Unreadable,
    /// The chain is consistent in itself and with its own checkpoints but ends before a
    /// checkpoint the device uploaded to a gateway: the log was wiped or restored from an older
    /// copy.
    RolledBack,
}

impl Damage {
    pub fn as_str(self) -> &'static str {
        match self {
            Damage::Edit => "edit",
            Damage::Deletion => "deletion",
            Damage::Insertion => "insertion",
            Damage::Reorder => "reorder",
            Damage::Truncation => "truncation",
            Damage::Rewritten => "rewritten",
            Damage::CheckpointForged => "checkpoint_forged",
            Damage::Unreadable => "unreadable",
            Damage::RolledBack => "rolled_back",
        }
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first place a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {position} is bad ({damage}): {problem}")]
pub struct ChainBreak {
    /// 1-based position in the sequence checked.
    pub position: u64,
    pub damage: Damage,
    pub problem: String,
}

/// Walks a chain of `(entry, stored hash)` in order and names the first bad entry and the kind
/// of damage. Returns the number of entries and the head hash.
///
/// Classification at the first position `n` that fails, where `e` is the entry found there:
/// - `e.seq == n` and `e` does not hash to its stored hash: [`Damage::Edit`];
/// - `e.seq == n`, `e` hashes correctly but `e.prev` is not the previous entry's hash: an
///   [`Damage::Edit`] of entry `n - 1` (changed and rehashed) if the link after `e` holds,
///   otherwise [`Damage::Insertion`] (`e` itself is foreign);
/// - `e.seq > n`: [`Damage::Reorder`] if an entry with sequence `n` comes later, else
///   [`Damage::Deletion`];
/// - `e.seq < n`: [`Damage::Insertion`] if that sequence number was already seen, else
///   [`Damage::Reorder`].
pub fn verify_chain<I>(entries: I) -> Result<(u64, Digest), ChainBreak>
where
    I: IntoIterator<Item = (AuditEntry, Digest)>,
{
    let chain: Vec<(AuditEntry, Digest)> = entries.into_iter().collect();
    verify_slice(&chain).map(|(n, head, _)| (n, head))
}

/// Like [`verify_chain`] over a slice; also returns every entry's hash, in order (for checking
/// checkpoints against the chain).
pub fn verify_slice(
    chain: &[(AuditEntry, Digest)],
) -> Result<(u64, Digest, Vec<Digest>), ChainBreak> {
    // Each entry's hash depends only on the entry, so they are computed on every core first;
    // the walk is then sequential and cheap.
    let links = par_map(chain, |(e, stored)| Link {
        seq: e.seq,
        prev: e.prev,
        hash: e.hash().map_err(|e| e.to_string()),
        stored: *stored,
    });
    verify_links(&links)
}

/// The hash of an entry given as its canonical text (JCS): SHA-256 over
/// `countersign/v1/audit-entry || 0x00 || text`. Equal to [`AuditEntry::hash`] when `text` is
/// the entry's JCS.
pub fn hash_canonical(text: &[u8]) -> Digest {
    Digest::of_parts(&[domain::AUDIT_ENTRY.as_bytes(), &[0], text])
}

/// What the chain rule needs of one entry: its `seq` and `prev`, its recomputed hash (or why it
/// could not be computed) and its stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub seq: u64,
    pub prev: Digest,
    pub hash: Result<Digest, String>,
    pub stored: Digest,
}

impl Link {
    /// From an entry's stored canonical text (JCS, as appended), hashing those bytes directly:
    /// the same value as [`AuditEntry::hash`] for canonical text, without decoding the entry.
    /// Text that is not JCS of the entry it encodes can only come from tampering; its hash then
    /// differs from what an independent verifier computes from an export, so it is caught there.
    pub fn from_canonical_text(text: &[u8], stored: Digest) -> Result<Link, ProtocolError> {
        // Unknown fields (the rest of the entry) are skipped without being decoded.
        #[derive(Deserialize)]
        struct Head {
            v: u32,
            seq: u64,
            prev: Digest,
        }
        let head: Head =
            serde_json::from_slice(text).map_err(|e| ProtocolError::Json(e.to_string()))?;
        if head.v != AUDIT_VERSION {
            return Err(ProtocolError::UnsupportedVersion {
                found: head.v,
                supported: AUDIT_VERSION,
            });
        }
        Ok(Link {
            seq: head.seq,
            prev: head.prev,
            hash: Ok(hash_canonical(text)),
            stored,
        })
    }
}

/// The chain rule over [`Link`]s; see [`verify_chain`] for the classification.
pub fn verify_links(chain: &[Link]) -> Result<(u64, Digest, Vec<Digest>), ChainBreak> {
    let mut prev = GENESIS;
    let mut hashes = Vec::with_capacity(chain.len());
    for (i, link) in chain.iter().enumerate() {
        let entry = link;
        let stored = &link.stored;
        let computed = link.hash.clone();
        let n = i as u64 + 1;
        let fail = |damage: Damage, problem: String| ChainBreak {
            position: n,
            damage,
            problem,
        };
        if entry.seq > n {
            let later = chain[i + 1..].iter().any(|e| e.seq == n);
            return Err(if later {
                fail(
                    Damage::Reorder,
                    format!(
                        "sequence number {} where {n} was expected; {n} comes later",
                        entry.seq
                    ),
                )
            } else {
                fail(
                    Damage::Deletion,
                    format!(
                        "sequence number {} where {n} was expected: entries {n} to {} are missing",
                        entry.seq,
                        entry.seq - 1
                    ),
                )
            });
        }
        if entry.seq < n {
            let seen = chain[..i].iter().any(|e| e.seq == entry.seq);
            return Err(if seen {
                fail(
                    Damage::Insertion,
                    format!("sequence number {} occurs a second time", entry.seq),
                )
            } else {
                fail(
                    Damage::Reorder,
                    format!("sequence number {} where {n} was expected", entry.seq),
                )
            });
        }
        let computed = computed.map_err(|e| fail(Damage::Unreadable, e))?;
        if !computed.ct_eq(stored) {
            return Err(fail(
                Damage::Edit,
                "its content does not match its stored hash (the entry was edited)".to_string(),
            ));
        }
        if entry.prev != prev {
            // The previous entry hashes correctly to its stored hash but is not the one this
            // entry was chained to: either it was replaced (edited and rehashed) or this entry
            // was inserted after it.
            // An attacker who inserts an entry can chain it correctly; a broken link with an
            // intact entry here means the entry before it was changed and rehashed, unless the
            // next link is broken too (then this entry itself is foreign).
            let next_links = chain.get(i + 1).is_none_or(|next| next.prev == computed);
            let (damage, problem, position) = match () {
                () if next_links && i > 0 => (
                    Damage::Edit,
                    format!(
                        "entry {} was changed and its hash recomputed: entry {n} still links to the original",
                        n - 1
                    ),
                    n - 1,
                ),
                _ => (
                    Damage::Insertion,
                    "its `prev` does not match the previous entry's hash (an entry was inserted or replaced)"
                        .to_string(),
                    n,
                ),
            };
            return Err(ChainBreak {
                position,
                damage,
                problem,
            });
        }
        hashes.push(computed);
        prev = computed;
    }
    Ok((chain.len() as u64, prev, hashes))
}

/// Maps `f` over `items` on all available cores (in order), or on this thread for short inputs.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    const SERIAL_BELOW: usize = 4096;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if items.len() < SERIAL_BELOW || threads < 2 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                // A panic in `f` is a bug; surface it on this thread as it would have serially.
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

/// Checks signed checkpoints against a chain that verified (`hashes` from [`verify_slice`]):
/// each must be signed by `key` and name that key, and the chain must still hold the head it
/// signed. The first failure is reported with the position of the checkpoint's entry.
pub fn verify_checkpoints<'a>(
    hashes: &[Digest],
    checkpoints: impl IntoIterator<Item = &'a crate::types::Signed<Checkpoint>>,
    key: &crate::crypto::PublicKey,
) -> Result<Option<u64>, ChainBreak> {
    let mut highest: Option<u64> = None;
    for cp in checkpoints {
        let seq = cp.body.seq;
        let at = |damage: Damage, problem: String| ChainBreak {
            position: seq,
            damage,
            problem,
        };
        if cp.verify(key).is_err() || cp.body.signer != key.fingerprint() {
            return Err(at(
                Damage::CheckpointForged,
                format!("the checkpoint at entry {seq} is not signed by this device's key"),
            ));
        }
        let Some(idx) = usize::try_from(seq).ok().and_then(|s| s.checked_sub(1)) else {
            // A checkpoint over the empty chain: nothing to compare.
            continue;
        };
        match hashes.get(idx) {
            None => {
                return Err(ChainBreak {
                    position: hashes.len() as u64 + 1,
                    damage: Damage::Truncation,
                    problem: format!(
                        "the chain ends after {} entries, but the device signed a checkpoint at entry {seq}",
                        hashes.len()
                    ),
                })
            }
            Some(h) if !h.ct_eq(&cp.body.head) => {
                return Err(at(
                    Damage::Rewritten,
                    format!(
                        "the chain up to entry {seq} is not the one the device signed a checkpoint over"
                    ),
                ))
            }
            Some(_) => highest = highest.max(Some(seq)),
        }
    }
    Ok(highest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<(AuditEntry, Digest)> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let e = AuditEntry {
                    v: 1,
                    seq,
                    at: 1000 + seq as i64,
                    kind: "request.received".into(),
                    request_id: Some(format!("r{seq}")),
                    detail: serde_json::json!({"n": seq}),
                    prev,
                };
                let h = e.hash().unwrap();
                prev = h;
                (e, h)
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        let head = c[4].1;
        assert_eq!(verify_chain(c).unwrap(), (5, head));
    }

    fn rehash_from(c: &mut [(AuditEntry, Digest)], from: usize) {
        for i in from..c.len() {
            if i > 0 {
                c[i].0.prev = c[i - 1].1;
            }
            c[i].1 = c[i].0.hash().unwrap();
        }
    }

    fn checkpoint(key: &crate::crypto::KeyPair, seq: u64, head: Digest) -> Signed<Checkpoint> {
        Signed::sign(
            key,
            Checkpoint {
                v: 1,
                signer: key.public().fingerprint(),
                seq,
                head,
                at: 0,
            },
        )
        .unwrap()
    }

    use crate::types::Signed;

    /// Every kind of damage, done the way someone with write access to the table would, is
    /// named with its position.
    #[test]
    fn damage_kinds_are_named() {
        let key = crate::crypto::KeyPair::generate();
        type Case = (
            &'static str,
            fn(&mut Vec<(AuditEntry, Digest)>),
            Damage,
            u64,
        );
        let cases: Vec<Case> = vec![
            ("edit", |c| c[2].0.kind = "x".into(), Damage::Edit, 3),
            (
                "edit and rehash one entry",
                |c| {
                    c[2].0.detail = serde_json::json!({"n": 99});
                    c[2].1 = c[2].0.hash().unwrap();
                },
                Damage::Edit,
                3,
            ),
            (
                "edit and rehash the second-to-last",
                |c| {
                    c[8].0.detail = serde_json::json!({"n": 99});
                    c[8].1 = c[8].0.hash().unwrap();
                },
                Damage::Edit,
                9,
            ),
            (
                "delete one",
                |c| {
                    c.remove(4);
                },
                Damage::Deletion,
                5,
            ),
            (
                "delete three",
                |c| {
                    c.drain(1..4);
                },
                Damage::Deletion,
                2,
            ),
            ("swap two", |c| c.swap(3, 4), Damage::Reorder, 4),
            (
                "move one back",
                |c| {
                    let e = c.remove(2);
                    c.insert(6, e);
                },
                Damage::Reorder,
                3,
            ),
            (
                "duplicate one",
                |c| {
                    let e = c[3].clone();
                    c.insert(5, e);
                },
                Damage::Insertion,
                6,
            ),
            (
                "insert a forged entry in the middle",
                |c| {
                    let mut forged = c[4].0.clone();
                    forged.kind = "decision.made".into();
                    forged.prev = c[4].1;
                    forged.seq = 6;
                    let h = forged.hash().unwrap();
                    c.insert(5, (forged, h));
                },
                Damage::Insertion,
                7,
            ),
            (
                "insert and renumber everything after",
                |c| {
                    let mut forged = c[4].0.clone();
                    forged.kind = "decision.made".into();
                    c.insert(5, (forged, GENESIS));
                    for (i, e) in c.iter_mut().enumerate() {
                        e.0.seq = i as u64 + 1;
                    }
                    rehash_from(c, 5);
                },
                Damage::Rewritten,
                6,
            ),
            (
                "truncate the tail",
                |c| c.truncate(6),
                Damage::Truncation,
                7,
            ),
        ];
        for (name, damage_fn, damage, position) in cases {
            let mut c = chain(10);
            let cps = [checkpoint(&key, 6, c[5].1), checkpoint(&key, 10, c[9].1)];
            damage_fn(&mut c);
            let got = verify_slice(&c).and_then(|(_, _, hashes)| {
                verify_checkpoints(&hashes, cps.iter(), &key.public()).map(|_| ())
            });
            let err = got.expect_err(name);
            assert_eq!(
                (err.damage, err.position),
                (damage, position),
                "{name}: {err}"
            );
        }
    }

    /// Long chains are hashed on all cores; damage is still found at the right place.
    #[test]
    fn long_chains_verify_in_parallel_and_locate_damage() {
        let c = chain(20_000);
        let head = c[19_999].1;
        assert_eq!(verify_chain(c.clone()).unwrap(), (20_000, head));
        let mut edited = c;
        edited[13_001].0.at += 1;
        let err = verify_chain(edited).unwrap_err();
        assert_eq!((err.damage, err.position), (Damage::Edit, 13_002));
        let squares = par_map(&(0..10_000u64).collect::<Vec<_>>(), |n| n * n);
        assert!(squares
            .iter()
            .enumerate()
            .all(|(i, s)| *s == (i as u64) * (i as u64)));
    }

    /// Hashing the stored canonical bytes gives the protocol's entry hash.
    #[test]
    fn links_from_canonical_text_hash_like_entries() {
        for (entry, hash) in chain(20) {
            let text = crate::canonical::to_canonical_bytes(&entry).unwrap();
            let link = Link::from_canonical_text(&text, hash).unwrap();
            assert_eq!(link.hash, Ok(entry.hash().unwrap()));
            assert_eq!((link.seq, link.prev), (entry.seq, entry.prev));
        }
        let mut text = crate::canonical::to_canonical_bytes(&chain(1)[0].0).unwrap();
        text.insert(1, b' ');
        let spaced = Link::from_canonical_text(&text, GENESIS).unwrap();
        assert_ne!(
            spaced.hash,
            Ok(chain(1)[0].1),
            "bytes, not meaning, are hashed"
        );
        assert!(Link::from_canonical_text(b"{\"v\":2,\"seq\":1}", GENESIS).is_err());
    }

    #[test]
    fn forged_checkpoints_are_named() {
        let key = crate::crypto::KeyPair::generate();
        let other = crate::crypto::KeyPair::generate();
        let c = chain(5);
        let (_, _, hashes) = verify_slice(&c).unwrap();
        let good = checkpoint(&key, 5, c[4].1);
        assert_eq!(
            verify_checkpoints(&hashes, [&good], &key.public()).unwrap(),
            Some(5)
        );
        let by_other = checkpoint(&other, 5, c[4].1);
        let mut altered = good.clone();
        altered.body.seq = 4;
        for cp in [by_other, altered] {
            let err = verify_checkpoints(&hashes, [&cp], &key.public()).unwrap_err();
            assert_eq!(err.damage, Damage::CheckpointForged);
        }
    }

    #[test]
    fn damage_is_located() {
        let mut edited = chain(5);
        edited[2].0.kind = "x".into();
        assert_eq!(verify_chain(edited).unwrap_err().position, 3);

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(verify_chain(deleted).unwrap_err().position, 2);

        let mut swapped = chain(5);
        swapped.swap(3, 4);
        assert_eq!(verify_chain(swapped).unwrap_err().position, 4);
    }
}
