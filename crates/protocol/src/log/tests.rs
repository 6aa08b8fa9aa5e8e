//! The tree against the RFC 6962 test data of Certificate Transparency (the eight leaves of
//! its `merkle_tree_test` and their roots, inclusion and consistency proofs), the note format
//! against Go's checksum-database note vector, and the cosignature against the C2SP
//! `tlog-cosignature` example.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::*;
use crate::crypto::{KeyPair, PublicKey};
use signed_note::Verifier as _;

const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn h(hex: &str) -> Hash {
    Hash(hex::decode(hex).unwrap().try_into().unwrap())
}

fn tree() -> MemoryHashes {
    MemoryHashes::from_leaves(
        LEAVES
            .iter()
            .map(|l| tlog::record_hash(&hex::decode(l).unwrap())),
    )
    .unwrap()
}

fn leaf(i: usize) -> Hash {
    tlog::record_hash(&hex::decode(LEAVES[i]).unwrap())
}

fn proof_hashes(p: &Proof) -> Vec<String> {
    p.hashes
        .iter()
        .map(|s| hex::encode(parse_hash(s).unwrap().0))
        .collect()
}

#[test]
fn roots_match_rfc6962_test_data() {
    let t = tree();
    assert_eq!(t.leaves(), 8);
    for (n, want) in ROOTS.iter().enumerate() {
        assert_eq!(
            root(n as u64 + 1, &t).unwrap(),
            h(want),
            "root of {}",
            n + 1
        );
    }
    assert_eq!(root(0, &t).unwrap(), tlog::EMPTY_HASH);
}

#[test]
fn inclusion_proofs_match_rfc6962_test_data() {
    let t = tree();
    // (leaf, tree size, path) from Certificate Transparency's merkle_tree_test.
    let cases: [(u64, u64, &[&str]); 4] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
    ];
    for (index, size, path) in cases {
        let p = Proof::inclusion(size, index, &t).unwrap();
        assert_eq!(proof_hashes(&p), path, "leaf {index} of {size}");
        p.check_inclusion(size, &h(ROOTS[size as usize - 1]), &leaf(index as usize))
            .unwrap();
    }
    // Every leaf of every tree, and a wrong leaf or root fails.
    for size in 1..=8u64 {
        let r = h(ROOTS[size as usize - 1]);
        for index in 0..size {
            let p = Proof::inclusion(size, index, &t).unwrap();
            p.check_inclusion(size, &r, &leaf(index as usize)).unwrap();
            let other = leaf(((index + 1) % 8) as usize);
            if size > 1 {
                assert!(p.check_inclusion(size, &r, &other).is_err());
            }
            assert!(p
                .check_inclusion(size, &tlog::EMPTY_HASH, &leaf(index as usize))
                .is_err());
        }
    }
    assert!(matches!(
        Proof::inclusion(8, 8, &t),
        Err(LogError::OutOfRange { index: 8, size: 8 })
    ));
}

#[test]
fn consistency_proofs_match_rfc6962_test_data() {
    let t = tree();
    let cases: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (old, size, path) in cases {
        let p = Proof::consistency(size, old, &t).unwrap();
        assert_eq!(proof_hashes(&p), path, "{old} to {size}");
    }
    for size in 1..=8u64 {
        let r = h(ROOTS[size as usize - 1]);
        for old in 0..=size {
            let old_root = if old == 0 {
                tlog::EMPTY_HASH
            } else {
                h(ROOTS[old as usize - 1])
            };
            let p = Proof::consistency(size, old, &t).unwrap();
            p.check_consistency(old, &old_root, size, &r).unwrap();
            if old > 0 && old < size {
                // A fork: the old tree with another root.
                assert!(p.check_consistency(old, &r, size, &r).is_err());
                // A proof with one hash changed.
                let mut bad = p.clone();
                let mut first = parse_hash(&bad.hashes[0]).unwrap();
                first.0[0] ^= 1;
                bad.hashes[0] = hash_to_string(&first);
                assert!(bad.check_consistency(old, &old_root, size, &r).is_err());
            }
        }
    }
    // Same size, different roots: a fork.
    let p = Proof::consistency(3, 3, &t).unwrap();
    assert!(p
        .check_consistency(3, &h(ROOTS[2]), 3, &h(ROOTS[3]))
        .is_err());
}

#[test]
fn the_stored_layout_counts_its_leaves() {
    let mut t = MemoryHashes::default();
    for n in 0..300u64 {
        assert_eq!(t.leaves(), n);
        assert_eq!(first_stored_index(n), t.0.len() as u64);
        t.push(tlog::record_hash(&n.to_be_bytes())).unwrap();
    }
}

/// Go's golang.org/x/mod/sumdb/note example: the key `PeterNeumann+c74f20a3+ARpc...` and
/// its signature of a two-line note. Our key id (type 0x01) and Ed25519 verifier agree.
#[test]
fn note_signature_matches_go_vector() {
    let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let text = "If you think cryptography is the answer to your problem,\n\
                then you don't know what your problem is.\n";
    let sig = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";
    let material = STANDARD.decode(vkey.rsplit('+').next().unwrap()).unwrap();
    assert_eq!(material[0], ALG_ED25519);
    let key = PublicKey::from_bytes("key", &material[1..]).unwrap();
    assert_eq!(key_id("PeterNeumann", ALG_ED25519, &key), 0xc74f20a3);
    let raw = STANDARD.decode(sig).unwrap();
    assert_eq!(raw[..4], 0xc74f20a3u32.to_be_bytes());
    let v = LogVerifier {
        name: "PeterNeumann".into(),
        id: 0xc74f20a3,
        key,
    };
    assert!(v.verify(text.as_bytes(), &raw[4..]));
    assert!(!v.verify(b"If you think", &raw[4..]));
}

