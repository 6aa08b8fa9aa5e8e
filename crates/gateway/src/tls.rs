//! HTTPS served by the gateway itself: the certificate chain and key from `tls_cert` and
//! `tls_key` (PEM), rustls with the ring provider, and the certificate's SHA-256, which pairing
//! links carry so that approvers pin it.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
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
/// the PEM file `client_ca` (mutual TLS), and carries one of `client_names` as a DNS name when
/// there are any: a client without one fails the handshake.
pub fn load_mutual(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    client_names: &[String],
) -> Result<Tls, GatewayError> {
    load_with(cert, key, Some((client_ca, client_names)))
}

fn load_with(
    cert: &Path,
    key: &Path,
    client_ca: Option<(&Path, &[String])>,
) -> Result<Tls, GatewayError> {
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
        Some((ca, names)) => {
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
            if names.is_empty() {
                builder.with_client_cert_verifier(verifier)
            } else {
                let names = names
                    .iter()
                    .map(|n| {
                        ServerName::try_from(n.clone())
                            .map_err(|e| invalid(ca, format!("the client name {n:?}: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                builder.with_client_cert_verifier(Arc::new(NamedClients {
                    inner: verifier,
                    names,
                }))
            }
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

/// A client verifier that also wants one of `names` among the certificate's DNS names: the
/// CA's chain check first, then the name, so that a CA which issues more than the API
/// server's certificate does not let every holder in.
#[derive(Debug)]
struct NamedClients {
    inner: Arc<dyn ClientCertVerifier>,
    names: Vec<ServerName<'static>>,
}

impl ClientCertVerifier for NamedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self
            .names
            .iter()
            .any(|n| cert.verify_is_valid_for_subject_name(n).is_ok())
        {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
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
