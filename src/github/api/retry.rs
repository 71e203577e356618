//! The one retry helper every GitHub API call goes through.
//!
//! GitHub answers transient trouble with 5xx, with 429, and with 403 for secondary rate
//! limits (a `retry-after` header, `x-ratelimit-remaining: 0`, or a message that says
//! "rate limit"). Those are retried with the [`GITHUB`] policy's backoff, or after the
//! `retry-after` GitHub asks for when that is longer (capped). Any other 4xx is the
//! caller's mistake or a missing permission and fails at once.

use std::future::Future;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

use crate::retry::{Attempted, Calls, RetryPolicy};

/// Five attempts, 1 s to 30 s apart, 30 s per attempt.
pub const GITHUB: RetryPolicy = RetryPolicy::new(
    "github",
    5,
    Duration::from_secs(1),
    Duration::from_secs(30),
    Duration::from_secs(30),
);

/// The longest `retry-after` honoured; a longer one is treated as this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

pub use crate::retry::Decision;

/// Classifies an HTTP error answer from GitHub.
pub fn classify_response(status: StatusCode, message: &str, headers: &HeaderMap) -> Decision {
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Decision::Retry { after: retry_after };
    }
    if status == StatusCode::FORBIDDEN {
        let exhausted = headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0");
        let says_rate_limit = message.to_ascii_lowercase().contains("rate limit");
        if retry_after.is_some() || exhausted || says_rate_limit {
            let until_reset = exhausted
                .then(|| reset_wait(headers))
                .flatten()
                .map(|d| d.min(MAX_RETRY_AFTER));
            return Decision::Retry {
                after: retry_after.or(until_reset),
            };
        }
    }
    Decision::Fail
}

/// Time until `x-ratelimit-reset` (epoch seconds), if the header is there.
fn reset_wait(headers: &HeaderMap) -> Option<Duration> {
    let reset = headers
        .get("x-ratelimit-reset")?
        .to_str()
        .ok()?
        .trim()
        .parse::<i64>()
        .ok()?;
    let now = chrono::Utc::now().timestamp();
    Some(Duration::from_secs(reset.saturating_sub(now).max(1) as u64))
}

/// Classifies any error octocrab returns: GitHub's answers by [`classify_response`],
/// transport failures as transient, everything else (bad URI, JSON that does not parse,
/// a key that does not load) as permanent.
pub fn classify(error: &octocrab::Error) -> Decision {
    match error {
        octocrab::Error::GitHub { source, .. } => {
            let empty = HeaderMap::new();
            classify_response(
                source.status_code,
                &source.message,
                source.headers.as_ref().unwrap_or(&empty),
            )
        }
        octocrab::Error::Hyper { .. } | octocrab::Error::Service { .. } => {
            Decision::Retry { after: None }
        }
        _ => Decision::Fail,
    }
}

/// The HTTP status of a GitHub error answer, if that is what `error` is.
pub fn status_of(error: &octocrab::Error) -> Option<StatusCode> {
    match error {
        octocrab::Error::GitHub { source, .. } => Some(source.status_code),
        _ => None,
    }
}

/// A failed attempt's outcome in metrics: a rate limit (429, or a 403 that
/// [`classify_response`] retries) is `throttled`.
fn outcome_of(error: &octocrab::Error, decision: Decision) -> &'static str {
    match status_of(error) {
        Some(s) if s == StatusCode::TOO_MANY_REQUESTS => "throttled",
        Some(s) if s == StatusCode::FORBIDDEN && decision != Decision::Fail => "throttled",
        Some(s) if s.is_server_error() => "server_error",
        Some(_) => "client_error",
        None => "no_answer",
    }
}

