//! The GitHub deployments held for a protection rule (table `github_deployments`): one per
//! request, under the webhook's delivery id, with the callback's URL, installation and
//! environment.

use crate::args;

use super::sql::Db;
use crate::error::StoreError;

/// A held deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubDeployment {
    pub request_id: String,
    pub callback_url: String,
    pub installation_id: u64,
    pub environment: String,
}

/// The rows of held GitHub deployments.
pub trait GithubRows {
    /// Records the deployment of webhook delivery `delivery` as request `d.request_id`.
    fn github_put(&self, d: &GithubDeployment, delivery: &str, at: i64) -> Result<(), StoreError>;

    /// The request made for webhook delivery `delivery`.
    fn github_by_delivery(&self, delivery: &str) -> Result<Option<String>, StoreError>;

    /// The deployment held by request `request_id`.
    fn github_of(&self, request_id: &str) -> Result<Option<GithubDeployment>, StoreError>;
}

impl GithubRows for Db<'_> {
    fn github_put(&self, d: &GithubDeployment, delivery: &str, at: i64) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO github_deployments(request_id, delivery, callback_url, installation_id, \
             environment, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            args![
                d.request_id,
                delivery,
                d.callback_url,
                d.installation_id as i64,
                d.environment,
                at
            ],
        )?;
        Ok(())
    }

    fn github_by_delivery(&self, delivery: &str) -> Result<Option<String>, StoreError> {
        self.row(
            "SELECT request_id FROM github_deployments WHERE delivery = ?1",
            args![delivery],
            |r| r.get(0),
        )
    }

    fn github_of(&self, request_id: &str) -> Result<Option<GithubDeployment>, StoreError> {
        self.row(
            "SELECT request_id, callback_url, installation_id, environment \
             FROM github_deployments WHERE request_id = ?1",
            args![request_id],
            |r| {
                Ok(GithubDeployment {
                    request_id: r.get(0)?,
                    callback_url: r.get(1)?,
                    installation_id: r.get::<i64>(2)? as u64,
                    environment: r.get(3)?,
                })
            },
        )
    }
}
