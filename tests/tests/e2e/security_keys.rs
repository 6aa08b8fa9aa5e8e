//! Security keys through the real CTAP2 logic: the engine's `SecurityKey` drives
//! webauthn-authenticator-rs's `CtapAuthenticator` against the harness's fake CTAP2 key (behind
//! the `Token` transport interface), and pairs and decides with a real gateway on loopback.
//! Every outcome of the ceremony is one typed error with its code.

use std::sync::Arc;
use std::time::Duration;

use countersign_approver::authenticator::client_data_for;
use countersign_approver::ceremony::{
    CreationChallengeResponse, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse,
};
use countersign_approver::outbox::Delivery;
use countersign_approver::{
    Authenticator, AuthenticatorKind, Engine, EngineError, KeyError, PinAsk, SecurityKey,
};
use countersign_protocol::api::ErrorCode;
use countersign_protocol::webauthn::Ceremony;
use countersign_test_support::fido::{
    Asked, Ctap, FakeKey, FakeKeys, KeyConfig, Presence, Protocol, ScriptedPerson, PIN_RETRIES,
};
use countersign_test_support::TestGateway;
use url::Url;

const ALICE: &str = "alice@example.com";

/// A gateway, an engine and a person with security keys.
struct Bench {
    gw: TestGateway,
    engine: Engine,
    keys: FakeKeys,
    person: ScriptedPerson,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn new(keys: &[&FakeKey], person: ScriptedPerson) -> Bench {
        Self::on(TestGateway::start().await, keys, person)
    }

    fn on(gw: TestGateway, keys: &[&FakeKey], person: ScriptedPerson) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path().join("approver")).unwrap();
        Bench {
            gw,
            engine,
            keys: FakeKeys::with(keys),
            person,
            _dir: dir,
        }
    }

    fn authenticator(&self, timeout: Duration) -> SecurityKey<FakeKeys> {
        SecurityKey::new(self.keys.clone(), Arc::new(self.person.clone()))
            .unwrap()
            .with_timeout(timeout)
    }

    async fn pair(&self) -> Result<(), EngineError> {
        let mut key = self.authenticator(Duration::from_secs(10));
        self.pair_with(&mut key).await
    }

    async fn pair_with(&self, a: &mut dyn Authenticator) -> Result<(), EngineError> {
        let link = self.gw.invite(ALICE);
        self.engine
            .pair(&link, "security key test", a)
            .await
            .map(drop)
    }

    /// A request to alice, synced into the inbox; its id.
    async fn request(&self) -> String {
        let created = self
            .gw
            .requester()
            .create(&self.gw.new_request(&[ALICE], "deploy api"))
            .await
            .unwrap();
        self.engine.sync().await.unwrap();
        created.request.body.id
    }

    async fn approve(&self, id: &str, a: &mut dyn Authenticator) -> Result<Delivery, EngineError> {
        self.engine
            .approve(id, None, a)
            .await
            .map(|outcome| outcome.delivery)
    }

    async fn approve_with_key(&self, id: &str) -> Result<Delivery, EngineError> {
        let mut key = self.authenticator(Duration::from_secs(10));
        self.approve(id, &mut key).await
    }
}

fn key_error(e: EngineError) -> KeyError {
    match e {
        EngineError::SecurityKey(k) => {
            // Every outcome has its stable code.
            assert_eq!(EngineError::SecurityKey(k.clone()).code(), k.code());
            k
        }
        other => panic!("expected a security key error, got {other}"),
    }
}

fn delivered(d: Delivery) {
    assert!(matches!(d, Delivery::Delivered { .. }), "{d:?}");
}

