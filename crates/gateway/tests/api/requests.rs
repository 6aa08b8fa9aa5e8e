//! The requester's side of the API over raw HTTP, keeping each refusal whole (the shared
//! harness's requester client turns refusals into errors; these tests check status and code).

use countersign_protocol::api::{paths, CreatedRequest, NewRequest, RequestView};
use countersign_test_support::{answer, PairedGateway, Refusal, TestGateway};

/// Creating and reading requests as the test gateway's requester.
pub trait Requests {
    /// The request these tests start from: a destructive SQL statement for Alice alone.
    fn default_request(&self) -> NewRequest;
    /// Creates [`Requests::default_request`] as `f` changes it, keeping a refusal.
    async fn try_create(&self, f: impl FnOnce(&mut NewRequest)) -> Result<CreatedRequest, Refusal>;
    async fn create_with(&self, f: impl FnOnce(&mut NewRequest)) -> CreatedRequest;
    async fn create(&self, approvers: &[&str], min: u32, require_match: bool) -> CreatedRequest;
    /// The request's current view; its signed status is checked against the gateway's key.
    async fn view(&self, id: &str) -> RequestView;
}

impl Requests for TestGateway {
    fn default_request(&self) -> NewRequest {
        NewRequest {
            action: "sql.exec".into(),
            resource: "prod-db".into(),
            risk: None,
            summary: "Drop the sessions table".into(),
            detail: "DROP TABLE sessions;".into(),
            reason: "cleanup after migration".into(),
            ttl_seconds: 300,
            approvers: vec!["alice@example.com".into()],
            min_approvals: 1,
            require_match: false,
            break_glass: false,
        }
    }

    async fn try_create(&self, f: impl FnOnce(&mut NewRequest)) -> Result<CreatedRequest, Refusal> {
        let mut n = self.default_request();
        f(&mut n);
        let resp = reqwest::Client::new()
            .post(self.url.join(paths::REQUESTS).unwrap())
            .bearer_auth(&self.token)
            .json(&n)
            .send()
            .await
            .unwrap();
        answer(resp).await
    }

    async fn create_with(&self, f: impl FnOnce(&mut NewRequest)) -> CreatedRequest {
        self.try_create(f).await.unwrap()
    }

    async fn create(&self, approvers: &[&str], min: u32, require_match: bool) -> CreatedRequest {
        self.create_with(|n| {
            n.approvers = approvers.iter().map(|s| s.to_string()).collect();
            n.min_approvals = min;
            n.require_match = require_match;
        })
        .await
    }

    async fn view(&self, id: &str) -> RequestView {
        let resp = reqwest::Client::new()
            .get(self.url.join(&format!("{}/{id}", paths::REQUESTS)).unwrap())
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let v: RequestView = answer(resp).await.unwrap();
        v.status.verify(&self.gateway_key()).unwrap();
        v
    }
}
