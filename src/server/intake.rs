//! What a typed delivery asks for: a job, a plain answer, or nothing (with a reason).
//! Pure: no I/O, so every event shape is unit-testable.

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde_json::json;

use crate::database::{JobKind, NewJob};
use crate::github::webhook::{RepositoryRef, WebhookEvent};

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

/// The dedup key of a release job: one job per (repo, tag, SHA).
pub fn release_dedup_key(repo: &str, tag: &str, sha: &str) -> String {
    format!("release:{repo}:{tag}:{sha}")
}

pub fn validation_dedup_key(repo: &str, pr: i64, sha: &str) -> String {
    format!("validation:{repo}:{pr}:{sha}")
}

pub fn command_dedup_key(repo: &str, comment_id: i64) -> String {
    format!("command:{repo}:{comment_id}")
}

fn repo_payload(repo: &RepositoryRef, installation_id: Option<i64>) -> serde_json::Value {
    json!({
        "clone_url": repo.clone_url,
        "default_branch": repo.default_branch,
        "installation_id": installation_id,
    })
}

/// A release job for `tag`, if it matches the release patterns. Without a SHA (a tag's
/// `create`), the dedup key is unique to the delivery and the store merges the job with
/// the tag's push.
fn release_job(
    repo: &RepositoryRef,
    tag: &str,
    sha: Option<&str>,
    installation_id: Option<i64>,
    tags: &TagPatterns,
    delivery_id: &str,
) -> IntakeDecision {
    if !tags.matches(tag) {
        return IntakeDecision::Ignore(format!(
            "tag {tag} does not match the release patterns ({})",
            tags.describe()
        ));
    }
    let mut payload = repo_payload(repo, installation_id);
    payload["tag"] = json!(tag);
    let dedup_key = match sha {
        Some(sha) => release_dedup_key(&repo.full_name, tag, sha),
        None => format!("release:{}:{tag}:unresolved:{delivery_id}", repo.full_name),
    };
    IntakeDecision::Enqueue(NewJob {
        kind: JobKind::Release,
        repo: repo.full_name.clone(),
        git_ref: tag.to_string(),
        sha: sha.unwrap_or_default().to_string(),
        pr_number: None,
        dedup_key,
        payload,
    })
}

pub fn decide(event: &WebhookEvent, tags: &TagPatterns, delivery_id: &str) -> IntakeDecision {
    use IntakeDecision::*;
    match event {
        WebhookEvent::Ping { .. } => Pong,
        WebhookEvent::TagPushed {
            repo,
            tag,
            sha,
            installation_id,
        } => release_job(repo, tag, Some(sha), *installation_id, tags, delivery_id),
        // `create` carries no SHA; the store merges it with the tag's `push`, and the
        // worker resolves the tag when no push arrives.
        WebhookEvent::TagCreated {
            repo,
            tag,
            installation_id,
        } => release_job(repo, tag, None, *installation_id, tags, delivery_id),
        WebhookEvent::TagDeleted { tag, .. } => Ignore(format!(
            "tag {tag} was deleted; images already built are kept"
        )),
        WebhookEvent::BranchPushed { branch, .. } => Ignore(format!(
            "push to branch {branch}: only release tags are built"
        )),
        WebhookEvent::PullRequest(pr) => {
            if !pr.wants_validation() {
                return Ignore(format!(
                    "pull request action `{}` needs no validation",
                    pr.action
                ));
            }
            let mut payload = repo_payload(&pr.repo, pr.installation_id);
            payload["head_ref"] = json!(pr.head_ref);
            payload["head_repo"] = json!(pr.head_repo);
            payload["base_ref"] = json!(pr.base_ref);
            payload["is_fork"] = json!(pr.is_fork());
            payload["author"] = json!(pr.author);
            payload["draft"] = json!(pr.draft);
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
            let mut payload = repo_payload(&c.repo, c.installation_id);
            payload["comment_id"] = json!(c.comment_id);
            payload["body"] = json!(c.body);
            payload["author"] = json!(c.author);
            payload["author_association"] = json!(c.author_association);
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
