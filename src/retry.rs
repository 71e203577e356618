//! Named retry helpers around external calls.
//!
//! Each external system gets a named policy (see the constructors) so that call sites say
//! what they retry and why, e.g. `retry(RetryPolicy::github(), "create check run", || ...)`.

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

/// An attempt's failure: the error, and whether to try again.
#[derive(Debug)]
pub enum Attempt<E> {
    Retry(E),
    Fail(E),
}

/// Runs `op` under `policy`. `classify` decides which errors are retried.
pub async fn retry_with<T, E, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    classify: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, anyhow::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<anyhow::Error> + std::fmt::Display,
{
    let mut attempt = 1;
    loop {
        let result = tokio::time::timeout(policy.attempt_timeout, op()).await;
        let err: anyhow::Error = match result {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => {
                if !classify(&e) || attempt >= policy.max_attempts {
                    return Err(e.into().context(format!(
                        "{what} failed (attempt {attempt} of {})",
                        policy.max_attempts
                    )));
                }
                e.into()
            }
            Err(_) => {
                let e = anyhow::anyhow!(
                    "{what} timed out after {:?} ({} policy)",
                    policy.attempt_timeout,
                    policy.name
                );
                if attempt >= policy.max_attempts {
                    return Err(e);
                }
                e
            }
        };
        let wait = policy.backoff(attempt);
        tracing::warn!(
            policy = policy.name,
            attempt,
            wait_ms = wait.as_millis() as u64,
            "{what}: {err:#}; retrying"
        );
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
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
}
