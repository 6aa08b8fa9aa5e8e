//! Devices as witnesses of the gateway log, through the real HTTP API: every new checkpoint is
//! one `checkpoint` event to every device (a backlog holds only the newest), a device's
//! cosignature is kept once it verifies under that device's key and refused otherwise, and
//! evidence bundles carry the cosignatures with their witnesses' pairing records, which the
//! verifier checks.

use countersign_protocol::api::paths;
use countersign_protocol::evidence;
use countersign_protocol::log::{self as tlog, Cosignature, CosignatureAck, Proof};
use countersign_protocol::Verdict;
use countersign_test_support::{PairedGateway, Refusal, TestGateway};

use crate::evidence::{bundle_of, decided, get};
use crate::requests::Requests;

const NOW: u64 = 1_800_000_000;

#[tokio::test]
async fn checkpoints_reach_every_device_and_their_cosignatures_travel_in_evidence() {
    let h = TestGateway::start().await;
    let key = h.gateway_key();
    let mut alice = h.pair("alice@example.com").await;
    let mut bob = h.pair("bob@example.com").await;
    let id = decided(&h, &mut alice, "alice@example.com", Verdict::Deny).await;
    let (first, _) = countersign_gateway::tlog::checkpoint(h.gw()).unwrap();
    h.create_with(|n| n.summary = "later".into()).await;
    let (second, _) = countersign_gateway::tlog::checkpoint(h.gw()).unwrap();
    assert!(second > first);

    // One event to everyone, and only the newest stays in a backlog: bob, reading his for the
    // first time, gets that one alone; alice, who read hers before, gets it too.
    alice.drain(&h).await;
    bob.drain(&h).await;
    assert_eq!(bob.checkpoints.len(), 1, "{:?}", bob.checkpoints);
    assert_eq!(alice.checkpoints.last(), bob.checkpoints.last());
    let held = tlog::verify_checkpoint(&bob.checkpoints[0], &key).unwrap();
    assert!(held.size >= second);
    // A device reads the consistency proof from an earlier checkpoint to it.
    let query = format!("{}?old={first}&size={}", paths::LOG_CONSISTENCY, held.size);
    let proof: Proof = alice.get_json(&h, paths::LOG_CONSISTENCY, &query).await;
    let old = countersign_gateway::tlog::covering(h.gw(), first).unwrap();
    let old = tlog::verify_checkpoint(&old.1, &key).unwrap();
    assert_eq!(old.size, first);
    proof
        .check_consistency(first, &old.root, held.size, &held.root)
        .unwrap();

    // Alice co-signs it; the gateway keeps it, once.
    let cosignature = tlog::cosign(&alice.key, &alice.id, &held, NOW);
    for _ in 0..2 {
        let ack: CosignatureAck = alice
            .post_answer(&h, paths::LOG_COSIGNATURES, &cosignature)
            .await
            .unwrap();
        assert_eq!(ack.size, held.size);
    }

    // Refused: another device's cosignature, one by the wrong key, one of another root, one
    // of a size never signed, and none without a device.
    let refused = |r: Result<CosignatureAck, Refusal>| {
        let e = r.unwrap_err();
        (e.status, e.code().unwrap_or_default().to_owned())
    };
    let r = bob
        .post_answer(&h, paths::LOG_COSIGNATURES, &cosignature)
        .await;
    assert_eq!(refused(r), (400, "invalid_message".into()));
    let forged = Cosignature {
        device_id: bob.id.clone(),
        ..cosignature.clone()
    };
    let r = bob.post_answer(&h, paths::LOG_COSIGNATURES, &forged).await;
    assert_eq!(refused(r), (400, "bad_cosignature".into()));
    let mut other_root = tlog::cosign(&bob.key, &bob.id, &held, NOW);
    other_root.root = tlog::hash_to_string(&old.root);
    let r = bob
        .post_answer(&h, paths::LOG_COSIGNATURES, &other_root)
        .await;
    assert_eq!(refused(r), (400, "bad_cosignature".into()));
    let unknown = Cosignature {
        size: held.size + 1000,
        ..tlog::cosign(&bob.key, &bob.id, &held, NOW)
    };
    let r = bob.post_answer(&h, paths::LOG_COSIGNATURES, &unknown).await;
    assert_eq!(refused(r), (404, "unknown_checkpoint".into()));
    let resp = reqwest::Client::new()
        .post(h.url.join(paths::LOG_COSIGNATURES).unwrap())
        .json(&cosignature)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // The bundle is proven against the cosigned checkpoint, with alice as its witness.
    let b = bundle_of(&h, &id).await;
    assert!(b.log.checkpoint.starts_with(&held.text));
    assert_eq!(b.log.witnesses.len(), 1);
    assert_eq!(b.log.witnesses[0].body.device_id, alice.id);
    let v = evidence::verify(&b, Some(&key.fingerprint())).unwrap();
    assert_eq!(v.witnessed_by, vec![alice.id.clone()]);
    assert_eq!(v.log_size, held.size);

    // A witness whose cosignature is gone, or changed, fails the bundle.
    let mut cut = b.clone();
    cut.log.checkpoint = tlog::with_cosignatures(&held_note(&b.log.checkpoint), &[]);
    let e = evidence::verify(&cut, None).unwrap_err();
    assert_eq!(e.what, "log.witnesses[0]", "{e}");
    let mut changed = b.clone();
    let line_at = changed
        .log
        .checkpoint
        .rfind("\u{2014} countersign/device/")
        .unwrap();
    let sig_at = changed.log.checkpoint[line_at..].rfind(' ').unwrap() + line_at + 20;
    let flipped = if changed.log.checkpoint.as_bytes()[sig_at] == b'A' {
        "B"
    } else {
        "A"
    };
    changed
        .log
        .checkpoint
        .replace_range(sig_at..sig_at + 1, flipped);
    let e = evidence::verify(&changed, None).unwrap_err();
    assert!(e.what.starts_with("log."), "{e}");
    // A witness the gateway did not pair fails on its record.
    let mut stranger = b.clone();
    stranger.log.witnesses[0].body.approver = "mallory@example.com".into();
    let e = evidence::verify(&stranger, None).unwrap_err();
    assert_eq!(e.what, "log.witnesses[0]", "{e}");
}

