//! GitHub deployment protection rules (docs/github.md): the gateway as a GitHub App's webhook
//! receiver (`POST /github/webhook`). A `deployment_protection_rule` event, once its
//! `X-Hub-Signature-256` verifies, becomes a request from `github:<creator>` naming the
//! repository, environment, ref, sha and the run. When the request is decided (or expires, or
//! is withdrawn), the webhook dispatcher (`webhooks`) stores one callback delivery; it is sent
//! to the event's `deployment_callback_url` with an installation token bought with the App's
//! JWT (`app`), `approved` or `rejected` with a comment naming who decided, and retried with
//! backoff until it is accepted or the grant expires.
//!
//! Another provider (GitLab deployment approvals, an Argo `suspend` step) is one more module of
//! this shape: verify the provider's webhook, create the request with `create_request_as`,
//! keep what its callback needs, and answer through the same delivery queue.

pub mod app;

use axum::http::{HeaderMap, StatusCode};
use countersign_protocol::api::ErrorCode;
use countersign_protocol::RequestState;
use hmac::Mac as _;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::github::GithubConfig;
use crate::config::secrets::GithubSecrets;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::requests::{create_request_as, integration_request, Vouched};
use crate::store::deliveries::Sent;
use crate::store::github::GithubDeployment;

/// The parts of a `deployment_protection_rule` event the gateway reads.
#[derive(Debug, Deserialize)]
struct ProtectionRule {
    action: String,
    environment: String,
    #[serde(default)]
    event: String,
    deployment_callback_url: String,
    deployment: Deployment,
    installation: Installation,
    repository: Repository,
}

#[derive(Debug, Deserialize)]
struct Deployment {
    sha: String,
    #[serde(rename = "ref")]
    git_ref: String,
    creator: Login,
}

#[derive(Debug, Deserialize)]
struct Login {
    login: String,
}

#[derive(Debug, Deserialize)]
struct Installation {
    id: u64,
}

#[derive(Debug, Deserialize)]
struct Repository {
    full_name: String,
    html_url: String,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Checks `X-Hub-Signature-256` (`sha256=` and the hex HMAC-SHA256 of the body), in constant
/// time (`bad_webhook_signature`).
fn verify(secrets: &GithubSecrets, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let bad = || {
        ApiError::unauthorized(
            ErrorCode::BadWebhookSignature,
            "The webhook's X-Hub-Signature-256 does not verify with the App's webhook secret.",
        )
    };
    let sig = header(headers, "x-hub-signature-256")
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(bad)?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secrets.webhook_secret)
        .map_err(|e| ApiError::internal("the GitHub webhook secret", e))?;
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| bad())
}

fn invalid(why: String) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidGithubEvent, why)
}

/// Answers one webhook: `(status, body)`.
pub fn receive(
    gw: &Gateway,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    let (Some(cfg), Some(secrets)) = (&gw.config.github, &gw.secrets.github) else {
        return Err(ApiError::not_found(
            ErrorCode::NoSuchEndpoint,
            "This gateway has no [github] App configured.",
        ));
    };
    verify(secrets, headers, body)?;
    match header(headers, "x-github-event") {
        "ping" => return Ok((StatusCode::OK, json!({"ok": true}))),
        "deployment_protection_rule" => {}
        other => return Ok((StatusCode::ACCEPTED, json!({"ignored": other}))),
    }
    let delivery = header(headers, "x-github-delivery").to_owned();
    if delivery.is_empty() {
        return Err(invalid("The webhook has no X-GitHub-Delivery.".into()));
    }
    let event: ProtectionRule = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "The deployment_protection_rule event is invalid: {e}."
        ))
    })?;
    if event.action != "requested" {
        return Ok((StatusCode::ACCEPTED, json!({"ignored": event.action})));
    }
    // GitHub redelivers: the same delivery is the same request.
    if let Some(id) = gw.store.read(|tx| tx.github_by_delivery(&delivery))? {
        return Ok((StatusCode::OK, json!({"request_id": id})));
    }
    let run = run_of(cfg, &event.deployment_callback_url)?;
    let requester = format!("github:{}", event.deployment.creator.login);
    let run_url = format!("{}/actions/runs/{run}", event.repository.html_url);
    let detail = format!(
        "repository: {}\nenvironment: {}\nref: {}\nsha: {}\ncreator: {}\nevent: {}\nrun: {run_url}\n",
        event.repository.full_name,
        event.environment,
        event.deployment.git_ref,
        event.deployment.sha,
        event.deployment.creator.login,
        event.event,
    );
    let sha7: String = event.deployment.sha.chars().take(7).collect();
    let created = create_request_as(
        gw,
        &requester,
        Vouched {
            groups: &[],
            grant_seconds: Some(cfg.grant_seconds),
        },
        integration_request(
            "github.deploy".into(),
            format!("{}/{}", event.repository.full_name, event.environment),
            format!(
                "Deploy {} {sha7} to {}",
                event.repository.full_name, event.environment
            ),
            detail,
            cfg.ttl_seconds,
        ),
    )?;
    let id = created.request.body.id.clone();
    let now = gw.now();
    gw.store.write(|tx| -> Result<(), ApiError> {
        tx.github_put(
            &GithubDeployment {
                request_id: id.clone(),
                callback_url: event.deployment_callback_url.clone(),
                installation_id: event.installation.id,
                environment: event.environment.clone(),
            },
            &delivery,
            now,
        )?;
        tx.audit_append(
            now,
            "github.requested",
            Some(&id),
            json!({
                "delivery": delivery,
                "repository": event.repository.full_name,
                "environment": event.environment,
                "sha": event.deployment.sha,
                "run": run,
            }),
        )?;
        Ok(())
    })?;
    Ok((StatusCode::ACCEPTED, json!({"request_id": id})))
}

