//! The `[kubernetes]` section of the gateway's configuration: where the admission webhook
//! listens, its certificate, the CA of the API server's client certificate, what it holds,
//! and how long it waits and how long a grant lasts.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The admission webhook's settings (docs/kubernetes.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Where the webhook listens (HTTPS only).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The webhook's certificate chain and key (PEM); the API server checks it against the
    /// `caBundle` of the webhook configuration.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// The CA (PEM) that issued the API server's client certificate. Only a client presenting
    /// a certificate chaining to it may call the webhook; use a CA that issues nothing else.
    pub client_ca: PathBuf,
    /// The names (DNS subject alternative names) of which the client certificate must carry
    /// one, e.g. `kube-apiserver`; empty: any certificate `client_ca` issued.
    #[serde(default)]
    pub client_names: Vec<String>,
    /// How long the first attempt waits for an approval before it is denied as pending, in
    /// milliseconds; keep it well under the webhook's `timeoutSeconds`.
    #[serde(default = "default_hold_ms")]
    pub hold_ms: u64,
    /// How long an approval admits the operation's retry when the policy sets no grant window,
    /// in seconds; the policy's `grant_seconds` wins when it is shorter.
    #[serde(default = "default_grant_seconds")]
    pub grant_seconds: u32,
    /// The time to live of the requests the webhook creates (0: the gateway's default).
    #[serde(default)]
    pub ttl_seconds: u32,
    /// Whether `kubectl exec`, `attach` and `port-forward` (CONNECT on `pods/exec`,
    /// `pods/attach`, `pods/portforward`) are held.
    #[serde(default = "yes")]
    pub hold_pod_connect: bool,
    /// The namespaces in which CONNECT is held (exact names, or a prefix ending in `*`); empty:
    /// every namespace.
    #[serde(default)]
    pub connect_namespaces: Vec<String>,
    /// The object changes held.
    #[serde(default)]
    pub resources: Vec<ResourceRule>,
    /// The largest AdmissionReview body read, in bytes.
    #[serde(default = "default_max_review_bytes")]
    pub max_review_bytes: usize,
}

/// Object changes to hold: a resource of one API group, in some namespaces, for some
/// operations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRule {
    /// The API group (`apps`; `""` for the core group).
    #[serde(default)]
    pub group: String,
    /// The resource, plural as the API names it (`deployments`).
    pub resource: String,
    /// Namespaces (exact, or a prefix ending in `*`); empty: every namespace.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// `CREATE`, `UPDATE`, `DELETE`; empty: all three.
    #[serde(default)]
    pub operations: Vec<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8743))
}
fn default_hold_ms() -> u64 {
    3000
}
fn default_grant_seconds() -> u32 {
    300
}
fn default_max_review_bytes() -> usize {
    3 * 1024 * 1024
}
fn yes() -> bool {
    true
}

/// Whether `name` matches one of `patterns` (exact, or a prefix ending in `*`); an empty list
/// matches everything.
pub(crate) fn matches_any(patterns: &[String], name: &str) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        })
}

impl ResourceRule {
    /// Whether this rule holds `operation` on `group`/`resource` in `namespace`.
    pub(crate) fn holds(
        &self,
        group: &str,
        resource: &str,
        namespace: &str,
        operation: &str,
    ) -> bool {
        self.group == group
            && self.resource == resource
            && matches_any(&self.namespaces, namespace)
            && (self.operations.is_empty()
                || self
                    .operations
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(operation)))
    }
}
