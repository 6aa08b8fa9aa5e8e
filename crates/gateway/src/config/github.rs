//! The `[github]` section of the gateway's configuration: the GitHub App whose
//! `deployment_protection_rule` webhooks the gateway receives (docs/github.md).

use std::path::PathBuf;

use serde::Deserialize;

/// The GitHub App the gateway acts as.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// The App's id (the JWT's `iss`).
    pub app_id: u64,
    /// The App's private key (PEM, PKCS#1 as GitHub issues it, or PKCS#8).
    pub private_key_file: PathBuf,
    /// A file holding the App's webhook secret (trailing white space dropped).
    pub webhook_secret_file: PathBuf,
    /// The REST API's base URL: `https://api.github.com`, or `https://<host>/api/v3` for
    /// GitHub Enterprise Server. A callback URL outside it is refused.
    #[serde(default = "default_api_url")]
    pub api_url: url::Url,
    /// The longest an approval lets the deployment start, in seconds; the policy's
    /// `grant_seconds` wins when it is shorter. The callback is retried until then.
    #[serde(default = "default_grant_seconds")]
    pub grant_seconds: u32,
    /// The requests' time to live (0: the gateway's default).
    #[serde(default)]
    pub ttl_seconds: u32,
}

#[allow(clippy::expect_used)]
fn default_api_url() -> url::Url {
    // Proven invariant: a constant, well-formed URL.
    url::Url::parse("https://api.github.com/").expect("constant URL parses")
}

fn default_grant_seconds() -> u32 {
    3600
}
