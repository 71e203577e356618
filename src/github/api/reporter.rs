//! The calls bakery makes to report on GitHub, for one repository: progress (a check run
//! with a GitHub App, a commit status with a token), commit comments, the sticky PR
//! comment, releases, permission checks and tags.
//!
//! Request and answer types are taken from GitHub's REST description (operation ids in
//! each type's doc); only the fields bakery reads are declared.

use anyhow::Context;
use chrono::Utc;
use octocrab::models::CheckRunId;
use octocrab::params::checks::{
    CheckRunConclusion, CheckRunOutput, CheckRunOutputAnnotation, CheckRunOutputAnnotationLevel,
    CheckRunStatus,
};
use serde::{Deserialize, Serialize};

use crate::github::api::client::{AuthKind, GitHubClient, Session};
use crate::github::api::repo::{path_segment, RepoName};
use crate::github::api::retry;

/// GitHub's limit of annotations per check-run request.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;
/// GitHub's limit on a comment body, and on a check run's summary (65,535).
pub const MAX_BODY_CHARS: usize = 65_535;
/// GitHub's limit on a commit status description.
pub const MAX_STATUS_DESCRIPTION_CHARS: usize = 140;

/// A finding on a file line, shown on the check run and in the PR's diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    pub path: String,
    pub line: u32,
    pub level: AnnotationLevel,
    pub message: String,
    pub title: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnotationLevel {
    Notice,
    Warning,
    Failure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conclusion {
    Success,
    Failure,
    Cancelled,
}

/// A check run (App) or a commit status (token) being moved along.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The check run's name or the status's context, e.g. `bakery/base`.
    pub name: String,
    pub sha: String,
    pub details_url: Option<String>,
    /// The check run's id; `None` for a commit status.
    pub check_run_id: Option<u64>,
}

/// The fields of `GET /repos/{owner}/{repo}/commits/{ref}/check-runs` that a retried
/// attempt needs to find its dead attempt's check run.
#[derive(Debug, Deserialize)]
struct OpenCheckRuns {
    check_runs: Vec<ListedCheckRun>,
}

#[derive(Debug, Deserialize)]
struct ListedCheckRun {
    id: u64,
    #[serde(default)]
    name: String,
    status: String,
    external_id: Option<String>,
}

/// Percent-encodes a query value (unreserved characters and `/` stay as they are).
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A release as created or found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRef {
    pub id: u64,
    pub html_url: String,
    /// True when this call created it, false when it updated an existing one.
    pub created: bool,
    /// Where its assets are uploaded (GitHub's RFC 6570 template, `…/assets{?name,label}`).
    pub upload_url: String,
}

/// An asset of a release, as GitHub answers for it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReleaseAsset {
    pub id: u64,
    pub name: String,
    pub size: u64,
    pub browser_download_url: String,
}

/// A repository permission as GitHub reports it for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPermission {
    /// `admin`, `write`, `read` or `none` (GitHub maps `maintain` to `write`).
    pub permission: String,
    /// The role's name, e.g. `maintain`, `triage`, or a custom role.
    pub role_name: String,
}

impl UserPermission {
    /// Write, maintain and admin may start builds.
    pub fn can_build(&self) -> bool {
        let allowed = ["admin", "maintain", "write"];
        allowed.contains(&self.permission.as_str()) || allowed.contains(&self.role_name.as_str())
    }
}

/// A tag as the tags API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRef {
    pub name: String,
    pub sha: String,
}

/// An issue or PR comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueComment {
    pub id: u64,
    pub body: String,
    pub author: Option<String>,
    pub html_url: String,
}

// ---- Request and answer bodies (from GitHub's REST description) ----

/// `repos/create-commit-status` request.
#[derive(Serialize)]
struct CreateStatus<'a> {
    state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_url: Option<&'a str>,
    description: String,
    context: &'a str,
}

/// `repos/create-commit-comment`, `issues/create-comment`, `issues/update-comment` request.
#[derive(Serialize)]
struct CommentBody<'a> {
    body: &'a str,
}

