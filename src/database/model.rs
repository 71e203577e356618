//! Plain data that goes in and out of the store.

use serde::{Deserialize, Serialize};

pub type JobId = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A release tag: build the images for (repo, tag, SHA).
    Release,
    /// A pull request: validate (and maybe build) for (repo, PR, head SHA).
    Validation,
    /// A comment on a pull request, parsed into a command by the worker.
    Command,
    /// A push to the default branch that changed `channels.toml`: reconcile the channels.
    Reconcile,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Release => "release",
            JobKind::Validation => "validation",
            JobKind::Command => "command",
            JobKind::Reconcile => "reconcile",
        }
    }
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "release" => JobKind::Release,
            "validation" => JobKind::Validation,
            "command" => JobKind::Command,
            "reconcile" => JobKind::Reconcile,
            other => anyhow::bail!("unknown job kind {other:?} in store"),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            other => anyhow::bail!("unknown job state {other:?} in store"),
        })
    }
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A webhook delivery as received.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// `X-GitHub-Delivery`.
    pub delivery_id: String,
    /// `X-GitHub-Event`.
    pub event: String,
    /// What intake made of it, e.g. `release job` or `ignored: branch push`.
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: JobKind,
    /// `owner/name`.
    pub repo: String,
    /// The tag name for a release job; `refs/pull/N/head` for PR jobs.
    pub git_ref: String,
    pub sha: String,
    pub pr_number: Option<i64>,
    /// Jobs with the same key are one job: `release:{repo}:{tag}:{sha}` and so on.
    pub dedup_key: String,
    /// What the worker needs beyond the columns (clone URL, installation id, comment...).
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A new job was created.
    Created(JobId),
    /// The job already existed; this delivery was attached to it.
    Merged(JobId),
    /// The delivery asked for no job and was recorded.
    Recorded,
    /// This delivery id was seen before; nothing changed.
    Duplicate,
}

/// What [`Store::resolve_job_commit`](super::Store::resolve_job_commit) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolvedCommit {
    /// The job now carries the commit and its dedup key.
    Recorded,
    /// Another job already covers that commit; this one changed nothing.
    Duplicate(JobId),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub repo: String,
    pub git_ref: String,
    pub sha: String,
    pub pr_number: Option<i64>,
    pub dedup_key: String,
    pub payload: serde_json::Value,
    pub state: JobState,
    pub attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub cancel_requested: bool,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub delivery_ids: Vec<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A job's end could not be recorded: the job is no longer leased to this worker.
#[derive(Debug, thiserror::Error)]
#[error("job {job} is no longer leased to {worker}; its result was not recorded")]
pub struct NotLeased {
    pub job: JobId,
    pub worker: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    pub state: JobState,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub kind: Option<JobKind>,
    pub state: Option<JobState>,
    pub repo: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobLogEntry {
    pub seq: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub step: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Cleanup ran after a failure, cancel or crash; nothing is left.
    CleanedUp,
}

impl BuildState {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::Running => "running",
            BuildState::Succeeded => "succeeded",
            BuildState::Failed => "failed",
            BuildState::Cancelled => "cancelled",
            BuildState::CleanedUp => "cleaned_up",
        }
    }
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "running" => BuildState::Running,
            "succeeded" => BuildState::Succeeded,
            "failed" => BuildState::Failed,
            "cancelled" => BuildState::Cancelled,
            "cleaned_up" => BuildState::CleanedUp,
            other => anyhow::bail!("unknown build state {other:?} in store"),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub build_id: String,
    pub job_id: Option<JobId>,
    pub recipe: String,
    pub version: String,
    pub git_sha: String,
    pub state: BuildState,
    /// The `BuildPlan` as JSON.
    pub plan: serde_json::Value,
    /// The manifest once the build succeeded.
    pub manifest: Option<serde_json::Value>,
    pub error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct BuildFilter {
    pub recipe: Option<String>,
    pub version: Option<String>,
    pub state: Option<BuildState>,
}

/// One line of a build's step journal. `kind` names the event (`step_started`,
/// `creating`, `created`, `deleted`, `host_key`...), `data` carries its details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub kind: String,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredJournalEntry {
    pub seq: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub kind: String,
    pub data: serde_json::Value,
}

/// What a repository held when this installation first saw it (see
/// [`Store::repo_history`](super::Store::repo_history)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoHistory {
    pub first_seen_at: chrono::DateTime<chrono::Utc>,
    /// (tag, commit) pairs already there then.
    pub tags: std::collections::BTreeSet<(String, String)>,
}

/// A periodic task's last claimed run.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodicRun {
    pub task: String,
    pub last_run_at: chrono::DateTime<chrono::Utc>,
    /// The worker (replica) that ran it.
    pub runner: String,
    pub runs: i64,
}
