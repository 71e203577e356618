//! `GET /dashboard/images`: the images the store knows, by recipe and version, one row per
//! account and region, from the manifests of the builds that succeeded; for a person,
//! only those of repositories they can read. Reads the store only.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::page::{self, escape};
use std::collections::HashMap;

use super::session::{self, Viewer};
use crate::build::manifest::Manifest;
use crate::database::{BuildFilter, BuildRecord, BuildState, JobId};
use crate::server::AppState;

pub async fn images_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(viewer) = session::viewer(&state, &headers) else {
        return session::refuse(&state);
    };
    let builds = match state
        .store
        .list_builds(&BuildFilter {
            state: Some(BuildState::Succeeded),
            ..Default::default()
        })
        .await
    {
        Ok(b) => b,
        Err(e) => return page::unavailable(e),
    };
    // A person sees the images of the repositories they can read; images built outside a
    // job (`bakery build`) are the operator's.
    let jobs = match state.store.list_jobs(&Default::default()).await {
        Ok(j) => j,
        Err(e) => return page::unavailable(e),
    };
    let repo_of: HashMap<JobId, &str> = jobs.iter().map(|j| (j.id, j.repo.as_str())).collect();
    let readable = state
        .dashboard
        .permissions
        .readable(&viewer, repo_of.values().copied())
        .await;
    let visible = |b: &BuildRecord| match b.job_id.and_then(|id| repo_of.get(&id)) {
        Some(repo) => readable.contains(*repo),
        None => viewer == Viewer::Operator,
    };
    let mut rows = vec![];
    for b in builds.iter().rev().filter(|b| visible(b)) {
        let Some(manifest) = b
            .manifest
            .as_ref()
            .and_then(|m| serde_json::from_value::<Manifest>(m.clone()).ok())
        else {
            continue;
        };
        for copy in manifest.builds.iter().flat_map(|mb| mb.copies.iter()) {
            rows.push(format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td>\
                 <td>{}</td><td>{}</td></tr>",
                escape(&b.recipe),
                escape(&b.version),
                escape(&copy.account),
                escape(&copy.region),
                escape(&copy.ami),
                if copy.encrypted { "yes" } else { "no" },
                b.job_id
                    .map(|id| format!("<a href=\"/dashboard/jobs/{id}\">#{id}</a>"))
                    .unwrap_or_else(|| "-".into()),
            ));
        }
    }
    let body = if rows.is_empty() {
        "<h1>Images</h1><p>No images yet.</p>".to_string()
    } else {
        format!(
            "<h1>Images</h1><table><thead><tr><th>recipe</th><th>version</th><th>account</th>\
             <th>region</th><th>image</th><th>encrypted</th><th>job</th></tr></thead>\
             <tbody>{}</tbody></table>",
            rows.concat()
        )
    };
    page::html(StatusCode::OK, "Images", Some(&viewer), &body)
}
