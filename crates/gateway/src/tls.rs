//! HTTPS served by the gateway itself: the certificate chain and key from `tls_cert` and
//! `tls_key` (PEM), rustls with the ring provider, and the certificate's SHA-256, which pairing
//! links carry so that approvers pin it.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest as _;

use crate::error::GatewayError;

/// A loaded certificate: the server configuration and the pin.
pub struct Tls {
    pub server: Arc<rustls::ServerConfig>,
    /// Lowercase hex SHA-256 of the leaf certificate (DER).
    pub pin: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("pin", &self.pin).finish()
    }
}

fn invalid(what: &Path, e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Invalid(format!("Cannot use {} for TLS: {e}", what.display()))
}

/// Loads a PEM certificate chain (leaf first) and its private key.
pub fn load(cert: &Path, key: &Path) -> Result<Tls, GatewayError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, e))?;
    let leaf = certs
        .first()
        .ok_or_else(|| invalid(cert, "the file holds no certificate"))?;
    let pin = hex::encode(sha2::Sha256::digest(leaf.as_ref()));
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, e))?;
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| invalid(cert, e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| invalid(cert, e))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        server: Arc::new(server),
        pin,
    })
}
