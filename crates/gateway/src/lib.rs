//! The Countersign reference gateway.
//!
//! It holds risky actions until approvers decide: requesters create approval requests over
//! HTTP, the gateway signs them and pushes them to every paired device of every eligible
//! approver over Server-Sent Events, and it verifies each decision (device signature, request
//! digest, expiry, the WebAuthn assertion against once-only ceremony state, match code,
//! eligibility, quorum) before answering with a signed receipt.
//!
//! Module map: [`config`] settings, [`store`] SQLite, [`pairing`] invites and device pairing,
//! [`approvals`] requests, decisions and quorum, [`stream`] the push hub and SSE endpoint,
//! [`http`] the axum router, [`tokens`] requester tokens, [`client`] the requester-side HTTP
//! client used by the `request` command.
#![forbid(unsafe_code)]

pub mod approvals;
pub mod checkpoints;
pub mod client;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod hub;
pub mod openapi;
pub mod pairing;
pub mod reports;
pub mod schema;
pub mod store;
pub mod stream;
pub mod tls;
pub mod tokens;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use countersign_protocol::KeyPair;
use webauthn_rs::prelude::{Webauthn, WebauthnBuilder};

pub use config::Config;
pub use error::{ApiError, GatewayError};

/// Everything a request handler needs, shared behind an `Arc`.
pub struct Gateway {
    pub config: Config,
    pub store: store::Store,
    pub key: KeyPair,
    pub fingerprint: String,
    pub clock: clock::Clock,
    pub hub: Arc<hub::Hub>,
    pub webauthn: Webauthn,
    /// Woken whenever any request changes state, for long-polling requesters.
    pub changes: tokio::sync::Notify,
    /// Device-auth nonces seen inside the clock window, so a captured header is used once.
    pub seen_nonces: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    /// The certificate, when the gateway serves HTTPS itself.
    pub tls: Option<tls::Tls>,
}

impl Gateway {
    /// Opens (creating if needed) the data directory, the database and the signing key.
    pub fn open(config: Config) -> Result<Arc<Gateway>, GatewayError> {
        let dir = &config.data_dir;
        create_private_dir(dir)?;
        let key = load_or_create_key(&dir.join("gateway.key"))?;
        let hub = Arc::new(hub::Hub::new());
        let store = store::Store::open(&dir.join("gateway.db"), hub.clone())?;
        let webauthn = WebauthnBuilder::new(&config.webauthn_rp_id, &config.webauthn_origin)
            .and_then(|b| b.rp_name(&config.name).build())
            .map_err(|e| GatewayError::WebAuthn {
                rp_id: config.webauthn_rp_id.clone(),
                origin: config.webauthn_origin.to_string(),
                reason: e.to_string(),
            })?;
        let fingerprint = key.public().fingerprint();
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::load(cert, key)?),
            (None, None) => None,
            _ => {
                return Err(GatewayError::Invalid(
                    "tls_cert and tls_key must be given together.".into(),
                ))
            }
        };
        Ok(Arc::new(Gateway {
            config,
            store,
            key,
            fingerprint,
            clock: clock::Clock::default(),
            hub,
            webauthn,
            changes: tokio::sync::Notify::new(),
            seen_nonces: std::sync::Mutex::new(std::collections::HashMap::new()),
            tls,
        }))
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}

/// A gateway serving on a socket, with its background tasks.
pub struct Running {
    pub gateway: Arc<Gateway>,
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    sweeper: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The base URL clients use, e.g. `http://127.0.0.1:40123/`.
    pub fn url(&self) -> url::Url {
        let mut u = self.gateway.config.public_url();
        if self.gateway.config.public_url.is_none() {
            let _ = u.set_port(Some(self.addr.port()));
        }
        u
    }

    /// Stops accepting connections and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.sweeper.abort();
        self.gateway.hub.close();
        let _ = (&mut self.task).await;
    }

    /// Ends the server task at once, as a crash would (connections are dropped).
    pub fn abort(self) {
        self.task.abort();
        self.sweeper.abort();
        self.gateway.hub.close();
    }
}

/// Binds `config.listen` (port 0 picks a free port) and serves until shut down.
pub async fn serve(gateway: Arc<Gateway>) -> Result<Running, GatewayError> {
    let listener = tokio::net::TcpListener::bind(gateway.config.listen)
        .await
        .map_err(|source| GatewayError::Listen {
            addr: gateway.config.listen,
            source,
        })?;
    serve_on(gateway, listener)
}

/// Serves on an already bound listener.
pub fn serve_on(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
) -> Result<Running, GatewayError> {
    let addr = listener
        .local_addr()
        .map_err(|source| GatewayError::Listen {
            addr: gateway.config.listen,
            source,
        })?;
    let app = http::router(gateway.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = match &gateway.tls {
        None => tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(%e, "the HTTP server stopped");
            }
        }),
        Some(t) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(t.server.clone());
            let std_listener = listener
                .into_std()
                .map_err(|source| GatewayError::Listen { addr, source })?;
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                let _ = rx.await;
                stopper.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
            });
            let server = axum_server::from_tcp_rustls(std_listener, config)
                .map_err(|source| GatewayError::Listen { addr, source })?
                .handle(handle);
            tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!(%e, "the HTTPS server stopped");
                }
            })
        }
    };
    let sweeper = tokio::spawn(approvals::expiry_sweeper(gateway.clone()));
    Ok(Running {
        gateway,
        addr,
        shutdown: Some(tx),
        task,
        sweeper,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), GatewayError> {
    use std::os::unix::fs::DirBuilderExt;
    let err = |source| GatewayError::DataDir {
        path: dir.to_owned(),
        source,
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    Ok(())
}

/// Loads the gateway's Ed25519 seed, creating it (mode 0600, written then renamed) if absent.
fn load_or_create_key(path: &Path) -> Result<KeyPair, GatewayError> {
    use std::os::unix::fs::OpenOptionsExt;
    let bad = |reason: String| GatewayError::BadKey {
        path: path.to_owned(),
        reason,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let seed: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| bad(format!("expected 32 bytes, found {}", bytes.len())))?;
            Ok(KeyPair::from_seed(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate();
            let tmp = path.with_extension("key.tmp");
            let io = |source| GatewayError::DataDir {
                path: path.to_owned(),
                source,
            };
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(&key.seed()).map_err(io)?;
            f.sync_all().map_err(io)?;
            std::fs::rename(&tmp, path).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(bad(e.to_string())),
    }
}
