//! `GET /dashboard/jobs/{id}`: one job and its builds: each build's steps with their
//! timings (from the step journal), the images it made per account and region (from its
//! manifest), links to the commit's checks and the release on GitHub, the log so far and,
//! while the job runs, the live log (`live_log.rs`). `POST …/cancel` asks the store to
//! cancel the job (the operator, or a person with write permission on the repository; a
//! person who cannot read the repository gets 404 for the page and the cancel alike).
//! Reads the store; writes only the cancel request.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::access::RepoAccess;
use super::builds::{job_duration, triggered_by};
use super::page::{self, duration, escape};
use super::session::{self, Viewer};
use crate::build::manifest::Manifest;
use crate::database::{BuildRecord, Job, JobKind, StoredJournalEntry};
use crate::server::AppState;

/// Log lines shown on the page; the rest is in the job page's pages.
const PAGE_LOG_LINES: i64 = 2000;

pub async fn build_page(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    let Some(viewer) = session::viewer(&state, &headers) else {
        return session::refuse(&state);
    };
    let job = match state.store.get_job(id).await {
        Ok(Some(job)) => job,
        Ok(None) => return session::not_found(),
        Err(e) => return page::unavailable(e),
    };
    // A job of a repository the viewer cannot read does not exist for them.
    let access = state.dashboard.permissions.access(&viewer, &job.repo).await;
    if !access.can_read() {
        return session::not_found();
    }
    let builds: Vec<BuildRecord> = match state.store.list_builds(&Default::default()).await {
        Ok(b) => b.into_iter().filter(|b| b.job_id == Some(id)).collect(),
        Err(e) => return page::unavailable(e),
    };
    let mut sections = String::new();
    for b in &builds {
        let journal = match state.store.journal(&b.build_id).await {
            Ok(j) => j,
            Err(e) => return page::unavailable(e),
        };
        sections.push_str(&build_section(b, &journal));
    }
    if builds.is_empty() {
        sections.push_str("<p>No image build (yet).</p>");
    }
    let log = match state.store.job_log(id).await {
        Ok(l) => l,
        Err(e) => return page::unavailable(e),
    };
    let skip = log.len().saturating_sub(PAGE_LOG_LINES as usize);
    let last_seq = log.last().map(|l| l.seq).unwrap_or(0);
    let lines: String = log[skip..]
        .iter()
        .map(|l| {
            format!(
                "{} [{}] {}\n",
                l.at.format("%H:%M:%S"),
                escape(&l.step),
                escape(&l.message)
            )
        })
        .collect();
    let live = if job.state.is_finished() {
        String::new()
    } else {
        live_script(id, last_seq)
    };
    let body = format!(
        "<h1>Job #{id}: {} {}</h1>{}{}<h2>Builds</h2>{sections}\
         <h2>Log</h2>{}<pre class=\"log\" id=\"log\" data-after=\"{last_seq}\" aria-live=\"polite\">{lines}</pre>{live}",
        job.kind.as_str(),
        escape(&job.git_ref),
        summary(&job),
        cancel_form(&job, access),
        if skip > 0 {
            format!("<p>The first {skip} lines are on the <a href=\"/jobs/{id}\">job page</a>.</p>")
        } else {
            String::new()
        },
    );
    page::html(StatusCode::OK, &format!("Job #{id}"), Some(&viewer), &body)
}

fn summary(job: &Job) -> String {
    let state = job.state.as_str();
    let github = format!("https://github.com/{}", job.repo);
    let mut links = vec![];
    if !job.sha.is_empty() {
        links.push(format!(
            "<a href=\"{}/commit/{}/checks\">checks on the commit</a>",
            escape(&github),
            escape(&job.sha)
        ));
    }
    if job.kind == JobKind::Release {
        if let Some(tag) = job
            .git_ref
            .strip_prefix("refs/tags/")
            .or(Some(&job.git_ref))
        {
            links.push(format!(
                "<a href=\"{}/releases/tag/{}\">release</a>",
                escape(&github),
                escape(tag)
            ));
        }
    }
    format!(
        "<dl><dt>state</dt><dd class=\"state {state}\" id=\"state\">{state}{}</dd>\
         <dt>repository</dt><dd>{}</dd><dt>commit</dt><dd><code>{}</code></dd>\
         <dt>triggered by</dt><dd>{}</dd><dt>duration</dt><dd>{}</dd><dt>attempts</dt><dd>{}</dd>\
         <dt>on GitHub</dt><dd>{}</dd></dl>",
        job.error
            .as_ref()
            .map(|e| format!(" — {}", escape(e)))
            .unwrap_or_default(),
        escape(&job.repo),
        escape(&job.sha),
        escape(&triggered_by(job)),
        job_duration(job),
        job.attempts,
        links.join(" · "),
    )
}

