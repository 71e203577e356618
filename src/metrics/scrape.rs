//! `GET /metrics`: the store-wide gauges are read from the store, then every metric is
//! encoded in the OpenMetrics text format. Reads the store only.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{metrics, KindStateLabels, StateLabels};
use crate::build::manifest::Manifest;
use crate::database::{JobFilter, JobState, Store};
use crate::server::AppState;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn metrics_page(State(state): State<AppState>) -> Response {
    if let Err(e) = refresh_store_gauges(state.store.as_ref()).await {
        // The error names hosts and databases: the log only.
        tracing::warn!("metrics: cannot read the store: {e:#}");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the store is unavailable\n",
        )
            .into_response();
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics().encode()).into_response()
}

/// Sets the gauges that describe the store: jobs by kind and state, the queue, builds
/// and images by state.
pub async fn refresh_store_gauges(store: &dyn Store) -> anyhow::Result<()> {
    let m = metrics();
    let jobs = store.list_jobs(&JobFilter::default()).await?;
    let mut by_kind_state: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for job in &jobs {
        *by_kind_state
            .entry((job.kind.as_str(), job.state.as_str()))
            .or_default() += 1;
    }
    m.jobs.clear();
    for ((kind, state), n) in by_kind_state {
        m.jobs
            .get_or_create(&KindStateLabels {
                kind: kind.into(),
                state: state.into(),
            })
            .set(n);
    }
    let queued: Vec<_> = jobs
        .iter()
        .filter(|j| j.state == JobState::Queued)
        .collect();
    m.queue_depth.set(queued.len() as i64);
    let oldest = queued.iter().map(|j| j.created_at).min();
    let age = oldest
        .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    m.oldest_queued_age.set(age);

    let builds = store.list_builds(&Default::default()).await?;
    let mut builds_by_state: BTreeMap<&str, i64> = BTreeMap::new();
    let mut images_by_state: BTreeMap<&str, i64> = BTreeMap::new();
    for b in &builds {
        *builds_by_state.entry(b.state.as_str()).or_default() += 1;
        let copies = b
            .manifest
            .as_ref()
            .and_then(|v| serde_json::from_value::<Manifest>(v.clone()).ok())
            .map(|m| m.builds.iter().map(|b| b.copies.len() as i64).sum::<i64>())
            .unwrap_or(0);
        if copies > 0 {
            *images_by_state.entry(b.state.as_str()).or_default() += copies;
        }
    }
    m.builds.clear();
    for (state, n) in builds_by_state {
        m.builds
            .get_or_create(&StateLabels {
                state: state.into(),
            })
            .set(n);
    }
    m.images.clear();
    for (state, n) in images_by_state {
        m.images
            .get_or_create(&StateLabels {
                state: state.into(),
            })
            .set(n);
    }
    Ok(())
}
