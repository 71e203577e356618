//! A store whose lease renewals or job endings fail on demand, as they do while the
//! database is unreachable (a PostgreSQL failover, SQLite busy for longer than its
//! timeout). Everything else goes to the real store underneath.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bakery::database::*;

pub struct FlakyStore {
    inner: DynStore,
    /// While set, every lease renewal fails.
    pub renewals_fail: AtomicBool,
    /// This many `finish_job` calls fail before they succeed again.
    pub finish_failures: AtomicUsize,
}

impl FlakyStore {
    pub fn new(inner: DynStore) -> Arc<Self> {
        Arc::new(FlakyStore {
            inner,
            renewals_fail: AtomicBool::new(false),
            finish_failures: AtomicUsize::new(0),
        })
    }
}

fn unreachable_store() -> anyhow::Error {
    anyhow::anyhow!("cannot reach the store: connection refused")
}

#[async_trait]
impl Store for FlakyStore {
    async fn ping(&self) -> anyhow::Result<()> {
        self.inner.ping().await
    }
    async fn record_delivery(
        &self,
        delivery: &NewDelivery,
        job: Option<&NewJob>,
    ) -> anyhow::Result<DeliveryOutcome> {
        self.inner.record_delivery(delivery, job).await
    }
    async fn enqueue_job(&self, job: &NewJob) -> anyhow::Result<Option<JobId>> {
        self.inner.enqueue_job(job).await
    }
    async fn lease_next_job(&self, worker: &str, lease: Duration) -> anyhow::Result<Option<Job>> {
        self.inner.lease_next_job(worker, lease).await
    }
    async fn renew_lease(&self, job: JobId, worker: &str, lease: Duration) -> anyhow::Result<bool> {
        if self.renewals_fail.load(Ordering::SeqCst) {
            return Err(unreachable_store());
        }
        self.inner.renew_lease(job, worker, lease).await
    }
    async fn finish_job(
        &self,
        job: JobId,
        worker: &str,
        outcome: &JobOutcome,
    ) -> anyhow::Result<()> {
        let failing = self
            .finish_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(unreachable_store());
        }
        self.inner.finish_job(job, worker, outcome).await
    }
    async fn request_cancel(&self, job: JobId) -> anyhow::Result<()> {
        self.inner.request_cancel(job).await
    }
    async fn get_job(&self, job: JobId) -> anyhow::Result<Option<Job>> {
        self.inner.get_job(job).await
    }
    async fn list_jobs(&self, filter: &JobFilter) -> anyhow::Result<Vec<Job>> {
        self.inner.list_jobs(filter).await
    }
    async fn append_job_log(&self, job: JobId, step: &str, message: &str) -> anyhow::Result<()> {
        self.inner.append_job_log(job, step, message).await
    }
    async fn job_log(&self, job: JobId) -> anyhow::Result<Vec<JobLogEntry>> {
        self.inner.job_log(job).await
    }
    async fn append_job_log_batch(
        &self,
        job: JobId,
        lines: &[(String, String)],
    ) -> anyhow::Result<()> {
        self.inner.append_job_log_batch(job, lines).await
    }
    async fn job_log_page(
        &self,
        job: JobId,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<JobLogEntry>> {
        self.inner.job_log_page(job, after, limit).await
    }
    async fn delete_finished_job_logs(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<u64> {
        self.inner.delete_finished_job_logs(cutoff).await
    }
    async fn resolve_job_commit(
        &self,
        job: JobId,
        sha: &str,
        dedup_key: &str,
        payload: &serde_json::Value,
    ) -> anyhow::Result<ResolvedCommit> {
        self.inner
            .resolve_job_commit(job, sha, dedup_key, payload)
            .await
    }
    async fn upsert_build(&self, build: &BuildRecord) -> anyhow::Result<()> {
        self.inner.upsert_build(build).await
    }
    async fn heartbeat_build(&self, build_id: &str) -> anyhow::Result<bool> {
        self.inner.heartbeat_build(build_id).await
    }
    async fn build_heartbeat_age(&self, build_id: &str) -> anyhow::Result<Option<Duration>> {
        self.inner.build_heartbeat_age(build_id).await
    }
    async fn claim_periodic(
        &self,
        task: &str,
        runner: &str,
        period: Duration,
    ) -> anyhow::Result<bool> {
        self.inner.claim_periodic(task, runner, period).await
    }
    async fn periodic_runs(&self) -> anyhow::Result<Vec<bakery::database::PeriodicRun>> {
        self.inner.periodic_runs().await
    }
    async fn get_build(&self, build_id: &str) -> anyhow::Result<Option<BuildRecord>> {
        self.inner.get_build(build_id).await
    }
    async fn list_builds(&self, filter: &BuildFilter) -> anyhow::Result<Vec<BuildRecord>> {
        self.inner.list_builds(filter).await
    }
    async fn put_inventory(
        &self,
        build_id: &str,
        collected: &bakery::inventory::Collected,
    ) -> anyhow::Result<()> {
        self.inner.put_inventory(build_id, collected).await
    }
    async fn inventory(
        &self,
        build_id: &str,
    ) -> anyhow::Result<Option<bakery::inventory::Collected>> {
        self.inner.inventory(build_id).await
    }
    async fn append_journal(&self, build_id: &str, entry: &JournalEntry) -> anyhow::Result<i64> {
        self.inner.append_journal(build_id, entry).await
    }
    async fn journal(&self, build_id: &str) -> anyhow::Result<Vec<StoredJournalEntry>> {
        self.inner.journal(build_id).await
    }
    async fn repo_history(&self, repo: &str) -> anyhow::Result<Option<RepoHistory>> {
        self.inner.repo_history(repo).await
    }
    async fn record_repo_history(
        &self,
        repo: &str,
        tags: &[(String, String)],
    ) -> anyhow::Result<bool> {
        self.inner.record_repo_history(repo, tags).await
    }
}