fn cancel_form(job: &Job, access: RepoAccess) -> String {
    match access {
        _ if job.cancel_requested && !job.state.is_finished() => "<p>Cancel requested.</p>".into(),
        a if a.can_cancel() && !job.state.is_finished() => format!(
            "<form method=\"post\" action=\"/dashboard/jobs/{}/cancel\">\
             <button type=\"submit\">Cancel this job</button></form>",
            job.id
        ),
        _ => String::new(),
    }
}

/// One build: its steps with timings and its images.
fn build_section(b: &BuildRecord, journal: &[StoredJournalEntry]) -> String {
    let mut steps: Vec<(String, chrono::DateTime<chrono::Utc>, Option<i64>)> = vec![];
    for e in journal {
        let Some(step) = e.data.get("step").and_then(|s| s.as_str()) else {
            continue;
        };
        match e.kind.as_str() {
            "step_started" => steps.push((step.to_string(), e.at, None)),
            "step_finished" => {
                if let Some(s) = steps
                    .iter_mut()
                    .rev()
                    .find(|s| s.0 == step && s.2.is_none())
                {
                    s.2 = Some((e.at - s.1).num_seconds());
                }
            }
            _ => {}
        }
    }
    let step_rows: String = steps
        .iter()
        .map(|(step, at, took)| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(step),
                at.format("%H:%M:%S"),
                took.map(duration).unwrap_or_else(|| "running".into())
            )
        })
        .collect();
    let images: Vec<(String, String, String)> = b
        .manifest
        .as_ref()
        .and_then(|m| serde_json::from_value::<Manifest>(m.clone()).ok())
        .map(|m| {
            m.builds
                .iter()
                .flat_map(|mb| mb.copies.iter())
                .map(|c| (c.account.clone(), c.region.clone(), c.ami.clone()))
                .collect()
        })
        .unwrap_or_default();
    let image_table = if images.is_empty() {
        "<p>No images.</p>".to_string()
    } else {
        format!(
            "<table class=\"images\"><thead><tr><th>account</th><th>region</th><th>image</th></tr></thead><tbody>{}</tbody></table>",
            images
                .iter()
                .map(|(a, r, i)| format!(
                    "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                    escape(a),
                    escape(r),
                    escape(i)
                ))
                .collect::<String>()
        )
    };
    let state = b.state.as_str();
    format!(
        "<section><h3>{} {} <span class=\"state {state}\">{state}</span></h3>{}\
         <table class=\"steps\"><thead><tr><th>step</th><th>started</th><th>took</th></tr></thead><tbody>{step_rows}</tbody></table>\
         <h4>Images</h4>{image_table}</section>",
        escape(&b.recipe),
        escape(&b.version),
        b.error
            .as_ref()
            .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
            .unwrap_or_default(),
    )
}

/// The live log: lines after `after` arrive by server-sent events; the stream ends with
/// an `end` event when the job has finished, and the page reloads to show the result.
fn live_script(id: i64, after: i64) -> String {
    format!(
        "<script>(function(){{var pre=document.getElementById('log');\
         var es=new EventSource('/dashboard/jobs/{id}/log?after={after}');\
         es.onmessage=function(e){{pre.textContent+=e.data+'\\n';pre.scrollTop=pre.scrollHeight;}};\
         es.addEventListener('end',function(){{es.close();location.reload();}});}})();</script>"
    )
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    let Some(viewer) = session::viewer(&state, &headers) else {
        return session::refuse(&state);
    };
    let job = match state.store.get_job(id).await {
        Ok(Some(job)) => job,
        Ok(None) => return session::not_found(),
        Err(e) => return page::unavailable(e),
    };
    let access = state.dashboard.permissions.access(&viewer, &job.repo).await;
    if !access.can_read() {
        return session::not_found();
    }
    if !access.can_cancel() {
        return page::html(
            StatusCode::FORBIDDEN,
            "Cancel",
            Some(&viewer),
            "<h1>Cancel</h1><p class=\"error\" role=\"alert\">Cancelling needs write \
             permission on the repository.</p>",
        );
    }
    if let Err(e) = state.store.request_cancel(id).await {
        return page::unavailable(e);
    }
    match &viewer {
        Viewer::Person { login } => {
            tracing::info!(job = id, by = %login, "cancel requested from the dashboard")
        }
        Viewer::Operator => tracing::info!(job = id, "cancel requested from the dashboard"),
    }
    Redirect::to(&format!("/dashboard/jobs/{id}")).into_response()
}
