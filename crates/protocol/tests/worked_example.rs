//! Keeps the worked example of `docs/protocol.md` true.
//!
//! Two independent checks:
//!
//! 1. the output of `examples/worked_example.rs` appears in the document verbatim;
//! 2. every value printed there is recomputed here from the document's own strings with the raw
//!    primitives (SHA-256, Ed25519 from the fixed seeds, the strict decoders), so the example
//!    program cannot be wrong in a way that the document then repeats.

// The helpers below are test code too; a failed check is a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use countersign_protocol::audit::{AuditEntry, GENESIS};
use countersign_protocol::canonical::{domain, to_canonical_bytes};
use countersign_protocol::types::Decode;
use countersign_protocol::{
    ApprovalRequest, Decision, DeviceAuth, Event, Receipt, Refusal, Signed, StatusUpdate,
    StreamEvent, Verdict,
};
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest as _, Sha256};

#[allow(dead_code)]
#[path = "../examples/worked_example.rs"]
mod example;

const DOC: &str = include_str!("../../../docs/protocol.md");

/// The value of `key = value` in the document's worked-example block.
fn doc_value(key: &str) -> &'static str {
    let prefix = format!("{key:<24} = ");
    let mut found = DOC.lines().filter_map(|l| l.strip_prefix(prefix.as_str()));
    let v = found
        .next()
        .unwrap_or_else(|| panic!("docs/protocol.md has no line `{key} = ...`"));
    assert!(
        found.next().is_none(),
        "`{key}` appears twice in the document"
    );
    v
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn message(dom: &str, jcs: &str) -> Vec<u8> {
    let mut m = dom.as_bytes().to_vec();
    m.push(0);
    m.extend_from_slice(jcs.as_bytes());
    m
}

/// Checks the domain, lengths, head, digest of one printed message; returns the message bytes.
fn check_message(label: &str, dom: &str) -> Vec<u8> {
    assert_eq!(doc_value(&format!("{label}.domain")), dom);
    let jcs = doc_value(&format!("{label}.jcs"));
    let msg = message(dom, jcs);
    assert_eq!(
        doc_value(&format!("{label}.jcs_len")),
        jcs.len().to_string()
    );
    assert_eq!(
        doc_value(&format!("{label}.message_len")),
        msg.len().to_string()
    );
    assert_eq!(
        doc_value(&format!("{label}.message_head")),
        hex::encode(&msg[..32])
    );
    assert_eq!(doc_value(&format!("{label}.sha256")), sha256_hex(&msg));
    msg
}

/// Signs with the raw Ed25519 primitive and checks the document's signature equals it
/// (Ed25519 is deterministic) and verifies strictly.
fn check_signature(seed: [u8; 32], msg: &[u8], doc_sig: &str) {
    let key = SigningKey::from_bytes(&seed);
    let sig = key.sign(msg);
    assert_eq!(URL_SAFE_NO_PAD.encode(sig.to_bytes()), doc_sig);
    key.verifying_key().verify_strict(msg, &sig).unwrap();
}

#[test]
fn document_contains_the_example_output_verbatim() {
    let out = example::render().unwrap();
    for line in out.lines().filter(|l| !l.is_empty()) {
        assert!(
            DOC.contains(line),
            "docs/protocol.md is out of date; run `cargo run -p countersign-protocol --example \
             worked_example` and paste its output. Missing line:\n{line}"
        );
    }
    assert!(
        DOC.contains(&out),
        "the example block in docs/protocol.md is not verbatim"
    );
}

#[test]
fn keys_and_fingerprints() {
    for (who, seed) in [
        ("gateway", example::GATEWAY_SEED),
        ("device", example::DEVICE_SEED),
    ] {
        let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        assert_eq!(doc_value(&format!("{who}.seed")), hex::encode(seed));
        assert_eq!(
            doc_value(&format!("{who}.public_key")),
            URL_SAFE_NO_PAD.encode(public)
        );
        assert_eq!(doc_value(&format!("{who}.public_hex")), hex::encode(public));
        assert_eq!(
            doc_value(&format!("{who}.fingerprint")),
            sha256_hex(&public)
        );
    }
}

#[test]
fn request_signature_and_digest() {
    let msg = check_message("request", domain::REQUEST);
    check_signature(example::GATEWAY_SEED, &msg, doc_value("request.signature"));

    // The wire form decodes strictly, its body canonicalises to the printed JCS, and the
    // crate's own verification and digest agree with the raw computation.
    let signed = Signed::<ApprovalRequest>::decode(doc_value("request.wire").as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8(to_canonical_bytes(&signed.body).unwrap()).unwrap(),
        doc_value("request.jcs")
    );
    let gateway_key =
        countersign_protocol::PublicKey::parse("k", doc_value("gateway.public_key")).unwrap();
    signed.verify(&gateway_key).unwrap();
    assert_eq!(
        signed.digest().unwrap().to_hex(),
        doc_value("request.sha256")
    );
    assert_eq!(signed.body.gateway, doc_value("gateway.fingerprint"));
}