/// The gateway-signed note of a checkpoint that may carry cosignatures: its text and first
/// signature line.
fn held_note(note: &str) -> String {
    let mut lines = note.split_inclusive('\n');
    let mut out = String::new();
    for line in lines.by_ref() {
        out.push_str(line);
        if line == "\n" {
            break;
        }
    }
    out.push_str(lines.next().unwrap());
    out
}

/// The gateway acknowledges the audit checkpoint it holds for a device with a signed
/// CheckpointAck, on the device's own endpoints and, for an auditor, on
/// `GET /v2/devices/{id}/checkpoint`.
#[tokio::test]
async fn a_held_device_checkpoint_comes_with_a_signed_acknowledgement_an_auditor_can_read() {
    use countersign_protocol::api::CheckpointState;
    let h = TestGateway::start().await;
    let key = h.gateway_key();
    let alice = h.pair("alice@example.com").await;
    let path = format!("/v2/devices/{}/checkpoint", alice.id);
    let auditor = countersign_gateway::tokens::create_auditor(h.gw(), "audit-team").unwrap();
    let none: CheckpointState = get(&h, &path, &auditor).await.unwrap();
    assert_eq!((none.checkpoint, none.ack), (None, None));

    let cp = alice.checkpoint(10, 1);
    let state = alice.upload_checkpoint(&h, &cp).await.unwrap();
    let ack = state.ack.unwrap();
    ack.verify(&key).unwrap();
    let b = &ack.body;
    assert_eq!(
        (b.gateway.as_str(), b.device_id.as_str(), b.seq, b.head),
        (
            key.fingerprint().as_str(),
            alice.id.as_str(),
            10,
            cp.body.head
        )
    );
    assert_eq!(b.signer, alice.key.public().fingerprint());

    let read: CheckpointState = get(&h, &path, &auditor).await.unwrap();
    assert_eq!(read.checkpoint, Some(cp));
    assert_eq!(read.ack.unwrap().body.seq, 10);
    // Only auditors read it, and only of a device the gateway paired.
    let e = get::<CheckpointState>(&h, &path, &h.token)
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code()), (403, Some("auditor_token_required")));
    let e = get::<CheckpointState>(&h, "/v2/devices/no-such-device/checkpoint", &auditor)
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code()), (404, Some("unknown_device")));
}
