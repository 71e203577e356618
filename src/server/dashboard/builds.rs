//! `GET /dashboard`: every job, newest first, filterable by repository, recipe, kind and
//! state (a plain GET form, no script), with its recipes, duration and who triggered it.
//! A person sees only the jobs of repositories they can read (`access.rs`).
//! Reads the store only.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::page::{self, duration, escape};
use super::session;
use crate::database::{BuildRecord, Job, JobFilter, JobId, JobKind, JobState};
use crate::server::AppState;

/// The most jobs one page lists.
const MAX_ROWS: usize = 200;

#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    repo: String,
    #[serde(default)]
    recipe: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    state: String,
}

pub async fn builds_page(
    State(state): State<AppState>,
    Query(filters): Query<Filters>,
    headers: HeaderMap,
) -> Response {
    let Some(viewer) = session::viewer(&state, &headers) else {
        return session::refuse(&state);
    };
    let filter = JobFilter {
        kind: JobKind::parse(&filters.kind).ok(),
        state: JobState::parse(&filters.state).ok(),
        repo: (!filters.repo.is_empty()).then(|| filters.repo.clone()),
        limit: None,
    };
    let jobs = match state.store.list_jobs(&filter).await {
        Ok(j) => j,
        Err(e) => return page::unavailable(e),
    };
    let readable = state
        .dashboard
        .permissions
        .readable(&viewer, jobs.iter().map(|j| j.repo.as_str()))
        .await;
    let jobs: Vec<Job> = jobs
        .into_iter()
        .filter(|j| readable.contains(&j.repo))
        .collect();
    let builds = match state.store.list_builds(&Default::default()).await {
        Ok(b) => b,
        Err(e) => return page::unavailable(e),
    };
    let visible: std::collections::HashSet<JobId> = jobs.iter().map(|j| j.id).collect();
    let builds: Vec<BuildRecord> = builds
        .into_iter()
        .filter(|b| b.job_id.is_some_and(|id| visible.contains(&id)))
        .collect();
    let mut recipes: BTreeMap<JobId, Vec<&BuildRecord>> = BTreeMap::new();
    for b in &builds {
        if let Some(id) = b.job_id {
            recipes.entry(id).or_default().push(b);
        }
    }
    let rows: Vec<String> = jobs
        .iter()
        .rev()
        .filter(|j| {
            filters.recipe.is_empty()
                || recipes
                    .get(&j.id)
                    .is_some_and(|bs| bs.iter().any(|b| b.recipe == filters.recipe))
        })
        .take(MAX_ROWS)
        .map(|j| row(j, recipes.get(&j.id).map(Vec::as_slice).unwrap_or_default()))
        .collect();
    let table = if rows.is_empty() {
        "<p>No builds match.</p>".to_string()
    } else {
        format!(
            "<table><thead><tr><th>job</th><th>state</th><th>kind</th><th>repository</th>\
             <th>ref</th><th>recipes</th><th>duration</th><th>triggered by</th><th>created</th>\
             </tr></thead><tbody>{}</tbody></table>",
            rows.concat()
        )
    };
    let body = format!("<h1>Builds</h1>{}{table}", filter_form(&filters, &builds));
    page::html(StatusCode::OK, "Builds", Some(&viewer), &body)
}

fn filter_form(f: &Filters, builds: &[BuildRecord]) -> String {
    let options = |values: &[&str], selected: &str| -> String {
        std::iter::once("<option value=\"\">any</option>".to_string())
            .chain(values.iter().map(|v| {
                format!(
                    "<option{}>{}</option>",
                    if *v == selected { " selected" } else { "" },
                    escape(v)
                )
            }))
            .collect()
    };
    let mut recipe_names: Vec<&str> = builds.iter().map(|b| b.recipe.as_str()).collect();
    recipe_names.sort();
    recipe_names.dedup();
    format!(
        "<form class=\"filters\" method=\"get\" action=\"/dashboard\">\
         <label>repository <input name=\"repo\" value=\"{}\" placeholder=\"owner/name\"></label>\
         <label>recipe <select name=\"recipe\">{}</select></label>\
         <label>kind <select name=\"kind\">{}</select></label>\
         <label>state <select name=\"state\">{}</select></label>\
         <button type=\"submit\">Filter</button></form>",
        escape(&f.repo),
        options(&recipe_names, &f.recipe),
        options(&["release", "validation", "command"], &f.kind),
        options(
            &["queued", "running", "succeeded", "failed", "cancelled"],
            &f.state
        ),
    )
}

/// Who asked for the job: the author of a pull request or comment; a release tag's push
/// or `bakery sync`.
pub fn triggered_by(job: &Job) -> String {
    if let Some(author) = job.payload.get("author").and_then(|a| a.as_str()) {
        return author.to_string();
    }
    match job.payload.get("source").and_then(|s| s.as_str()) {
        Some("sync") => "bakery sync".into(),
        _ if job.kind == JobKind::Release => "tag push".into(),
        _ => "-".into(),
    }
}

/// How long the job ran (or has been running), from creation to its last update.
pub fn job_duration(job: &Job) -> String {
    let end = if job.state.is_finished() {
        job.updated_at
    } else {
        chrono::Utc::now()
    };
    duration((end - job.created_at).num_seconds())
}

fn row(job: &Job, builds: &[&BuildRecord]) -> String {
    let mut recipes: Vec<&str> = builds.iter().map(|b| b.recipe.as_str()).collect();
    recipes.sort();
    recipes.dedup();
    let state = job.state.as_str();
    format!(
        "<tr><td><a href=\"/dashboard/jobs/{id}\">#{id}</a></td>\
         <td class=\"state {state}\">{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td></tr>",
        job.kind.as_str(),
        escape(&job.repo),
        escape(&job.git_ref),
        escape(&recipes.join(", ")),
        job_duration(job),
        escape(&triggered_by(job)),
        job.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        id = job.id,
    )
}
