//! Administration of devices and passkeys (`countersign-gateway devices`): a revoked device's
//! stream closes at once and its decisions are refused; a revocation by another process on the
//! same database reaches the running gateway at its next sweep; a revoked passkey is never
//! accepted again; the listing shows each device and passkey.

use std::time::Duration;

use countersign_gateway::admin::{self, Revoked};
use countersign_protocol::Verdict;
use countersign_test_support::sse::EventStream;

use crate::refusals::Refusals;
use crate::requests::Requests;
use countersign_test_support::{PairedGateway, TestGateway, Uv};

#[tokio::test]
async fn a_revoked_device_is_cut_off_and_its_decisions_refused() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let bob = h.pair("bob@example.com").await;
    let created = h
        .create(&["alice@example.com", "bob@example.com"], 1, false)
        .await;
    let (req, challenge) = alice.request_event(&h, &created.request.body.id).await;
    let mut alice_stream = alice.open_stream(&h, 0).await;
    alice_stream.until_ready().await;
    let mut bob_stream = bob.open_stream(&h, 0).await;
    bob_stream.until_ready().await;

    // Revoked here: the stream ends at once (the hub is told in the same process).
    assert_eq!(
        admin::revoke_device(h.gw(), &alice.id).unwrap(),
        Revoked::Device {
            approver: "alice@example.com".into()
        }
    );
    let end = alice_stream.next_message(Duration::from_secs(20)).await;
    assert_eq!(end.unwrap_err().to_string(), "the stream ended");
    let err = alice
        .decide(&h, &req, Some(&challenge), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap_err();
    h.expect_rejection(&err, "device_revoked");
    // A second revocation finds nothing active.
    assert_eq!(
        admin::revoke_device(h.gw(), &alice.id).unwrap(),
        Revoked::Nothing
    );

    // Revoked by another process on the database (the CLI): the sweeper closes the stream.
    let bob_id = bob.id.clone();
    let now = h.gw().now();
    h.gw()
        .store
        .write(move |tx| tx.revoke_device(&bob_id, now))
        .unwrap();
    let end = bob_stream.next_message(Duration::from_secs(20)).await;
    assert_eq!(end.unwrap_err().to_string(), "the stream ended");
    let refused = EventStream::open(&bob.http, h.url(), &bob.key, &bob.id, h.now(), 0)
        .await
        .err()
        .expect("a revoked device's stream was opened")
        .to_string();
    assert!(refused.contains("device_revoked"), "{refused}");

    // Both revocations by the administrator are in the gateway's audit log.
    let revoked: Vec<_> = h
        .audit()
        .into_iter()
        .filter(|(e, _)| e.kind == "device.revoked")
        .collect();
    assert_eq!(
        revoked.len(),
        1,
        "only the administrator's revocation is audited here"
    );
}

#[tokio::test]
async fn a_revoked_passkey_is_never_accepted_and_the_listing_shows_it() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let created = h.create(&["alice@example.com"], 1, false).await;
    let (req, challenge) = alice.request_event(&h, &created.request.body.id).await;

    let listing = admin::list(h.gw(), Some("alice@example.com")).unwrap();
    assert_eq!(listing.len(), 1);
    let a = &listing[0];
    assert_eq!(a.devices.len(), 1);
    assert_eq!(a.devices[0].id, alice.id);
    assert_eq!(a.devices[0].revoked_at, None);
    assert_eq!(a.passkeys.len(), 1);
    let pk = &a.passkeys[0];
    assert_eq!(pk.device_id.as_deref(), Some(alice.id.as_str()));
    // The soft token claims an all-zero AAGUID.
    assert!(pk.aaguid.is_some());
    assert_eq!(pk.last_used_at, None);

    assert_eq!(
        admin::revoke_passkey(h.gw(), &pk.cred_id).unwrap(),
        Revoked::Passkey {
            approver: "alice@example.com".into()
        }
    );
    let err = alice
        .decide(&h, &req, Some(&challenge), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap_err();
    assert_eq!(err.status, 403, "{err:?}");
    let after = admin::list(h.gw(), Some("alice@example.com")).unwrap();
    assert!(after[0].passkeys[0].retired_at.is_some());
    assert!(h.audit().iter().any(|(e, _)| e.kind == "passkey.revoked"));
}

#[tokio::test]
async fn an_accepted_assertion_records_when_the_passkey_was_used() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let created = h.create(&["alice@example.com"], 1, false).await;
    let (req, challenge) = alice.request_event(&h, &created.request.body.id).await;
    alice
        .decide(&h, &req, Some(&challenge), Verdict::Approve, None, Uv::Yes)
        .await
        .unwrap();
    let listing = admin::list(h.gw(), None).unwrap();
    assert!(listing[0].passkeys[0].last_used_at.is_some());
    assert!(listing[0].devices[0].last_seen_at.is_some());
}
