#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The gateway's HTTP API driven over real loopback HTTP, with a real SQLite file and the
//! software authenticator from webauthn-authenticator-rs as the approver's passkey. These tests
//! speak the protocol directly (no approver engine), so each gateway rule is checked on its own.

mod attestation;
mod audience;
mod devices;
mod directory;
mod email;
mod evidence;
mod github;
mod grants;
mod kubernetes;
mod operations;
mod passkeys;
mod policy;
mod refusals;
mod requests;
mod stages;
mod webhooks;
mod witnesses;

use countersign_protocol::{RequestState, Verdict};
use countersign_test_support::{request_id, PairedGateway, TestGateway, Uv};
use refusals::Refusals;
use requests::Requests;

#[tokio::test]
async fn approve_releases_the_request_with_a_signed_receipt() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let created = h.create(&["alice@example.com"], 1, false).await;
    let (req, challenge) = alice.request_event(&h, &created.request.body.id).await;
    let receipt = alice
        .decide(&h, &req, Some(&challenge), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap();
    receipt.verify(&h.gateway_key()).unwrap();
    assert_eq!(receipt.body.request_state, RequestState::Approved);
    assert_eq!(receipt.body.request_digest, created.digest);
    let view = h.view(&created.request.body.id).await;
    assert_eq!(view.status.body.state, RequestState::Approved);
    // The change is pushed to the approver as a signed status event.
    let status = alice.status_event(&h, &created.request.body.id).await;
    status.verify(&h.gateway_key()).unwrap();
    assert_eq!(status.body.state, RequestState::Approved);
}

#[tokio::test]
async fn an_assertion_for_request_a_does_not_approve_request_b() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let a = h.create_with(|n| n.summary = "A".into()).await;
    let b = h.create_with(|n| n.summary = "B".into()).await;
    let (_, challenge_a) = alice.request_event(&h, &a.request.body.id).await;
    let (req_b, _) = alice.request_event(&h, &b.request.body.id).await;
    let err = alice
        .decide(
            &h,
            &req_b,
            Some(&challenge_a),
            Verdict::Approve,
            None,
            Uv::Yes,
        )
        .await
        .unwrap_err();
    h.expect_rejection(&err, "assertion_not_for_this_request");
    assert_eq!(
        h.view(&b.request.body.id).await.status.body.state,
        RequestState::Pending
    );
}

#[tokio::test]
async fn a_replayed_decision_is_answered_with_its_receipt_and_counted_once() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let _bob = h.pair("bob@example.com").await;
    let created = h
        .create(&["alice@example.com", "bob@example.com"], 2, false)
        .await;
    let (req, ch) = alice.request_event(&h, &created.request.body.id).await;
    let signed = alice
        .signed_decision(&h, &req, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .unwrap();
    let first = alice.post_decision(&h, &signed).await.unwrap();
    let again = alice.post_decision(&h, &signed).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(again.body.approvals, 1);
    let view = h.view(&created.request.body.id).await;
    assert_eq!(view.status.body.approvals, 1);
    assert_eq!(view.status.body.state, RequestState::Pending);

    // The same decision id with different content is refused.
    let mut altered = signed.body.clone();
    altered.reason = Some("changed".into());
    let altered = countersign_protocol::Signed::sign(&alice.key, altered).unwrap();
    let err = alice.post_decision(&h, &altered).await.unwrap_err();
    h.expect_rejection(&err, "decision_id_reused");
}

