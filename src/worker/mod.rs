//! The worker pool: workers lease queued jobs from the store and run them.
//!
//! A running job's lease is renewed in the background. A worker that dies stops renewing;
//! when the lease expires another worker (in this process or another replica) leases the
//! job again. A cancel request, a lost lease or shutdown cancels the job's token, and the
//! job's handler cleans up what it created.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::database::{DynStore, Job, JobOutcome, JobState};

/// A job leased more often than this (crashing workers, lost leases) is failed.
pub const MAX_ATTEMPTS: i64 = 5;

/// What a job's handler sees.
#[derive(Clone)]
pub struct JobContext {
    pub job: Job,
    pub store: DynStore,
    pub worker: String,
    /// Cancelled on a cancel request, a lost lease or shutdown.
    pub cancel: CancellationToken,
}

impl JobContext {
    /// Appends a line to the job's log in the store (and to the process log).
    pub async fn log(&self, step: &str, message: &str) {
        let message = &crate::redact::Redactor::global().redact(message);
        tracing::info!(job = self.job.id, step, "{message}");
        if let Err(e) = self.store.append_job_log(self.job.id, step, message).await {
            tracing::warn!(job = self.job.id, "cannot append to the job log: {e:#}");
        }
    }
}

#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Runs one job. The returned value is kept as the job's result. Return an error to
    /// fail the job; when `ctx.cancel` was cancelled the job ends as cancelled.
    async fn run(&self, ctx: &JobContext) -> anyhow::Result<Option<serde_json::Value>>;
}

pub struct WorkerPool {
    store: DynStore,
    handler: Arc<dyn JobHandler>,
    config: WorkerConfig,
    job_queued: Arc<Notify>,
    name: String,
}

impl WorkerPool {
    pub fn new(
        store: DynStore,
        handler: Arc<dyn JobHandler>,
        config: WorkerConfig,
        job_queued: Arc<Notify>,
    ) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "bakery".into());
        let name = format!(
            "{host}-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        WorkerPool {
            store,
            handler,
            config,
            job_queued,
            name,
        }
    }

    /// Starts `concurrency` workers. They stop when `shutdown` is cancelled; running jobs
    /// are cancelled, cleaned up by their handlers and handed back to the queue.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinSet<()> {
        let mut set = JoinSet::new();
        let shared = Arc::new(self);
        for i in 0..shared.config.concurrency {
            let pool = shared.clone();
            let shutdown = shutdown.clone();
            set.spawn(async move {
                let worker = format!("{}-w{i}", pool.name);
                pool.worker_loop(&worker, shutdown).await;
            });
        }
        set
    }

    async fn worker_loop(&self, worker: &str, shutdown: CancellationToken) {
        let lease = Duration::from_secs(self.config.lease_secs);
        let poll = Duration::from_millis(self.config.poll_millis);
        let mut failures: u32 = 0;
        while !shutdown.is_cancelled() {
            match self.store.lease_next_job(worker, lease).await {
                Ok(Some(job)) => {
                    failures = 0;
                    self.run_job(worker, job, &shutdown).await;
                }
                Ok(None) => {
                    failures = 0;
                    tokio::select! {
                        _ = self.job_queued.notified() => {}
                        _ = tokio::time::sleep(poll) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = poll.saturating_mul(2u32.saturating_pow(failures.min(6)));
                    tracing::warn!(worker, "cannot lease a job: {e:#}; retrying in {wait:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    async fn run_job(&self, worker: &str, job: Job, shutdown: &CancellationToken) {
        use tracing::Instrument;
        let span = tracing::info_span!("job", job = job.id, kind = job.kind.as_str(), repo = %job.repo, git_ref = %job.git_ref);
        self.run_job_inner(worker, job, shutdown)
            .instrument(span)
            .await
    }

    async fn run_job_inner(&self, worker: &str, job: Job, shutdown: &CancellationToken) {
        let lease = Duration::from_secs(self.config.lease_secs);
        let job_id = job.id;
        if job.attempts > MAX_ATTEMPTS {
            let outcome = JobOutcome {
                state: JobState::Failed,
                result: None,
                error: Some(format!(
                    "gave up after {} attempts: the job's workers kept stopping before it finished",
                    job.attempts - 1
                )),
            };
            if let Err(e) = self.store.finish_job(job_id, worker, &outcome).await {
                tracing::warn!("cannot fail job {job_id}: {e:#}");
            }
            return;
        }
        let cancel = CancellationToken::new();
        let ctx = JobContext {
            job,
            store: self.store.clone(),
            worker: worker.to_string(),
            cancel: cancel.clone(),
        };
        ctx.log(
            "job",
            &format!("started by {worker} (attempt {})", ctx.job.attempts),
        )
        .await;

        // Heartbeat: renew the lease, and watch for cancel requests and shutdown.
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = {
            let store = self.store.clone();
            let worker = worker.to_string();
            let cancel = cancel.clone();
            let stop = heartbeat_stop.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let every = lease / 3;
                let mut lost = false;
                let mut by_shutdown = false;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = shutdown.cancelled(), if !by_shutdown => {
                            by_shutdown = true;
                            cancel.cancel();
                            continue;
                        }
                        _ = tokio::time::sleep(every) => {}
                    }
                    match store.renew_lease(job_id, &worker, lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(job = job_id, "lease lost; stopping the job");
                            lost = true;
                            cancel.cancel();
                            break;
                        }
                        Err(e) => tracing::warn!(job = job_id, "cannot renew the lease: {e:#}"),
                    }
                    if let Ok(Some(j)) = store.get_job(job_id).await {
                        if j.cancel_requested && !cancel.is_cancelled() {
                            tracing::info!(job = job_id, "cancel requested");
                            cancel.cancel();
                        }
                    }
                }
                (lost, by_shutdown)
            })
        };

        let result = self.handler.run(&ctx).await;
        heartbeat_stop.cancel();
        let (lost, by_shutdown) = heartbeat.await.unwrap_or((false, false));
        if lost {
            tracing::warn!("job {job_id}: lease lost; another worker owns it now");
            return;
        }
        let cancel_requested =
            matches!(self.store.get_job(job_id).await, Ok(Some(j)) if j.cancel_requested);
        let outcome = match result {
            Ok(value) if !cancel.is_cancelled() => JobOutcome {
                state: JobState::Succeeded,
                result: value,
                error: None,
            },
            _ if by_shutdown && !cancel_requested => JobOutcome {
                state: JobState::Queued,
                result: None,
                error: Some("interrupted by shutdown; queued again".into()),
            },
            Ok(value) => JobOutcome {
                state: JobState::Cancelled,
                result: value,
                error: Some("cancelled".into()),
            },
            Err(e) if cancel.is_cancelled() => JobOutcome {
                state: JobState::Cancelled,
                result: None,
                error: Some(format!("cancelled: {e:#}")),
            },
            Err(e) => JobOutcome {
                state: JobState::Failed,
                result: None,
                error: Some(format!("{e:#}")),
            },
        };
        // The error is stored and shown on the job page: masked like the log.
        let mut outcome = outcome;
        outcome.error = outcome
            .error
            .map(|e| crate::redact::Redactor::global().redact(&e));
        ctx.log(
            "job",
            &match &outcome.error {
                Some(err) => format!("{}: {err}", outcome.state.as_str()),
                None => outcome.state.as_str().to_string(),
            },
        )
        .await;
        if let Err(e) = self.store.finish_job(job_id, worker, &outcome).await {
            tracing::warn!("cannot record the end of job {job_id}: {e:#}");
        }
    }
}
