//! Named retry helpers around external calls: the one retry loop ([`run`]).
//!
//! Each external system gets named policies (its timing: attempts, backoff, attempt
//! timeout) and a [`Calls`] (which errors are worth another attempt and what a failure
//! says): AWS in `aws/policy.rs` (errors classified by a closure, [`retry_with`]), GitHub in
//! `github/api/retry.rs` (status codes, `retry-after`, metrics). Touches nothing but time.

use std::future::Future;
use std::time::Duration;

/// Whether an error is worth another attempt.
pub trait Retryable {
    fn is_retryable(&self) -> bool;
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub name: &'static str,
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Applied to each attempt.
    pub attempt_timeout: Duration,
}

impl RetryPolicy {
    pub const fn new(
        name: &'static str,
        max_attempts: u32,
        initial_backoff: Duration,
        max_backoff: Duration,
        attempt_timeout: Duration,
    ) -> Self {
        RetryPolicy {
            name,
            max_attempts,
            initial_backoff,
            max_backoff,
            attempt_timeout,
        }
    }

    /// Backoff before attempt `n` (1-based: the wait after the first failure is `n = 1`),
    /// doubling with full jitter, capped at `max_backoff`.
    pub fn backoff(&self, n: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX));
        let capped = exp.min(self.max_backoff);
        let jitter: f64 = rand::random::<f64>() * 0.5 + 0.5;
        capped.mul_f64(jitter)
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again: after the policy's backoff, or after `after` when the other side asked
    /// for longer.
    Retry {
        after: Option<Duration>,
    },
    Fail,
}

/// One attempt's result, as [`Calls::attempted`] sees it.
pub enum Attempted<'a, E> {
    Ok,
    Failed(&'a E, Decision),
    /// No answer within the policy's attempt timeout (retried).
    NoAnswer,
}

/// How the calls to one external system fail: which errors are worth another attempt and
/// what a failure says. The loop ([`run`]) is the same for every system; each names its
/// policy ([`RetryPolicy`]) and its `Calls`.
pub trait Calls {
    type Error;
    /// Whether to try again after `error`.
    fn decide(&self, error: &Self::Error) -> Decision;
    /// An attempt's error as the caller sees it.
    fn error(&self, error: Self::Error) -> anyhow::Error;
    /// The error of an attempt that got no answer within `policy.attempt_timeout`.
    fn no_answer(&self, policy: &RetryPolicy, what: &str) -> anyhow::Error;
    /// The context put on the final error, if any.
    fn gave_up(
        &self,
        policy: &RetryPolicy,
        what: &str,
        attempt: u32,
        no_answer: bool,
    ) -> Option<String>;
    /// The call as the retry warning names it.
    fn name(&self, what: &str) -> String {
        what.to_string()
    }
    /// Told of every attempt (metrics).
    fn attempted(&self, _what: &str, _attempt: u32, _result: Attempted<'_, Self::Error>) {}
}

/// Runs `op` under `policy`: each attempt bounded by the attempt timeout, failures judged
/// by `calls`, waits doubling with jitter (or longer when the other side asked), at most
/// `policy.max_attempts` attempts.
pub async fn run<T, C, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    calls: &C,
    mut op: F,
) -> anyhow::Result<T>
where
    C: Calls,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, C::Error>>,
{
    let mut attempt = 1;
    loop {
        let (err, decision, no_answer) =
            match tokio::time::timeout(policy.attempt_timeout, op()).await {
                Ok(Ok(v)) => {
                    calls.attempted(what, attempt, Attempted::Ok);
                    return Ok(v);
                }
                Ok(Err(e)) => {
                    let d = calls.decide(&e);
                    calls.attempted(what, attempt, Attempted::Failed(&e, d));
                    (calls.error(e), d, false)
                }
                Err(_) => {
                    calls.attempted(what, attempt, Attempted::NoAnswer);
                    (
                        calls.no_answer(policy, what),
                        Decision::Retry { after: None },
                        true,
                    )
                }
            };
        let after = match decision {
            Decision::Retry { after } if attempt < policy.max_attempts => after,
            _ => {
                return Err(match calls.gave_up(policy, what, attempt, no_answer) {
                    Some(context) => err.context(context),
                    None => err,
                })
            }
        };
        let wait = policy.backoff(attempt).max(after.unwrap_or_default());
        tracing::warn!(
            policy = policy.name,
            attempt,
            wait_ms = wait.as_millis() as u64,
            "{}: {err:#}; retrying",
            calls.name(what)
        );
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// The calls of [`retry_with`]: a closure says which errors are retried.
struct Classified<E, F> {
    classify: F,
    _error: std::marker::PhantomData<fn(&E)>,
}

impl<E, F> Calls for Classified<E, F>
where
    F: Fn(&E) -> bool,
    E: Into<anyhow::Error>,
{
    type Error = E;

    fn decide(&self, error: &E) -> Decision {
        if (self.classify)(error) {
            Decision::Retry { after: None }
        } else {
            Decision::Fail
        }
    }

    fn error(&self, error: E) -> anyhow::Error {
        error.into()
    }

    fn no_answer(&self, policy: &RetryPolicy, what: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "{what} timed out after {:?} ({} policy)",
            policy.attempt_timeout,
            policy.name
        )
    }

    fn gave_up(
        &self,
        policy: &RetryPolicy,
        what: &str,
        attempt: u32,
        no_answer: bool,
    ) -> Option<String> {
        (!no_answer).then(|| {
            format!(
                "{what} failed (attempt {attempt} of {})",
                policy.max_attempts
            )
        })
    }
}

/// Runs `op` under `policy`. `classify` decides which errors are retried.
pub async fn retry_with<T, E, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    classify: impl Fn(&E) -> bool,
    op: F,
) -> Result<T, anyhow::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<anyhow::Error> + std::fmt::Display,
{
    let calls = Classified {
        classify,
        _error: std::marker::PhantomData,
    };
    run(policy, what, &calls, op).await
}

