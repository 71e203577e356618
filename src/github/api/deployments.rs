//! Deployments: what a channel runs, as GitHub shows it. A reconcile that moves a channel
//! creates a deployment of the reconciled commit to the environment named after the
//! channel (`repos/create-deployment`), then its outcome (`repos/create-deployment-status`).
//!
//! Touches GitHub's REST API only, on the reporter's repository.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::reporter::{GitHubReporter, MAX_STATUS_DESCRIPTION_CHARS};

/// `repos/create-deployment`: the fields bakery sends.
#[derive(Debug, Serialize)]
struct NewDeployment<'a> {
    #[serde(rename = "ref")]
    git_ref: &'a str,
    task: &'a str,
    environment: &'a str,
    description: &'a str,
    /// The commit was reconciled already: GitHub merges nothing into it.
    auto_merge: bool,
    /// The channels check is the reconcile itself: no other status gates it.
    required_contexts: Vec<String>,
    payload: serde_json::Value,
    production_environment: bool,
}

#[derive(Debug, Deserialize)]
struct Deployment {
    id: u64,
}

/// `repos/create-deployment-status`: the fields bakery sends.
#[derive(Debug, Serialize)]
struct NewStatus<'a> {
    state: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_url: Option<&'a str>,
    environment: &'a str,
}

/// How a channel's deployment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentState {
    Success,
    Failure,
}

impl DeploymentState {
    fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Success => "success",
            DeploymentState::Failure => "failure",
        }
    }
}

fn limit(s: &str) -> String {
    s.chars().take(MAX_STATUS_DESCRIPTION_CHARS).collect()
}

impl GitHubReporter {
    /// Creates a deployment of `sha` to `environment` and its final status. Returns the
    /// deployment's id.
    #[allow(clippy::too_many_arguments)]
    pub async fn deploy(
        &self,
        sha: &str,
        environment: &str,
        description: &str,
        payload: serde_json::Value,
        state: DeploymentState,
        status_description: &str,
        log_url: Option<&str>,
    ) -> anyhow::Result<u64> {
        let route = format!("{}/deployments", self.repo().route());
        let created: Deployment = self
            .post(
                &format!("create a deployment of {sha} to {environment}"),
                &route,
                &NewDeployment {
                    git_ref: sha,
                    task: "deploy",
                    environment,
                    description: &limit(description),
                    auto_merge: false,
                    required_contexts: vec![],
                    payload,
                    production_environment: environment == "production",
                },
            )
            .await
            .with_context(|| {
                format!(
                    "cannot create a deployment to {environment} in {}: the GitHub App needs \
                     the deployments: write permission",
                    self.repo()
                )
            })?;
        let route = format!(
            "{}/deployments/{}/statuses",
            self.repo().route(),
            created.id
        );
        let _: serde_json::Value = self
            .post(
                &format!("report deployment {} to {environment}", created.id),
                &route,
                &NewStatus {
                    state: state.as_str(),
                    description: &limit(status_description),
                    log_url,
                    environment,
                },
            )
            .await
            .with_context(|| {
                format!(
                    "cannot report deployment {} to {environment} in {}",
                    created.id,
                    self.repo()
                )
            })?;
        Ok(created.id)
    }
}