/// `repos/create-release` request.
#[derive(Serialize)]
struct CreateRelease<'a> {
    tag_name: &'a str,
    target_commitish: &'a str,
    name: &'a str,
    body: &'a str,
    draft: bool,
    prerelease: bool,
}

/// `repos/update-release` request: bakery owns the name and notes, never moves the tag.
#[derive(Serialize)]
struct UpdateRelease<'a> {
    name: &'a str,
    body: &'a str,
}

/// The `id` and `html_url` every created object answers with (status, comment, release).
#[derive(Deserialize)]
struct Created {
    id: u64,
    #[serde(default)]
    html_url: Option<String>,
    /// Releases only.
    #[serde(default)]
    upload_url: Option<String>,
}

/// An item of `issues/list-comments`.
#[derive(Deserialize)]
struct ListedComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    html_url: String,
    user: Option<Login>,
}

#[derive(Deserialize)]
struct Login {
    login: String,
}

/// `repos/get-collaborator-permission-level` answer.
#[derive(Deserialize)]
struct PermissionAnswer {
    permission: String,
    role_name: String,
}

/// An item of `repos/list-tags`.
#[derive(Deserialize)]
struct ListedTag {
    name: String,
    commit: TagCommit,
}

#[derive(Deserialize)]
struct TagCommit {
    sha: String,
}

/// `repos/get` answer; only the fields bakery reads.
#[derive(Deserialize)]
struct RepositoryAnswer {
    clone_url: String,
    default_branch: String,
}

/// `pulls/get` answer; only the fields bakery reads.
#[derive(Deserialize)]
struct PullAnswer {
    number: u64,
    state: String,
    #[serde(default)]
    draft: Option<bool>,
    user: Option<Login>,
    head: PullEnd,
    base: PullEnd,
}

/// A pull request's `head` or `base`.
#[derive(Deserialize)]
struct PullEnd {
    #[serde(rename = "ref")]
    git_ref: String,
    sha: String,
    /// `null` when the head's fork was deleted.
    repo: Option<PullRepo>,
}

#[derive(Deserialize)]
struct PullRepo {
    full_name: String,
}

/// A pull request as the API shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestInfo {
    pub number: u64,
    /// `open` or `closed`.
    pub state: String,
    pub draft: bool,
    pub author: String,
    pub head_sha: String,
    pub head_ref: String,
    /// `owner/name` of the head repository; `None` when the fork was deleted.
    pub head_repo: Option<String>,
    pub base_ref: String,
    pub base_repo: String,
}

impl PullRequestInfo {
    /// The head lives in another repository than the base.
    pub fn is_fork(&self) -> bool {
        self.head_repo.as_deref() != Some(self.base_repo.as_str())
    }
}

/// Where a repository is cloned from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryInfo {
    pub clone_url: String,
    pub default_branch: String,
}

/// Pagination: GitHub's largest page.
const PER_PAGE: usize = 100;
/// Pages read at most when listing (10,000 items).
const MAX_PAGES: usize = 100;

/// The facade jobs use to report on one repository.
///
/// Every call takes a current session from the client, so an installation token that
/// nears its expiry during a long build is replaced before it is refused.
#[derive(Debug, Clone)]
pub struct GitHubReporter {
    client: GitHubClient,
    installation_id: Option<u64>,
    kind: AuthKind,
    repo: RepoName,
}

impl GitHubReporter {
    pub async fn new(
        client: &GitHubClient,
        repo: RepoName,
        installation_id: Option<u64>,
    ) -> anyhow::Result<Self> {
        let session = client.repo_session(installation_id, &repo).await?;
        Ok(GitHubReporter {
            client: client.clone(),
            installation_id,
            kind: session.kind(),
            repo,
        })
    }

    pub fn repo(&self) -> &RepoName {
        &self.repo
    }

    /// A current session (its token is fresh for at least the refresh margin).
    pub async fn session(&self) -> anyhow::Result<Session> {
        self.client
            .repo_session(self.installation_id, &self.repo)
            .await
    }

