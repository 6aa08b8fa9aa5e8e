//! Evidence bundles and the gateway log through the real HTTP API: a bundle for each way a
//! request ends verifies offline against the gateway fingerprint, only its requester and
//! auditor tokens may read it, a one-byte change to a signed field, a key or a proof fails with
//! the part named, and the log's checkpoints, entries and proofs verify.

use countersign_protocol::api::paths;
use countersign_protocol::evidence::{self, Evidence};
use countersign_protocol::log::{self as tlog, LogEntry, Proof};
use countersign_protocol::{RequestState, Verdict};
use countersign_test_support::{answer, PairedGateway, Refusal, TestGateway, Uv};

use crate::requests::Requests;
use crate::stages::{approve, org};

pub(crate) async fn get<T: serde::de::DeserializeOwned>(
    h: &TestGateway,
    path: &str,
    token: &str,
) -> Result<T, Refusal> {
    let resp = reqwest::Client::new()
        .get(h.url.join(path).unwrap())
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    answer(resp).await
}

pub(crate) async fn bundle_of(h: &TestGateway, id: &str) -> Evidence {
    get(h, &format!("/v2/requests/{id}/evidence"), &h.token)
        .await
        .unwrap()
}

fn fingerprint(h: &TestGateway) -> String {
    h.gateway_key().fingerprint()
}

/// A request to `approver` alone, decided by `device` with `verdict`: its id.
pub(crate) async fn decided(
    h: &TestGateway,
    device: &mut countersign_test_support::Device,
    approver: &str,
    verdict: Verdict,
) -> String {
    let created = h.create(&[approver], 1, false).await;
    let id = created.request.body.id.clone();
    let (req, ch) = device.request_event(h, &id).await;
    device
        .decide(h, &req, Some(&ch), verdict, None, Uv::Yes)
        .await
        .unwrap();
    id
}

/// Verifies `b` and checks what it shows.
fn verified(h: &TestGateway, b: &Evidence, state: RequestState, verdicts: &[&str]) {
    let v = evidence::verify(b, Some(&fingerprint(h))).unwrap();
    assert_eq!(v.state, state);
    let got: Vec<_> = v.decisions.iter().map(|d| d.1.as_str()).collect();
    assert_eq!(got, verdicts);
    // The same bundle read by the CLI's code path (from the store) is the same evidence.
    let again = countersign_gateway::evidence::bundle(h.gw(), &b.request.body.id).unwrap();
    assert_eq!(again.request, b.request);
    assert_eq!(again.decisions, b.decisions);
    assert_eq!(again.devices, b.devices);
}

#[tokio::test]
async fn an_approval_with_a_match_code_has_evidence_that_verifies_and_only_its_readers_get_it() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let created = h.create(&["alice@example.com"], 1, true).await;
    let id = created.request.body.id.clone();
    let code = created.match_code.clone().unwrap();
    let (req, ch) = alice.request_event(&h, &id).await;
    alice
        .decide(&h, &req, Some(&ch), Verdict::Approve, Some(&code), Uv::Yes)
        .await
        .unwrap();
    let b = bundle_of(&h, &id).await;
    verified(&h, &b, RequestState::Approved, &["approve"]);
    assert_eq!(
        b.decisions[0].decision.body.match_code.as_deref(),
        Some(code.as_str())
    );
    assert!(b.decisions[0].decision.body.assertion.is_some());
    assert_eq!(b.devices.len(), 1);
    assert_eq!(b.devices[0].body.device_key, alice.key.public());
    let kinds: Vec<_> = b
        .log
        .entries
        .iter()
        .map(|e| e.entry.kind.as_str())
        .collect();
    assert!(kinds.contains(&"request.created") && kinds.contains(&"decision.accepted"));

    // Another gateway's fingerprint: refused, naming the key.
    let e = evidence::verify(&b, Some(&"0".repeat(64))).unwrap_err();
    assert_eq!(e.what, "gateway_key");

    // An auditor token reads it; another requester's token does not; an auditor token cannot
    // create requests.
    let auditor = countersign_gateway::tokens::create_auditor(h.gw(), "audit-team").unwrap();
    let path = format!("/v2/requests/{id}/evidence");
    let by_auditor: Evidence = get(&h, &path, &auditor).await.unwrap();
    assert_eq!(by_auditor.request, b.request);
    let other = countersign_gateway::tokens::create(h.gw(), "someone-else").unwrap();
    let err = get::<Evidence>(&h, &path, &other).await.unwrap_err();
    assert_eq!(
        (err.status, err.code()),
        (403, Some("auditor_token_required"))
    );
    let resp = reqwest::Client::new()
        .post(h.url.join(paths::REQUESTS).unwrap())
        .bearer_auth(&auditor)
        .json(&h.default_request())
        .send()
        .await
        .unwrap();
    let err = answer::<serde_json::Value>(resp).await.unwrap_err();
    assert_eq!((err.status, err.code()), (403, Some("read_only_token")));
    // The approver's own device reads it; another approver's device is told it does not exist.
    let by_device: Evidence = alice.get_json(&h, &path, &path).await;
    assert_eq!(by_device.request, b.request);
    let bob = h.pair("bob@example.com").await;
    let err = bob
        .get_answer::<Evidence>(&h, &path, &path)
        .await
        .unwrap_err();
    assert_eq!((err.status, err.code()), (404, Some("unknown_request")));
    let err = get::<Evidence>(&h, "/v2/requests/no-such-request/evidence", &auditor)
        .await
        .unwrap_err();
    assert_eq!((err.status, err.code()), (404, Some("unknown_request")));
}

