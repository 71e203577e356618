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
use tokio::sync::Notify;

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
            job_queued,
        })
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/github", post(webhook::github_webhook))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
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
            tracing::warn!("not ready: {e:#}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {e:#}\n"),
            )
        }
    }
}