fn first_ask() -> Asked {
    Asked::Pin(PinAsk {
        retries: Some(PIN_RETRIES),
        again: false,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_a_pin_pairs_and_approves_over_pin_protocol_2_and_1() {
    for (ctap, protocols, token_command) in [
        (
            Ctap::V21,
            vec![Protocol::Two, Protocol::One],
            "clientPIN.getPinUvAuthTokenUsingPinWithPermissions (protocol 2)",
        ),
        (
            Ctap::V21,
            vec![Protocol::One],
            "clientPIN.getPinUvAuthTokenUsingPinWithPermissions (protocol 1)",
        ),
        (
            Ctap::V20,
            vec![Protocol::One],
            "clientPIN.getPinToken (protocol 1)",
        ),
    ] {
        let key = FakeKey::new(KeyConfig {
            ctap,
            protocols,
            ..KeyConfig::with_pin("1234")
        });
        let b = Bench::new(&[&key], ScriptedPerson::typing(&["1234", "1234"])).await;
        b.pair().await.unwrap();
        assert_eq!(key.credential_count(), 1);
        assert_eq!(
            b.person.take_asked(),
            vec![first_ask(), Asked::Touch(1)],
            "{ctap:?}"
        );
        let id = b.request().await;
        delivered(b.approve_with_key(&id).await.unwrap());
        assert_eq!(b.person.take_asked(), vec![first_ask(), Asked::Touch(1)]);
        // The library asked the key for its retries before each PIN, and used the protocol.
        let log = key.log();
        assert!(log.iter().any(|c| c == "clientPIN.getPINRetries"));
        assert!(log.iter().any(|c| c == token_command), "{ctap:?}: {log:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_is_asked_again_with_the_tries_the_key_counts() {
    let key = FakeKey::new(KeyConfig::with_pin("1234"));
    let b = Bench::new(&[&key], ScriptedPerson::typing(&["1234"])).await;
    b.pair().await.unwrap();
    b.person.take_asked();
    let id = b.request().await;
    b.person.will_type(&["0000", "1111", "1234"]);
    delivered(b.approve_with_key(&id).await.unwrap());
    let pins: Vec<PinAsk> = b
        .person
        .take_asked()
        .into_iter()
        .filter_map(|a| match a {
            Asked::Pin(p) => Some(p),
            _ => None,
        })
        .collect();
    let ask = |retries, again| PinAsk {
        retries: Some(retries),
        again,
    };
    assert_eq!(pins, vec![ask(8, false), ask(7, true), ask(6, true)]);
    // The right PIN restores the count.
    assert_eq!(key.pin_retries(), PIN_RETRIES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_wrong_pins_block_until_replugged_and_none_left_blocks_for_good() {
    let key = FakeKey::new(KeyConfig::with_pin("1234"));
    let b = Bench::new(&[&key], ScriptedPerson::typing(&["1", "2", "3"])).await;
    let e = key_error(b.pair().await.unwrap_err());
    assert_eq!(e, KeyError::PinBlocked { replug: true });
    assert_eq!(e.code(), "pin_blocked");
    assert_eq!(key.pin_retries(), PIN_RETRIES - 3);
    // Plugged in again, the right PIN works.
    key.plug_in();
    b.person.will_type(&["1234"]);
    b.pair().await.unwrap();
    // A script with one PIN only (as --pin-stdin): a wrong one ends with the count.
    for _ in 0..2 {
        key.plug_in();
        b.person.will_type(&["9", "9", "9"]);
        let _ = b.pair().await.unwrap_err();
    }
    key.plug_in();
    b.person.will_type(&["9", "9"]);
    // 8 - 3 - 3 - 2 = 0 tries: blocked for good; the next ceremony does not even ask.
    assert_eq!(
        key_error(b.pair().await.unwrap_err()),
        KeyError::PinBlocked { replug: false }
    );
    assert_eq!(key.pin_retries(), 0);
    b.person.take_asked();
    key.plug_in();
    assert_eq!(
        key_error(b.pair().await.unwrap_err()),
        KeyError::PinBlocked { replug: false }
    );
    assert!(!b
        .person
        .take_asked()
        .iter()
        .any(|a| matches!(a, Asked::Pin(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_verification_needs_no_pin() {
    for ctap in [Ctap::V21, Ctap::V20] {
        let key = FakeKey::new(KeyConfig {
            ctap,
            pin: None,
            builtin_uv: true,
            ..KeyConfig::with_pin("unused")
        });
        let b = Bench::new(&[&key], ScriptedPerson::default()).await;
        b.pair().await.unwrap();
        let id = b.request().await;
        delivered(b.approve_with_key(&id).await.unwrap());
        assert!(
            !b.person
                .take_asked()
                .iter()
                .any(|a| matches!(a, Asked::Pin(_))),
            "{ctap:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_verifies_nobody_is_never_used_and_can_be_given_a_pin() {
    // A key with the PIN feature but no PIN set: refused, and offered setPIN.
    let key = FakeKey::new(KeyConfig {
        pin: None,
        ..KeyConfig::with_pin("unused")
    });
    let b = Bench::new(&[&key], ScriptedPerson::default()).await;
    // Refused before the link's one-time code is spent: the same link pairs once the key has
    // a PIN.
    let link = b.gw.invite(ALICE);
    let e = b
        .engine
        .pair(
            &link,
            "security key test",
            &mut b.authenticator(Duration::from_secs(10)),
        )
        .await
        .unwrap_err();
    assert_eq!(key_error(e), KeyError::UvUnavailable { can_set_pin: true });
    assert_eq!(key.credential_count(), 0);
    // Too short a PIN is refused before the key is asked.
    b.person.will_type(&["12"]);
    assert!(matches!(
        key_error(
            b.authenticator(Duration::from_secs(5))
                .set_first_pin()
                .unwrap_err()
        ),
        KeyError::PinPolicy(_)
    ));
    b.person.will_type(&["4321"]);
    b.authenticator(Duration::from_secs(5))
        .set_first_pin()
        .unwrap();
    assert!(key.has_pin());
    // A second setPIN is refused: the key has one.
    assert_eq!(
        key_error(
            b.authenticator(Duration::from_secs(5))
                .set_first_pin()
                .unwrap_err()
        ),
        KeyError::PinAlreadySet
    );
    b.person.will_type(&["4321"]);
    b.engine
        .pair(
            &link,
            "security key test",
            &mut b.authenticator(Duration::from_secs(10)),
        )
        .await
        .unwrap();
    assert_eq!(key.credential_count(), 1);

    // A key with neither a PIN feature nor built-in verification cannot be used at all.
    let bare = FakeKey::new(KeyConfig {
        supports_pin: false,
        pin: None,
        ..KeyConfig::with_pin("unused")
    });
    let b = Bench::new(&[&bare], ScriptedPerson::default()).await;
    let e = key_error(b.pair().await.unwrap_err());
    assert_eq!(e, KeyError::UvUnavailable { can_set_pin: false });
    assert_eq!(e.code(), "uv_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_u2f_only_key_is_refused_with_the_reason() {
    let key = FakeKey::new(KeyConfig {
        ctap: Ctap::U2fOnly,
        ..KeyConfig::with_pin("1234")
    });
    let b = Bench::new(&[&key], ScriptedPerson::typing(&["1234"])).await;
    let e = key_error(b.pair().await.unwrap_err());
    assert_eq!(e, KeyError::U2fOnly);
    assert!(e.to_string().contains("only speaks U2F"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_not_registered_for_the_approver_says_for_whom() {
    let paired = FakeKey::new(KeyConfig::with_pin("1234"));
    let other = FakeKey::new(KeyConfig::with_pin("1234"));
    let b = Bench::new(&[&paired], ScriptedPerson::typing(&["1234", "1234"])).await;
    b.pair().await.unwrap();
    let id = b.request().await;
    b.keys.unplug_all();
    b.keys.plug(&other);
    let e = key_error(b.approve_with_key(&id).await.unwrap_err());
    let gateway_name = b.engine.gateways().unwrap()[0].name.clone();
    assert_eq!(
        e,
        KeyError::NoMatchingCredential {
            whom: Some(format!("{ALICE} on {gateway_name}"))
        }
    );
    assert!(e
        .to_string()
        .contains(&format!("not registered for {ALICE} on {gateway_name}")));
    assert_eq!(e.code(), "no_matching_credential");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_touch_times_out_cancel_cancels_and_a_pulled_key_is_said_so() {
    let key = FakeKey::new(KeyConfig::with_pin("1234"));
    let b = Bench::new(&[&key], ScriptedPerson::typing(&["1234"])).await;
    b.pair().await.unwrap();
    let id = b.request().await;

    // Nobody touches: the deadline ends it, and the key is told to stop waiting.
    key.set_presence(Presence::Ignore);
    b.person.will_type(&["1234"]);
    let mut short = b.authenticator(Duration::from_millis(600));
    let e = key_error(b.approve(&id, &mut short).await.unwrap_err());
    assert_eq!(e, KeyError::CeremonyTimeout);
    assert_eq!(key.log().last().map(String::as_str), Some("cancel"));

    // Cancel pressed while the key blinks.
    b.person.will_type(&["1234"]);
    let person = b.person.clone();
    let pressing = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        person.press_cancel();
    });
    let e = key_error(b.approve_with_key(&id).await.unwrap_err());
    pressing.join().unwrap();
    assert_eq!(e, KeyError::CeremonyCancelled);
    b.person.reset_cancel();

    // Pulled out instead of touched.
    key.set_presence(Presence::PullOut);
    b.person.will_type(&["1234"]);
    let e = key_error(b.approve_with_key(&id).await.unwrap_err());
    assert_eq!(e, KeyError::KeyRemoved);
    assert_eq!(e.code(), "key_removed");

    // Plugged in again and touched, the same request is approved: nothing was signed before.
    key.plug_in();
    key.set_presence(Presence::Touch);
    b.person.will_type(&["1234"]);
    delivered(b.approve_with_key(&id).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_several_keys_the_one_touched_is_used() {
    let idle = FakeKey::new(KeyConfig {
        presence: Presence::Ignore,
        ..KeyConfig::with_pin("1111")
    });
    let touched = FakeKey::new(KeyConfig::with_pin("2222"));
    let b = Bench::new(&[&idle, &touched], ScriptedPerson::typing(&["2222"])).await;
    b.pair().await.unwrap();
    assert_eq!(touched.credential_count(), 1);
    assert_eq!(idle.credential_count(), 0);
    assert_eq!(b.person.take_asked()[0], Asked::Touch(2));
    assert!(idle.log().contains(&"selection".to_owned()));
    assert!(idle.log().contains(&"cancel".to_owned()));
}

/// A tampered client: it asks the key for an assertion without a pinUvAuthParam, which CTAP2
/// allows (user presence only), so the key signs with the UV flag unset.
struct UnverifiedClient(FakeKey);

impl Authenticator for UnverifiedClient {
    fn kind(&self) -> AuthenticatorKind {
        AuthenticatorKind::SecurityKey
    }
    fn label(&self) -> &str {
        "a client that skips user verification"
    }
    fn register(
        &mut self,
        _: &Url,
        _: CreationChallengeResponse,
    ) -> Result<RegisterPublicKeyCredential, EngineError> {
        unreachable!("only asked to authenticate")
    }
    fn authenticate(
        &mut self,
        origin: &Url,
        challenge: RequestChallengeResponse,
    ) -> Result<PublicKeyCredential, EngineError> {
        use base64::Engine as _;
        use webauthn_authenticator_rs::ctap2::commands::GetAssertionRequest;
        use webauthn_authenticator_rs::transport::Token;
        let options = challenge.public_key;
        let client_data = client_data_for(
            Ceremony::Get,
            origin,
            &options.rp_id,
            options.challenge.as_ref(),
        )?;
        let request = GetAssertionRequest {
            rp_id: options.rp_id.clone(),
            client_data_hash: countersign_protocol::Digest::of_bytes(&client_data)
                .0
                .to_vec(),
            allow_list: options.allow_credentials.clone(),
            options: None,
            pin_uv_auth_param: None,
            pin_uv_auth_proto: None,
        };
        // The key is touched at once: no timer is needed to drive it.
        let answer = futures::executor::block_on(self.0.token().transmit(request, &NoUi)).unwrap();
        let raw_id = answer.credential.unwrap().id;
        Ok(PublicKeyCredential {
            id: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw_id),
            raw_id,
            response: webauthn_rs_proto::AuthenticatorAssertionResponseRaw {
                authenticator_data: answer.auth_data.unwrap(),
                client_data_json: client_data,
                signature: answer.signature.unwrap(),
                user_handle: None,
            },
            extensions: Default::default(),
            type_: "public-key".into(),
        })
    }
}

#[derive(Debug)]
struct NoUi;

impl webauthn_authenticator_rs::ui::UiCallback for NoUi {
    fn request_pin(&self) -> Option<String> {
        None
    }
    fn request_touch(&self) {}
    fn processing(&self) {}
    fn fingerprint_enrollment_feedback(
        &self,
        _: u32,
        _: Option<webauthn_authenticator_rs::types::EnrollSampleStatus>,
    ) {
    }
    fn cable_qr_code(&self, _: webauthn_authenticator_rs::types::CableRequestType, _: String) {}
    fn dismiss_qr_code(&self) {}
    fn cable_status_update(&self, _: webauthn_authenticator_rs::types::CableState) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_refuses_an_unverified_assertion_and_a_counter_that_went_back() {
    let key = FakeKey::new(KeyConfig::with_pin("1234"));
    let b = Bench::new(&[&key], ScriptedPerson::typing(&["1234"])).await;
    b.pair().await.unwrap();

    // The paired key signs for a client that never asked for verification: refused.
    let id = b.request().await;
    match b
        .approve(&id, &mut UnverifiedClient(key.clone()))
        .await
        .unwrap()
    {
        Delivery::Refused { code, .. } => assert_eq!(code, ErrorCode::UserNotVerified),
        other => panic!("an unverified assertion was accepted: {other:?}"),
    }
    let id = b.request().await;

    // Approved with the key as it should be, then the counter is set back (a clone).
    b.person.will_type(&["1234"]);
    delivered(b.approve_with_key(&id).await.unwrap());
    key.set_counter(0);
    let id = b.request().await;
    b.person.will_type(&["1234"]);
    match b.approve_with_key(&id).await.unwrap() {
        Delivery::Refused { code, .. } => assert_eq!(code, ErrorCode::PasskeyCounterRegressed),
        other => panic!("a regressed counter was accepted: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_key_is_added_with_a_proof_approves_alone_and_the_last_passkey_stays() {
    let first = FakeKey::new(KeyConfig::with_pin("1111"));
    let backup = FakeKey::new(KeyConfig::with_pin("2222"));
    let b = Bench::new(&[&first], ScriptedPerson::typing(&["1111"])).await;
    b.pair().await.unwrap();
    let gateway = b.engine.gateways().unwrap()[0].fingerprint.clone();
    // The first key's passkey (both may be registered in the same second, so the list's order
    // alone does not tell them apart).
    let old = b.engine.passkeys(&gateway).await.unwrap().passkeys[0]
        .cred_id
        .clone();

    // The same key twice: its registration is excluded, nothing is stored.
    b.person.will_type(&["1111", "1111"]);
    let mut key = b.authenticator(Duration::from_secs(10));
    let e = b
        .engine
        .add_passkey(&gateway, &mut key, &mut || Ok(()))
        .await
        .unwrap_err();
    assert_eq!(key_error(e), KeyError::AlreadyRegistered);
    assert_eq!(b.engine.passkeys(&gateway).await.unwrap().passkeys.len(), 1);

    // A key that holds no passkey cannot give the proof.
    b.keys.unplug_all();
    b.keys.plug(&backup);
    b.person.will_type(&["2222"]);
    let e = b
        .engine
        .add_passkey(&gateway, &mut key, &mut || Ok(()))
        .await
        .unwrap_err();
    assert!(matches!(
        key_error(e),
        KeyError::NoMatchingCredential { .. }
    ));

    // The proof by the registered key, then the backup key's registration.
    b.keys.unplug_all();
    b.keys.plug(&first);
    b.person.will_type(&["1111", "2222"]);
    let keys = b.keys.clone();
    let backup2 = backup.clone();
    let list = b
        .engine
        .add_passkey(&gateway, &mut key, &mut move || {
            keys.unplug_all();
            keys.plug(&backup2);
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(list.passkeys.len(), 2);
    assert_eq!(backup.credential_count(), 1);
    let audit = b.gw.audit();
    let added: Vec<_> = audit
        .iter()
        .filter(|(e, _)| e.kind == "passkey.added")
        .collect();
    assert_eq!(added.len(), 1);

    // The backup key alone approves.
    let id = b.request().await;
    b.person.will_type(&["2222"]);
    delivered(b.approve_with_key(&id).await.unwrap());

    // The first passkey is removed; the last one is refused removal.
    let new = list
        .passkeys
        .iter()
        .map(|p| p.cred_id.clone())
        .find(|c| *c != old)
        .unwrap();
    let left = b.engine.remove_passkey(&gateway, &old).await.unwrap();
    assert_eq!(left.passkeys.len(), 1);
    assert_eq!(left.passkeys[0].cred_id, new);
    match b.engine.remove_passkey(&gateway, &new).await.unwrap_err() {
        EngineError::GatewayRefused { code, .. } => assert_eq!(code, ErrorCode::LastPasskey),
        other => panic!("the last passkey was removed: {other}"),
    }
    assert!(b
        .gw
        .audit()
        .iter()
        .any(|(e, _)| e.kind == "passkey.removed"));
    // Both changes are in the device's own audit log.
    let kinds: Vec<String> = b
        .engine
        .audit_entries()
        .unwrap()
        .into_iter()
        .map(|(e, _)| e.kind)
        .collect();
    assert!(kinds.iter().any(|k| k == "passkey.added"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "passkey.removed"), "{kinds:?}");

    // The removed passkey's key no longer approves.
    let id = b.request().await;
    b.keys.unplug_all();
    b.keys.plug(&first);
    b.person.will_type(&["1111"]);
    let e = b.approve_with_key(&id).await.unwrap_err();
    assert!(matches!(
        key_error(e),
        KeyError::NoMatchingCredential { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_wants_a_passkey_to_deny_gets_one() {
    let key = FakeKey::new(KeyConfig::with_pin("1234"));
    let gw = TestGateway::start_with(|c| c.deny_requires_passkey = true).await;
    let b = Bench::on(gw, &[&key], ScriptedPerson::typing(&["1234"]));
    b.pair().await.unwrap();
    let id = b.request().await;
    // The signed request says so, and a denial without the ceremony is refused before signing.
    assert!(b.engine.deny_needs_passkey(&id).unwrap());
    let e = b.engine.deny(&id, "not now").await.unwrap_err();
    assert_eq!(e.code(), "passkey_required");
    assert!(matches!(e, EngineError::DenyNeedsPasskey(_)));
    // With the key: the PIN, a touch, and the gateway accepts the denial.
    b.person.take_asked();
    b.person.will_type(&["1234"]);
    let mut auth = b.authenticator(Duration::from_secs(10));
    let out = b
        .engine
        .deny_with(&id, "not now", Some(&mut auth))
        .await
        .unwrap();
    delivered(out.delivery);
    assert_eq!(b.person.take_asked(), vec![first_ask(), Asked::Touch(1)]);

    // "I did not expect this" denies too: without the key it is refused, with it reported.
    let unexpected = b.request().await;
    let e = b.engine.report_unexpected(&unexpected).await.unwrap_err();
    assert!(matches!(e, EngineError::DenyNeedsPasskey(_)), "{e}");
    b.person.will_type(&["1234"]);
    let out = b
        .engine
        .report_unexpected_with(&unexpected, Some(&mut auth))
        .await
        .unwrap();
    delivered(out.denial.expect("denied here").delivery);
    assert_eq!(out.ack.request_id, unexpected);
    assert_eq!(b.person.take_asked(), vec![first_ask(), Asked::Touch(1)]);
}

/// The development key socket (what the desktop e2e drives the app's agent through): the same
/// ceremonies cross a Unix socket to the fake key, with its keep-alives, a wrong PIN, Cancel
/// while it waits for a touch, and a key pulled out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_key_socket_carries_pin_touch_cancel_and_removal() {
    use countersign_approver::security_key::{DevKeySocket, DEV_KEY_SOCKET_FILE};
    use countersign_test_support::fido::KeySocket;

    let key = FakeKey::new(KeyConfig::with_pin("1234"));
    let b = Bench::new(&[], ScriptedPerson::typing(&["1234"])).await;
    let path = b._dir.path().join(DEV_KEY_SOCKET_FILE);
    let over_socket = |timeout: Duration| {
        SecurityKey::new(DevKeySocket::new(path.clone()), Arc::new(b.person.clone()))
            .unwrap()
            .with_timeout(timeout)
    };
    // Nobody serving the socket: no key plugged in, asked for, and the ceremony times out.
    let mut early = over_socket(Duration::from_millis(500));
    assert!(early.development_mode());
    assert!(early.label().contains("development mode"));
    let e = b.pair_with(&mut early).await.unwrap_err();
    assert_eq!(key_error(e), KeyError::CeremonyTimeout);
    assert_eq!(b.person.take_asked(), vec![Asked::Insert]);

    let served = KeySocket::serve(key.clone(), &path).unwrap();
    b.pair_with(&mut over_socket(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(b.person.take_asked(), vec![first_ask(), Asked::Touch(1)]);

    // A wrong PIN is counted down by the key and asked again with the tries left.
    let id = b.request().await;
    b.person.will_type(&["0000", "1234"]);
    delivered(
        b.approve(&id, &mut over_socket(Duration::from_secs(10)))
            .await
            .unwrap(),
    );
    assert_eq!(
        b.person.take_asked(),
        vec![
            first_ask(),
            Asked::Pin(PinAsk {
                retries: Some(PIN_RETRIES - 1),
                again: true
            }),
            Asked::Touch(1)
        ]
    );
    assert_eq!(key.pin_retries(), PIN_RETRIES);

    // Cancel while the key waits for a touch: the command is cancelled on the key.
    let id = b.request().await;
    key.set_presence(Presence::Ignore);
    b.person.will_type(&["1234"]);
    let person = b.person.clone();
    let pressing = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        person.press_cancel();
    });
    let e = b
        .approve(&id, &mut over_socket(Duration::from_secs(10)))
        .await
        .unwrap_err();
    pressing.join().unwrap();
    assert_eq!(key_error(e), KeyError::CeremonyCancelled);
    assert!(key.log().iter().any(|c| c == "cancel"), "{:?}", key.log());
    b.person.reset_cancel();
    b.person.take_asked();

    // Pulled out while it waits for a touch.
    key.set_presence(Presence::PullOut);
    b.person.will_type(&["1234"]);
    let e = b
        .approve(&id, &mut over_socket(Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert_eq!(key_error(e), KeyError::KeyRemoved);
    drop(served);
}