/// A GitHub error answer with its HTTP status and GitHub's message in the text, so that
/// every log line and report names both (e.g. `GitHub answered 422 Unprocessable Entity:
/// No commit found for SHA: …`).
fn with_status(error: octocrab::Error) -> anyhow::Error {
    match &error {
        octocrab::Error::GitHub { source, .. } => {
            let text = format!("GitHub answered {}: {}", source.status_code, source.message);
            anyhow::Error::new(error).context(text)
        }
        _ => anyhow::Error::new(error),
    }
}

/// GitHub's calls for the retry loop ([`crate::retry::run`]): judged by
/// [`classify`], errors named with GitHub's status, every attempt counted.
struct GitHubCalls;

impl Calls for GitHubCalls {
    type Error = octocrab::Error;

    fn decide(&self, error: &octocrab::Error) -> Decision {
        classify(error)
    }

    fn error(&self, error: octocrab::Error) -> anyhow::Error {
        with_status(error)
    }

    fn no_answer(&self, policy: &RetryPolicy, _what: &str) -> anyhow::Error {
        anyhow::anyhow!("no answer from GitHub within {:?}", policy.attempt_timeout)
    }

    fn gave_up(
        &self,
        policy: &RetryPolicy,
        what: &str,
        attempt: u32,
        _no_answer: bool,
    ) -> Option<String> {
        Some(format!(
            "GitHub call \"{what}\" failed (attempt {attempt} of {}, {} policy)",
            policy.max_attempts, policy.name
        ))
    }

    fn name(&self, what: &str) -> String {
        format!("GitHub call \"{what}\"")
    }

    fn attempted(&self, what: &str, attempt: u32, result: Attempted<'_, octocrab::Error>) {
        let outcome = match result {
            Attempted::Ok => "ok",
            Attempted::Failed(e, d) => outcome_of(e, d),
            Attempted::NoAnswer => "no_answer",
        };
        let operation = crate::metrics::operation_of(what);
        crate::metrics::metrics().call("github", &operation, outcome, attempt > 1);
    }
}

/// Runs one GitHub call under `policy` (normally [`GITHUB`]). `what` names the call in
/// errors and logs, e.g. `"create check run bakery/base on acme/images"`.
pub async fn call<T, F, Fut>(policy: &RetryPolicy, what: &str, op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, octocrab::Error>>,
{
    crate::retry::run(policy, what, &GitHubCalls, op).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn server_errors_and_429_are_retried() {
        for code in [500, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(
                classify_response(status, "oops", &HeaderMap::new()),
                Decision::Retry { after: None },
                "{code}"
            );
        }
        assert_eq!(
            classify_response(
                StatusCode::TOO_MANY_REQUESTS,
                "slow down",
                &headers(&[("retry-after", "7")])
            ),
            Decision::Retry {
                after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn secondary_rate_limits_are_retried() {
        let by_message = classify_response(
            StatusCode::FORBIDDEN,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            &HeaderMap::new(),
        );
        assert_eq!(by_message, Decision::Retry { after: None });
        let by_header = classify_response(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &headers(&[("retry-after", "600")]),
        );
        assert_eq!(
            by_header,
            Decision::Retry {
                after: Some(MAX_RETRY_AFTER)
            },
            "long waits are capped"
        );
        let reset = (chrono::Utc::now().timestamp() + 5).to_string();
        let exhausted = classify_response(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for installation",
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset),
            ]),
        );
        match exhausted {
            Decision::Retry { after: Some(d) } => assert!(d <= Duration::from_secs(6)),
            other => panic!("expected a wait until reset, got {other:?}"),
        }
    }

    #[test]
    fn other_client_errors_fail_at_once() {
        for code in [400, 401, 404, 409, 410, 422] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(
                classify_response(status, "Validation Failed", &HeaderMap::new()),
                Decision::Fail,
                "{code}"
            );
        }
        assert_eq!(
            classify_response(
                StatusCode::FORBIDDEN,
                "Resource not accessible by integration",
                &headers(&[("x-ratelimit-remaining", "4999")])
            ),
            Decision::Fail,
            "a missing permission is not a rate limit"
        );
    }
}
