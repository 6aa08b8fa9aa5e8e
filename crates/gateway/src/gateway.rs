//! [`Gateway`]: what every handler shares (settings, store, signing key, clock, push hub,
//! WebAuthn relying party and the long-poll notifier), opening it
//! from a data directory (the database and the gateway's key file), and
//! [`Gateway::blocking`], through which async code reaches the store.
//!
//! This module depends only on the modules that build its parts, none of which depends on it,
//! so every module that takes a `&Gateway` can import it without forming a loop.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use countersign_protocol::{KeyPair, PROTOCOL_VERSION};
use webauthn_rs::prelude::{AttestationCaList, Webauthn, WebauthnBuilder};

use crate::clock::Clock;
use crate::config::Config;
use crate::error::{ApiError, GatewayError};
use crate::hub::Hub;
use crate::policy::Policy;
use crate::store::Store;
use crate::tls;

/// Everything a request handler needs, shared behind an `Arc`.
pub struct Gateway {
    pub config: Config,
    pub store: Store,
    pub key: KeyPair,
    pub fingerprint: String,
    pub clock: Clock,
    pub hub: Arc<Hub>,
    pub webauthn: Webauthn,
    /// With `attestation = "direct"`: the CAs (and AAGUIDs) a registration must attest to.
    pub attestation_cas: Option<AttestationCaList>,
    /// Woken whenever any request changes state, for long-polling requesters.
    pub changes: tokio::sync::Notify,
    /// The certificate, when the gateway serves HTTPS itself.
    pub tls: Option<tls::Tls>,
    /// The secrets the configuration names by file, read when the gateway opened.
    pub secrets: crate::config::secrets::Secrets,
    /// Open windows of aggregated refusals (see `refusals`).
    pub refusals: std::sync::Mutex<countersign_protocol::aggregate::Aggregator>,
    /// The policy in force (`policy_file`, or the default), replaced only by one that loads.
    pub policy: std::sync::RwLock<Arc<Policy>>,
    /// What the policy in force was made from, for the watcher (`reload`) to compare with.
    policy_sources: std::sync::Mutex<crate::policy::Sources>,
    /// Held while the policy is loaded again, so that one reload runs at a time.
    pub(crate) policy_reload: std::sync::Mutex<()>,
    /// The directory version the last reload read, loaded or refused: not tried again for it.
    pub(crate) policy_tried_version: std::sync::atomic::AtomicI64,
    /// The Prometheus figures (`metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Set when shutdown began: `/readyz` answers 503 and long polls answer at once.
    draining: std::sync::atomic::AtomicBool,
}

impl Gateway {
    /// Opens (creating if needed) the data directory, the database and the signing key.
    pub fn open(config: Config) -> Result<Arc<Gateway>, GatewayError> {
        let dir = &config.data_dir;
        create_private_dir(dir)?;
        let key = load_or_create_key(&dir.join("gateway.key"))?;
        let hub = Arc::new(Hub::new());
        let store = match &config.database_url {
            Some(url) => Store::open_postgres(url, hub.clone())?,
            None => Store::open(&dir.join("gateway.db"), hub.clone())?,
        };
        if let Some(schema) = store.upgraded_from_protocol_1() {
            let now = Clock::default().now();
            store.write(|tx| {
                tx.audit_append(
                    now,
                    "protocol.upgraded",
                    None,
                    serde_json::json!({"from": 1, "to": PROTOCOL_VERSION, "schema_from": schema}),
                )
            })?;
            tracing::warn!(
                "upgraded to protocol version {PROTOCOL_VERSION}: every device paired before must pair again"
            );
        }
        let webauthn = WebauthnBuilder::new(&config.webauthn_rp_id, &config.webauthn_origin)
            .and_then(|b| b.rp_name(&config.name).build())
            .map_err(|e| GatewayError::WebAuthn {
                rp_id: config.webauthn_rp_id.clone(),
                origin: config.webauthn_origin.to_string(),
                reason: e.to_string(),
            })?;
        let attestation_cas = crate::config::attestation_cas(&config)?;
        crate::config::webhooks::check(&config.webhooks).map_err(GatewayError::Invalid)?;
        if let Some(email) = &config.email {
            crate::config::email::check(email).map_err(GatewayError::Invalid)?;
        }
        let secrets =
            crate::config::secrets::Secrets::load(&config).map_err(GatewayError::Invalid)?;
        if let Some(email) = &config.email {
            email
                .mailer(secrets.smtp_password.as_deref())
                .map_err(GatewayError::Invalid)?;
        }
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
        if let Some(path) = &config.directory_file {
            crate::directory::load(&store, path, Clock::default().now())
                .map_err(|e| GatewayError::Invalid(e.to_string()))?;
        }
        let (directory, version) = store.read(crate::directory::listed_at_version)?;
        let policy_sources = crate::policy::sources(&config, &directory);
        let policy = crate::policy::load_for(&config, (&directory, version))
            .map_err(|e| GatewayError::Invalid(e.to_string()))?;
        tracing::debug!(policy = %policy.hash, tests = policy.tests.len(), "policy loaded");
        let gw = Arc::new(Gateway {
            policy: std::sync::RwLock::new(Arc::new(policy)),
            policy_sources: std::sync::Mutex::new(policy_sources),
            policy_reload: std::sync::Mutex::new(()),
            policy_tried_version: std::sync::atomic::AtomicI64::new(version),
            config,
            store,
            key,
            fingerprint,
            clock: Clock::default(),
            hub,
            webauthn,
            attestation_cas,
            changes: tokio::sync::Notify::new(),
            tls,
            secrets,
            refusals: std::sync::Mutex::new(Default::default()),
            metrics: crate::metrics::Metrics::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
        });
        Ok(gw)
    }

    /// The WebAuthn origin as an origin serialisation (`https://host[:port]`, no path), however
    /// the configuration wrote it: what devices must put in their client data.
    pub fn origin(&self) -> String {
        countersign_protocol::webauthn::origin_serialization(&self.config.webauthn_origin)
            .unwrap_or_else(|| self.config.webauthn_origin.to_string())
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Begins shutdown: `/readyz` answers 503 from now on, so a load balancer sends no new
    /// connections here, and long-polling requesters are answered at once (they poll again,
    /// through the load balancer, elsewhere).
    pub fn start_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.changes.notify_waiters();
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// What the policy in force was made from.
    pub fn policy_sources(&self) -> crate::policy::Sources {
        match self.policy_sources.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Records what the policy being loaded is made from.
    pub fn set_policy_sources(&self, sources: crate::policy::Sources) {
        match self.policy_sources.lock() {
            Ok(mut s) => *s = sources,
            Err(poisoned) => *poisoned.into_inner() = sources,
        }
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            // A writer only swaps an `Arc`; a poisoned lock still holds a loaded policy.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Runs `f` on tokio's blocking pool and awaits its result. This is how async code reaches
    /// the store: every store read and write from a handler, a stream or a background task,
    /// together with the synchronous work around it (signature checks, the domain's rules),
    /// goes through here, so no transaction ever runs on an async worker thread. A commit's
    /// fsync or a wait for the store's lock therefore never stalls other connections, and a
    /// backend with a blocking client (one that drives a runtime of its own) can serve them.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Gateway) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let gw = self.clone();
        tokio::task::spawn_blocking(move || f(&gw))
            .await
            .map_err(|e| ApiError::internal("blocking task", e))?
    }
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