/// Issue 15, item 5: the device's client data is WebAuthn Level 3's serialisation (an origin
/// without a path, no `tokenBinding`), and the gateway refuses what webauthn-rs-proto's
/// serialiser writes (`"origin":"https://localhost/"`, `"tokenBinding":null`) with a signed
/// refusal, without spending the challenge.
#[tokio::test]
async fn client_data_is_checked_as_webauthn_says() {
    use base64::Engine as _;
    use webauthn_authenticator_rs::WebauthnAuthenticator as _;
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let created = h.create(&["alice@example.com"], 1, false).await;
    let (req, ch) = alice.request_event(&h, &created.request.body.id).await;
    let good = alice
        .signed_decision(&h, &req, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .unwrap();
    let encoded = good.body.assertion.as_ref().unwrap()["response"]["clientDataJSON"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .unwrap();
    let origin = countersign_protocol::webauthn::origin_serialization(&alice.origin).unwrap();
    assert!(!origin.ends_with('/'), "{origin}");
    // A standards-strict reading: exactly the four members, in order, nothing else.
    let text = String::from_utf8(bytes).unwrap();
    let challenge = ch["publicKey"]["challenge"].as_str().unwrap();
    assert_eq!(
        text,
        format!(
            r#"{{"type":"webauthn.get","challenge":"{challenge}","origin":"{origin}","crossOrigin":false}}"#
        )
    );

    let library = alice
        .token
        .do_authentication(
            alice.origin.clone(),
            serde_json::from_value(ch.clone()).unwrap(),
        )
        .unwrap();
    let mut bad = good.body.clone();
    bad.decision_id = uuid::Uuid::new_v4().to_string();
    bad.assertion = Some(serde_json::to_value(&library).unwrap());
    let bad = countersign_protocol::Signed::sign(&alice.key, bad).unwrap();
    let err = alice.post_decision(&h, &bad).await.unwrap_err();
    assert_eq!(err.code(), Some("wrong_webauthn_origin"), "{}", err.text);
    let body = err.body.unwrap();
    let refusal = body.refusal.expect("a final refusal is signed");
    refusal.verify(&h.gateway_key()).unwrap();
    assert_eq!(refusal.body.decision_digest, bad.digest().unwrap());
    assert_eq!(
        body.status.unwrap().body.seq,
        refusal.body.status_seq.unwrap()
    );

    // The refused assertion did not spend the challenge: the device's own is accepted.
    let receipt = alice.post_decision(&h, &good).await.unwrap();
    assert_eq!(receipt.body.request_state, RequestState::Approved);
    assert_eq!(receipt.body.status_seq, 2);
}

#[tokio::test]
async fn a_replayed_assertion_is_refused() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let _bob = h.pair("bob@example.com").await;
    let created = h
        .create(&["alice@example.com", "bob@example.com"], 2, false)
        .await;
    let (req, ch) = alice.request_event(&h, &created.request.body.id).await;
    let signed = alice
        .signed_decision(&h, &req, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .unwrap();
    alice.post_decision(&h, &signed).await.unwrap();
    // A fresh decision id carrying the same assertion.
    let mut replay = signed.body.clone();
    replay.decision_id = uuid::Uuid::new_v4().to_string();
    let replay = countersign_protocol::Signed::sign(&alice.key, replay).unwrap();
    let err = alice.post_decision(&h, &replay).await.unwrap_err();
    h.expect_rejection(&err, "assertion_replayed");
}

#[tokio::test]
async fn an_assertion_without_user_verification_is_refused() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let created = h.create(&["alice@example.com"], 1, false).await;
    let (req, ch) = alice.request_event(&h, &created.request.body.id).await;
    let err = alice
        .decide(&h, &req, Some(&ch), Verdict::Approve, None, Uv::No)
        .await
        .unwrap_err();
    h.expect_rejection(&err, "user_not_verified");
}

#[tokio::test]
async fn number_matching_requires_the_right_code_and_denies_after_three_misses() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let created = h.create(&["alice@example.com"], 1, true).await;
    let code = created.match_code.clone().unwrap();
    assert_eq!(code.len(), 6);
    let (req, ch) = alice.request_event(&h, &created.request.body.id).await;
    assert!(req.body.match_required);
    let err = alice
        .decide(&h, &req, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap_err();
    h.expect_rejection(&err, "match_code_required");
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let err = alice
        .decide(&h, &req, Some(&ch), Verdict::Approve, Some(wrong), Uv::Yes)
        .await
        .unwrap_err();
    h.expect_rejection(&err, "wrong_match_code");
    let ok = alice
        .decide(&h, &req, Some(&ch), Verdict::Approve, Some(&code), Uv::Yes)
        .await
        .unwrap();
    assert_eq!(ok.body.request_state, RequestState::Approved);

    let guessed = h
        .create_with(|n| {
            n.require_match = true;
            n.summary = "guess me".into();
        })
        .await;
    let code = guessed.match_code.clone().unwrap();
    let (req, ch) = alice.request_event(&h, &guessed.request.body.id).await;
    for i in 0..3 {
        let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1 + i) % 1_000_000);
        let err = alice
            .decide(&h, &req, Some(&ch), Verdict::Approve, Some(&wrong), Uv::Yes)
            .await
            .unwrap_err();
        h.expect_rejection(&err, "wrong_match_code");
    }
    assert_eq!(
        h.view(&guessed.request.body.id).await.status.body.state,
        RequestState::Denied
    );
}

