//! Acting as the GitHub App: the App's JWT (RS256 over `{iat, exp, iss}`, signed with its
//! private key by ring) and the installation access token it buys
//! (`POST /app/installations/{id}/access_tokens`).

use base64::Engine as _;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::json;

use crate::config::github::GithubConfig;

/// Why the App could not authenticate or call back.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("GitHub: {0}")]
    Http(String),
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The App's JWT at `now`: issued a minute back (clock drift), valid nine minutes.
pub fn jwt(key: &RsaKeyPair, app_id: u64, now: i64) -> Result<String, AppError> {
    let header = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = json!({"iat": now - 60, "exp": now + 540, "iss": app_id.to_string()});
    let signing_input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| AppError::Http("the JWT could not be signed".into()))?;
    Ok(format!("{signing_input}.{}", b64(&sig)))
}

/// The headers GitHub's REST API asks for.
pub(crate) fn github_request(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: url::Url,
    bearer: &str,
) -> reqwest::RequestBuilder {
    client
        .request(method, url)
        .bearer_auth(bearer)
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .header("user-agent", "countersign-gateway")
}

/// An installation access token for `installation_id`.
pub async fn installation_token(
    client: &reqwest::Client,
    cfg: &GithubConfig,
    key: &RsaKeyPair,
    installation_id: u64,
    now: i64,
) -> Result<String, AppError> {
    let jwt = jwt(key, cfg.app_id, now)?;
    let url = cfg
        .api_url
        .join(&format!(
            "app/installations/{installation_id}/access_tokens"
        ))
        .map_err(|e| AppError::Http(e.to_string()))?;
    let answer = github_request(client, reqwest::Method::POST, url, &jwt)
        .send()
        .await
        .map_err(|e| AppError::Http(format!("the installation token: {e}")))?;
    if !answer.status().is_success() {
        return Err(AppError::Http(format!(
            "the installation token was refused: HTTP {}",
            answer.status().as_u16()
        )));
    }
    let body: serde_json::Value = answer
        .json()
        .await
        .map_err(|e| AppError::Http(format!("the installation token's answer: {e}")))?;
    body.get("token")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| AppError::Http("the installation token's answer has no token".into()))
}
