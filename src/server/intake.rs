//! What a typed delivery asks for: a job, a plain answer, or nothing (with a reason).
//! Pure: no I/O, so every event shape is unit-testable.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::database::{JobKind, NewJob};
use crate::github::webhook::{RepositoryRef, WebhookEvent};
use crate::jobs::spec::{
    reconcile_dedup_key, CommandSpec, JobSource, JobSpec, ReconcileSpec, ReconcileTrigger,
    ReleaseSpec, RepoSpec, ValidationSpec,
};
use crate::registry::channels_source;

#[derive(Debug, Clone, PartialEq)]
pub enum IntakeDecision {
    /// `ping`: answered 200, recorded.
    Pong,
    /// Enqueue this job.
    Enqueue(NewJob),
    /// Nothing to do; answered 202 with the reason, recorded.
    Ignore(String),
}

/// Tag globs that start release builds (`webhook.tag_patterns`).
#[derive(Debug, Clone)]
pub struct TagPatterns {
    patterns: Vec<String>,
    set: GlobSet,
}

impl TagPatterns {
    pub fn new(patterns: &[String]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !patterns.is_empty(),
            "no release tag patterns: set webhook.tag_patterns, e.g. [\"release-*\"]"
        );
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            b.add(Glob::new(p).map_err(|e| {
                anyhow::anyhow!("release tag pattern {p:?} is not a valid glob: {e}")
            })?);
        }
        Ok(TagPatterns {
            patterns: patterns.to_vec(),
            set: b.build()?,
        })
    }

    pub fn matches(&self, tag: &str) -> bool {
        self.set.is_match(tag)
    }

    pub fn describe(&self) -> String {
        self.patterns.join(", ")
    }
}

pub use crate::jobs::spec::{command_dedup_key, release_dedup_key, validation_dedup_key};

fn repo_spec(repo: &RepositoryRef, installation_id: Option<i64>) -> RepoSpec {
    RepoSpec {
        clone_url: repo.clone_url.clone(),
        default_branch: repo.default_branch.clone(),
        installation_id,
    }
}

/// A pushed or created tag, as a release job asks for it.
struct TagEvent<'a> {
    repo: &'a RepositoryRef,
    tag: &'a str,
    /// The tagged commit, when the delivery names it.
    commit: Option<&'a str>,
    /// The tag object, when the delivery shows the tag is annotated.
    tag_object: Option<&'a str>,
    installation_id: Option<i64>,
}

/// A release job for the tag, if it matches the release patterns. Without a commit (a
/// tag's `create`), the dedup key is unique to the delivery and the store merges the job
/// with the tag's push; the worker peels the tag when no push arrives.
fn release_job(event: TagEvent<'_>, tags: &TagPatterns, delivery_id: &str) -> IntakeDecision {
    let tag = event.tag;
    if !tags.matches(tag) {
        return IntakeDecision::Ignore(format!(
            "tag {tag} does not match the release patterns ({})",
            tags.describe()
        ));
    }
    let spec = ReleaseSpec {
        repo: repo_spec(event.repo, event.installation_id),
        tag: tag.to_string(),
        tag_object: event.tag_object.map(str::to_string),
        source: JobSource::Webhook,
    };
    IntakeDecision::Enqueue(spec.into_job(&event.repo.full_name, event.commit, delivery_id))
}

pub fn decide(event: &WebhookEvent, tags: &TagPatterns, delivery_id: &str) -> IntakeDecision {
    use IntakeDecision::*;
    match event {
        WebhookEvent::Ping { .. } => Pong,
        WebhookEvent::TagPushed {
            repo,
            tag,
            target,
            commit,
            installation_id,
        } => release_job(
            TagEvent {
                repo,
                tag,
                commit: commit.as_deref(),
                // `after` is the commit for a lightweight tag and the tag object for an
                // annotated one; only `head_commit` names the commit either way.
                tag_object: commit
                    .as_deref()
                    .filter(|c| *c != target)
                    .map(|_| target.as_str()),
                installation_id: *installation_id,
            },
            tags,
            delivery_id,
        ),
        // `create` carries no SHA; the store merges it with the tag's `push`, and the
        // worker resolves the tag when no push arrives.
        WebhookEvent::TagCreated {
            repo,
            tag,
            installation_id,
        } => release_job(
            TagEvent {
                repo,
                tag,
                commit: None,
                tag_object: None,
                installation_id: *installation_id,
            },
            tags,
            delivery_id,
        ),
        WebhookEvent::TagDeleted { tag, .. } => Ignore(format!(
            "tag {tag} was deleted; images already built are kept"
        )),
        WebhookEvent::BranchPushed {
            repo,
            branch,
            after,
            deleted,
            changed,
            installation_id,
        } => {
            let default = repo.default_branch.as_deref() == Some(branch.as_str());
            if !default || *deleted || !channels_source::touches_channels(changed) {
                return Ignore(format!(
                    "push to branch {branch}: only release tags are built"
                ));
            }
            let spec = ReconcileSpec {
                repo: repo_spec(repo, *installation_id),
                branch: branch.clone(),
                trigger: ReconcileTrigger::Push,
            };
            Enqueue(NewJob {
                kind: JobKind::Reconcile,
                repo: repo.full_name.clone(),
                git_ref: format!("refs/heads/{branch}"),
                sha: after.clone(),
                pr_number: None,
                dedup_key: reconcile_dedup_key(&repo.full_name, after),
                payload: spec.to_payload(),
            })
        }
        WebhookEvent::PullRequest(pr) => {
            if !pr.wants_validation() {
                return Ignore(format!(
                    "pull request action `{}` needs no validation",
                    pr.action
                ));
            }
            let payload = ValidationSpec {
                repo: repo_spec(&pr.repo, pr.installation_id),
                head_ref: pr.head_ref.clone(),
                head_repo: pr.head_repo.clone(),
                base_ref: pr.base_ref.clone(),
                is_fork: pr.is_fork(),
                author: pr.author.clone(),
                draft: pr.draft,
            }
            .to_payload();
            Enqueue(NewJob {
                kind: JobKind::Validation,
                repo: pr.repo.full_name.clone(),
                git_ref: format!("refs/pull/{}/head", pr.number),
                sha: pr.head_sha.clone(),
                pr_number: Some(pr.number),
                dedup_key: validation_dedup_key(&pr.repo.full_name, pr.number, &pr.head_sha),
                payload,
            })
        }
        WebhookEvent::IssueComment(c) => {
            if !c.on_pull_request {
                return Ignore(format!(
                    "comment on issue #{} (not a pull request)",
                    c.issue_number
                ));
            }
            if c.action != "created" {
                return Ignore(format!(
                    "comment {}: only new comments carry commands",
                    c.action
                ));
            }
            let payload = CommandSpec {
                repo: repo_spec(&c.repo, c.installation_id),
                comment_id: c.comment_id,
                body: c.body.clone(),
                author: c.author.clone(),
                author_association: c.author_association.clone(),
            }
            .to_payload();
            Enqueue(NewJob {
                kind: JobKind::Command,
                repo: c.repo.full_name.clone(),
                git_ref: format!("refs/pull/{}/head", c.issue_number),
                // The head SHA is looked up when the command runs.
                sha: String::new(),
                pr_number: Some(c.issue_number),
                dedup_key: command_dedup_key(&c.repo.full_name, c.comment_id),
                payload,
            })
        }
        WebhookEvent::Unhandled { reason, .. } => Ignore(reason.clone()),
    }
}