#[tokio::test]
async fn an_approver_who_is_not_eligible_is_refused() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let mut mallory = h.pair("mallory@example.com").await;
    let created = h.create(&["alice@example.com"], 1, false).await;
    let (req, _) = alice.request_event(&h, &created.request.body.id).await;
    // Mallory never receives the request; she decides on what she learned of it elsewhere.
    assert!(mallory.drain(&h).await.is_empty());
    let err = mallory
        .decide(&h, &req, None, Verdict::Deny, None, Uv::Yes)
        .await
        .unwrap_err();
    h.expect_rejection(&err, "not_eligible");
}

#[tokio::test]
async fn a_second_decision_by_the_same_approver_is_refused() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let _bob = h.pair("bob@example.com").await;
    let created = h
        .create(&["alice@example.com", "bob@example.com"], 2, false)
        .await;
    let (req, ch) = alice.request_event(&h, &created.request.body.id).await;
    alice
        .decide(&h, &req, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap();
    let err = alice
        .decide(&h, &req, None, Verdict::Deny, None, Uv::Yes)
        .await
        .unwrap_err();
    h.expect_rejection(&err, "already_decided");
}

#[tokio::test]
async fn a_decision_for_a_changed_request_is_refused() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let created = h.create(&["alice@example.com"], 1, false).await;
    let (mut req, ch) = alice.request_event(&h, &created.request.body.id).await;
    // The approver was shown a different detail than the gateway signed.
    req.body.detail = "DROP TABLE users;".into();
    let err = alice
        .decide(&h, &req, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap_err();
    h.expect_rejection(&err, "request_digest_mismatch");
}

