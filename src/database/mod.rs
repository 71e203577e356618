//! The durable store: deliveries, jobs with leases and logs, builds and their journals.
//!
//! Everything goes through the [`Store`] trait; [`SqlStore`] implements it for SQLite (the
//! embedded default) and PostgreSQL (for several replicas) with the same SQL, apart from
//! the `FOR UPDATE SKIP LOCKED` clause that PostgreSQL's leasing adds.

#[cfg(test)]
mod crash_tests;
mod deliveries;
mod model;
mod sql;

pub use model::*;
pub use sql::SqlStore;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::inventory::Collected;

pub type DynStore = Arc<dyn Store>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Is the store reachable? Used by `/readyz`.
    async fn ping(&self) -> anyhow::Result<()>;

    /// Records a delivery and, atomically with it, the job it asks for.
    ///
    /// A delivery id seen before is answered with [`DeliveryOutcome::Duplicate`] and changes
    /// nothing. A job whose dedup key already exists is not created again; the delivery is
    /// attached to the existing job ([`DeliveryOutcome::Merged`]). A tag's `push` joins the
    /// tag's `create` job the same way while that job has no commit yet, queued or already
    /// running (the worker then records the commit it peeled under the push's key).
    async fn record_delivery(
        &self,
        delivery: &NewDelivery,
        job: Option<&NewJob>,
    ) -> anyhow::Result<DeliveryOutcome>;

    /// Enqueues a job that did not come from a delivery (`bakery sync`, comment commands).
    /// Returns `None` when a job with the same dedup key exists, or when the job is a
    /// tag's release and that tag's `create` job, queued or running, has no commit yet:
    /// that job takes this one's commit and key instead.
    async fn enqueue_job(&self, job: &NewJob) -> anyhow::Result<Option<JobId>>;

    /// Takes the oldest queued job, or a running job whose lease expired, under a lease.
    /// Leases are written and compared in the database's clock, never a replica's.
    async fn lease_next_job(&self, worker: &str, lease: Duration) -> anyhow::Result<Option<Job>>;

    /// Extends a lease. Returns `false` when the lease was lost (expired and taken over).
    async fn renew_lease(&self, job: JobId, worker: &str, lease: Duration) -> anyhow::Result<bool>;

    /// Ends a job held under `worker`'s lease. `JobState::Queued` hands it back to the
    /// queue (a worker shutting down); the hand-back does not use up an attempt.
    async fn finish_job(
        &self,
        job: JobId,
        worker: &str,
        outcome: &JobOutcome,
    ) -> anyhow::Result<()>;

    /// Records the commit a job's ref resolved to while it ran (a tag's `create` carries
    /// none), with the job's final dedup key and payload. When another job already holds
    /// that key (the tag's push arrived meanwhile), nothing changes and
    /// [`ResolvedCommit::Duplicate`] names that job.
    async fn resolve_job_commit(
        &self,
        job: JobId,
        sha: &str,
        dedup_key: &str,
        payload: &serde_json::Value,
    ) -> anyhow::Result<ResolvedCommit>;

    /// Asks a job to stop. A queued job is cancelled at once; a running one sees
    /// `cancel_requested` on its next lease renewal.
    async fn request_cancel(&self, job: JobId) -> anyhow::Result<()>;

    async fn get_job(&self, job: JobId) -> anyhow::Result<Option<Job>>;
    async fn list_jobs(&self, filter: &JobFilter) -> anyhow::Result<Vec<Job>>;

    /// Appends a line to a job's log. The log is append-only.
    async fn append_job_log(&self, job: JobId, step: &str, message: &str) -> anyhow::Result<()>;
    async fn job_log(&self, job: JobId) -> anyhow::Result<Vec<JobLogEntry>>;

    /// Appends lines (step, message) to a job's log in one transaction: one commit for
    /// the whole batch.
    async fn append_job_log_batch(
        &self,
        job: JobId,
        lines: &[(String, String)],
    ) -> anyhow::Result<()>;

    /// At most `limit` lines of a job's log with a sequence number above `after`.
    async fn job_log_page(
        &self,
        job: JobId,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<JobLogEntry>>;

    /// Deletes the logs of jobs that finished before `cutoff`. Returns the lines deleted.
    async fn delete_finished_job_logs(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<u64>;

    /// Creates or updates a build record (keyed by build id); this is a heartbeat too.
    async fn upsert_build(&self, build: &BuildRecord) -> anyhow::Result<()>;
    /// Records that a running build is alive, in the database's clock. `false` when the
    /// build is no longer running.
    async fn heartbeat_build(&self, build_id: &str) -> anyhow::Result<bool>;
    /// How long ago the build's last heartbeat was, by the database's clock; `None` for
    /// an unknown build. A running build with a stale heartbeat has stopped.
    async fn build_heartbeat_age(&self, build_id: &str) -> anyhow::Result<Option<Duration>>;
    async fn get_build(&self, build_id: &str) -> anyhow::Result<Option<BuildRecord>>;
    /// Claims this interval's run of a periodic task (`sync`, `janitor`) for `runner`:
    /// `true` for exactly one replica per `period`, by the database's clock.
    async fn claim_periodic(
        &self,
        task: &str,
        runner: &str,
        period: Duration,
    ) -> anyhow::Result<bool>;
    async fn list_builds(&self, filter: &BuildFilter) -> anyhow::Result<Vec<BuildRecord>>;

    /// When this installation first synced `repo`, and the release tags it held then (its
    /// history, never built by sync); `None` before the first sync.
    async fn repo_history(&self, repo: &str) -> anyhow::Result<Option<RepoHistory>>;
    /// Records `repo` as first seen now (the database's clock), with `tags` (name,
    /// commit) as its history. `false`, and nothing changes, when it was seen before
    /// (another replica's sync got there first).
    async fn record_repo_history(
        &self,
        repo: &str,
        tags: &[(String, String)],
    ) -> anyhow::Result<bool>;
    /// Records the package inventory collected on a build's builder.
    async fn put_inventory(&self, build_id: &str, collected: &Collected) -> anyhow::Result<()>;
    /// The package inventory recorded for a build, if any.
    async fn inventory(&self, build_id: &str) -> anyhow::Result<Option<Collected>>;

    /// Appends to a build's step journal (resource ids before and after creation, host
    /// keys, step boundaries). Returns the entry's sequence number.
    async fn append_journal(&self, build_id: &str, entry: &JournalEntry) -> anyhow::Result<i64>;
    async fn journal(&self, build_id: &str) -> anyhow::Result<Vec<StoredJournalEntry>>;

    /// The last run of every periodic task (`sync`, `janitor`...), for the health page.
    async fn periodic_runs(&self) -> anyhow::Result<Vec<PeriodicRun>>;
}
