//! `GET /dashboard/jobs/{id}/log?after=<line>`: a job's log as server-sent events, one
//! event per line with the line's number as its id. It starts after `after` (the last line
//! the page showed) or after the browser's `Last-Event-ID` when it reconnects, so a reload
//! or a dropped connection resumes where it stopped. When the job has finished and every
//! line was sent, an `end` event closes the stream. Only for viewers who can read the
//! job's repository. Reads the store only.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;

use super::session;
use crate::database::DynStore;
use crate::server::AppState;

/// How often the store is asked for new lines.
const POLL: Duration = Duration::from_millis(500);
/// Lines read at a time.
const BATCH: i64 = 500;

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    after: i64,
}

pub async fn live_log(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(query): Query<LogQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(viewer) = session::viewer(&state, &headers) else {
        return session::not_found();
    };
    let job = match state.store.get_job(id).await {
        Ok(Some(job)) => job,
        Ok(None) => return session::not_found(),
        Err(e) => return super::page::unavailable(e),
    };
    if !state
        .dashboard
        .permissions
        .access(&viewer, &job.repo)
        .await
        .can_read()
    {
        return session::not_found();
    }
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = resumed.unwrap_or(query.after).max(0);
    Sse::new(lines(state.store.clone(), id, after))
        .keep_alive(KeepAlive::default())
        .into_response()
}

enum Cursor {
    After(i64),
    Done,
}

/// The log lines of job `id` after `after`, as they arrive, then `end`.
fn lines(store: DynStore, id: i64, after: i64) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(
        (store, Cursor::After(after), true),
        move |(store, cursor, first)| async move {
            let Cursor::After(after) = cursor else {
                return None;
            };
            if !first {
                tokio::time::sleep(POLL).await;
            }
            // Whether the job had finished BEFORE the lines were read: then no line can
            // come after them.
            let finished = match store.get_job(id).await {
                Ok(Some(job)) => job.state.is_finished(),
                Ok(None) => true,
                Err(e) => {
                    tracing::warn!("live log of job {id}: {e:#}");
                    false
                }
            };
            let page = match store.job_log_page(id, after, BATCH).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("live log of job {id}: {e:#}");
                    return Some((vec![], (store, Cursor::After(after), false)));
                }
            };
            let last = page.last().map(|l| l.seq).unwrap_or(after);
            let mut events: Vec<Event> = page
                .iter()
                .map(|l| {
                    Event::default().id(l.seq.to_string()).data(format!(
                        "{} [{}] {}",
                        l.at.format("%H:%M:%S"),
                        l.step,
                        l.message
                    ))
                })
                .collect();
            let next = if finished && (page.len() as i64) < BATCH {
                events.push(Event::default().event("end").data("end"));
                Cursor::Done
            } else {
                Cursor::After(last)
            };
            Some((events, (store, next, false)))
        },
    )
    .flat_map(|events| stream::iter(events.into_iter().map(Ok)))
}
