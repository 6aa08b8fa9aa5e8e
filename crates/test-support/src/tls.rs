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
