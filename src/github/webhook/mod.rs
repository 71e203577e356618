//! Typed webhook events: the raw delivery body becomes a [`WebhookEvent`], or a short
//! human-readable reason why it cannot.
//!
//! Only the fields bakery uses are read; their names and nesting follow GitHub's webhook
//! payloads (see `@octokit/webhooks-examples`).

pub mod commands;
mod payload;

use serde::Serialize;

pub use payload::RepositoryRef;

/// What a delivery means to bakery.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WebhookEvent {
    Ping {
        zen: Option<String>,
        hook_id: Option<i64>,
    },
    /// A tag was pushed (or moved).
    TagPushed {
        repo: RepositoryRef,
        tag: String,
        /// What the tag ref points at now (`after`): the commit for a lightweight tag,
        /// the tag object for an annotated or signed one.
        target: String,
        /// The commit the tag points at (`head_commit.id`), when GitHub sent it. Without
        /// it the worker peels the tag in its mirror.
        commit: Option<String>,
        installation_id: Option<i64>,
    },
    /// A `create` event for a tag. GitHub sends no SHA with it.
    TagCreated {
        repo: RepositoryRef,
        tag: String,
        installation_id: Option<i64>,
    },
    TagDeleted {
        repo: RepositoryRef,
        tag: String,
    },
    BranchPushed {
        repo: RepositoryRef,
        branch: String,
        /// The branch's new head (`after`).
        after: String,
        /// The push deleted the branch.
        deleted: bool,
        /// Every file the pushed commits added, modified or removed, as the delivery
        /// lists them (`commits[].added`, `modified`, `removed`).
        changed: Vec<String>,
        installation_id: Option<i64>,
    },
    PullRequest(PullRequestEvent),
    IssueComment(IssueCommentEvent),
    /// An event bakery does not act on (the `X-GitHub-Event` name).
    Unhandled {
        event: String,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PullRequestEvent {
    pub repo: RepositoryRef,
    pub action: String,
    pub number: i64,
    pub head_sha: String,
    pub head_ref: String,
    /// `owner/name` of the head repository; `None` when the fork was deleted.
    pub head_repo: Option<String>,
    pub base_ref: String,
    pub draft: bool,
    pub author: String,
    pub installation_id: Option<i64>,
}

impl PullRequestEvent {
    /// The head lives in another repository: its code is untrusted until a maintainer
    /// approves a build.
    pub fn is_fork(&self) -> bool {
        self.head_repo.as_deref() != Some(self.repo.full_name.as_str())
    }

    /// Actions that ask for a validation job.
    pub fn wants_validation(&self) -> bool {
        matches!(
            self.action.as_str(),
            "opened" | "synchronize" | "reopened" | "ready_for_review"
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IssueCommentEvent {
    pub repo: RepositoryRef,
    pub action: String,
    pub issue_number: i64,
    /// The comment is on a pull request (GitHub treats PRs as issues for comments).
    pub on_pull_request: bool,
    pub comment_id: i64,
    pub body: String,
    pub author: String,
    pub author_association: String,
    pub installation_id: Option<i64>,
}

/// Why a delivery body could not be typed. Shown to the sender as a 400 body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    #[error("payload is not valid JSON: {0}")]
    NotJson(String),
    #[error("{event} payload is missing or has a malformed field: {detail}")]
    WrongShape { event: String, detail: String },
}

/// Types a delivery. `event` is the `X-GitHub-Event` header.
pub fn parse_event(event: &str, body: &[u8]) -> Result<WebhookEvent, EventError> {
    payload::parse(event, body)
}

/// `refs/tags/x` → `x`.
pub fn tag_name(git_ref: &str) -> Option<&str> {
    git_ref.strip_prefix("refs/tags/")
}
