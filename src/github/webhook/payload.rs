//! The subset of GitHub's webhook payloads bakery reads, as serde structs.

use serde::{Deserialize, Serialize};

use super::{EventError, IssueCommentEvent, PullRequestEvent, WebhookEvent};

/// The repository a delivery is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryRef {
    /// `owner/name`.
    pub full_name: String,
    pub clone_url: String,
    pub default_branch: Option<String>,
}

#[derive(Deserialize)]
struct Installation {
    id: i64,
}

#[derive(Deserialize)]
struct Ping {
    zen: Option<String>,
    hook_id: Option<i64>,
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    deleted: bool,
    /// The commit `after` resolves to (for an annotated tag, the tagged commit). `null`
    /// when the push deleted the ref.
    head_commit: Option<HeadCommit>,
    /// The pushed commits (none for a tag push).
    #[serde(default)]
    commits: Vec<HeadCommit>,
    repository: RepositoryRef,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct HeadCommit {
    id: String,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
}

impl HeadCommit {
    fn files(&self) -> impl Iterator<Item = &String> {
        self.added.iter().chain(&self.removed).chain(&self.modified)
    }
}

#[derive(Deserialize)]
struct Create {
    #[serde(rename = "ref")]
    git_ref: String,
    ref_type: String,
    repository: RepositoryRef,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct Delete {
    #[serde(rename = "ref")]
    git_ref: String,
    ref_type: String,
    repository: RepositoryRef,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

#[derive(Deserialize)]
struct HeadRepo {
    full_name: String,
}

#[derive(Deserialize)]
struct PrRef {
    sha: String,
    #[serde(rename = "ref")]
    git_ref: String,
    repo: Option<HeadRepo>,
}

#[derive(Deserialize)]
struct PullRequestBody {
    head: PrRef,
    base: PrRef,
    #[serde(default)]
    draft: bool,
    user: User,
}

#[derive(Deserialize)]
struct PullRequest {
    action: String,
    number: i64,
    pull_request: PullRequestBody,
    repository: RepositoryRef,
    installation: Option<Installation>,
}

#[derive(Deserialize)]
struct Issue {
    number: i64,
    pull_request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Comment {
    id: i64,
    body: String,
    user: User,
    author_association: String,
}

#[derive(Deserialize)]
struct IssueComment {
    action: String,
    issue: Issue,
    comment: Comment,
    repository: RepositoryRef,
    installation: Option<Installation>,
}

/// Every event must at least be JSON, also the ones bakery does not act on.
fn json(body: &[u8]) -> Result<(), EventError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(drop)
        .map_err(|e| EventError::NotJson(e.to_string()))
}

/// `body` as `T`. The one parse also checks the whole body is JSON; only a body that is
/// not `T` is parsed again, to tell JSON of another shape from no JSON at all.
fn typed<'a, T: Deserialize<'a>>(event: &str, body: &'a [u8]) -> Result<T, EventError> {
    serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            EventError::NotJson(e.to_string())
        } else if let Err(not_json) = json(body) {
            not_json
        } else {
            EventError::WrongShape {
                event: event.to_string(),
                detail: e.to_string(),
            }
        }
    })
}