    /// Whether progress goes to check runs (an App) or commit statuses (a token).
    pub fn uses_checks(&self) -> bool {
        self.kind == AuthKind::Installation
    }

    pub(super) async fn post<B: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        route: &str,
        body: &B,
    ) -> anyhow::Result<R> {
        let session = self.session().await?;
        let crab = &session.crab;
        retry::call(session.policy(), what, || crab.post(route, Some(body))).await
    }

    async fn patch<B: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        route: &str,
        body: &B,
    ) -> anyhow::Result<R> {
        let session = self.session().await?;
        let crab = &session.crab;
        retry::call(session.policy(), what, || crab.patch(route, Some(body))).await
    }

    /// GET that answers `None` for 404.
    async fn get_optional<R: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        route: &str,
    ) -> anyhow::Result<Option<R>> {
        let session = self.session().await?;
        let crab = &session.crab;
        retry::call(session.policy(), what, || async {
            match crab.get::<R, _, ()>(route, None).await {
                Ok(v) => Ok(Some(v)),
                Err(e) if retry::status_of(&e) == Some(http::StatusCode::NOT_FOUND) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn list_pages<R: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        route: &str,
    ) -> anyhow::Result<Vec<R>> {
        let session = self.session().await?;
        let crab = &session.crab;
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let url = format!("{route}?per_page={PER_PAGE}&page={page}");
            let items: Vec<R> = retry::call(session.policy(), what, || {
                crab.get(url.as_str(), None::<&()>)
            })
            .await?;
            let n = items.len();
            all.extend(items);
            if n < PER_PAGE {
                break;
            }
        }
        Ok(all)
    }

    // ---- Progress ----

    /// Starts progress for `name` on `sha`: a queued check run, or a pending status.
    pub async fn start_progress(
        &self,
        name: &str,
        sha: &str,
        details_url: Option<&str>,
        external_id: Option<&str>,
    ) -> anyhow::Result<Progress> {
        let mut progress = Progress {
            name: name.to_string(),
            sha: sha.to_string(),
            details_url: details_url.map(str::to_string),
            check_run_id: None,
        };
        if self.uses_checks() {
            let session = self.session().await?;
            let crab = &session.crab;
            if let Some(id) = external_id {
                // A retried attempt of the same job takes over the check run its dead
                // attempt left open, rather than leaving it in progress for ever.
                let route = format!(
                    "{}/commits/{sha}/check-runs?check_name={}&per_page=100",
                    self.repo.route(),
                    percent_encode(name)
                );
                let open: OpenCheckRuns = retry::call(
                    session.policy(),
                    &format!("list check runs {name} on {}", self.repo),
                    || crab.get(route.as_str(), None::<&()>),
                )
                .await
                .with_context(|| format!("cannot list the check runs of {}@{sha}", self.repo))?;
                if let Some(run) = open
                    .check_runs
                    .iter()
                    .filter(|r| r.external_id.as_deref() == Some(id) && r.status != "completed")
                    .max_by_key(|r| r.id)
                {
                    progress.check_run_id = Some(run.id);
                    return Ok(progress);
                }
            }
            let run = retry::call(
                session.policy(),
                &format!("create check run {name} on {}", self.repo),
                || async move {
                    let checks = crab.checks(&self.repo.owner, &self.repo.name);
                    let mut b = checks
                        .create_check_run(name, sha)
                        .status(CheckRunStatus::Queued);
                    if let Some(url) = details_url {
                        b = b.details_url(url);
                    }
                    if let Some(id) = external_id {
                        b = b.external_id(id);
                    }
                    b.send().await
                },
            )
            .await
            .with_context(|| {
                format!(
                    "cannot create check run {name} on {}@{sha}: the GitHub App needs the \
                     checks: write permission",
                    self.repo
                )
            })?;
            progress.check_run_id = Some(run.id.0);
        } else {
            self.post_status(&progress, "pending", "Queued").await?;
        }
        Ok(progress)
    }

    /// Every check run on `sha` that carries `external_id` (a job's id) and is not
    /// completed: what an attempt of that job left open. Empty with commit statuses.
    pub async fn open_check_runs(
        &self,
        sha: &str,
        external_id: &str,
    ) -> anyhow::Result<Vec<Progress>> {
        if !self.uses_checks() {
            return Ok(vec![]);
        }
        let session = self.session().await?;
        let crab = &session.crab;
        let route = format!(
            "{}/commits/{sha}/check-runs?per_page=100",
            self.repo.route()
        );
        let listed: OpenCheckRuns = retry::call(
            session.policy(),
            &format!("list check runs on {}", self.repo),
            || crab.get(route.as_str(), None::<&()>),
        )
        .await
        .with_context(|| format!("cannot list the check runs of {}@{sha}", self.repo))?;
        Ok(listed
            .check_runs
            .into_iter()
            .filter(|r| r.external_id.as_deref() == Some(external_id) && r.status != "completed")
            .map(|r| Progress {
                name: r.name,
                sha: sha.to_string(),
                details_url: None,
                check_run_id: Some(r.id),
            })
            .collect())
    }

    /// Moves progress to in progress, with a live step summary (Markdown).
    pub async fn update_progress(
        &self,
        progress: &Progress,
        title: &str,
        summary_markdown: &str,
    ) -> anyhow::Result<()> {
        match progress.check_run_id {
            Some(id) => {
                let session = self.session().await?;
                let crab = &session.crab;
                let summary = limit_chars(summary_markdown, MAX_BODY_CHARS);
                retry::call(
                    session.policy(),
                    &format!("update check run {} on {}", progress.name, self.repo),
                    || async {
                        crab.checks(&self.repo.owner, &self.repo.name)
                            .update_check_run(CheckRunId(id))
                            .status(CheckRunStatus::InProgress)
                            .output(output(title, &summary, &[]))
                            .send()
                            .await
                    },
                )
                .await
                .with_context(|| {
                    format!("cannot update check run {} on {}", progress.name, self.repo)
                })?;
            }
            None => self.post_status(progress, "pending", title).await?,
        }
        Ok(())
    }

    /// Completes progress. Annotations go out 50 per request, as GitHub requires; each
    /// update appends to the ones already on the check run. A commit status carries no
    /// annotations (the summary's first line becomes its description).
    pub async fn complete_progress(
        &self,
        progress: &Progress,
        conclusion: Conclusion,
        title: &str,
        summary_markdown: &str,
        annotations: &[Annotation],
    ) -> anyhow::Result<()> {
        let Some(id) = progress.check_run_id else {
            let state = match conclusion {
                Conclusion::Success => "success",
                Conclusion::Failure => "failure",
                Conclusion::Cancelled => "error",
            };
            return self.post_status(progress, state, title).await;
        };
        let session = self.session().await?;
        let crab = &session.crab;
        let summary = limit_chars(summary_markdown, MAX_BODY_CHARS);
        let mut batches: Vec<&[Annotation]> = annotations.chunks(ANNOTATIONS_PER_REQUEST).collect();
        if batches.is_empty() {
            batches.push(&[]);
        }
        let (first, rest) = batches.split_first().expect("one batch at least");
        let conclusion = match conclusion {
            Conclusion::Success => CheckRunConclusion::Success,
            Conclusion::Failure => CheckRunConclusion::Failure,
            Conclusion::Cancelled => CheckRunConclusion::Cancelled,
        };
        let what = format!("complete check run {} on {}", progress.name, self.repo);
        retry::call(session.policy(), &what, || async {
            crab.checks(&self.repo.owner, &self.repo.name)
                .update_check_run(CheckRunId(id))
                .status(CheckRunStatus::Completed)
                .conclusion(conclusion)
                .completed_at(Utc::now())
                .output(output(title, &summary, first))
                .send()
                .await
        })
        .await
        .with_context(|| {
            format!(
                "cannot complete check run {} on {}",
                progress.name, self.repo
            )
        })?;
        for batch in rest {
            retry::call(session.policy(), &what, || async {
                crab.checks(&self.repo.owner, &self.repo.name)
                    .update_check_run(CheckRunId(id))
                    .output(output(title, &summary, batch))
                    .send()
                    .await
            })
            .await
            .with_context(|| {
                format!(
                    "cannot add annotations to check run {} on {}",
                    progress.name, self.repo
                )
            })?;
        }
        Ok(())
    }

    async fn post_status(
        &self,
        progress: &Progress,
        state: &str,
        description: &str,
    ) -> anyhow::Result<()> {
        let route = format!(
            "{}/statuses/{}",
            self.repo.route(),
            path_segment(&progress.sha)
        );
        let body = CreateStatus {
            state,
            target_url: progress.details_url.as_deref(),
            description: limit_chars(
                description.lines().next().unwrap_or(""),
                MAX_STATUS_DESCRIPTION_CHARS,
            ),
            context: &progress.name,
        };
        let _: Created = self
            .post(
                &format!("set commit status {} on {}", progress.name, self.repo),
                &route,
                &body,
            )
            .await
            .with_context(|| {
                format!(
                    "cannot set commit status {} on {}@{}: the token needs the repo:status \
                     scope (or statuses: write)",
                    progress.name, self.repo, progress.sha
                )
            })?;
        Ok(())
    }

    // ---- Comments ----

    /// Comments on a commit. Returns the comment's URL.
    pub async fn comment_on_commit(&self, sha: &str, body: &str) -> anyhow::Result<String> {
        let route = format!(
            "{}/commits/{}/comments",
            self.repo.route(),
            path_segment(sha)
        );
        let body = limit_chars(body, MAX_BODY_CHARS);
        let created: Created = self
            .post(
                &format!("comment on commit {sha} of {}", self.repo),
                &route,
                &CommentBody { body: &body },
            )
            .await
            .with_context(|| {
                format!(
                    "cannot comment on commit {sha} of {}: the GitHub App needs the \
                     contents: write permission",
                    self.repo
                )
            })?;
        Ok(created.html_url.unwrap_or_default())
    }

    /// Comments on a pull request (or issue).
    pub async fn comment_on_pr(&self, number: u64, body: &str) -> anyhow::Result<IssueComment> {
        let route = format!("{}/issues/{number}/comments", self.repo.route());
        let body = limit_chars(body, MAX_BODY_CHARS);
        let created: ListedComment = self
            .post(
                &format!("comment on #{number} of {}", self.repo),
                &route,
                &CommentBody { body: &body },
            )
            .await
            .with_context(|| {
                format!(
                    "cannot comment on #{number} of {}: the GitHub App needs the \
                     pull_requests: write and issues: write permissions",
                    self.repo
                )
            })?;
        Ok(created.into())
    }

    /// Every comment on a pull request (or issue), oldest first.
    pub async fn list_pr_comments(&self, number: u64) -> anyhow::Result<Vec<IssueComment>> {
        let route = format!("{}/issues/{number}/comments", self.repo.route());
        let listed: Vec<ListedComment> = self
            .list_pages(
                &format!("list comments of #{number} of {}", self.repo),
                &route,
            )
            .await
            .with_context(|| format!("cannot list the comments of #{number} of {}", self.repo))?;
        Ok(listed.into_iter().map(Into::into).collect())
    }

    /// The one comment of bakery's that holds `marker` (a hidden HTML comment, see
    /// [`crate::github::render::marker`]): edited if it exists, created otherwise. Comments by
    /// other users that quote the marker are left alone.
    pub async fn upsert_sticky_comment(
        &self,
        number: u64,
        marker: &str,
        body: &str,
    ) -> anyhow::Result<IssueComment> {
        anyhow::ensure!(
            body.contains(marker),
            "a sticky comment's body must hold its marker {marker:?}"
        );
        let bot = self.client.bot_login().await?;
        let existing = self.list_pr_comments(number).await?.into_iter().find(|c| {
            c.body.contains(marker)
                && c.author
                    .as_deref()
                    .is_some_and(|a| crate::github::api::client::is_own_comment(a, &bot))
        });
        match existing {
            Some(c) if c.body == body => Ok(c),
            Some(c) => {
                let route = format!("{}/issues/comments/{}", self.repo.route(), c.id);
                let body = limit_chars(body, MAX_BODY_CHARS);
                let updated: ListedComment = self
                    .patch(
                        &format!("update comment {} on #{number} of {}", c.id, self.repo),
                        &route,
                        &CommentBody { body: &body },
                    )
                    .await
                    .with_context(|| {
                        format!("cannot edit comment {} on #{number} of {}", c.id, self.repo)
                    })?;
                Ok(updated.into())
            }
            None => self.comment_on_pr(number, body).await,
        }
    }

    // ---- Releases ----

    /// Attaches `bytes` to a release as the asset `name`, replacing an asset of that name
    /// (a rerun): `GET /releases/{id}/assets`, `DELETE /releases/assets/{id}`, then the
    /// upload endpoint (`POST` to the release's `upload_url`, with `?name=`).
    pub async fn upload_release_asset(
        &self,
        release: &ReleaseRef,
        name: &str,
        content_type: &str,
        bytes: bytes::Bytes,
    ) -> anyhow::Result<ReleaseAsset> {
        let route = format!("{}/releases/{}/assets", self.repo.route(), release.id);
        let existing: Vec<ReleaseAsset> = self
            .list_pages(&format!("list assets of release {}", release.id), &route)
            .await?;
        let session = self.session().await?;
        let crab = &session.crab;
        for old in existing.iter().filter(|a| a.name == name) {
            let route = format!("{}/releases/assets/{}", self.repo.route(), old.id);
            retry::call(
                session.policy(),
                &format!("delete release asset {name}"),
                || async {
                    let response = crab._delete(route.as_str(), None::<&()>).await?;
                    octocrab::map_github_error(response).await.map(|_| ())
                },
            )
            .await?;
        }
        let base = release.upload_url.split('{').next().unwrap_or_default();
        anyhow::ensure!(
            !base.is_empty(),
            "GitHub gave release {} no upload_url",
            release.id
        );
        let url = format!("{base}?name={}", path_segment(name));
        // octocrab only authenticates requests to the API's own host; an installation's
        // token is sent to the upload host here, and only to GitHub's upload host or the
        // API's host (GitHub Enterprise serves uploads there).
        let upload_uri: http::Uri = url
            .parse()
            .with_context(|| format!("GitHub's upload_url {base:?} is not a URL"))?;
        let api_uri: http::Uri = self.client.api_url().parse()?;
        let upload_host = upload_uri.authority().map(|a| a.as_str().to_string());
        anyhow::ensure!(
            upload_host.as_deref() == Some("uploads.github.com")
                || upload_host.as_deref() == api_uri.authority().map(|a| a.as_str()),
            "GitHub's upload_url {base:?} is neither GitHub's upload host nor the API's host"
        );
        let bearer = (session.kind() == AuthKind::Installation).then(|| {
            let mut v =
                http::HeaderValue::from_str(&format!("Bearer {}", session.git_token().expose()))
                    .expect("a token is a valid header value");
            v.set_sensitive(true);
            v
        });
        retry::call(
            session.policy(),
            &format!("upload release asset {name}"),
            || async {
                let mut request = http::Request::builder()
                    .method(http::Method::POST)
                    .uri(url.as_str())
                    .header(http::header::CONTENT_TYPE, content_type)
                    .header(http::header::CONTENT_LENGTH, bytes.len());
                if let Some(b) = &bearer {
                    request = request.header(http::header::AUTHORIZATION, b.clone());
                }
                let request = request
                    .body(bytes.clone())
                    .expect("a well-formed upload request");
                let response = octocrab::map_github_error(crab.execute(request).await?).await?;
                let text = crab.body_to_string(response).await?;
                Ok(serde_json::from_str::<ReleaseAsset>(&text))
            },
        )
        .await?
        .with_context(|| format!("GitHub's answer to the upload of {name} is not an asset"))
    }

    /// Creates the release for `tag`, or updates its name and notes when it exists (a
    /// rerun): `GET /releases/tags/{tag}`, then `POST` or `PATCH`.
    pub async fn upsert_release(
        &self,
        tag: &str,
        target_sha: &str,
        name: &str,
        notes_markdown: &str,
    ) -> anyhow::Result<ReleaseRef> {
        let notes = limit_chars(notes_markdown, 125_000);
        let route = format!("{}/releases/tags/{}", self.repo.route(), path_segment(tag));
        let existing: Option<Created> = self
            .get_optional(&format!("get release {tag} of {}", self.repo), &route)
            .await
            .with_context(|| format!("cannot look up the release for {tag} of {}", self.repo))?;
        match existing {
            Some(release) => {
                let route = format!("{}/releases/{}", self.repo.route(), release.id);
                let updated: Created = self
                    .patch(
                        &format!("update release {tag} of {}", self.repo),
                        &route,
                        &UpdateRelease { name, body: &notes },
                    )
                    .await
                    .with_context(|| {
                        format!("cannot update the release for {tag} of {}", self.repo)
                    })?;
                Ok(ReleaseRef {
                    id: updated.id,
                    html_url: updated.html_url.unwrap_or_default(),
                    created: false,
                    upload_url: updated.upload_url.unwrap_or_default(),
                })
            }
            None => {
                let route = format!("{}/releases", self.repo.route());
                let body = CreateRelease {
                    tag_name: tag,
                    target_commitish: target_sha,
                    name,
                    body: &notes,
                    draft: false,
                    prerelease: false,
                };
                let created: Created = self
                    .post(
                        &format!("create release {tag} of {}", self.repo),
                        &route,
                        &body,
                    )
                    .await
                    .with_context(|| {
                        format!(
                            "cannot create the release for {tag} of {}: the GitHub App needs \
                             the contents: write permission",
                            self.repo
                        )
                    })?;
                Ok(ReleaseRef {
                    id: created.id,
                    html_url: created.html_url.unwrap_or_default(),
                    created: true,
                    upload_url: created.upload_url.unwrap_or_default(),
                })
            }
        }
    }

    // ---- Queries ----

    /// `user`'s permission on the repository. A user who is no collaborator has `none`.
    pub async fn user_permission(&self, user: &str) -> anyhow::Result<UserPermission> {
        let route = format!(
            "{}/collaborators/{}/permission",
            self.repo.route(),
            path_segment(user)
        );
        let answer: Option<PermissionAnswer> = self
            .get_optional(
                &format!("get permission of {user} on {}", self.repo),
                &route,
            )
            .await
            .with_context(|| {
                format!(
                    "cannot read {user}'s permission on {}: the GitHub App needs the \
                     metadata: read permission",
                    self.repo
                )
            })?;
        Ok(match answer {
            Some(a) => UserPermission {
                permission: a.permission,
                role_name: a.role_name,
            },
            None => UserPermission {
                permission: "none".into(),
                role_name: "none".into(),
            },
        })
    }

    /// Every tag of the repository with the commit it points at.
    pub async fn list_tags(&self) -> anyhow::Result<Vec<TagRef>> {
        let route = format!("{}/tags", self.repo.route());
        let listed: Vec<ListedTag> = self
            .list_pages(&format!("list tags of {}", self.repo), &route)
            .await
            .with_context(|| format!("cannot list the tags of {}", self.repo))?;
        Ok(listed
            .into_iter()
            .map(|t| TagRef {
                name: t.name,
                sha: t.commit.sha,
            })
            .collect())
    }

    /// The repository's clone URL and default branch.
    pub async fn repository(&self) -> anyhow::Result<RepositoryInfo> {
        let route = self.repo.route();
        let session = self.session().await?;
        let crab = &session.crab;
        let answer: RepositoryAnswer = retry::call(
            session.policy(),
            &format!("get repository {}", self.repo),
            || crab.get(route.as_str(), None::<&()>),
        )
        .await
        .with_context(|| {
            format!(
                "cannot read repository {}: check its name and that bakery can see it",
                self.repo
            )
        })?;
        Ok(RepositoryInfo {
            clone_url: answer.clone_url,
            default_branch: answer.default_branch,
        })
    }

    /// Pull request `number` as it is now (its head SHA moves with every push).
    pub async fn pull_request(&self, number: u64) -> anyhow::Result<PullRequestInfo> {
        let route = format!("{}/pulls/{number}", self.repo.route());
        let session = self.session().await?;
        let crab = &session.crab;
        let answer: PullAnswer = retry::call(
            session.policy(),
            &format!("get pull request #{number} of {}", self.repo),
            || crab.get(route.as_str(), None::<&()>),
        )
        .await
        .with_context(|| {
            format!(
                "cannot read pull request #{number} of {}: the GitHub App needs the \
                 pull_requests: read permission",
                self.repo
            )
        })?;
        Ok(PullRequestInfo {
            number: answer.number,
            state: answer.state,
            draft: answer.draft.unwrap_or(false),
            author: answer.user.map(|u| u.login).unwrap_or_default(),
            head_sha: answer.head.sha,
            head_ref: answer.head.git_ref,
            head_repo: answer.head.repo.map(|r| r.full_name),
            base_ref: answer.base.git_ref,
            base_repo: answer
                .base
                .repo
                .map(|r| r.full_name)
                .unwrap_or_else(|| self.repo.to_string()),
        })
    }

    /// The login bakery comments as.
    pub async fn bot_login(&self) -> anyhow::Result<String> {
        self.client.bot_login().await
    }
}

impl From<ListedComment> for IssueComment {
    fn from(c: ListedComment) -> Self {
        IssueComment {
            id: c.id,
            body: c.body.unwrap_or_default(),
            author: c.user.map(|u| u.login),
            html_url: c.html_url,
        }
    }
}

fn output(title: &str, summary: &str, annotations: &[Annotation]) -> CheckRunOutput {
    CheckRunOutput {
        title: title.to_string(),
        summary: summary.to_string(),
        text: None,
        annotations: annotations
            .iter()
            .map(|a| CheckRunOutputAnnotation {
                path: a.path.clone(),
                start_line: a.line.max(1),
                end_line: a.line.max(1),
                start_column: None,
                end_column: None,
                annotation_level: match a.level {
                    AnnotationLevel::Notice => CheckRunOutputAnnotationLevel::Notice,
                    AnnotationLevel::Warning => CheckRunOutputAnnotationLevel::Warning,
                    AnnotationLevel::Failure => CheckRunOutputAnnotationLevel::Failure,
                },
                message: a.message.clone(),
                title: a.title.clone(),
                raw_details: None,
            })
            .collect(),
        images: vec![],
    }
}

/// Cuts `text` to at most `max` characters, saying so at the end.
pub fn limit_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    const NOTE: &str = "\n\n… (cut to GitHub's size limit)";
    let keep = max.saturating_sub(NOTE.chars().count());
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(NOTE);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_maintain_and_admin_may_build() {
        let p = |permission: &str, role: &str| UserPermission {
            permission: permission.into(),
            role_name: role.into(),
        };
        assert!(p("admin", "admin").can_build());
        assert!(p("write", "write").can_build());
        assert!(p("write", "maintain").can_build());
        assert!(!p("read", "triage").can_build());
        assert!(!p("read", "read").can_build());
        assert!(!p("none", "none").can_build());
    }

    #[test]
    fn long_text_is_cut_with_a_note() {
        let s = "x".repeat(200);
        let cut = limit_chars(&s, 140);
        assert_eq!(cut.chars().count(), 140);
        assert!(cut.ends_with("size limit)"));
        assert_eq!(limit_chars("short", 140), "short");
    }

    #[test]
    fn annotations_become_single_line_check_annotations() {
        let out = output(
            "t",
            "s",
            &[Annotation {
                path: "recipes/base/recipe.toml".into(),
                line: 0,
                level: AnnotationLevel::Failure,
                message: "unknown key".into(),
                title: None,
            }],
        );
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["annotations"][0]["start_line"], 1);
        assert_eq!(json["annotations"][0]["annotation_level"], "failure");
        assert!(json["annotations"][0].get("title").is_none());
    }
}
