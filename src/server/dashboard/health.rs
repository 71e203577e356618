//! `GET /dashboard/health`: what runs where. The workers holding jobs with their lease,
//! the running builds with their last heartbeat (database time), the queue's depth and
//! its oldest job, and the last run of each periodic task (janitor, sync) with the
//! replica that ran it. The operator's only. Reads the store only.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::page::{self, duration, escape};
use super::session::{self, Viewer};
use crate::database::{BuildFilter, BuildState, JobFilter, JobState};
use crate::server::AppState;

pub async fn health_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(viewer) = session::viewer(&state, &headers) else {
        return session::refuse(&state);
    };
    // Every repository's jobs and builds are here: the operator's page.
    if viewer != Viewer::Operator {
        return session::not_found();
    }
    let store = &state.store;
    let now = chrono::Utc::now();
    let (running, queued, builds, periodic) = match async {
        let running = store
            .list_jobs(&JobFilter {
                state: Some(JobState::Running),
                ..Default::default()
            })
            .await?;
        let queued = store
            .list_jobs(&JobFilter {
                state: Some(JobState::Queued),
                ..Default::default()
            })
            .await?;
        let builds = store
            .list_builds(&BuildFilter {
                state: Some(BuildState::Running),
                ..Default::default()
            })
            .await?;
        let periodic = store.periodic_runs().await?;
        anyhow::Ok((running, queued, builds, periodic))
    }
    .await
    {
        Ok(v) => v,
        Err(e) => return page::unavailable(e),
    };

    let workers: String = running
        .iter()
        .map(|j| {
            format!(
                "<tr><td>{}</td><td><a href=\"/dashboard/jobs/{id}\">#{id}</a></td><td>{}</td></tr>",
                escape(j.lease_owner.as_deref().unwrap_or("-")),
                j.lease_expires_at
                    .map(|t| format!("in {}", duration((t - now).num_seconds())))
                    .unwrap_or_else(|| "-".into()),
                id = j.id,
            )
        })
        .collect();
    let mut build_rows = String::new();
    for b in &builds {
        let age = match store.build_heartbeat_age(&b.build_id).await {
            Ok(a) => a,
            Err(e) => return page::unavailable(e),
        };
        build_rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{} {}</td><td>{}</td></tr>",
            escape(&b.build_id),
            escape(&b.recipe),
            escape(&b.version),
            age.map(|a| format!("{} ago", duration(a.as_secs() as i64)))
                .unwrap_or_else(|| "never".into()),
        ));
    }
    let oldest = queued
        .iter()
        .map(|j| j.created_at)
        .min()
        .map(|t| format!("waiting for {}", duration((now - t).num_seconds())))
        .unwrap_or_else(|| "none".into());
    let periodic_rows: String = periodic
        .iter()
        .map(|p| {
            format!(
                "<tr><td>{}</td><td>{} ({} ago)</td><td>{}</td><td>{}</td></tr>",
                escape(&p.task),
                p.last_run_at.format("%Y-%m-%d %H:%M:%S UTC"),
                duration((now - p.last_run_at).num_seconds()),
                escape(&p.runner),
                p.runs
            )
        })
        .collect();
    let table = |head: &str, rows: &str, empty: &str| {
        if rows.is_empty() {
            format!("<p>{empty}</p>")
        } else {
            format!("<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        }
    };
    let body = format!(
        "<h1>Health</h1>\
         <dl><dt>queue depth</dt><dd id=\"queue-depth\">{}</dd><dt>oldest queued job</dt><dd>{oldest}</dd></dl>\
         <h2>Workers holding jobs</h2>{}\
         <h2>Running builds</h2>{}\
         <h2>Periodic tasks</h2>{}",
        queued.len(),
        table(
            "<th>worker</th><th>job</th><th>lease expires</th>",
            &workers,
            "No job is running."
        ),
        table(
            "<th>build</th><th>recipe</th><th>last heartbeat</th>",
            &build_rows,
            "No build is running."
        ),
        table(
            "<th>task</th><th>last run</th><th>by</th><th>runs</th>",
            &periodic_rows,
            "No periodic task has run yet (janitor and sync run when configured)."
        ),
    );
    page::html(StatusCode::OK, "Health", Some(&viewer), &body)
}
