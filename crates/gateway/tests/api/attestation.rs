//! The attestation policy: with `attestation = "direct"` only authenticators whose attestation
//! chains to a configured CA register, and `allowed_aaguids` narrows them to models the chain
//! vouches for; the settings that would make an AAGUID a mere claim are refused at start.

use countersign_gateway::admin;
use countersign_gateway::config::{Attestation, Config};
use countersign_gateway::gateway::Gateway;
use countersign_test_support::{test_config, Device, TestGateway};
use webauthn_authenticator_rs::softtoken::SoftToken;

use crate::refusals::Refusals;

/// A soft token and its attestation CA, as a PEM file in `dir`.
fn token_with_ca(dir: &std::path::Path, name: &str) -> (SoftToken, std::path::PathBuf) {
    use base64::Engine as _;
    use crypto_glue::traits::EncodeDer as _;
    let (token, ca) = SoftToken::new(true).unwrap();
    let der = ca.to_der().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, pem).unwrap();
    (token, path)
}

async fn pair(
    h: &TestGateway,
    token: SoftToken,
) -> Result<Device, countersign_test_support::Refusal> {
    Device::pair_with(
        &reqwest::Client::new(),
        &h.invite("alice@example.com"),
        "attested device",
        token,
    )
    .await
}

#[tokio::test]
async fn direct_attestation_admits_only_keys_a_trusted_ca_attests() {
    let certs = tempfile::tempdir().unwrap();
    let (trusted, ca) = token_with_ca(certs.path(), "trusted");
    let (other, _) = token_with_ca(certs.path(), "other");
    let h = TestGateway::start_with(|c| {
        c.attestation = Attestation::Direct;
        c.attestation_ca = vec![ca.clone()];
    })
    .await;
    pair(&h, trusted).await.unwrap();
    let listed = &admin::list(h.gw(), None).unwrap()[0].passkeys[0];
    assert!(listed.attested, "registered under a verified chain");
    let err = pair(&h, other).await.unwrap_err();
    h.expect_pairing_rejection(&err, "attestation_rejected");
    assert!(err.text.contains("attestation"), "{}", err.text);
}

#[tokio::test]
async fn allowed_aaguids_narrow_the_attested_models() {
    let certs = tempfile::tempdir().unwrap();
    let (token, ca) = token_with_ca(certs.path(), "maker");
    // The model's AAGUID, as it claims it where nothing is checked.
    let open = TestGateway::start().await;
    let first = pair(&open, token).await.unwrap();
    let listed = admin::list(open.gw(), None).unwrap()[0].passkeys[0].clone();
    assert!(!listed.attested, "nothing checked: only a claim");
    assert_eq!(listed.model, None, "a soft token is no model anyone makes");
    let claimed: uuid::Uuid = listed.aaguid.as_deref().unwrap().parse().unwrap();
    // Its AAGUID allowed under its CA: registers.
    let allowed = TestGateway::start_with(|c| {
        c.attestation = Attestation::Direct;
        c.attestation_ca = vec![ca.clone()];
        c.allowed_aaguids = vec![claimed];
    })
    .await;
    let second = pair(&allowed, first.token).await.unwrap();
    // Only another model allowed: the same key is refused.
    let narrow = TestGateway::start_with(|c| {
        c.attestation = Attestation::Direct;
        c.attestation_ca = vec![ca.clone()];
        c.allowed_aaguids = vec![uuid::Uuid::new_v4()];
    })
    .await;
    let err = pair(&narrow, second.token).await.unwrap_err();
    narrow.expect_pairing_rejection(&err, "attestation_rejected");
}

#[test]
fn settings_that_would_trust_a_claim_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c: Config = test_config(dir.path().join("gw"));
    c.allowed_aaguids = vec![uuid::Uuid::new_v4()];
    let e = Gateway::open(c)
        .err()
        .expect("an AAGUID filter without attestation");
    assert!(
        e.to_string().contains("allowed_aaguids needs attestation"),
        "{e}"
    );
    let mut c: Config = test_config(dir.path().join("gw2"));
    c.attestation = Attestation::Direct;
    let e = Gateway::open(c)
        .err()
        .expect("direct attestation without a CA");
    assert!(e.to_string().contains("needs attestation_ca"), "{e}");
}
