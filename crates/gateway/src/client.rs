//! The requester side of the HTTP API, used by `countersign-gateway request` (and usable by CI
//! jobs embedding this crate).

use std::time::Duration;

use countersign_protocol::api::{
    paths, CreatedRequest, ErrorBody, ErrorCode, NewRequest, RequestView,
};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("The gateway refused: {message} ({code}, HTTP {status})")]
    Refused {
        status: u16,
        /// The gateway's code; `Unknown("http_error")` when the body was not an ErrorBody.
        code: ErrorCode,
        message: String,
    },
    #[error("Cannot reach the gateway at {url}: {message}")]
    Transport { url: String, message: String },
    #[error("The gateway's answer is not understood: {0}")]
    Decode(String),
}

pub struct RequesterClient {
    base: Url,
    token: String,
    http: reqwest::Client,
}

impl RequesterClient {
    pub fn new(base: Url, token: String) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Transport {
                url: base.to_string(),
                message: e.to_string(),
            })?;
        Ok(RequesterClient { base, token, http })
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base.join(path).map_err(|e| ClientError::Transport {
            url: self.base.to_string(),
            message: e.to_string(),
        })
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        url: &Url,
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, ClientError> {
        let resp = resp.map_err(|e| ClientError::Transport {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Transport {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => ClientError::Refused {
                    status: status.as_u16(),
                    code: b.error.code,
                    message: b.error.message,
                },
                Err(_) => ClientError::Refused {
                    status: status.as_u16(),
                    code: ErrorCode::Unknown("http_error".into()),
                    message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                },
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn create(&self, new: &NewRequest) -> Result<CreatedRequest, ClientError> {
        let url = self.url(paths::REQUESTS)?;
        let r = self
            .http
            .post(url.clone())
            .bearer_auth(&self.token)
            .json(new)
            .send()
            .await;
        self.answer(&url, r).await
    }

    /// One long-poll of up to `wait`.
    pub async fn get(&self, id: &str, wait: Duration) -> Result<RequestView, ClientError> {
        let mut url = self.url(&format!("{}/{id}", paths::REQUESTS))?;
        url.query_pairs_mut()
            .append_pair("wait", &wait.as_secs().to_string());
        let r = self
            .http
            .get(url.clone())
            .bearer_auth(&self.token)
            .timeout(wait + Duration::from_secs(15))
            .send()
            .await;
        self.answer(&url, r).await
    }

    /// Waits until the request's state is final, riding out brief gateway outages.
    pub async fn wait_final(&self, id: &str) -> Result<RequestView, ClientError> {
        let mut failures = 0u32;
        loop {
            match self.get(id, Duration::from_secs(30)).await {
                Ok(v) if v.status.body.state.is_final() => return Ok(v),
                Ok(_) => failures = 0,
                Err(ClientError::Transport { .. }) if failures < 20 => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(250 * u64::from(failures))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn withdraw(&self, id: &str) -> Result<RequestView, ClientError> {
        let url = self.url(&format!("{}/{id}/withdraw", paths::REQUESTS))?;
        let r = self
            .http
            .post(url.clone())
            .bearer_auth(&self.token)
            .send()
            .await;
        self.answer(&url, r).await
    }
}
