//! The HTTP front door: webhook intake, health endpoints, metrics, the job pages and
//! the operator's dashboard. Only
//! `/webhooks/github` is meant to be reachable from outside (see the README).

pub(crate) mod dashboard;
pub mod intake;
pub(crate) mod job_page;
pub mod signature;
pub(crate) mod webhook;

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
    /// Signs job page links; `None`: only the operator token opens job pages.
    pub job_page_key: Option<Secret>,
    /// Opens every job page (`Authorization: Bearer`).
    pub operator_token: Option<Secret>,
    /// Wakes idle workers when a job is queued.
    pub job_queued: Arc<Notify>,
    /// `GET /api/images`: the image registry.
    pub images: Arc<crate::registry::api::ImagesApi>,
    /// The dashboard's sign-in with GitHub and people's permissions.
    pub dashboard: Arc<dashboard::Dashboard>,
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
            job_page_key: config.job_pages.key.clone(),
            operator_token: config.job_pages.operator_token.clone(),
            job_queued,
            images: Arc::new(crate::registry::api::ImagesApi::new(config)),
            dashboard: Arc::new(dashboard::Dashboard::new(config)?),
        })
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/github", post(webhook::github_webhook))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/jobs/{id}", get(job_page::job_page))
        .route("/api/images", get(crate::registry::api::images))
        .route("/metrics", get(crate::metrics::scrape::metrics_page))
        .merge(dashboard::routes())
        // The webhook extractor enforces its own, larger limit.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
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
            // The error names hosts, databases and users: the log only.
            tracing::warn!("not ready: {e:#}");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string())
        }
    }
}