/// Runs `op` under `policy`, retrying errors that say they are retryable.
pub async fn retry<T, E, F, Fut>(policy: &RetryPolicy, what: &str, op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Retryable + Into<anyhow::Error> + std::fmt::Display,
{
    retry_with(policy, what, |e: &E| e.is_retryable(), op).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct E(bool);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "E({})", self.0)
        }
    }
    impl std::error::Error for E {}
    impl Retryable for E {
        fn is_retryable(&self) -> bool {
            self.0
        }
    }

    const FAST: RetryPolicy = RetryPolicy::new(
        "test",
        4,
        Duration::from_millis(1),
        Duration::from_millis(2),
        Duration::from_secs(5),
    );

    #[tokio::test]
    async fn retries_retryable_until_success() {
        let n = AtomicU32::new(0);
        let v = retry(&FAST, "op", || async {
            if n.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(E(true))
            } else {
                Ok(7)
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 7);
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn does_not_retry_permanent_errors() {
        let n = AtomicU32::new(0);
        let err = retry(&FAST, "op", || async {
            n.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(E(false))
        })
        .await
        .unwrap_err();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert!(format!("{err:#}").contains("op failed (attempt 1 of 4)"));
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let n = AtomicU32::new(0);
        retry(&FAST, "op", || async {
            n.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(E(true))
        })
        .await
        .unwrap_err();
        assert_eq!(n.load(Ordering::SeqCst), 4);
    }

    /// A system that asks for a wait (GitHub's `retry-after`) gets at least that wait, and
    /// each attempt is reported once.
    #[tokio::test]
    async fn a_requested_wait_is_honoured_and_every_attempt_reported() {
        struct Asks(std::sync::Mutex<Vec<&'static str>>);
        impl Calls for Asks {
            type Error = E;
            fn decide(&self, _: &E) -> Decision {
                Decision::Retry {
                    after: Some(Duration::from_millis(200)),
                }
            }
            fn error(&self, e: E) -> anyhow::Error {
                e.into()
            }
            fn no_answer(&self, _: &RetryPolicy, _: &str) -> anyhow::Error {
                anyhow::anyhow!("no answer")
            }
            fn gave_up(&self, _: &RetryPolicy, what: &str, n: u32, _: bool) -> Option<String> {
                Some(format!("{what} gave up after {n}"))
            }
            fn attempted(&self, _: &str, _: u32, r: Attempted<'_, E>) {
                self.0.lock().unwrap().push(match r {
                    Attempted::Ok => "ok",
                    Attempted::Failed(..) => "failed",
                    Attempted::NoAnswer => "no answer",
                });
            }
        }
        let calls = Asks(Default::default());
        let n = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let v = run(&FAST, "op", &calls, || async {
            if n.fetch_add(1, Ordering::SeqCst) < 1 {
                Err(E(true))
            } else {
                Ok(1)
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 1);
        assert!(
            start.elapsed() >= Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(*calls.0.lock().unwrap(), vec!["failed", "ok"]);
        let once = RetryPolicy {
            max_attempts: 1,
            ..FAST
        };
        let err = run(&once, "op", &calls, || async { Err::<(), _>(E(true)) })
            .await
            .unwrap_err();
        assert_eq!(format!("{err}"), "op gave up after 1");
    }
}
