//! Gateway settings: defaults, then a TOML file, then `COUNTERSIGN_*` environment variables,
//! then command-line flags (applied by the binary).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

pub mod email;
pub mod github;
pub mod kubernetes;
pub mod secrets;
pub mod webhooks;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("Cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("The configuration file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("The environment variable {name} is invalid: {message}")]
    Env { name: String, message: String },
}

/// Everything the gateway can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Human name shown to approvers.
    pub name: String,
    /// Where the HTTP API listens. Loopback by default.
    pub listen: SocketAddr,
    /// The URL approvers reach the gateway at, written into pairing links. Defaults to
    /// `http://<listen>/`.
    pub public_url: Option<Url>,
    /// Where the database and the signing key live.
    pub data_dir: PathBuf,
    /// A PostgreSQL database shared by several gateway replicas (`postgres://user@host/db`);
    /// unset: the SQLite file `gateway.db` in `data_dir` (docs/operations.md). The signing key
    /// stays in `data_dir`: every replica needs the same one.
    pub database_url: Option<String>,
    /// A PEM certificate chain and its PEM private key: when both are set the gateway serves
    /// HTTPS itself, its URL is `https://`, and pairing links pin the certificate.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// WebAuthn relying party id and origin used in every ceremony with this gateway.
    pub webauthn_rp_id: String,
    pub webauthn_origin: Url,
    /// Seconds between SSE keep-alive comments.
    pub keepalive_seconds: u64,
    /// Where the operations endpoints listen (`/metrics`, and `/healthz` and `/readyz`, which
    /// the API's listener serves too); unset: no metrics. Keep it off the public network.
    pub operations_listen: Option<SocketAddr>,
    /// How log lines are written to standard error: `text` for people, `json` (one object per
    /// line) for a log collector. Read by the binary before anything else.
    pub log_format: LogFormat,
    /// At shutdown (SIGTERM), how long `/readyz` answers 503 before the streams are closed and
    /// the listener stops, so a load balancer takes this replica out first and the devices
    /// reconnect to another one. 0 (the default) for a single node.
    pub shutdown_drain_seconds: u64,
    /// How long a pairing link works.
    pub invite_ttl_seconds: i64,
    pub default_ttl_seconds: u32,
    pub max_ttl_seconds: u32,
    /// Requests one requester may create per minute.
    pub rate_limit_per_minute: u32,
    /// Actions (exact names, or a prefix ending in `*`) that always require number matching.
    pub match_required_actions: Vec<String>,
    /// Resources (exact names, or a prefix ending in `*`) that always require number matching.
    pub match_required_resources: Vec<String>,
    /// Whether a deny must carry a passkey assertion too.
    pub deny_requires_passkey: bool,
    /// Wrong match codes tolerated per request before it is denied.
    pub max_match_failures: u32,
    /// How often pending requests are checked for expiry, in milliseconds.
    pub expiry_sweep_ms: u64,
    /// Which passkeys may register: `none` (any authenticator; its AAGUID is only a claim) or
    /// `direct` (only authenticators whose attestation chains to a CA in `attestation_ca`).
    pub attestation: Attestation,
    /// PEM files of the attestation root CAs trusted with `attestation = "direct"`.
    pub attestation_ca: Vec<PathBuf>,
    /// With `attestation = "direct"`, only these AAGUIDs (verified by the chain) may register;
    /// empty: any model the CAs attest.
    pub allowed_aaguids: Vec<uuid::Uuid>,
    /// A directory of people (TOML, or JSON by its `.json` name) that replaces the one kept by
    /// `countersign-gateway approver …`, read at start (`directory`).
    pub directory_file: Option<PathBuf>,
    /// The policy (Rego, docs/policy.md); unset: the embedded default policy.
    pub policy_file: Option<PathBuf>,
    /// The operator's data for the policy: a JSON object whose members the policy reads as
    /// `data.<name>` (a change calendar as `data.freezes`, say); watched like the policy.
    pub policy_data_file: Option<PathBuf>,
    /// How often, in seconds, the policy and directory files are checked for changes (0: never
    /// while running; they are read when the gateway opens).
    pub reload_seconds: u64,
    /// The highest risk the policy may approve by itself (`mode = "auto"`): `none`, `low`,
    /// `medium`, `high` or `critical`. A request above it is refused, whatever the policy says.
    pub auto_approve_max_risk: AutoApproveCeiling,
    /// A request addressed to at most this many approvers gets each of them a WebAuthn
    /// challenge when it is created, in its `request` event; above it, each approver asks for
    /// one when they decide (`POST /v2/challenges`), so a large group costs no ceremony per
    /// member up front.
    pub prechallenge_max: usize,
    /// The Kubernetes admission webhook (docs/kubernetes.md); unset: none.
    pub kubernetes: Option<kubernetes::KubernetesConfig>,
    /// Where the gateway tells of requests (docs/notifications.md); none by default.
    pub webhooks: Vec<webhooks::WebhookConfig>,
    /// The GitHub App for deployment protection rules (docs/github.md); unset: none.
    pub github: Option<github::GithubConfig>,
    /// Mail over SMTP to approvers without a device, to requesters, and a digest
    /// (docs/notifications.md); unset: none.
    pub email: Option<email::EmailConfig>,
    /// How often due webhook deliveries are looked for, in milliseconds.
    pub webhook_poll_ms: u64,
    /// How long a delivery is retried before it is given up (and audited), in seconds.
    pub webhook_retry_seconds: u64,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`, `span`s.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("{s:?} is neither \"text\" nor \"json\"")),
        }
    }
}

/// The risk ceiling of auto-approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoApproveCeiling {
    /// The policy never approves by itself.
    None,
    #[default]
    Low,
    Medium,
    High,
    Critical,
}

impl AutoApproveCeiling {
    /// Whether the policy may approve a request of `risk` by itself.
    pub fn admits(self, risk: countersign_protocol::Risk) -> bool {
        use countersign_protocol::Risk;
        let ceiling = match self {
            AutoApproveCeiling::None => return false,
            AutoApproveCeiling::Low => Risk::Low,
            AutoApproveCeiling::Medium => Risk::Medium,
            AutoApproveCeiling::High => Risk::High,
            AutoApproveCeiling::Critical => Risk::Critical,
        };
        risk <= ceiling
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AutoApproveCeiling::None => "none",
            AutoApproveCeiling::Low => "low",
            AutoApproveCeiling::Medium => "medium",
            AutoApproveCeiling::High => "high",
            AutoApproveCeiling::Critical => "critical",
        }
    }
}

/// The attestation a passkey's registration must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attestation {
    /// Any authenticator; nothing about its model is verified.
    #[default]
    None,
    /// The authenticator's attestation statement must verify up to a configured CA.
    Direct,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "Countersign gateway".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8740)),
            public_url: None,
            data_dir: default_data_dir(),
            database_url: None,
            tls_cert: None,
            tls_key: None,
            webauthn_rp_id: "localhost".into(),
            webauthn_origin: localhost_origin(),
            keepalive_seconds: 15,
            operations_listen: None,
            log_format: LogFormat::Text,
            shutdown_drain_seconds: 0,
            invite_ttl_seconds: 24 * 3600,
            default_ttl_seconds: 600,
            max_ttl_seconds: 7 * 24 * 3600,
            rate_limit_per_minute: 30,
            match_required_actions: Vec::new(),
            match_required_resources: Vec::new(),
            deny_requires_passkey: false,
            max_match_failures: 3,
            expiry_sweep_ms: 1000,
            attestation: Attestation::None,
            attestation_ca: Vec::new(),
            allowed_aaguids: Vec::new(),
            directory_file: None,
            policy_file: None,
            policy_data_file: None,
            reload_seconds: 5,
            auto_approve_max_risk: AutoApproveCeiling::Low,
            prechallenge_max: 64,
            kubernetes: None,
            webhooks: Vec::new(),
            github: None,
            email: None,
            webhook_poll_ms: 1000,
            webhook_retry_seconds: 24 * 3600,
        }
    }
}

#[allow(clippy::expect_used)]
fn localhost_origin() -> Url {
    // Proven invariant: a constant, well-formed URL.
    Url::parse("https://localhost").expect("constant URL parses")
}

fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("countersign-gateway");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".local/share/countersign-gateway");
    }
    PathBuf::from("countersign-gateway-data")
}

/// The default configuration file: `$XDG_CONFIG_HOME/countersign/gateway.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("countersign/gateway.toml"))
}

