//! The typed spec of each job kind: what the writer of a job (intake, sync, a comment
//! command) stores as the job's payload, and what the kind's handler reads back. One
//! struct per kind, shared by both sides, so a renamed field is a compile error and a
//! missing required field is an error when the job is read, never a silent default.
//!
//! Jobs stored by earlier versions keep loading: fields added since are optional, and
//! fields that were always written are required.
//!
//! Touches nothing: plain data and its (de)serialisation.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::database::{Job, JobKind, NewJob};

/// A job kind's payload.
pub trait JobSpec: Serialize + DeserializeOwned {
    const KIND: JobKind;

    /// Reads the spec of `job`, which must be of this kind.
    fn from_job(job: &Job) -> Result<Self, SpecError> {
        if job.kind != Self::KIND {
            return Err(SpecError::WrongKind {
                id: job.id,
                expected: Self::KIND,
                actual: job.kind,
            });
        }
        serde_json::from_value(job.payload.clone()).map_err(|e| SpecError::Unreadable {
            id: job.id,
            kind: Self::KIND,
            detail: e.to_string(),
        })
    }

    /// The payload to store.
    fn to_payload(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a job spec serialises to JSON")
    }
}

/// Why a stored job's spec cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("job {id} is a {} job, not a {} job", actual.as_str(), expected.as_str())]
    WrongKind {
        id: i64,
        expected: JobKind,
        actual: JobKind,
    },
    #[error("the payload of {} job {id} is unreadable: {detail}", kind.as_str())]
    Unreadable {
        id: i64,
        kind: JobKind,
        detail: String,
    },
}

/// Where the repository of a job lives, as the delivery (or the API) said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSpec {
    /// As the delivery said: kept for the record only. Checkouts fetch from the clone
    /// URL the API reports, so a forged delivery cannot send the token elsewhere.
    pub clone_url: String,
    #[serde(default)]
    pub default_branch: Option<String>,
    pub installation_id: Option<i64>,
}

/// Who asked for a release job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobSource {
    /// A webhook delivery (`push` or `create` of a tag).
    #[default]
    Webhook,
    /// `bakery sync`, for a tag whose delivery was missed.
    Sync,
}

/// A release tag to build. The job's `sha` column holds the tagged **commit** (empty
/// until known: a tag's `create` carries no SHA, and the worker peels the tag then).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSpec {
    #[serde(flatten)]
    pub repo: RepoSpec,
    pub tag: String,
    /// The annotated (or signed) tag object the tag ref pointed at when it was pushed;
    /// `None` for a lightweight tag, or while unknown.
    #[serde(default)]
    pub tag_object: Option<String>,
    #[serde(default)]
    pub source: JobSource,
}

impl JobSpec for ReleaseSpec {
    const KIND: JobKind = JobKind::Release;
}

/// A pull request's head commit to validate (and maybe build). The job's `sha` column is
/// the head commit, `pr_number` the pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationSpec {
    #[serde(flatten)]
    pub repo: RepoSpec,
    pub head_ref: String,
    /// `owner/name` of the head repository; `None` when the fork was deleted.
    pub head_repo: Option<String>,
    pub base_ref: String,
    /// Required: a job without it is refused rather than taken for a same-repo PR.
    pub is_fork: bool,
    pub author: String,
    pub draft: bool,
}

impl JobSpec for ValidationSpec {
    const KIND: JobKind = JobKind::Validation;
}

/// A comment on a pull request that may hold a `/bakery` command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    #[serde(flatten)]
    pub repo: RepoSpec,
    pub comment_id: i64,
    pub body: String,
    pub author: String,
    pub author_association: String,
}

impl JobSpec for CommandSpec {
    const KIND: JobKind = JobKind::Command;
}

/// A push to the default branch that changed `channels.toml`. The job's `sha` column is
/// the pushed commit; the worker reconciles the branch's head as GitHub serves it, so
/// only the default branch's file is ever reconciled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileSpec {
    #[serde(flatten)]
    pub repo: RepoSpec,
    /// The branch pushed, the default branch when the delivery arrived.
    pub branch: String,
    /// Why the channels are reconciled now.
    #[serde(default)]
    pub trigger: ReconcileTrigger,
}

/// What started a reconcile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconcileTrigger {
    /// A push to the default branch changed the channels: reported on the commit whatever
    /// the outcome.
    #[default]
    Push,
    /// The server's timer: puts back what a break-glass `bakery promote` (or a hand in the
    /// console) moved. Says something on GitHub only when it changed something.
    Schedule,
}

impl JobSpec for ReconcileSpec {
    const KIND: JobKind = JobKind::Reconcile;
}

/// The dedup key of a reconcile job: one job per (repo, pushed commit).
pub fn reconcile_dedup_key(repo: &str, sha: &str) -> String {
    format!("reconcile:{repo}:{sha}")
}

/// The dedup key of a scheduled reconcile: one job per (repo, timer interval).
pub fn scheduled_reconcile_dedup_key(repo: &str, interval: u64) -> String {
    format!("reconcile:{repo}:scheduled:{interval}")
}

/// The dedup key of a release job: one job per (repo, tag, commit).
pub fn release_dedup_key(repo: &str, tag: &str, commit: &str) -> String {
    format!("release:{repo}:{tag}:{commit}")
}