#[tokio::test]
async fn two_stages_denied_expired_and_withdrawn_requests_have_evidence_that_verifies() {
    // Two stages, approved by a DBA and a manager.
    let mut o = org().await;
    let created = o.h.create_with(|n| n.approvers.clear()).await;
    let id = created.request.body.id.clone();
    approve(&mut o.bob, &o.h, &id).await;
    approve(&mut o.carl, &o.h, &id).await;
    let b = bundle_of(&o.h, &id).await;
    verified(&o.h, &b, RequestState::Approved, &["approve", "approve"]);
    assert_eq!(b.devices.len(), 2);

    let h = TestGateway::start_with(|c| c.expiry_sweep_ms = 3_600_000).await;
    let mut alice = h.pair("alice@example.com").await;

    // Denied.
    let denied = decided(&h, &mut alice, "alice@example.com", Verdict::Deny).await;
    let b = bundle_of(&h, &denied).await;
    verified(&h, &b, RequestState::Denied, &["deny"]);

    // Withdrawn by its requester.
    let withdrawn = h.create_with(|n| n.summary = "withdrawn".into()).await;
    let resp = reqwest::Client::new()
        .post(
            h.url
                .join(&format!(
                    "/v2/requests/{}/withdraw",
                    withdrawn.request.body.id
                ))
                .unwrap(),
        )
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    answer::<serde_json::Value>(resp).await.unwrap();
    let b = bundle_of(&h, &withdrawn.request.body.id).await;
    verified(&h, &b, RequestState::Withdrawn, &[]);
    assert!(b
        .log
        .entries
        .iter()
        .any(|e| e.entry.kind == "request.withdrawn"));

    // Expired.
    let expired = h
        .create_with(|n| {
            n.summary = "expires".into();
            n.ttl_seconds = 60;
        })
        .await;
    h.running.gateway.clock.shift(61);
    countersign_gateway::approvals::expire_due(&h.running.gateway).unwrap();
    let b = bundle_of(&h, &expired.request.body.id).await;
    verified(&h, &b, RequestState::Expired, &[]);
    assert!(b
        .log
        .entries
        .iter()
        .any(|e| e.entry.kind == "request.expired"));
}

/// Changes one character of the string at `pointer` (or adds one to the number there).
fn mutate(v: &serde_json::Value, pointer: &str, at: usize) -> serde_json::Value {
    let mut v = v.clone();
    let target = v
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer}"));
    match target {
        serde_json::Value::String(s) => {
            let mut chars: Vec<char> = s.chars().collect();
            let i = at.min(chars.len() - 1);
            chars[i] = match chars[i] {
                'A' => 'B',
                '0' => '1',
                _ => 'A',
            };
            *s = chars.into_iter().collect();
        }
        serde_json::Value::Number(n) => *target = serde_json::json!(n.as_u64().unwrap() + 1),
        other => panic!("{pointer} is {other}"),
    }
    v
}

