//! The worker pool: workers lease queued jobs from the store and run them.
//!
//! A running job's lease is renewed in the background, in the database's clock. A worker
//! that dies stops renewing; when the lease expires another worker (in this process or
//! another replica) leases the job again. A worker that cannot renew in time stops the job
//! itself before the lease can expire, so two workers never work on one job.
//!
//! A cancel request cancels the job's token and the handler cleans up what it created. A
//! lost lease or shutdown hands the job over instead (`JobContext::hand_over`): work the
//! next owner can resume stays in place, and a shutdown's hand-back is not an attempt.
//! The handler runs in a task of its own, so its end, a panic included, always stops the
//! lease's renewal and frees the worker for the next job. The job's end is recorded with
//! retries while the lease is held, so a finished job never runs again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::WorkerConfig;
use crate::database::{DynStore, Job, JobOutcome, JobState, NotLeased};

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
    /// Cancelled (before `cancel`) when the job stops to be handed over rather than
    /// cancelled: at shutdown, or when this worker cannot keep its lease. Work that the
    /// next owner can resume is left in place for it.
    pub hand_over: CancellationToken,
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
        let host = crate::build::journal::hostname();
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
            let leased_at = Instant::now();
            match self.store.lease_next_job(worker, lease).await {
                Ok(Some(job)) => {
                    failures = 0;
                    if job.attempts > 1 {
                        // An earlier attempt's worker stopped without ending or handing back.
                        crate::metrics::metrics().takeover("job");
                    }
                    self.run_job(worker, job, leased_at, &shutdown).await;
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

    async fn run_job(
        &self,
        worker: &str,
        job: Job,
        leased_at: Instant,
        shutdown: &CancellationToken,
    ) {
        let span = tracing::info_span!("job", job = job.id, kind = job.kind.as_str(), repo = %job.repo, git_ref = %job.git_ref);
        self.run_job_inner(worker, job, leased_at, shutdown)
            .instrument(span)
            .await
    }

    async fn run_job_inner(
        &self,
        worker: &str,
        job: Job,
        leased_at: Instant,
        shutdown: &CancellationToken,
    ) {
        let lease = Duration::from_secs(self.config.lease_secs);
        let job_id = job.id;
        let cancel = CancellationToken::new();
        let hand_over = CancellationToken::new();
        let ctx = JobContext {
            job,
            store: self.store.clone(),
            worker: worker.to_string(),
            cancel: cancel.clone(),
            hand_over: hand_over.clone(),
        };
        // The lease is renewed from here until the job's end is recorded.
        let heartbeat_stop = CancellationToken::new();
        let lease_state = Arc::new(LeaseState::default());
        let heartbeat = tokio::spawn(
            heartbeat(
                self.store.clone(),
                job_id,
                worker.to_string(),
                lease,
                leased_at,
                ctx.clone(),
                lease_state.clone(),
                heartbeat_stop.clone(),
                shutdown.clone(),
            )
            .in_current_span(),
        );
        let _stop_heartbeat = heartbeat_stop.clone().drop_guard();

        if ctx.job.attempts > MAX_ATTEMPTS {
            let outcome = JobOutcome {
                state: JobState::Failed,
                result: None,
                error: Some(format!(
                    "gave up after {} attempts: the job's workers kept stopping before it finished",
                    ctx.job.attempts - 1
                )),
            };
            self.record_end(&ctx, &outcome, &lease_state).await;
            return;
        }
        ctx.log(
            "job",
            &format!("started by {worker} (attempt {})", ctx.job.attempts),
        )
        .await;

        // The handler runs in a task of its own: however it ends, a panic included, the
        // worker sees it, records the job's end and stops renewing the lease.
        let handler = self.handler.clone();
        let task_ctx = ctx.clone();
        let result =
            match tokio::spawn(async move { handler.run(&task_ctx).await }.in_current_span()).await
            {
                Ok(result) => result,
                Err(e) if e.is_panic() => Err(anyhow::anyhow!(
                    "the job's handler panicked: {}",
                    panic_message(e.into_panic())
                )),
                Err(e) => Err(anyhow::anyhow!("the job's handler was aborted: {e}")),
            };
        if lease_state.lost.load(Ordering::SeqCst) {
            tracing::warn!("job {job_id}: stopped without its lease; another worker takes it over");
            return;
        }
        let cancel_requested =
            matches!(self.store.get_job(job_id).await, Ok(Some(j)) if j.cancel_requested);
        let by_shutdown = lease_state.by_shutdown.load(Ordering::SeqCst);
        let outcome = match result {
            Ok(value) if !cancel.is_cancelled() => JobOutcome {
                state: JobState::Succeeded,
                result: value,
                error: None,
            },
            _ if (by_shutdown || hand_over.is_cancelled()) && !cancel_requested => JobOutcome {
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
        self.record_end(&ctx, &outcome, &lease_state).await;
        heartbeat_stop.cancel();
        let _ = heartbeat.await;
    }

    /// Records the job's end, retrying while the lease is still held: an end that is not
    /// recorded would make the finished job run again once its lease expired.
    async fn record_end(&self, ctx: &JobContext, outcome: &JobOutcome, lease: &LeaseState) {
        let job_id = ctx.job.id;
        let mut wait = Duration::from_millis(200);
        loop {
            match self.store.finish_job(job_id, &ctx.worker, outcome).await {
                Ok(()) => {
                    crate::metrics::metrics()
                        .jobs_finished
                        .get_or_create(&crate::metrics::KindStateLabels {
                            kind: ctx.job.kind.as_str().into(),
                            state: outcome.state.as_str().into(),
                        })
                        .inc();
                    return;
                }
                Err(e) if e.downcast_ref::<NotLeased>().is_some() => {
                    tracing::warn!("job {job_id}: {e:#}");
                    return;
                }
                Err(e) => {
                    if lease.lost.load(Ordering::SeqCst) {
                        tracing::warn!(
                            "cannot record the end of job {job_id} ({e:#}), and its lease is \
                             gone: another worker takes the job over"
                        );
                        return;
                    }
                    tracing::warn!(
                        "cannot record the end of job {job_id}: {e:#}; retrying in {wait:?}"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// What the heartbeat found out about a job's lease.
#[derive(Default)]
struct LeaseState {
    /// The lease was lost, or could not be renewed in time: the job was stopped.
    lost: AtomicBool,
    /// The process is shutting down: the job was stopped to be handed back.
    by_shutdown: AtomicBool,
}

/// Renews a job's lease until `stop`, and watches for cancel requests and shutdown.
///
/// A worker never works without its lease: when no renewal succeeded for
/// `lease - lease / 3` (the store is unreachable, a renewal hangs), the job is stopped and
/// handed over, before the lease can expire and another worker can take the job.
#[allow(clippy::too_many_arguments)]
async fn heartbeat(
    store: DynStore,
    job_id: i64,
    worker: String,
    lease: Duration,
    leased_at: Instant,
    ctx: JobContext,
    state: Arc<LeaseState>,
    stop: CancellationToken,
    shutdown: CancellationToken,
) {
    let every = lease / 3;
    let safe_for = lease - lease / 3;
    let mut fence_at = leased_at + safe_for;
    let stop_job = |lost: bool| {
        if lost {
            state.lost.store(true, Ordering::SeqCst);
        } else {
            state.by_shutdown.store(true, Ordering::SeqCst);
        }
        ctx.hand_over.cancel();
        ctx.cancel.cancel();
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shutdown.cancelled(), if !state.by_shutdown.load(Ordering::SeqCst) => {
                stop_job(false);
                continue;
            }
            _ = tokio::time::sleep_until(fence_at) => {
                tracing::warn!(job = job_id, "no lease renewal succeeded in {safe_for:?}; stopping the job");
                stop_job(true);
                return;
            }
            _ = tokio::time::sleep(every) => {}
        }
        let sent = Instant::now();
        let renewed = tokio::select! {
            _ = stop.cancelled() => return,
            r = store.renew_lease(job_id, &worker, lease) => r,
            _ = tokio::time::sleep_until(fence_at) => Err(anyhow::anyhow!("the renewal did not answer in time")),
        };
        match renewed {
            Ok(true) => fence_at = sent + safe_for,
            Ok(false) => {
                tracing::warn!(job = job_id, "lease lost; stopping the job");
                stop_job(true);
                return;
            }
            Err(e) if Instant::now() >= fence_at => {
                tracing::warn!(
                    job = job_id,
                    "cannot renew the lease ({e:#}) in {safe_for:?}; stopping the job"
                );
                stop_job(true);
                return;
            }
            Err(e) => tracing::warn!(job = job_id, "cannot renew the lease: {e:#}"),
        }
        if let Ok(Some(j)) = store.get_job(job_id).await {
            if j.cancel_requested && !ctx.cancel.is_cancelled() {
                tracing::info!(job = job_id, "cancel requested");
                ctx.cancel.cancel();
            }
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}