impl Config {
    /// Defaults, then the TOML file (if given, or the default one if it exists), then the
    /// environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut cfg = match file {
            Some(p) => Self::from_file(p)?,
            None => match default_config_path() {
                Some(p) if p.exists() => Self::from_file(&p)?,
                _ => Config::default(),
            },
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Applies `COUNTERSIGN_*` variables through `get`, so tests need not touch the process
    /// environment.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &str, v: String) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.parse::<T>().map_err(|e| ConfigError::Env {
                name: name.into(),
                message: e.to_string(),
            })
        }
        if let Some(v) = get("COUNTERSIGN_GATEWAY_NAME") {
            self.name = v;
        }
        if let Some(v) = get("COUNTERSIGN_LISTEN") {
            self.listen = parse("COUNTERSIGN_LISTEN", v)?;
        }
        if let Some(v) = get("COUNTERSIGN_PUBLIC_URL") {
            self.public_url = Some(parse("COUNTERSIGN_PUBLIC_URL", v)?);
        }
        if let Some(v) = get("COUNTERSIGN_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("COUNTERSIGN_DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some(v) = get("COUNTERSIGN_TLS_CERT") {
            self.tls_cert = Some(PathBuf::from(v));
        }
        if let Some(v) = get("COUNTERSIGN_TLS_KEY") {
            self.tls_key = Some(PathBuf::from(v));
        }
        if let Some(v) = get("COUNTERSIGN_WEBAUTHN_RP_ID") {
            self.webauthn_rp_id = v;
        }
        if let Some(v) = get("COUNTERSIGN_WEBAUTHN_ORIGIN") {
            self.webauthn_origin = parse("COUNTERSIGN_WEBAUTHN_ORIGIN", v)?;
        }
        if let Some(v) = get("COUNTERSIGN_KEEPALIVE_SECONDS") {
            self.keepalive_seconds = parse("COUNTERSIGN_KEEPALIVE_SECONDS", v)?;
        }
        if let Some(v) = get("COUNTERSIGN_OPERATIONS_LISTEN") {
            self.operations_listen = Some(parse("COUNTERSIGN_OPERATIONS_LISTEN", v)?);
        }
        if let Some(v) = get("COUNTERSIGN_LOG_FORMAT") {
            self.log_format = parse("COUNTERSIGN_LOG_FORMAT", v)?;
        }
        if let Some(v) = get("COUNTERSIGN_SHUTDOWN_DRAIN_SECONDS") {
            self.shutdown_drain_seconds = parse("COUNTERSIGN_SHUTDOWN_DRAIN_SECONDS", v)?;
        }
        if let Some(v) = get("COUNTERSIGN_RATE_LIMIT_PER_MINUTE") {
            self.rate_limit_per_minute = parse("COUNTERSIGN_RATE_LIMIT_PER_MINUTE", v)?;
        }
        Ok(())
    }

    /// The URL written into pairing links.
    pub fn public_url(&self) -> Url {
        if let Some(u) = &self.public_url {
            return u.clone();
        }
        let host = match self.listen.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let scheme = if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        Url::parse(&format!("{scheme}://{host}:{}/", self.listen.port()))
            .unwrap_or_else(|_| localhost_origin())
    }

    /// Whether policy requires number matching for this action on this resource.
    pub fn match_required_for(&self, action: &str, resource: &str) -> bool {
        let hits = |patterns: &[String], s: &str| {
            patterns.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => s.starts_with(prefix),
                None => p == s,
            })
        };
        hits(&self.match_required_actions, action) || hits(&self.match_required_resources, resource)
    }
}

