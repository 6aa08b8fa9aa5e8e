//! TLS: the gateway's certificate is pinned at pairing, and a different one is refused.

use countersign_approver::Delivery;
use countersign_test_support::{reopen_gateway, Approver, TestGateway};

/// The gateway serves HTTPS with a self-signed certificate. Its pairing link carries the
/// certificate's SHA-256 and the approver pins it: pairing, the stream and a decision work over
/// TLS. A link with another pin is refused at pairing; after the gateway restarts with a
/// different certificate (same key, data and address) the approver refuses to talk to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_certificate_is_pinned_at_pairing_and_a_different_one_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let (cert1, key1, pin1) = countersign_test_support::self_signed(certs.path(), "first");
    let (cert2, key2, pin2) = countersign_test_support::self_signed(certs.path(), "second");
    assert_ne!(pin1, pin2);
    let gw = TestGateway::start_with(|c| {
        c.tls_cert = Some(cert1.clone());
        c.tls_key = Some(key1.clone());
    })
    .await;
    let addr = gw.running.addr;
    let data_dir = gw.gw().config.data_dir.clone();
    let create = |gw: &std::sync::Arc<countersign_gateway::Gateway>, summary: &str| {
        let n = countersign_protocol::api::NewRequest {
            action: "deploy".into(),
            resource: "prod/api".into(),
            risk: None,
            summary: summary.into(),
            detail: String::new(),
            reason: String::new(),
            ttl_seconds: 300,
            approvers: vec!["alice@example.com".into()],
            min_approvals: 1,
            require_match: false,
            break_glass: false,
        };
        countersign_gateway::approvals::create_request(gw, "ci-bot", n)
            .unwrap()
            .request
            .body
            .id
    };

    let link = gw.invite("alice@example.com");
    assert_eq!(link.gateway.scheme(), "https");
    assert_eq!(link.tls.as_deref(), Some(pin1.as_str()));
    let mut alice = Approver::new();
    alice.pair(&link).await;
    assert_eq!(
        alice.engine.gateways().unwrap()[0].tls_pin,
        Some(pin1.clone())
    );
    let first = create(gw.gw(), "over TLS");
    alice.engine.sync().await.unwrap();
    let out = alice
        .engine
        .approve(&first, None, &mut alice.auth)
        .await
        .unwrap();
    assert!(
        matches!(out.delivery, Delivery::Delivered { .. }),
        "{:?}",
        out.delivery
    );

    // A link that pins another certificate: pairing never starts.
    let mut wrong = gw.invite("bob@example.com");
    wrong.tls = Some(pin2.clone());
    let mut bob = Approver::new();
    let err = bob
        .engine
        .pair(&wrong, "bob's laptop", &mut bob.auth)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "gateway_unreachable", "{err}");
    assert!(
        err.to_string().contains("not the one pinned at pairing"),
        "{err}"
    );

    // The gateway comes back with another certificate: the approver will not talk to it.
    let TestGateway { running, dir, .. } = gw;
    running.shutdown().await;
    let running = reopen_gateway(
        &data_dir,
        addr,
        |c| {
            c.tls_cert = Some(cert2.clone());
            c.tls_key = Some(key2.clone());
        },
        |_| {},
    )
    .await;
    let second = create(&running.gateway, "after the certificate changed");
    let (reports, _) = alice.engine.sync().await.unwrap();
    let error = reports[0].error.clone().unwrap_or_default();
    assert!(error.contains("not the one pinned at pairing"), "{error}");
    assert!(
        alice.engine.show(&second).is_err(),
        "a request arrived past the pin"
    );
    running.shutdown().await;
    drop(dir);
}