/// The run id of a callback URL, which must be the API's
/// `…/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule`.
fn run_of(cfg: &GithubConfig, callback: &str) -> Result<u64, ApiError> {
    let refuse = || {
        invalid(format!(
            "The deployment_callback_url {callback} is not a protection-rule callback of {}.",
            cfg.api_url
        ))
    };
    let rest = callback
        .strip_prefix(cfg.api_url.as_str())
        .ok_or_else(refuse)?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["repos", _, _, "actions", "runs", run, "deployment_protection_rule"] => {
            run.parse().map_err(|_| refuse())
        }
        _ => Err(refuse()),
    }
}

/// The callback delivery for a request's final `state`, if it holds a deployment: its body
/// (what [`deliver`] reads).
pub(crate) fn callback_body(
    d: &GithubDeployment,
    state: RequestState,
    approvers: &[&str],
    deniers: &[&str],
    deadline: i64,
) -> Value {
    let id = &d.request_id;
    let (verdict, comment) = match state {
        RequestState::Approved if approvers.is_empty() => (
            "approved",
            format!("Approved by the Countersign policy (request {id})."),
        ),
        RequestState::Approved => (
            "approved",
            format!(
                "Approved in Countersign by {} (request {id}).",
                approvers.join(", ")
            ),
        ),
        RequestState::Denied if !deniers.is_empty() => (
            "rejected",
            format!(
                "Denied in Countersign by {} (request {id}).",
                deniers.join(", ")
            ),
        ),
        other => (
            "rejected",
            format!(
                "Not approved in Countersign: the request is {} (request {id}).",
                other.as_str()
            ),
        ),
    };
    json!({
        "url": d.callback_url,
        "installation_id": d.installation_id,
        "deadline": deadline,
        "payload": {"environment_name": d.environment, "state": verdict, "comment": comment},
    })
}

/// One attempt at a callback delivery.
pub(crate) struct Call<'a> {
    pub client: &'a reqwest::Client,
    pub cfg: &'a GithubConfig,
    pub secrets: &'a GithubSecrets,
    /// The attempts made before this one.
    pub attempts: u32,
}

impl Call<'_> {
    /// Sends the review with an installation token. A retry first asks GitHub whether the run
    /// still waits on the environment (`GET .../pending_deployments`): an earlier attempt
    /// whose answer was lost may have been applied, and a second review would be refused. If
    /// it no longer waits, nothing is sent again.
    pub(crate) async fn deliver(&self, body: &Value, now: i64) -> Result<Sent, String> {
        let url: url::Url = body["url"]
            .as_str()
            .and_then(|u| u.parse().ok())
            .ok_or("the stored callback has no URL")?;
        let installation = body["installation_id"]
            .as_u64()
            .ok_or("the stored callback has no installation")?;
        let environment = body["payload"]["environment_name"]
            .as_str()
            .ok_or("the stored callback has no environment")?;
        let token =
            app::installation_token(self.client, self.cfg, &self.secrets.key, installation, now)
                .await
                .map_err(|e| e.to_string())?;
        if self.attempts > 0 && !self.still_waiting(&url, &token, environment).await? {
            return Ok(Sent::Skipped(format!(
                "the run no longer waits on {environment}: an earlier attempt was applied, or \
                 it was decided or cancelled in GitHub"
            )));
        }
        let answer = app::github_request(self.client, reqwest::Method::POST, url, &token)
            .json(&body["payload"])
            .send()
            .await
            .map_err(|e| format!("the callback: {e}"))?;
        if answer.status().is_success() {
            Ok(Sent::Delivered)
        } else {
            Err(format!(
                "the callback answered HTTP {}",
                answer.status().as_u16()
            ))
        }
    }

    /// Whether the run of callback `url` still waits on `environment`: GitHub's pending
    /// deployments of the run (an array of `{environment: {name}, ...}`).
    async fn still_waiting(
        &self,
        url: &url::Url,
        token: &str,
        environment: &str,
    ) -> Result<bool, String> {
        let pending = url
            .join("pending_deployments")
            .map_err(|e| format!("the pending deployments' URL: {e}"))?;
        let answer = app::github_request(self.client, reqwest::Method::GET, pending, token)
            .send()
            .await
            .map_err(|e| format!("the pending deployments: {e}"))?;
        if !answer.status().is_success() {
            return Err(format!(
                "the pending deployments answered HTTP {}",
                answer.status().as_u16()
            ));
        }
        let list: Vec<Value> = answer
            .json()
            .await
            .map_err(|e| format!("the pending deployments' answer: {e}"))?;
        Ok(list
            .iter()
            .any(|p| p["environment"]["name"].as_str() == Some(environment)))
    }
}
