//! Self-signed certificates for a gateway that serves HTTPS, with the pin its pairing links carry.

use std::path::{Path, PathBuf};

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files into `dir`
/// under `name`: (certificate path, key path, lowercase hex SHA-256 of the certificate).
pub fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    use sha2::Digest as _;
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
    let pin = hex::encode(sha2::Sha256::digest(cert.der().as_ref()));
    (cert_path, key_path, pin)
}

/// A CA written as PEM into `dir` under `name`, and a client certificate it issued (for
/// `kube-apiserver`, client authentication) with its key, as one PEM identity: what a server
/// that requires mutual TLS trusts, and what its one legitimate client presents.
pub fn ca_and_client(dir: &Path, name: &str) -> (PathBuf, Vec<u8>) {
    let (ca, mut identities) = ca_and_clients(dir, name, &["kube-apiserver"]);
    (ca, identities.remove(0))
}

/// Like [`ca_and_client`], with one client certificate per name in `clients` (each its DNS
/// name and common name), in that order.
pub fn ca_and_clients(dir: &Path, name: &str, clients: &[&str]) -> (PathBuf, Vec<Vec<u8>>) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let ca_path = dir.join(format!("{name}-ca.crt"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let identities = clients
        .iter()
        .map(|client_name| {
            let client_key = KeyPair::generate().unwrap();
            let mut client_params = CertificateParams::new(vec![client_name.to_string()]).unwrap();
            client_params
                .distinguished_name
                .push(DnType::CommonName, *client_name);
            client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
            format!("{}{}", client.pem(), client_key.serialize_pem()).into_bytes()
        })
        .collect();
    (ca_path, identities)
}
