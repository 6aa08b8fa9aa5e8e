//! The gateway's answers over HTTP: a success decoded from its JSON body, or a refusal kept
//! whole (status, error body and the text as sent), so that a test can check the error code and
//! a benchmark can say what went wrong.

use countersign_protocol::api::ErrorBody;

/// An HTTP refusal from the gateway.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    /// The error body, when the answer was one.
    pub body: Option<ErrorBody>,
    /// The body as sent, for messages.
    pub text: String,
}

impl Refusal {
    /// The stable error code, when the body carried one.
    pub fn code(&self) -> Option<&str> {
        self.body.as_ref().map(|b| b.error.code.as_str())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.text)
    }
}

impl std::error::Error for Refusal {}

/// Reads an answer: a 2xx body decoded as `T`, or the refusal. Anything else (a transport
/// failure, an undecodable success, a status that is neither) fails the caller at once.
pub async fn answer<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, Refusal> {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    if (200..300).contains(&status) {
        Ok(serde_json::from_slice(&bytes).unwrap())
    } else {
        assert!(status >= 400, "unexpected HTTP {status}");
        Err(Refusal {
            status,
            body: serde_json::from_slice(&bytes).ok(),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
}
