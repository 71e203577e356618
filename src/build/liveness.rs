//! Whether a build is still running: a heartbeat in the store, in the database's clock.
//!
//! A running build writes its heartbeat every [`Liveness::every`]. A build whose
//! heartbeat is older than [`Liveness::stale_after`] has stopped, whatever process or host
//! its journal names: PIDs are reused (a container's server is PID 1 after every restart)
//! and other hosts cannot be asked. A PID can only prove that a build on this host is
//! gone, never that it is alive.
//!
//! May touch: the store's build records (heartbeats only).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::database::DynStore;

/// How often a running build's heartbeat is written, and when it counts as stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    pub every: Duration,
    pub stale_after: Duration,
}

/// A running build's heartbeat counts as stale after this long (the default).
pub const STALE_AFTER: Duration = Duration::from_secs(60);

impl Liveness {
    /// A heartbeat that counts as stale after `stale_after`, written six times as often.
    pub fn stale_after(stale_after: Duration) -> Self {
        Liveness {
            every: (stale_after / 6).max(Duration::from_millis(100)),
            stale_after,
        }
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            every: Duration::from_secs(10),
            stale_after: STALE_AFTER,
        }
    }
}

/// Writes a build's heartbeat until dropped.
///
/// When no heartbeat could be written for `stale_after - 2 × every` (the store is
/// unreachable), or the build is no longer `running` in the store, the build is stopped
/// to be handed over (`hand_over`, then `cancel`): another owner may soon take it over, so
/// this one must stop working on it.
pub struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    pub fn start(
        store: DynStore,
        build_id: &str,
        liveness: Liveness,
        hand_over: CancellationToken,
        cancel: CancellationToken,
    ) -> Self {
        let lost = move || {
            hand_over.cancel();
            cancel.cancel();
        };
        let build_id = build_id.to_string();
        let task = tokio::spawn(async move {
            let safe_for = liveness
                .stale_after
                .saturating_sub(liveness.every * 2)
                .max(liveness.every);
            let mut last_ok = tokio::time::Instant::now();
            loop {
                let sent = tokio::time::Instant::now();
                match store.heartbeat_build(&build_id).await {
                    Ok(true) => last_ok = sent,
                    Ok(false) => {
                        tracing::warn!(build = %build_id, "the build is no longer running in the store; stopping it");
                        lost();
                        return;
                    }
                    Err(e) if last_ok.elapsed() >= safe_for => {
                        tracing::warn!(build = %build_id, "no heartbeat written in {safe_for:?} ({e:#}); stopping the build");
                        lost();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(build = %build_id, "cannot write the heartbeat: {e:#}")
                    }
                }
                tokio::time::sleep(liveness.every).await;
            }
        });
        Heartbeat { task }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}