#[tokio::test]
async fn a_one_byte_change_to_any_signed_field_key_or_proof_fails_naming_the_part() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let id = decided(&h, &mut alice, "alice@example.com", Verdict::Approve).await;
    let b = bundle_of(&h, &id).await;
    let fp = fingerprint(&h);
    let verified = evidence::verify(&b, Some(&fp)).unwrap();
    // The assertion answered a challenge the gateway signed for this request and approver.
    assert_eq!(verified.bound_challenges, 1);
    let challenge = b.decisions[0].challenge.as_ref().unwrap();
    assert_eq!(challenge.body.approver, "alice@example.com");
    assert_eq!(challenge.body.request_digest, b.request.digest().unwrap());
    assert_eq!(
        b.decisions[0].receipt.body.challenge_digest,
        Some(challenge.digest().unwrap())
    );
    let v = serde_json::to_value(&b).unwrap();
    // Every status pushed, ending with the current one.
    assert_eq!(b.statuses.last(), Some(&b.status));
    let cases: [(&str, usize, &str); 23] = [
        ("/statuses/0/signature", 4, "statuses[0]"),
        ("/statuses/0/body/state", 0, "statuses"),
        (
            "/decisions/0/challenge/body/approver",
            0,
            "decisions[0].challenge",
        ),
        (
            "/decisions/0/challenge/body/nonce",
            5,
            "decisions[0].challenge",
        ),
        (
            "/decisions/0/challenge/signature",
            5,
            "decisions[0].challenge",
        ),
        ("/passkeys/0/record/body/public_key", 20, "passkeys[0]"),
        ("/passkeys/0/record/signature", 9, "passkeys[0]"),
        ("/request/body/summary", 0, "request"),
        ("/request/body/detail", 3, "request"),
        ("/request/body/expires_at", 0, "request"),
        ("/request/signature", 10, "request"),
        ("/status/body/state", 0, "status"),
        ("/status/signature", 5, "status"),
        ("/decisions/0/decision/body/verdict", 0, "decisions[0]"),
        (
            "/decisions/0/decision/body/assertion/response/signature",
            8,
            "decisions[0]",
        ),
        ("/decisions/0/decision/signature", 20, "decisions[0]"),
        (
            "/decisions/0/receipt/body/accepted_at",
            0,
            "decisions[0].receipt",
        ),
        ("/decisions/0/receipt/signature", 3, "decisions[0].receipt"),
        ("/devices/0/body/device_key", 7, "devices[0]"),
        ("/devices/0/signature", 7, "devices[0]"),
        ("/log/checkpoint", 70, "log.checkpoint"),
        ("/log/entries/0/proof/0", 4, "log.entries[0]"),
        ("/log/entries/0/entry/at", 0, "log.entries[0]"),
    ];
    let mut checked = 0;
    for (pointer, at, part) in cases {
        let changed = mutate(&v, pointer, at);
        let Ok(bundle) = serde_json::from_value::<Evidence>(changed) else {
            // Not even a bundle any more (a key that is no longer a key): refused on reading.
            continue;
        };
        checked += 1;
        let err = evidence::verify(&bundle, Some(&fp)).unwrap_err();
        assert!(
            err.what.starts_with(part),
            "{pointer}: failed at {} ({}), expected {part}",
            err.what,
            err.problem
        );
    }
    // Only a changed key or state can fail to decode; every other change reached the check.
    assert!(
        checked >= 13,
        "{checked} of 16 changes reached the verifier"
    );
    // Another challenge of the gateway's, validly signed for this request and approver, in
    // place of the one answered: the receipt names the other.
    let mut other = b.clone();
    let mut body = challenge.body.clone();
    body.nonce = "B".repeat(43);
    other.decisions[0].challenge =
        Some(countersign_protocol::Signed::sign(&h.gw().key, body).unwrap());
    let err = evidence::verify(&other, Some(&fp)).unwrap_err();
    assert_eq!(err.what, "decisions[0].challenge", "{err}");
    assert!(err.problem.contains("another challenge"), "{err}");
    // Dropped from the bundle: named.
    let mut dropped = b.clone();
    dropped.decisions[0].challenge = None;
    let err = evidence::verify(&dropped, Some(&fp)).unwrap_err();
    assert_eq!(err.what, "decisions[0].challenge", "{err}");
    // A bundle with an entry dropped still verifies what it holds only if the creation and
    // each acceptance are there: dropping the acceptance is caught.
    let mut cut = b.clone();
    cut.log
        .entries
        .retain(|e| e.entry.kind != "decision.accepted");
    let err = evidence::verify(&cut, Some(&fp)).unwrap_err();
    assert_eq!(err.what, "decisions[0]");
}

