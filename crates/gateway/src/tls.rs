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
    load_with(cert, key, None)
}

/// Like [`load`], and requires every client to present a certificate that chains to a CA in
/// the PEM file `client_ca` (mutual TLS): a client without one fails the handshake.
pub fn load_mutual(cert: &Path, key: &Path, client_ca: &Path) -> Result<Tls, GatewayError> {
    load_with(cert, key, Some(client_ca))
}

fn load_with(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Tls, GatewayError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, e))?;
    let leaf = certs
        .first()
        .ok_or_else(|| invalid(cert, "the file holds no certificate"))?;
    let pin = hex::encode(sha2::Sha256::digest(leaf.as_ref()));
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(cert, e))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| invalid(ca, e))? {
                roots
                    .add(c.map_err(|e| invalid(ca, e))?)
                    .map_err(|e| invalid(ca, e))?;
            }
            if roots.is_empty() {
                return Err(invalid(ca, "the file holds no CA certificate"));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| invalid(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder
        .with_single_cert(certs, key)
        .map_err(|e| invalid(cert, e))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        server: Arc::new(server),
        pin,
    })
}

/// Serves `app` over HTTPS with `config` on `listener` until `stop` fires (then connections get
/// five seconds to finish).
pub(crate) fn serve(
    listener: std::net::TcpListener,
    app: axum::Router,
    config: Arc<rustls::ServerConfig>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<tokio::task::JoinHandle<()>, GatewayError> {
    let addr = listener
        .local_addr()
        .map_err(|source| GatewayError::Listen {
            addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        let _ = stop.await;
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(config),
    )
    .map_err(|source| GatewayError::Listen { addr, source })?
    .handle(handle);
    Ok(tokio::spawn(async move {
        if let Err(e) = server.serve(app.into_make_service()).await {
            tracing::error!(%e, "an HTTPS server stopped");
        }
    }))
}