/// The CA list the configuration names, or None for `attestation = "none"`.
pub fn attestation_cas(
    config: &Config,
) -> Result<Option<webauthn_rs::prelude::AttestationCaList>, crate::error::GatewayError> {
    use crate::error::GatewayError;
    use webauthn_rs::prelude::{AttestationCaList, AttestationCaListBuilder};
    let invalid = |why: String| GatewayError::Invalid(why);
    match config.attestation {
        Attestation::None => {
            if !config.allowed_aaguids.is_empty() {
                return Err(invalid(
                    "allowed_aaguids needs attestation = \"direct\": an AAGUID is only what a key claims until its attestation chain is verified."
                        .into(),
                ));
            }
            Ok(None)
        }
        Attestation::Direct => {
            if config.attestation_ca.is_empty() {
                return Err(invalid(
                    "attestation = \"direct\" needs attestation_ca: the PEM files of the root CAs to trust."
                        .into(),
                ));
            }
            let mut list = AttestationCaList::default();
            let mut builder = AttestationCaListBuilder::new();
            for path in &config.attestation_ca {
                let pem = std::fs::read(path)
                    .map_err(|e| invalid(format!("attestation_ca {}: {e}.", path.display())))?;
                let bad = |e: &dyn std::fmt::Debug| {
                    invalid(format!(
                        "attestation_ca {} is not a PEM certificate: {e:?}.",
                        path.display()
                    ))
                };
                if config.allowed_aaguids.is_empty() {
                    let one = AttestationCaList::try_from(pem.as_slice()).map_err(|e| bad(&e))?;
                    list.union(&one);
                } else {
                    for aaguid in &config.allowed_aaguids {
                        builder
                            .insert_device_pem(
                                &pem,
                                *aaguid,
                                aaguid.to_string(),
                                Default::default(),
                            )
                            .map_err(|e| bad(&e))?;
                    }
                }
            }
            if !config.allowed_aaguids.is_empty() {
                list = builder.build();
            }
            Ok(Some(list))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.toml");
        std::fs::write(
            &p,
            "listen = \"127.0.0.1:9000\"\nname = \"file\"\nmatch_required_actions = [\"sql.*\"]\nmatch_required_resources = [\"prod-*\", \"billing\"]\n",
        )
        .unwrap();
        let mut c = Config::from_file(&p).unwrap();
        assert_eq!(c.listen.port(), 9000);
        c.apply_env(|k| (k == "COUNTERSIGN_LISTEN").then(|| "127.0.0.1:9001".to_string()))
            .unwrap();
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.name, "file");
        assert!(c.match_required_for("sql.exec", "staging-db"));
        assert!(c.match_required_for("deploy", "prod-api"));
        assert!(c.match_required_for("deploy", "billing"));
        assert!(!c.match_required_for("deploy", "billing-eu"));
        assert!(!c.match_required_for("deploy", "staging-api"));
    }

    #[test]
    fn unknown_keys_and_bad_env_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.toml");
        std::fs::write(&p, "lisen = 1\n").unwrap();
        assert!(matches!(
            Config::from_file(&p),
            Err(ConfigError::Parse { .. })
        ));
        let mut c = Config::default();
        assert!(c
            .apply_env(|k| (k == "COUNTERSIGN_LISTEN").then(|| "nope".to_string()))
            .is_err());
        let e = c
            .apply_env(|k| (k == "COUNTERSIGN_LOG_FORMAT").then(|| "yaml".to_string()))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "The environment variable COUNTERSIGN_LOG_FORMAT is invalid: \"yaml\" is neither \"text\" nor \"json\""
        );
    }

    /// docs/gateway.example.toml is a configuration the gateway accepts, with the defaults.
    #[test]
    fn the_example_configuration_loads_with_the_defaults() {
        let example: Config = toml::from_str(include_str!("../../../docs/gateway.example.toml"))
            .unwrap_or_else(|e| panic!("docs/gateway.example.toml: {e}"));
        let d = Config::default();
        assert_eq!(example.listen, d.listen);
        assert_eq!(example.keepalive_seconds, d.keepalive_seconds);
        assert_eq!(example.operations_listen, d.operations_listen);
        assert_eq!(example.log_format, d.log_format);
        assert_eq!(example.shutdown_drain_seconds, d.shutdown_drain_seconds);
        assert_eq!(example.rate_limit_per_minute, d.rate_limit_per_minute);
    }
}