#[test]
fn decision_binds_the_request_digest() {
    let msg = check_message("decision", domain::DECISION);
    check_signature(example::DEVICE_SEED, &msg, doc_value("decision.signature"));
    let d = Decision::decode(doc_value("decision.jcs").as_bytes()).unwrap();
    assert_eq!(d.request_digest.to_hex(), doc_value("request.sha256"));
    assert_eq!(d.gateway, doc_value("gateway.fingerprint"));
    assert_eq!(d.verdict, Verdict::Approve);
    assert_eq!(
        String::from_utf8(to_canonical_bytes(&d).unwrap()).unwrap(),
        doc_value("decision.jcs")
    );
}

#[test]
fn receipt_binds_the_decision_digest() {
    let msg = check_message("receipt", domain::RECEIPT);
    check_signature(example::GATEWAY_SEED, &msg, doc_value("receipt.signature"));
    let r = Receipt::decode(doc_value("receipt.jcs").as_bytes()).unwrap();
    assert_eq!(r.decision_digest.to_hex(), doc_value("decision.sha256"));
    assert_eq!(r.request_digest.to_hex(), doc_value("request.sha256"));
}

#[test]
fn device_authorization_header() {
    let msg = check_message("device_auth", domain::DEVICE_AUTH);
    check_signature(
        example::DEVICE_SEED,
        &msg,
        doc_value("device_auth.signature"),
    );
    let auth = DeviceAuth::parse_header(doc_value("device_auth.header")).unwrap();
    let device_key =
        countersign_protocol::PublicKey::parse("k", doc_value("device.public_key")).unwrap();
    auth.verify(&device_key, "GET", "/v2/stream").unwrap();
    assert!(auth.verify(&device_key, "GET", "/v2/info").is_err());
    assert_eq!(
        auth.signature.to_base64(),
        doc_value("device_auth.signature")
    );
}

#[test]
fn status_event_envelope_nests_the_signed_status() {
    let msg = check_message("status", domain::STATUS);
    check_signature(example::GATEWAY_SEED, &msg, doc_value("status.signature"));
    let st = StatusUpdate::decode(doc_value("status.jcs").as_bytes()).unwrap();
    assert_eq!(st.seq, 2);
    assert_eq!(st.request_digest.to_hex(), doc_value("request.sha256"));

    let msg = check_message("event", domain::EVENT);
    check_signature(example::GATEWAY_SEED, &msg, doc_value("event.signature"));
    let ev = Signed::<Event>::decode(doc_value("event.wire").as_bytes()).unwrap();
    let gateway_key =
        countersign_protocol::PublicKey::parse("k", doc_value("gateway.public_key")).unwrap();
    ev.verify(&gateway_key).unwrap();
    assert_eq!(ev.body.id, 17);
    assert!(ev.body.audience.includes("alice@example.com", &[]));
    let StreamEvent::Status { status } = &ev.body.payload else {
        panic!("not a status event");
    };
    // The nested status verifies on its own, under its own domain.
    status.verify(&gateway_key).unwrap();
    assert_eq!(
        status.digest().unwrap().to_hex(),
        doc_value("status.sha256")
    );
}

/// The same status sent once to the request's groups: a device is addressed through the groups
/// of its newest membership statement.
#[test]
fn a_group_event_is_addressed_through_membership() {
    let msg = check_message("group_event", domain::EVENT);
    check_signature(
        example::GATEWAY_SEED,
        &msg,
        doc_value("group_event.signature"),
    );
    let ev = Event::decode(doc_value("group_event.jcs").as_bytes()).unwrap();
    assert_eq!(ev.id, 18);
    assert!(ev.audience.includes("alice@example.com", &["dba".into()]));
    assert!(!ev.audience.includes("alice@example.com", &["ops".into()]));
}

#[test]
fn refusal_names_the_refused_decision() {
    let msg = check_message("refusal", domain::REFUSAL);
    check_signature(example::GATEWAY_SEED, &msg, doc_value("refusal.signature"));
    let r = Refusal::decode(doc_value("refusal.jcs").as_bytes()).unwrap();
    assert_eq!(
        r.decision_digest.to_hex(),
        doc_value("refused_decision.sha256")
    );
    assert_eq!(r.request_digest.to_hex(), doc_value("request.sha256"));
    assert_eq!(r.code, "already_decided");
    assert_eq!(r.status_seq, Some(2));
}

#[test]
fn audit_entry_hash() {
    check_message("audit", domain::AUDIT_ENTRY);
    let e = AuditEntry::decode(doc_value("audit.jcs").as_bytes()).unwrap();
    assert_eq!(e.seq, 1);
    assert_eq!(e.prev, GENESIS);
    assert_eq!(e.hash().unwrap().to_hex(), doc_value("audit.sha256"));
}

