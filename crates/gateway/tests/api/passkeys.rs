//! The passkey endpoints (docs/protocol.md 8.9) spoken directly: a backup passkey is added only
//! with a proof by a registered one, once per enrolment, by the device the enrolment is for;
//! removal is signed by a device, in time, and never of the last passkey.

use countersign_approver::authenticator::{authenticate_with, register_with};
use countersign_protocol::api::paths;
use countersign_protocol::{
    DeviceAuth, KeyPair, PasskeyAdd, PasskeyEnrolment, PasskeyList, PasskeyRemove, Signed,
    PROTOCOL_VERSION,
};
use countersign_test_support::{answer, Device, PairedGateway, Refusal, TestGateway};
use webauthn_authenticator_rs::softtoken::SoftToken;

use crate::refusals::Refusals;

async fn call<B: serde::Serialize, T: serde::de::DeserializeOwned>(
    h: &TestGateway,
    d: &Device,
    method: reqwest::Method,
    path: &str,
    body: Option<&B>,
) -> Result<T, Refusal> {
    let auth = DeviceAuth::create(&d.key, &d.id, method.as_str(), path, h.now())
        .unwrap()
        .to_header();
    let mut req = d
        .http
        .request(method, h.url().join(path).unwrap())
        .header(reqwest::header::AUTHORIZATION, auth);
    if let Some(b) = body {
        req = req.json(b);
    }
    answer(req.send().await.unwrap()).await
}

/// A `POST /v2/passkeys` of `body` by `d` that the gateway refuses.
async fn refused_add(h: &TestGateway, d: &Device, body: &Signed<PasskeyAdd>) -> Refusal {
    call::<_, Signed<PasskeyList>>(h, d, reqwest::Method::POST, paths::PASSKEYS, Some(body))
        .await
        .unwrap_err()
}

async fn enrol(h: &TestGateway, d: &Device) -> PasskeyEnrolment {
    call::<(), _>(h, d, reqwest::Method::POST, paths::PASSKEYS_ENROL, None)
        .await
        .unwrap()
}

/// A PasskeyAdd for `e`, the proof by `prover`, the new passkey on `new`, signed by `signer`
/// in the name of `device_id`.
fn add_body(
    e: &PasskeyEnrolment,
    prover: &mut SoftToken,
    new: &mut SoftToken,
    signer: &KeyPair,
    device_id: &str,
) -> Signed<PasskeyAdd> {
    let origin = url::Url::parse(&e.webauthn_origin).unwrap();
    let proof = authenticate_with(
        prover,
        &origin,
        serde_json::from_value(e.proof.clone()).unwrap(),
    );
    let credential = register_with(
        new,
        &origin,
        serde_json::from_value(e.creation.clone()).unwrap(),
    )
    .unwrap();
    Signed::sign(
        signer,
        PasskeyAdd {
            v: PROTOCOL_VERSION,
            enrolment_id: e.enrolment_id.clone(),
            device_id: device_id.into(),
            proof: serde_json::to_value(proof.unwrap()).unwrap(),
            credential: serde_json::to_value(&credential).unwrap(),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_passkey_is_added_once_with_a_proof_by_the_enrolled_device() {
    let h = TestGateway::start().await;
    let mut alice = h.pair("alice@example.com").await;
    let bob = h.pair("bob@example.com").await;
    let (mut backup, _) = SoftToken::new(true).unwrap();

    // A proof by a token that holds none of alice's passkeys is refused; nothing is stored.
    let e = enrol(&h, &alice).await;
    let (mut stranger, _) = SoftToken::new(true).unwrap();
    let origin = url::Url::parse(&e.webauthn_origin).unwrap();
    // The stranger cannot answer an allow list it holds nothing of; a registered token's proof
    // for another enrolment stands in for a forged one.
    assert!(authenticate_with(
        &mut stranger,
        &origin,
        serde_json::from_value(e.proof.clone()).unwrap()
    )
    .is_err());
    let other = enrol(&h, &alice).await;
    let mut crossed = add_body(&other, &mut alice.token, &mut backup, &alice.key, &alice.id);
    crossed.body.enrolment_id = e.enrolment_id.clone();
    let crossed = Signed::sign(&alice.key, crossed.body).unwrap();
    let err = refused_add(&h, &alice, &crossed).await;
    h.expect_passkey_refusal(&err, "assertion_not_for_this_request");

    // Another device may not complete alice's enrolment, nor name alice's device.
    let body = add_body(&e, &mut alice.token, &mut backup, &bob.key, &bob.id);
    let err = refused_add(&h, &bob, &body).await;
    h.expect_passkey_refusal(&err, "unknown_enrolment");
    let e = enrol(&h, &alice).await;
    let body = add_body(&e, &mut alice.token, &mut backup, &bob.key, &alice.id);
    let err = refused_add(&h, &bob, &body).await;
    h.expect_passkey_refusal(&err, "device_changed");

    // The proper one: added, signed list of two; the same body again is refused.
    let e = enrol(&h, &alice).await;
    let body = add_body(&e, &mut alice.token, &mut backup, &alice.key, &alice.id);
    let list: Signed<PasskeyList> = call(
        &h,
        &alice,
        reqwest::Method::POST,
        paths::PASSKEYS,
        Some(&body),
    )
    .await
    .unwrap();
    list.verify(&h.gateway_key()).unwrap();
    assert_eq!(list.body.passkeys.len(), 2);
    let err = refused_add(&h, &alice, &body).await;
    h.expect_passkey_refusal(&err, "enrolment_used");
    assert_eq!(
        h.audit()
            .iter()
            .filter(|(e, _)| e.kind == "passkey.added")
            .count(),
        1
    );
}

#[tokio::test]
async fn removal_is_in_time_and_never_of_the_last_passkey() {
    let h = TestGateway::start().await;
    let alice = h.pair("alice@example.com").await;
    let list: Signed<PasskeyList> =
        call::<(), _>(&h, &alice, reqwest::Method::GET, paths::PASSKEYS, None)
            .await
            .unwrap();
    let only = list.body.passkeys[0].cred_id.clone();
    let remove = |cred_id: &str, at: i64| {
        Signed::sign(
            &alice.key,
            PasskeyRemove {
                v: PROTOCOL_VERSION,
                device_id: alice.id.clone(),
                cred_id: cred_id.into(),
                at,
            },
        )
        .unwrap()
    };
    let cases = [
        (remove(&only, h.now() - 400), "stale_device_auth"),
        (remove("AAAA", h.now()), "unknown_passkey"),
        (remove(&only, h.now()), "last_passkey"),
    ];
    for (body, code) in cases {
        let err = call::<_, Signed<PasskeyList>>(
            &h,
            &alice,
            reqwest::Method::POST,
            paths::PASSKEYS_REMOVE,
            Some(&body),
        )
        .await
        .unwrap_err();
        h.expect_passkey_refusal(&err, code);
    }
}