#[tokio::test]
async fn the_log_serves_checkpoints_entries_and_proofs_that_verify() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let auditor = countersign_gateway::tokens::create_auditor(h.gw(), "audit-team").unwrap();
    let key = h.gateway_key();

    let note = |h: &TestGateway| {
        let url = h.url.join(paths::LOG_CHECKPOINT).unwrap();
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let first = tlog::verify_checkpoint(&note(&h).await, &key).unwrap();
    assert!(first.size > 0);

    decided(&h, &mut alice, "alice@example.com", Verdict::Approve).await;
    let (size, _) = countersign_gateway::tlog::checkpoint(h.gw()).unwrap();
    let second = tlog::verify_checkpoint(&note(&h).await, &key).unwrap();
    assert_eq!(second.size, size);
    assert!(second.size > first.size);

    // Consistency from the first checkpoint to the second, for an auditor and a device.
    let path = format!(
        "{}?old={}&size={}",
        paths::LOG_CONSISTENCY,
        first.size,
        second.size
    );
    let p: Proof = get(&h, &path, &auditor).await.unwrap();
    p.check_consistency(first.size, &first.root, second.size, &second.root)
        .unwrap();
    let by_device: Proof = alice.get_json(&h, paths::LOG_CONSISTENCY, &path).await;
    assert_eq!(by_device, p);

    // Every entry, read as an auditor, is in the second tree.
    let resp = reqwest::Client::new()
        .get(
            h.url
                .join(&format!(
                    "{}?start=0&end={}",
                    paths::LOG_ENTRIES,
                    second.size
                ))
                .unwrap(),
        )
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let entries: Vec<LogEntry> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len() as u64, second.size);
    for e in &entries {
        let path = format!(
            "{}?index={}&size={}",
            paths::LOG_INCLUSION,
            e.index,
            second.size
        );
        let p: Proof = get(&h, &path, &auditor).await.unwrap();
        p.check_inclusion(
            second.size,
            &second.root,
            &tlog::leaf_hash(&e.entry).unwrap(),
        )
        .unwrap();
    }
    // The requester's token reads no entries; a range past the end is refused.
    let err = get::<serde_json::Value>(
        &h,
        &format!("{}?start=0&end=1", paths::LOG_ENTRIES),
        &h.token,
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.status, err.code()),
        (403, Some("auditor_token_required"))
    );
    let past = format!(
        "{}?index={}&size={}",
        paths::LOG_INCLUSION,
        0,
        second.size + 100
    );
    let err = get::<Proof>(&h, &past, &auditor).await.unwrap_err();
    assert_eq!((err.status, err.code()), (400, Some("bad_log_range")));
    let resp = reqwest::get(h.url.join(paths::LOG_CONSISTENCY).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn a_rewritten_log_is_caught_by_a_checkpoint_held_from_before() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let id = decided(&h, &mut alice, "alice@example.com", Verdict::Deny).await;
    let key = h.gateway_key();
    // An auditor (or a witness) keeps this checkpoint.
    let (_, held) = countersign_gateway::tlog::checkpoint(h.gw()).unwrap();
    let held = tlog::verify_checkpoint(&held, &key).unwrap();
    assert_eq!(
        countersign_gateway::tlog::verify_tree(h.gw()).unwrap(),
        Some(held.size)
    );

    let db = countersign_test_support::rewrite::RawDb::of(&h.gw().config);
    // An edit that leaves the hashes alone: `audit verify`'s tree check fails.
    let (seq, text) = db
        .audit_rows()
        .into_iter()
        .find(|(_, t)| t.contains("\"decision.accepted\""))
        .unwrap();
    let edited = text.replace("\"deny\"", "\"approve\"");
    assert_ne!(edited, text);
    db.set_audit(seq, &edited, None);
    assert!(countersign_gateway::tlog::verify_tree(h.gw()).is_err());

    // A consistent rewrite by whoever runs the gateway: every hash after the edit recomputed,
    // the tree rebuilt and a new checkpoint signed with the gateway key. It is consistent in
    // itself, and the chain and the tree verify...
    drop(db);
    countersign_test_support::rewrite::rewrite_gateway_log_of(&h.gw().config, |_| None);
    h.gw().store.write(|tx| tx.log_backfill()).unwrap();
    let (_, rewritten) = countersign_gateway::tlog::checkpoint(h.gw()).unwrap();
    let rewritten = tlog::verify_checkpoint(&rewritten, &key).unwrap();
    assert_eq!(rewritten.size, held.size);
    assert!(countersign_protocol::audit::verify_chain(h.audit()).is_ok());
    assert_eq!(
        countersign_gateway::tlog::verify_tree(h.gw()).unwrap(),
        Some(held.size)
    );
    // ... and the evidence cut from it verifies on its own, showing the forged "approve"...
    let b = bundle_of(&h, &id).await;
    assert!(b
        .log
        .entries
        .iter()
        .any(|e| e.entry.detail["verdict"] == "approve"));
    // ... but not against the checkpoint held from before: same size, another root (a fork),
    // and no consistency proof the gateway can give bridges them.
    assert_ne!(rewritten.root, held.root);
    let p = countersign_gateway::tlog::consistency(h.gw(), held.size, rewritten.size).unwrap();
    assert!(p
        .check_consistency(held.size, &held.root, rewritten.size, &rewritten.root)
        .is_err());
    // Once the log grows, the proof from the held checkpoint fails too.
    h.create_with(|n| n.summary = "later".into()).await;
    let (_, grown) = countersign_gateway::tlog::checkpoint(h.gw()).unwrap();
    let grown = tlog::verify_checkpoint(&grown, &key).unwrap();
    let p = countersign_gateway::tlog::consistency(h.gw(), held.size, grown.size).unwrap();
    assert!(p
        .check_consistency(held.size, &held.root, grown.size, &grown.root)
        .is_err());
}