pub(super) fn parse(event: &str, body: &[u8]) -> Result<WebhookEvent, EventError> {
    let install = |i: Option<Installation>| i.map(|i| i.id);
    Ok(match event {
        "ping" => {
            let p: Ping = typed(event, body)?;
            WebhookEvent::Ping {
                zen: p.zen,
                hook_id: p.hook_id,
            }
        }
        "push" => {
            let p: Push = typed(event, body)?;
            match super::tag_name(&p.git_ref) {
                Some(tag) if p.deleted => WebhookEvent::TagDeleted {
                    repo: p.repository,
                    tag: tag.to_string(),
                },
                Some(tag) => {
                    if !is_sha(&p.after) {
                        return Err(EventError::WrongShape {
                            event: event.into(),
                            detail: format!("`after` is not an object SHA: {:?}", p.after),
                        });
                    }
                    let commit = p.head_commit.map(|c| c.id);
                    if let Some(id) = commit.as_deref().filter(|id| !is_sha(id)) {
                        return Err(EventError::WrongShape {
                            event: event.into(),
                            detail: format!("`head_commit.id` is not a commit SHA: {id:?}"),
                        });
                    }
                    WebhookEvent::TagPushed {
                        repo: p.repository,
                        tag: tag.to_string(),
                        target: p.after,
                        commit,
                        installation_id: install(p.installation),
                    }
                }
                None => {
                    let mut changed: Vec<String> = p
                        .commits
                        .iter()
                        .chain(p.head_commit.iter())
                        .flat_map(HeadCommit::files)
                        .cloned()
                        .collect();
                    changed.sort();
                    changed.dedup();
                    WebhookEvent::BranchPushed {
                        branch: p
                            .git_ref
                            .strip_prefix("refs/heads/")
                            .unwrap_or(&p.git_ref)
                            .to_string(),
                        after: p.after,
                        deleted: p.deleted,
                        changed,
                        installation_id: install(p.installation),
                        repo: p.repository,
                    }
                }
            }
        }
        "create" => {
            let c: Create = typed(event, body)?;
            if c.ref_type == "tag" {
                WebhookEvent::TagCreated {
                    repo: c.repository,
                    tag: c.git_ref,
                    installation_id: install(c.installation),
                }
            } else {
                WebhookEvent::Unhandled {
                    event: event.into(),
                    reason: format!("create of a {} is not a release", c.ref_type),
                }
            }
        }
        "delete" => {
            let d: Delete = typed(event, body)?;
            if d.ref_type == "tag" {
                WebhookEvent::TagDeleted {
                    repo: d.repository,
                    tag: d.git_ref,
                }
            } else {
                WebhookEvent::Unhandled {
                    event: event.into(),
                    reason: format!("delete of a {} is not a release", d.ref_type),
                }
            }
        }
        "pull_request" => {
            let p: PullRequest = typed(event, body)?;
            WebhookEvent::PullRequest(PullRequestEvent {
                action: p.action,
                number: p.number,
                head_sha: p.pull_request.head.sha,
                head_ref: p.pull_request.head.git_ref,
                head_repo: p.pull_request.head.repo.map(|r| r.full_name),
                base_ref: p.pull_request.base.git_ref,
                draft: p.pull_request.draft,
                author: p.pull_request.user.login,
                repo: p.repository,
                installation_id: install(p.installation),
            })
        }
        "issue_comment" => {
            let c: IssueComment = typed(event, body)?;
            WebhookEvent::IssueComment(IssueCommentEvent {
                action: c.action,
                issue_number: c.issue.number,
                on_pull_request: c.issue.pull_request.is_some_and(|v| !v.is_null()),
                comment_id: c.comment.id,
                body: c.comment.body,
                author: c.comment.user.login,
                author_association: c.comment.author_association,
                repo: c.repository,
                installation_id: install(c.installation),
            })
        }
        other => {
            json(body)?;
            WebhookEvent::Unhandled {
                event: other.into(),
                reason: format!("bakery does not act on `{other}` events"),
            }
        }
    })
}

fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_that_is_not_json_is_not_json_whatever_shape_its_start_has() {
        // `ref` has the wrong type before the syntax breaks: still not JSON.
        let broken = br#"{"ref": 5, "after": "#;
        assert!(matches!(parse("push", broken), Err(EventError::NotJson(_))));
        let broken = br#"{"zen": 1} trailing"#;
        assert!(matches!(parse("ping", broken), Err(EventError::NotJson(_))));
        // An event bakery does not act on must be JSON too.
        assert!(matches!(parse("star", b"{"), Err(EventError::NotJson(_))));
    }

    #[test]
    fn json_of_another_shape_is_a_wrong_shape_naming_the_event() {
        let err = parse("push", br#"{"ref": 5}"#).unwrap_err();
        assert!(
            matches!(&err, EventError::WrongShape { event, .. } if event == "push"),
            "{err:?}"
        );
        assert!(matches!(
            parse("star", br#"{"action": "created"}"#),
            Ok(WebhookEvent::Unhandled { .. })
        ));
    }
}