#[tokio::test]
async fn a_decision_after_expiry_is_refused_by_the_gateway_clock() {
    let h = TestGateway::start_with(|c| c.expiry_sweep_ms = 3_600_000).await;
    let mut alice = h.pair("alice@example.com").await;
    let created = h.create_with(|n| n.ttl_seconds = 60).await;
    let (req, ch) = alice.request_event(&h, &created.request.body.id).await;
    h.running.gateway.clock.shift(61);
    let err = alice
        .decide(&h, &req, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap_err();
    h.expect_rejection(&err, "request_expired");
    // The sweeper then records the expiry and pushes it.
    countersign_gateway::approvals::expire_due(&h.running.gateway).unwrap();
    assert_eq!(
        h.view(&created.request.body.id).await.status.body.state,
        RequestState::Expired
    );
    let status = alice.status_event(&h, &created.request.body.id).await;
    assert_eq!(status.body.state, RequestState::Expired);
}

#[tokio::test]
async fn quorum_two_of_three_and_one_deny_decides_at_once() {
    let h = TestGateway::start().await;
    let mut a = h.pair("a@example.com").await;
    let mut b = h.pair("b@example.com").await;
    let mut c = h.pair("c@example.com").await;
    let all = ["a@example.com", "b@example.com", "c@example.com"];
    let created = h.create(&all, 2, false).await;
    let id = created.request.body.id.clone();
    let (r, ch) = a.request_event(&h, &id).await;
    let first = a
        .decide(&h, &r, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap();
    assert_eq!(
        (first.body.request_state, first.body.approvals),
        (RequestState::Pending, 1)
    );
    let (r, ch) = b.request_event(&h, &id).await;
    let second = b
        .decide(&h, &r, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap();
    assert_eq!(
        (second.body.request_state, second.body.approvals),
        (RequestState::Approved, 2)
    );
    let (r, ch) = c.request_event(&h, &id).await;
    let late = c
        .decide(&h, &r, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap_err();
    h.expect_rejection(&late, "request_closed");

    let denied = h
        .create_with(|n| {
            n.approvers = all.iter().map(|s| s.to_string()).collect();
            n.min_approvals = 2;
            n.summary = "second".into();
        })
        .await;
    let id = denied.request.body.id.clone();
    let (r, ch) = a.request_event(&h, &id).await;
    a.decide(&h, &r, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap();
    let (r, _) = c.request_event(&h, &id).await;
    let deny = c
        .decide(&h, &r, None, Verdict::Deny, None, Uv::Yes)
        .await
        .unwrap();
    assert_eq!(deny.body.request_state, RequestState::Denied);
    let view = h.view(&id).await;
    assert_eq!(view.status.body.state, RequestState::Denied);
    assert_eq!(view.status.body.votes.len(), 2);
}

#[tokio::test]
async fn a_pairing_code_works_once_and_not_after_it_expires() {
    let h = TestGateway::start().await;
    let link = h.invite("alice@example.com");
    let first = h.pair_with_link(&link).await;
    assert!(first.is_ok());
    let again = h.pair_with_link(&link).await.unwrap_err();
    h.expect_pairing_rejection(&again, "pairing_code_used");

    let late = h.invite("bob@example.com");
    h.running
        .gateway
        .clock
        .shift(h.running.gateway.config.invite_ttl_seconds + 1);
    let err = h.pair_with_link(&late).await.unwrap_err();
    h.expect_pairing_rejection(&err, "pairing_code_expired");
}

#[tokio::test]
async fn the_stream_resumes_after_last_event_id_exactly_once() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let first = h.create_with(|n| n.summary = "one".into()).await;
    let seen = alice.drain(&h).await;
    assert_eq!(seen.len(), 1);
    // Disconnected: two more requests arrive meanwhile.
    let two = h.create_with(|n| n.summary = "two".into()).await;
    let three = h.create_with(|n| n.summary = "three".into()).await;
    let resumed = alice.drain(&h).await;
    let ids: Vec<String> = resumed.iter().filter_map(|(_, e)| request_id(e)).collect();
    assert_eq!(
        ids,
        vec![two.request.body.id.clone(), three.request.body.id.clone()]
    );
    assert!(!ids.contains(&first.request.body.id));
    assert!(alice.drain(&h).await.is_empty());
}

#[tokio::test]
async fn live_events_arrive_on_an_open_stream() {
    let h = TestGateway::start().await;
    let alice = h.pair("alice@example.com").await;
    let mut stream = alice.open_stream(&h, 0).await;
    stream.until_ready().await;
    let created = h.create(&["alice@example.com"], 1, false).await;
    let (_, event) = stream.next_event().await;
    assert_eq!(request_id(&event), Some(created.request.body.id));
}

#[tokio::test]
async fn a_burst_of_identical_requests_collapses_and_the_rate_limit_holds() {
    let h = TestGateway::start_with(|c| c.rate_limit_per_minute = 3).await;
    let _alice = h.pair("alice@example.com").await;
    let first = h.create(&["alice@example.com"], 1, false).await;
    let dup = h.create(&["alice@example.com"], 1, false).await;
    assert!(dup.duplicate);
    assert_eq!(dup.request.body.id, first.request.body.id);
    h.create_with(|n| n.summary = "b".into()).await;
    h.create_with(|n| n.summary = "c".into()).await;
    let err = h.try_create(|n| n.summary = "d".into()).await.unwrap_err();
    assert_eq!(err.code(), Some("rate_limited"));
}

#[tokio::test]
async fn requests_need_a_valid_token_and_report_errors_as_json() {
    let h = TestGateway::start().await;
    let resp = reqwest::Client::new()
        .post(h.url.join("/v2/requests").unwrap())
        .bearer_auth("cst_nope")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: countersign_protocol::api::ErrorBody = resp.json().await.unwrap();
    assert_eq!(body.error.code, "unknown_token");
    let resp = reqwest::get(h.url.join("/v2/nothing").unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: countersign_protocol::api::ErrorBody = resp.json().await.unwrap();
    assert_eq!(body.error.code, "no_such_endpoint");
}

#[tokio::test]
async fn a_stream_with_a_forged_device_signature_is_refused() {
    let h = TestGateway::start().await;
    let alice = h.pair("alice@example.com").await;
    let other = countersign_protocol::KeyPair::generate();
    let auth =
        countersign_protocol::DeviceAuth::create(&other, &alice.id, "GET", "/v2/stream", h.now())
            .unwrap();
    let resp = reqwest::Client::new()
        .get(h.url.join("/v2/stream").unwrap())
        .header("authorization", auth.to_header())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: countersign_protocol::api::ErrorBody = resp.json().await.unwrap();
    assert_eq!(body.error.code, "bad_device_signature");
}

#[tokio::test]
async fn openapi_names_every_route() {
    let h = TestGateway::start().await;
    let doc: serde_json::Value = reqwest::get(h.url.join("/v2/openapi.json").unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let src = include_str!("../../src/http.rs");
    for line in src.lines().filter(|l| l.contains(".route(")) {
        let p = line
            .split('"')
            .nth(1)
            .map(str::to_string)
            .unwrap_or_else(|| {
                let name = line
                    .split("paths::")
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap();
                match name {
                    "INFO" => "/v2/info",
                    "PAIR_START" => "/v2/pair/start",
                    "PAIR_FINISH" => "/v2/pair/finish",
                    "STREAM" => "/v2/stream",
                    "REQUESTS" => "/v2/requests",
                    "DECISIONS" => "/v2/decisions",
                    "OPENAPI" => "/v2/openapi.json",
                    "CHECKPOINTS" => "/v2/checkpoints",
                    "CHECKPOINT_LATEST" => "/v2/checkpoints/latest",
                    "REPORTS" => "/v2/reports",
                    "ACKS" => "/v2/acks",
                    "CHALLENGES" => "/v2/challenges",
                    "PASSKEYS" => "/v2/passkeys",
                    "PASSKEYS_ENROL" => "/v2/passkeys/enrol",
                    "PASSKEYS_REMOVE" => "/v2/passkeys/remove",
                    "LOG_CHECKPOINT" => "/v2/log/checkpoint",
                    "LOG_ENTRIES" => "/v2/log/entries",
                    "LOG_INCLUSION" => "/v2/log/proof/inclusion",
                    "LOG_CONSISTENCY" => "/v2/log/proof/consistency",
                    "LOG_COSIGNATURES" => "/v2/log/cosignatures",
                    other => panic!("unknown path constant {other}"),
                }
                .to_string()
            });
        assert!(paths.contains_key(&p), "{p} missing from openapi.json");
    }
}

#[tokio::test]
async fn the_gateway_audit_chain_verifies_after_a_session() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let created = h.create(&["alice@example.com"], 1, false).await;
    let (req, ch) = alice.request_event(&h, &created.request.body.id).await;
    let _ = alice
        .decide(&h, &req, Some(&ch), Verdict::Approve, None, Uv::No)
        .await;
    alice
        .decide(&h, &req, Some(&ch), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap();
    let entries = h.audit();
    let kinds: Vec<&str> = entries.iter().map(|(e, _)| e.kind.as_str()).collect();
    for k in [
        "pairing.invited",
        "device.paired",
        "request.created",
        "decision.rejected",
        "decision.accepted",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    countersign_protocol::audit::verify_chain(entries).unwrap();
}

#[tokio::test]
async fn a_captured_device_authorization_works_only_once() {
    let h = TestGateway::start().await;
    let alice = h.pair("alice@example.com").await;
    let auth = countersign_protocol::DeviceAuth::create(
        &alice.key,
        &alice.id,
        "GET",
        "/v2/stream",
        h.now(),
    )
    .unwrap();
    let get = || {
        reqwest::Client::new()
            .get(h.url.join("/v2/stream").unwrap())
            .header("authorization", auth.to_header())
            .send()
    };
    let first = get().await.unwrap();
    assert_eq!(first.status(), 200);
    drop(first);
    let again = get().await.unwrap();
    assert_eq!(again.status(), 401);
    let body: countersign_protocol::api::ErrorBody = again.json().await.unwrap();
    assert_eq!(body.error.code, "replayed_device_auth");
}

#[tokio::test]
async fn framework_errors_are_json_with_stable_codes() {
    let h = TestGateway::start().await;
    let client = reqwest::Client::new();
    let cases = [
        (
            client.get(h.url.join("/v2/decisions").unwrap()),
            405,
            "method_not_allowed",
        ),
        (
            client.post(h.url.join("/v2/decisions").unwrap()).body(vec![
                b' ';
                countersign_protocol::types::MAX_MESSAGE_BYTES
                    + 1
            ]),
            413,
            "body_too_large",
        ),
        (
            client
                .get(h.url.join("/v2/requests/x?wait=soon").unwrap())
                .bearer_auth(&h.token),
            400,
            "bad_query",
        ),
        (
            client.post(h.url.join("/v2/decisions").unwrap()).body("{}"),
            400,
            "invalid_decision",
        ),
        // Every path of protocol version 1 tells a version 1 device to pair again.
        (
            client.get(h.url.join("/v1/info").unwrap()),
            410,
            "protocol_upgraded",
        ),
        (
            client.post(h.url.join("/v1/decisions").unwrap()).body("{}"),
            410,
            "protocol_upgraded",
        ),
        (
            client.get(h.url.join("/v1").unwrap()),
            410,
            "protocol_upgraded",
        ),
    ];
    for (req, status, code) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{code}");
        let body: countersign_protocol::api::ErrorBody = resp.json().await.unwrap();
        assert_eq!(body.error.code, code);
    }
}

/// The gateway keeps each device's highest audit checkpoint: it moves forward, a retry of the
/// same one is accepted, and one that goes backwards, forks at the same entry, is signed by
/// another key or comes from another device is refused. Refusals are in the gateway's audit
/// chain.
#[tokio::test]
async fn audit_checkpoints_only_move_forward() {
    let h = TestGateway::start().await;
    let alice = h.pair("alice@example.com").await;
    let bob = h.pair("bob@example.com").await;
    assert_eq!(alice.held_checkpoint(&h).await, None);

    let cp10 = alice.checkpoint(10, 1);
    let held = alice.upload_checkpoint(&h, &cp10).await.unwrap();
    assert_eq!(held.checkpoint.as_ref(), Some(&cp10));
    alice.upload_checkpoint(&h, &cp10).await.unwrap();
    let cp20 = alice.checkpoint(20, 2);
    alice.upload_checkpoint(&h, &cp20).await.unwrap();
    assert_eq!(alice.held_checkpoint(&h).await, Some(cp20.clone()));

    let refused = alice.upload_checkpoint(&h, &cp10).await.unwrap_err();
    assert_eq!(
        (refused.status, refused.code()),
        (409, Some("checkpoint_rollback"))
    );
    let fork = alice
        .upload_checkpoint(&h, &alice.checkpoint(20, 3))
        .await
        .unwrap_err();
    assert_eq!((fork.status, fork.code()), (409, Some("checkpoint_fork")));
    // Bob's key cannot place a checkpoint under Alice's device, nor Alice's under Bob's.
    let forged = alice
        .upload_checkpoint(&h, &alice.checkpoint_by(&bob.key, 30, 4))
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Some("checkpoint_not_signed_by_device"));
    let foreign = bob
        .upload_checkpoint(&h, &alice.checkpoint(30, 4))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Some("checkpoint_not_signed_by_device"));
    // Nothing refused changed what is held, and each device has its own.
    assert_eq!(alice.held_checkpoint(&h).await, Some(cp20));
    assert_eq!(bob.held_checkpoint(&h).await, None);

    let entries = h.audit();
    let refusals: Vec<String> = entries
        .iter()
        .filter(|(e, _)| e.kind == "checkpoint.refused")
        .map(|(e, _)| e.detail["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(refusals, ["checkpoint_rollback", "checkpoint_fork"]);
    countersign_protocol::audit::verify_chain(entries).unwrap();
}

/// "I did not expect this": Alice reports one of ci-bot's requests. Every pending ci-bot request
/// addressed to her is denied at once (also one that Bob could still have approved), new ones
/// naming her are refused until the operator lifts the block, and nothing of other requesters
/// or of Bob alone is touched. The report is idempotent, must be signed by Alice's device, and
/// everything is in the gateway's audit chain.
#[tokio::test]
async fn an_unexpected_request_report_blocks_its_requester_from_that_approver() {
    use countersign_gateway::approvals;
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let bob = h.pair("bob@example.com").await;
    let a1 = h.create_with(|n| n.summary = "first".into()).await;
    let a2 = h.create_with(|n| n.summary = "second".into()).await;
    let both = h
        .create(&["alice@example.com", "bob@example.com"], 1, false)
        .await;
    let bob_only = h.create(&["bob@example.com"], 1, false).await;
    let mut other = h.default_request();
    other.summary = "from another requester".into();
    let other = approvals::create_request(h.gw(), "other-bot", other).unwrap();
    let (req, _) = alice.request_event(&h, &a1.request.body.id).await;

    // Signed by another key than Alice's device: refused, nothing happens.
    let forged = alice.signed_report_by(&h, &bob.key, &req);
    let f = alice.post_report(&h, &forged).await.unwrap_err();
    assert_eq!(f.code(), Some("bad_report_signature"));
    assert_eq!(
        h.view(&a1.request.body.id).await.status.body.state,
        RequestState::Pending
    );

    let report = alice.signed_report(&h, &req);
    let ack = alice.post_report(&h, &report).await.unwrap();
    let mut want = vec![
        a1.request.body.id.clone(),
        a2.request.body.id.clone(),
        both.request.body.id.clone(),
    ];
    want.sort();
    let mut denied = ack.denied.clone();
    denied.sort();
    assert_eq!(denied, want);
    assert_eq!(ack.requester, "ci-bot");
    for id in &want {
        assert_eq!(
            h.view(id).await.status.body.state,
            RequestState::Denied,
            "{id}"
        );
    }
    assert_eq!(
        h.view(&bob_only.request.body.id).await.status.body.state,
        RequestState::Pending
    );
    let other_state = approvals::view(h.gw(), "other-bot", &other.request.body.id).unwrap();
    assert_eq!(other_state.status.body.state, RequestState::Pending);
    // The same report again: the same answer, nothing new.
    assert_eq!(alice.post_report(&h, &report).await.unwrap(), ack);

    // ci-bot cannot ask Alice again, alone or with Bob; it can still ask Bob.
    for approvers in [
        vec!["alice@example.com"],
        vec!["alice@example.com", "bob@example.com"],
    ] {
        let f = h
            .try_create(|n| {
                n.summary = "again".into();
                n.approvers = approvers.iter().map(|s| s.to_string()).collect();
            })
            .await
            .unwrap_err();
        assert_eq!((f.status, f.code()), (403, Some("requester_blocked")));
    }
    h.try_create(|n| {
        n.summary = "bob is fine".into();
        n.approvers = vec!["bob@example.com".into()];
    })
    .await
    .unwrap();
    // The operator lifts the block.
    assert!(countersign_gateway::reports::unblock(h.gw(), "ci-bot", "alice@example.com").unwrap());
    assert!(!countersign_gateway::reports::unblock(h.gw(), "ci-bot", "alice@example.com").unwrap());
    h.try_create(|n| n.summary = "after the block".into())
        .await
        .unwrap();

    let entries = h.audit();
    let count = |k: &str| entries.iter().filter(|(e, _)| e.kind == k).count();
    assert_eq!(count("report.unexpected"), 1);
    assert_eq!(count("request.blocked"), 3);
    assert_eq!(count("block.lifted"), 1);
    countersign_protocol::audit::verify_chain(entries).unwrap();
}

/// Gateway policy requires number matching for chosen actions or resources, whatever the
/// requester asked for.
#[tokio::test]
async fn policy_requires_number_matching_for_chosen_actions_and_resources() {
    let h = TestGateway::start_with(|c| {
        c.match_required_actions = vec!["kubectl.exec".into()];
        c.match_required_resources = vec!["prod-*".into()];
    })
    .await;
    let _alice = h.pair("alice@example.com").await;
    for (action, resource, required) in [
        ("sql.exec", "prod-db", true),
        ("kubectl.exec", "staging", true),
        ("sql.exec", "staging-db", false),
    ] {
        let c = h
            .create_with(|n| {
                n.action = action.into();
                n.resource = resource.into();
                n.summary = format!("{action} on {resource}");
            })
            .await;
        assert_eq!(
            c.request.body.match_required, required,
            "{action} {resource}"
        );
        assert_eq!(c.match_code.is_some(), required, "{action} {resource}");
    }
}

/// The signature counter of the approver's only passkey, as the gateway loads it to start a
/// new authentication (from the `counter` column, over the registered credential's value).
fn stored_counter(h: &TestGateway, approver: &str) -> u64 {
    let passkeys = h
        .gw()
        .store
        .read(|c| countersign_gateway::approvals::passkeys_of(c, approver))
        .unwrap();
    assert_eq!(passkeys.len(), 1, "{approver} has one passkey");
    let (counter, _, _) = countersign_gateway::approvals::passkey_counters(&passkeys[0]);
    u64::from(counter)
}

#[tokio::test]
async fn each_approval_stores_the_passkeys_new_signature_counter() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let before = stored_counter(&h, "alice@example.com");
    let mut last = before;
    for i in 0..2 {
        let created = h.create_with(|n| n.summary = format!("deploy {i}")).await;
        let (req, challenge) = alice.request_event(&h, &created.request.body.id).await;
        alice
            .decide(&h, &req, Some(&challenge), Verdict::Approve, None, Uv::Yes)
            .await
            .unwrap();
        let now = stored_counter(&h, "alice@example.com");
        assert!(now > last, "the counter moved from {last} to {now}");
        last = now;
    }
}

#[tokio::test]
async fn concurrent_approvals_with_one_passkey_keep_the_highest_counter() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let mut decisions = Vec::new();
    for i in 0..6 {
        // Distinct requests: identical ones from one requester collapse into one.
        let created = h.create_with(|n| n.summary = format!("deploy {i}")).await;
        let (req, challenge) = alice.request_event(&h, &created.request.body.id).await;
        let d = alice
            .signed_decision(&h, &req, Some(&challenge), Verdict::Approve, None, Uv::Yes)
            .unwrap();
        decisions.push(d);
    }
    // Every assertion was made before any is posted, so the highest counter is the last one's.
    // Posted at once, their counter updates race; whatever order they apply in, the stored
    // counter must end at the highest, never be set back by a slower one.
    let posts = decisions.iter().map(|d| alice.post_decision(&h, d));
    for r in futures::future::join_all(posts).await {
        r.unwrap();
    }
    let highest = decisions
        .iter()
        .map(|d| {
            let cred: webauthn_rs::prelude::PublicKeyCredential =
                serde_json::from_value(d.body.assertion.clone().unwrap()).unwrap();
            let data: &[u8] = cred.response.authenticator_data.as_ref();
            u64::from(u32::from_be_bytes([data[33], data[34], data[35], data[36]]))
        })
        .max()
        .unwrap();
    assert_eq!(stored_counter(&h, "alice@example.com"), highest);
}

/// Issue 15, item 7: refusals a peer can repeat at will are audited, aggregated so that a flood
/// writes at most two entries a minute per (kind, code, peer), and none vanishes: the counts
/// are written when the window closes or the gateway stops.
#[tokio::test]
async fn repeated_refusals_are_audited_and_aggregated() {
    let h = TestGateway::start().await;
    let client = reqwest::Client::new();
    let refused = |kind: &str, code: &str| -> Vec<serde_json::Value> {
        h.audit()
            .into_iter()
            .filter(|(e, _)| e.kind == kind)
            .map(|(e, _)| e.detail)
            .filter(|d| d["code"] == code || d["sample"]["code"] == code)
            .collect()
    };
    // An unknown token, five times.
    for _ in 0..5 {
        let resp = client
            .post(h.url.join("/v2/requests").unwrap())
            .bearer_auth("cst_not-a-token")
            .json(&h.new_request(&["alice@example.com"], "x"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
    }
    let entries = refused("request.refused", "unknown_token");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        (entries[0]["count"].as_u64(), entries[0]["peer"].as_str()),
        (Some(1), Some("anonymous"))
    );
    // An over-long TTL from a known requester names the requester.
    let mut long = h.new_request(&["alice@example.com"], "too long");
    long.ttl_seconds = u32::MAX;
    let resp = client
        .post(h.url.join("/v2/requests").unwrap())
        .bearer_auth(&h.token)
        .json(&long)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let ttl = refused("request.refused", "ttl_too_long");
    assert_eq!(ttl.len(), 1, "{ttl:?}");
    assert_ne!(ttl[0]["peer"], "anonymous");
    // A stream of an unknown device, and an oversized decision body.
    let key = countersign_protocol::KeyPair::generate();
    let auth = countersign_protocol::DeviceAuth::create(
        &key,
        "no-such-device",
        "GET",
        "/v2/stream",
        h.now(),
    )
    .unwrap();
    let resp = client
        .get(h.url.join("/v2/stream").unwrap())
        .header("authorization", auth.to_header())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let stream = refused("stream.refused", "unknown_device");
    assert_eq!(stream.len(), 1, "{stream:?}");
    assert_eq!(stream[0]["peer"], "no-such-device");
    let resp = client
        .post(h.url.join("/v2/decisions").unwrap())
        .body(vec![
            b' ';
            countersign_protocol::types::MAX_MESSAGE_BYTES + 1
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert_eq!(refused("decision.rejected", "body_too_large").len(), 1);

    // Stopping writes the counts of the open windows: the four later unknown tokens.
    h.gw().flush_refusals(true);
    let entries = refused("request.refused", "unknown_token");
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[1]["count"], 4);
    let verify = countersign_protocol::audit::verify_chain(h.audit());
    assert!(verify.is_ok(), "{verify:?}");
}