/// The C2SP tlog-cosignature example: its witness line decodes to a key id, the timestamp
/// 1679315147 of the specification's signed-message example, and a 64-byte signature.
#[test]
fn cosignature_line_matches_c2sp_example() {
    let line = "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
    let raw = STANDARD.decode(line).unwrap();
    assert_eq!(raw.len(), 76);
    let (ts, _) = split_timestamped(&raw[4..]).unwrap();
    assert_eq!(ts, 1679315147);
    assert_eq!(
        cosigned_message(ts, b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"),
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    );
}

#[test]
fn checkpoints_sign_and_verify_and_refuse_changes() {
    let gw = KeyPair::from_seed(&[7; 32]);
    let t = tree();
    let r = root(8, &t).unwrap();
    let note = sign_checkpoint(&gw, 8, &r);
    let fp = gw.public().fingerprint();
    assert!(note.starts_with(&format!("countersign/log/{fp}\n8\n")));
    assert!(note.contains(&format!("\n\n\u{2014} countersign/log/{fp} ")));
    let cp = verify_checkpoint(&note, &gw.public()).unwrap();
    assert_eq!((cp.size, cp.root), (8, r));

    let other = KeyPair::from_seed(&[8; 32]);
    assert!(matches!(
        verify_checkpoint(&note, &other.public()),
        Err(LogError::WrongOrigin { .. })
    ));
    // Each character of the body changed: refused.
    let body_len = note.find("\n\n").unwrap();
    for i in 0..body_len {
        let mut bytes = note.clone().into_bytes();
        if bytes[i] == b'\n' {
            continue;
        }
        bytes[i] = if bytes[i] == b'1' { b'2' } else { b'1' };
        let changed = String::from_utf8(bytes).unwrap();
        assert!(
            verify_checkpoint(&changed, &gw.public()).is_err(),
            "byte {i} changed"
        );
    }
    // The signature's last byte changed.
    let mut sig_changed = note.trim_end().to_owned();
    let last = sig_changed.pop().unwrap();
    sig_changed.push(if last == 'A' { 'B' } else { 'A' });
    sig_changed.push('\n');
    assert!(verify_checkpoint(&sig_changed, &gw.public()).is_err());
}

#[test]
fn cosignatures_verify_under_the_device_key_only() {
    let gw = KeyPair::from_seed(&[7; 32]);
    let device = KeyPair::from_seed(&[9; 32]);
    let t = tree();
    let note = sign_checkpoint(&gw, 5, &root(5, &t).unwrap());
    let cp = verify_checkpoint(&note, &gw.public()).unwrap();
    let c = cosign(&device, "dev-1", &cp, 1_767_225_600);
    let line = c.verify(&cp, &device.public()).unwrap();
    let witnessed = with_cosignatures(&note, &[line]);
    // The gateway signature still verifies with the cosignature line added.
    assert_eq!(verify_checkpoint(&witnessed, &gw.public()).unwrap(), cp);
    let fp = device.public().fingerprint();
    assert_eq!(
        verify_cosignatures(
            &witnessed,
            &[Witness {
                key: device.public()
            }]
        )
        .unwrap(),
        vec![fp]
    );
    // An unknown witness is skipped.
    let stranger = KeyPair::from_seed(&[10; 32]);
    assert!(verify_cosignatures(
        &witnessed,
        &[Witness {
            key: stranger.public()
        }]
    )
    .unwrap()
    .is_empty());
    // Another device's key, another checkpoint, another timestamp: refused.
    assert!(c.verify(&cp, &stranger.public()).is_err());
    let cp6 = verify_checkpoint(
        &sign_checkpoint(&gw, 6, &root(6, &t).unwrap()),
        &gw.public(),
    )
    .unwrap();
    assert!(c.verify(&cp6, &device.public()).is_err());
    let mut later = c.clone();
    later.timestamp += 1;
    assert!(later.verify(&cp, &device.public()).is_err());
    let mut flipped = c.clone();
    let mut raw = STANDARD.decode(&flipped.signature).unwrap();
    raw[40] ^= 1;
    flipped.signature = STANDARD.encode(raw);
    assert!(flipped.verify(&cp, &device.public()).is_err());
}

#[test]
fn leaves_are_entry_signing_messages() {
    let entry = AuditEntry {
        v: 1,
        seq: 1,
        at: 0,
        kind: "gateway.started".into(),
        request_id: None,
        detail: serde_json::json!({}),
        prev: crate::audit::GENESIS,
    };
    let text = to_canonical_bytes(&entry).unwrap();
    let mut data = b"countersign/v1/audit-entry\0".to_vec();
    data.extend_from_slice(&text);
    let mut leaf_input = vec![0u8];
    leaf_input.extend_from_slice(&data);
    use sha2::Digest as _;
    assert_eq!(
        leaf_hash(&entry).unwrap().0.to_vec(),
        sha2::Sha256::digest(&leaf_input).to_vec()
    );
}
