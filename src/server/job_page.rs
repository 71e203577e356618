//! `GET /jobs/{id}`: a job's state and its log, a page at a time, for a link that carries
//! the job's token (check runs' `details_url`) or an operator's bearer token. Anything
//! else is answered 404, whether the job exists or not. Reads the store only.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::AppState;
use crate::config::Secret;

/// Log lines on one page, by default and at most.
const PAGE_LINES: i64 = 1000;
const MAX_PAGE_LINES: i64 = 5000;

/// The token of job `id`'s link: HMAC-SHA256 of `job:<id>` under the server's key, in hex.
pub fn job_token(key: &Secret, id: i64) -> String {
    hex::encode(mac(key, id).finalize().into_bytes())
}

/// The path of job `id`'s page with its token.
pub fn job_path(key: &Secret, id: i64) -> String {
    format!("/jobs/{id}?token={}", job_token(key, id))
}

fn mac(key: &Secret, id: i64) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key");
    mac.update(format!("job:{id}").as_bytes());
    mac
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    token: Option<String>,
    /// Lines after this sequence number.
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

/// How the request proved it may see the page.
enum Access {
    Link,
    Operator,
}

fn access(state: &AppState, id: i64, query: &PageQuery, headers: &HeaderMap) -> Option<Access> {
    if let (Some(key), Some(token)) = (&state.job_page_key, &query.token) {
        let mut given = [0u8; 32];
        if hex::decode_to_slice(token, &mut given).is_ok()
            && mac(key, id).verify_slice(&given).is_ok()
        {
            return Some(Access::Link);
        }
    }
    is_operator(state, headers).then_some(Access::Operator)
}

/// The request carries the operator's bearer token (`Authorization: Bearer`).
pub fn is_operator(state: &AppState, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (&state.operator_token, bearer) {
        (Some(expected), Some(given)) => {
            constant_time_eq(expected.expose().as_bytes(), given.trim().as_bytes())
        }
        _ => false,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn not_found() -> (StatusCode, String) {
    (StatusCode::NOT_FOUND, "not found\n".into())
}

pub async fn job_page(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let Some(access) = access(&state, id, &query, &headers) else {
        return not_found();
    };
    let job = match state.store.get_job(id).await {
        Ok(Some(job)) => job,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::warn!("cannot read job {id}: {e:#}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the job store is unavailable\n".into(),
            );
        }
    };
    let limit = query.limit.unwrap_or(PAGE_LINES).clamp(1, MAX_PAGE_LINES);
    let after = query.after.max(0);
    let log = match state.store.job_log_page(id, after, limit).await {
        Ok(log) => log,
        Err(e) => {
            tracing::warn!("cannot read the log of job {id}: {e:#}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the job store is unavailable\n".into(),
            );
        }
    };
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
    if after > 0 {
        page.push_str(&format!("(log lines after line {after})\n"));
    }
    for line in &log {
        page.push_str(&format!(
            "{} [{}] {}\n",
            line.at.format("%H:%M:%S"),
            line.step,
            line.message
        ));
    }
    if log.len() as i64 == limit {
        let last = log.last().map(|l| l.seq).unwrap_or(after);
        // The operator's token never goes into a link; a job link passes its own on.
        let token = match access {
            Access::Link => format!("token={}&", query.token.as_deref().unwrap_or_default()),
            Access::Operator => String::new(),
        };
        page.push_str(&format!(
            "\nnext page: /jobs/{id}?{token}after={last}&limit={limit}\n"
        ));
    }
    (StatusCode::OK, page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_per_job_and_key() {
        let key = Secret::new("a-key-of-sixteen-chars");
        let t1 = job_token(&key, 1);
        assert_eq!(t1.len(), 64);
        assert_ne!(t1, job_token(&key, 2));
        assert_ne!(t1, job_token(&Secret::new("another-key-of-sixteen"), 1));
        assert_eq!(job_path(&key, 1), format!("/jobs/1?token={t1}"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
