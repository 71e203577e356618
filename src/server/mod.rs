//! The HTTP front door: webhook intake and health endpoints.

pub mod intake;
pub mod signature;
pub mod webhook;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::config::{Secret, ServerConfig};
use crate::database::DynStore;
use intake::TagPatterns;

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: DynStore,
    pub webhook_secrets: Arc<Vec<Secret>>,
    pub tag_patterns: Arc<TagPatterns>,
    pub max_body_bytes: usize,
    /// Turns for reading and checking a delivery: at most `webhook.max_concurrent`.
    pub intake_turns: Arc<Semaphore>,
    /// How long a delivery may take to get a turn and to arrive.
    pub read_timeout: Duration,
    /// Wakes idle workers when a job is queued.
    pub job_queued: Arc<Notify>,
}

impl AppState {
    pub fn new(
        config: &ServerConfig,
        store: DynStore,
        job_queued: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        Ok(AppState {
            store,
            webhook_secrets: Arc::new(config.webhook.secrets.clone()),
            tag_patterns: Arc::new(TagPatterns::new(&config.webhook.tag_patterns)?),
            max_body_bytes: config.webhook.max_body_bytes,
            intake_turns: Arc::new(Semaphore::new(config.webhook.max_concurrent)),
            read_timeout: Duration::from_secs(config.webhook.read_timeout_secs),
            job_queued,
        })
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/github", post(webhook::github_webhook))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/jobs/{id}", get(job_page))
        // The webhook extractor enforces its own, larger limit.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// A job's page (the `details_url` of its check runs): its state and its log, as text.
/// Logs are redacted before they are stored.
async fn job_page(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> impl IntoResponse {
    let job = match state.store.get_job(id).await {
        Ok(Some(job)) => job,
        Ok(None) => return (StatusCode::NOT_FOUND, format!("no job {id}\n")),
        Err(e) => {
            tracing::warn!("cannot read job {id}: {e:#}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the job store is unavailable\n".into(),
            );
        }
    };
    let log = state.store.job_log(id).await.unwrap_or_default();
    let mut page = format!(
        "job {}: {} {} {} {}\nstate: {}{}\nattempts: {}\ncreated: {}\nupdated: {}\n\n",
        job.id,
        job.kind.as_str(),
        job.repo,
        job.git_ref,
        job.sha,
        job.state.as_str(),
        job.error
            .as_ref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default(),
        job.attempts,
        job.created_at.to_rfc3339(),
        job.updated_at.to_rfc3339(),
    );
    for line in log {
        page.push_str(&format!(
            "{} [{}] {}\n",
            line.at.format("%H:%M:%S"),
            line.step,
            line.message
        ));
    }
    (StatusCode::OK, page)
}

/// The process is alive.
async fn healthz() -> &'static str {
    "ok\n"
}

/// The store is reachable.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(e) => {
            tracing::warn!("not ready: {e:#}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {e:#}\n"),
            )
        }
    }
}
