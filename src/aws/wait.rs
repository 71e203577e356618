//! Waiting for EC2 to reach a state: explicit time budgets, polling with backoff.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;

/// How a wait polls: the first pause, growing by `factor` up to `max_interval`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollSettings {
    pub initial_interval: Duration,
    pub max_interval: Duration,
    pub factor: f64,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            initial_interval: Duration::from_secs(2),
            max_interval: Duration::from_secs(30),
            factor: 1.5,
        }
    }
}

impl PollSettings {
    /// The pause after `n` checks (0-based).
    pub fn interval(&self, n: u32) -> Duration {
        let grown = self.initial_interval.as_secs_f64() * self.factor.powi(n as i32);
        Duration::from_secs_f64(grown.min(self.max_interval.as_secs_f64()))
    }
}

/// What one check of a wait found.
#[derive(Debug)]
pub enum Poll<T> {
    Ready(T),
    /// Not there yet; the string says where it is (e.g. `pending`), for the log.
    Pending(String),
}

/// Checks until `check` answers [`Poll::Ready`], an error, or `budget` runs out.
pub async fn until<T, F, Fut>(
    what: &str,
    budget: Duration,
    poll: PollSettings,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Poll<T>>>,
{
    let started = Instant::now();
    let mut n = 0;
    loop {
        let last = match check()
            .await
            .with_context(|| format!("while waiting for {what}"))?
        {
            Poll::Ready(v) => return Ok(v),
            Poll::Pending(state) => state,
        };
        let pause = poll.interval(n);
        if started.elapsed() + pause > budget {
            anyhow::bail!(
                "{what} did not happen within {} (last state: {last}); raise the time budget \
                 if the service is just slow",
                humantime::format_duration(budget)
            );
        }
        tokio::time::sleep(pause).await;
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_grow_to_the_cap() {
        let p = PollSettings {
            initial_interval: Duration::from_secs(2),
            max_interval: Duration::from_secs(30),
            factor: 1.5,
        };
        assert_eq!(p.interval(0), Duration::from_secs(2));
        assert_eq!(p.interval(1), Duration::from_secs(3));
        assert!(p.interval(3) > p.interval(2));
        assert_eq!(p.interval(40), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn gives_up_after_the_budget_naming_the_last_state() {
        let p = PollSettings {
            initial_interval: Duration::from_millis(5),
            max_interval: Duration::from_millis(10),
            factor: 2.0,
        };
        let err = until(
            "image ami-1 to be available",
            Duration::from_millis(40),
            p,
            || async { Ok(Poll::<()>::Pending("pending".into())) },
        )
        .await
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("image ami-1 to be available"), "{msg}");
        assert!(msg.contains("last state: pending"), "{msg}");
    }

    #[tokio::test]
    async fn returns_once_ready() {
        let mut calls = 0;
        let p = PollSettings {
            initial_interval: Duration::from_millis(1),
            max_interval: Duration::from_millis(1),
            factor: 1.0,
        };
        let v = until("x", Duration::from_secs(600), p, || {
            calls += 1;
            let c = calls;
            async move {
                Ok(if c < 3 {
                    Poll::Pending(format!("check {c}"))
                } else {
                    Poll::Ready(c)
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);
    }
}