/// The dedup key of a release job whose commit is not known yet: unique to the delivery
/// (or the attempt), so the store merges it with the tag's push.
pub fn unresolved_release_dedup_key(repo: &str, tag: &str, delivery_id: &str) -> String {
    format!("release:{repo}:{tag}:unresolved:{delivery_id}")
}

pub fn validation_dedup_key(repo: &str, pr: i64, sha: &str) -> String {
    format!("validation:{repo}:{pr}:{sha}")
}

pub fn command_dedup_key(repo: &str, comment_id: i64) -> String {
    format!("command:{repo}:{comment_id}")
}

impl ReleaseSpec {
    /// The release job for `tag` at `commit` (`None`: not known yet; `delivery_id` then
    /// keeps the job apart until the worker peels the tag).
    pub fn into_job(self, repo: &str, commit: Option<&str>, delivery_id: &str) -> NewJob {
        let dedup_key = match commit {
            Some(c) => release_dedup_key(repo, &self.tag, c),
            None => unresolved_release_dedup_key(repo, &self.tag, delivery_id),
        };
        NewJob {
            kind: JobKind::Release,
            repo: repo.to_string(),
            git_ref: self.tag.clone(),
            sha: commit.unwrap_or_default().to_string(),
            pr_number: None,
            dedup_key,
            payload: self.to_payload(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::JobState;
    use serde_json::json;

    fn job(kind: JobKind, payload: serde_json::Value) -> Job {
        Job {
            id: 7,
            kind,
            repo: "acme/images".into(),
            git_ref: "release-0.1.0".into(),
            sha: String::new(),
            pr_number: None,
            dedup_key: "k".into(),
            payload,
            state: JobState::Queued,
            attempts: 0,
            lease_owner: None,
            lease_expires_at: None,
            cancel_requested: false,
            result: None,
            error: None,
            delivery_ids: vec![],
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn release_jobs_stored_by_earlier_versions_still_load() {
        // As intake wrote them before tag objects were recorded.
        let intake = json!({"clone_url": "u", "default_branch": "main", "installation_id": 1, "tag": "release-0.1.0"});
        let spec = ReleaseSpec::from_job(&job(JobKind::Release, intake)).unwrap();
        assert_eq!(spec.tag, "release-0.1.0");
        assert_eq!(spec.tag_object, None);
        assert_eq!(spec.source, JobSource::Webhook);
        // As sync wrote them.
        let sync = json!({"clone_url": "u", "installation_id": null, "tag": "t", "source": "sync"});
        let spec = ReleaseSpec::from_job(&job(JobKind::Release, sync)).unwrap();
        assert_eq!(spec.source, JobSource::Sync);
        assert_eq!(spec.repo.installation_id, None);
    }

    #[test]
    fn a_validation_job_without_is_fork_is_refused_not_defaulted() {
        let payload = json!({
            "clone_url": "u", "installation_id": 1, "head_ref": "f", "head_repo": "evil/images",
            "base_ref": "main", "author": "mallory", "draft": false
        });
        let err = ValidationSpec::from_job(&job(JobKind::Validation, payload)).unwrap_err();
        assert!(
            matches!(&err, SpecError::Unreadable { detail, .. } if detail.contains("is_fork")),
            "{err}"
        );
    }

    #[test]
    fn a_spec_is_read_only_from_its_own_kind() {
        let err = CommandSpec::from_job(&job(JobKind::Release, json!({}))).unwrap_err();
        assert_eq!(
            err,
            SpecError::WrongKind {
                id: 7,
                expected: JobKind::Command,
                actual: JobKind::Release
            }
        );
    }

    #[test]
    fn every_spec_round_trips() {
        let repo = RepoSpec {
            clone_url: "https://github.com/acme/images.git".into(),
            default_branch: Some("main".into()),
            installation_id: Some(4),
        };
        let release = ReleaseSpec {
            repo: repo.clone(),
            tag: "release-1".into(),
            tag_object: Some("a".repeat(40)),
            source: JobSource::Sync,
        };
        assert_eq!(
            ReleaseSpec::from_job(&job(JobKind::Release, release.to_payload())).unwrap(),
            release
        );
        let validation = ValidationSpec {
            repo: repo.clone(),
            head_ref: "f".into(),
            head_repo: None,
            base_ref: "main".into(),
            is_fork: true,
            author: "a".into(),
            draft: false,
        };
        assert_eq!(
            ValidationSpec::from_job(&job(JobKind::Validation, validation.to_payload())).unwrap(),
            validation
        );
        let command = CommandSpec {
            repo,
            comment_id: 9,
            body: "/bakery build".into(),
            author: "a".into(),
            author_association: "MEMBER".into(),
        };
        assert_eq!(
            CommandSpec::from_job(&job(JobKind::Command, command.to_payload())).unwrap(),
            command
        );
        let reconcile = ReconcileSpec {
            repo: RepoSpec {
                clone_url: "u".into(),
                default_branch: Some("main".into()),
                installation_id: None,
            },
            branch: "main".into(),
            trigger: ReconcileTrigger::Schedule,
        };
        assert_eq!(
            ReconcileSpec::from_job(&job(JobKind::Reconcile, reconcile.to_payload())).unwrap(),
            reconcile
        );
    }
}