/// The Python verifier in the document checks the same wire bytes against the same key.
#[test]
fn python_verifier_uses_the_example_values() {
    let start = DOC
        .find("<!-- verifier.py -->")
        .expect("the Python verifier is marked in the document");
    let block = &DOC[start..];
    let block = &block[..block.find("\n```\n").expect("the code block ends")];
    assert!(block.contains(doc_value("request.wire")));
    assert!(block.contains(doc_value("gateway.fingerprint")));
    assert!(block.contains(doc_value("request.sha256")));
}

#[test]
fn passkey_removal_and_the_signed_list() {
    use countersign_protocol::{PasskeyList, PasskeyRemove};
    let msg = check_message("passkey_remove", domain::PASSKEY_CHANGE);
    check_signature(
        example::DEVICE_SEED,
        &msg,
        doc_value("passkey_remove.signature"),
    );
    let remove = PasskeyRemove::decode(doc_value("passkey_remove.jcs").as_bytes()).unwrap();
    let msg = check_message("passkey_list", domain::PASSKEYS);
    check_signature(
        example::GATEWAY_SEED,
        &msg,
        doc_value("passkey_list.signature"),
    );
    let list = PasskeyList::decode(doc_value("passkey_list.jcs").as_bytes()).unwrap();
    // The removed passkey is no longer listed.
    assert!(list.passkeys.iter().all(|p| p.cred_id != remove.cred_id));
}

#[test]
fn challenge_names_the_request_and_its_digest_is_the_webauthn_challenge() {
    let msg = check_message("challenge", domain::CHALLENGE);
    check_signature(
        example::GATEWAY_SEED,
        &msg,
        doc_value("challenge.signature"),
    );
    let body: serde_json::Value = serde_json::from_str(doc_value("challenge.jcs")).unwrap();
    assert_eq!(body["request_digest"], doc_value("request.sha256"));
    assert_eq!(body["approver"], "alice@example.com");
    assert_eq!(
        doc_value("challenge.webauthn"),
        URL_SAFE_NO_PAD.encode(Sha256::digest(&msg))
    );
}

#[test]
fn log_checkpoint_and_cosignature_verify_from_the_raw_primitives() {
    use base64::engine::general_purpose::STANDARD;
    let audit = check_message("audit", domain::AUDIT_ENTRY);
    let mut leaf_input = vec![0u8];
    leaf_input.extend_from_slice(&audit);
    let leaf = Sha256::digest(&leaf_input);
    assert_eq!(doc_value("log.leaf_hash"), hex::encode(leaf));

    let note = doc_value("log.checkpoint").replace("\\n", "\n");
    let (text, sigs) = note.split_once("\n\n").unwrap();
    let text = format!("{text}\n");
    let gw_fp = doc_value("gateway.fingerprint");
    let name = format!("countersign/log/{gw_fp}");
    assert_eq!(
        text,
        format!("{name}\n1\n{}\n", STANDARD.encode(leaf)),
        "a one-leaf tree's root is its leaf hash"
    );
    let gw = SigningKey::from_bytes(&example::GATEWAY_SEED).verifying_key();
    let key_id = |name: &str, alg: u8, key: &[u8; 32]| {
        let mut m = format!("{name}\n").into_bytes();
        m.push(alg);
        m.extend_from_slice(key);
        Sha256::digest(&m)[..4].to_vec()
    };
    let sig = STANDARD
        .decode(
            sigs.trim_end()
                .strip_prefix(&format!("\u{2014} {name} "))
                .unwrap(),
        )
        .unwrap();
    assert_eq!(sig[..4], key_id(&name, 0x01, &gw.to_bytes())[..]);
    gw.verify_strict(
        text.as_bytes(),
        &ed25519_dalek::Signature::from_slice(&sig[4..]).unwrap(),
    )
    .unwrap();

    let device = SigningKey::from_bytes(&example::DEVICE_SEED).verifying_key();
    let dname = format!("countersign/device/{}", doc_value("device.fingerprint"));
    let line = doc_value("log.cosignature_line");
    let cosig = STANDARD
        .decode(line.strip_prefix(&format!("\u{2014} {dname} ")).unwrap())
        .unwrap();
    assert_eq!(cosig.len(), 76);
    assert_eq!(cosig[..4], key_id(&dname, 0x04, &device.to_bytes())[..]);
    let ts = u64::from_be_bytes(cosig[4..12].try_into().unwrap());
    assert_eq!(ts, example::COSIGNED_AT);
    let signed = format!("cosignature/v1\ntime {ts}\n{text}");
    device
        .verify_strict(
            signed.as_bytes(),
            &ed25519_dalek::Signature::from_slice(&cosig[12..]).unwrap(),
        )
        .unwrap();
}
