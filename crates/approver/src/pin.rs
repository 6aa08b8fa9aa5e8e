//! TLS certificate pinning. A gateway paired through a link that carries `tls=<sha256>` is
//! reached only over TLS with exactly that certificate: the verifier accepts the connection when
//! the SHA-256 of the leaf certificate the server presents equals the pin, and refuses it
//! otherwise, whatever certificate authority signed it. Handshake signatures are still checked
//! with the certificate's key, so only the holder of the pinned certificate's private key can
//! answer.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Digest as _;

use crate::engine::Engine;
use crate::error::EngineError;

#[derive(Debug)]
struct PinVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = hex::encode(sha2::Sha256::digest(end_entity.as_ref()));
        if seen == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the gateway's TLS certificate (sha256 {seen}) is not the one pinned at pairing (sha256 {})",
                self.pin
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An HTTP client that talks only to the server holding the certificate with this SHA-256.
pub(crate) fn pinned_client(pin: &str) -> Result<reqwest::Client, EngineError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError::InvalidInput(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinVerifier {
            pin: pin.to_owned(),
            provider,
        }))
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .https_only(true)
        .connect_timeout(std::time::Duration::from_secs(10))
        .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| EngineError::InvalidInput(format!("cannot build the HTTP client: {e}")))
}

impl Engine {
    /// The HTTP client for a gateway with this certificate pin (the shared client when none).
    pub(crate) fn client_for_pin(&self, pin: Option<&str>) -> Result<reqwest::Client, EngineError> {
        let Some(pin) = pin else {
            return Ok(self.inner.http.clone());
        };
        let mut cache = self
            .inner
            .pinned
            .lock()
            .map_err(|_| EngineError::Corrupt("the client cache lock is poisoned".into()))?;
        if let Some(c) = cache.get(pin) {
            return Ok(c.clone());
        }
        let c = pinned_client(pin)?;
        cache.insert(pin.to_owned(), c.clone());
        Ok(c)
    }

    /// The HTTP client for `gw`: pinned to its certificate when one was pinned at pairing.
    pub(crate) fn http_for(
        &self,
        gw: &crate::gateway::GatewayRecord,
    ) -> Result<reqwest::Client, EngineError> {
        self.client_for_pin(gw.tls_pin.as_deref())
    }
}
