//! A comment on a pull request: find the command in it, check who may run it, and carry
//! it out. `/bakery help` and commands bakery does not understand get the help text;
//! `/bakery validate` validates the pull request's head again; `/bakery build [recipe]`
//! runs a validation build (for a fork's pull request too, since a writer asked);
//! `/bakery cancel` stops the pull request's queued and running jobs.

use anyhow::Context;
use serde_json::json;

use super::deps::JobDeps;
use super::spec::{CommandSpec, JobSpec};
use super::validation::{self, Builds, PullRequest};
use crate::database::{JobFilter, JobState};
use crate::github::publish::{decide_command, CommandDecision};
use crate::github::render::{self, CancelledJob, CancelledWork};
use crate::github::webhook::commands::Command;
use crate::github::GitHubReporter;
use crate::worker::JobContext;

pub async fn run(deps: &JobDeps, ctx: &JobContext) -> anyhow::Result<Option<serde_json::Value>> {
    let job = &ctx.job;
    let payload = CommandSpec::from_job(job)?;
    let number = job
        .pr_number
        .context("a command job needs its pull request number")? as u64;
    let reporter = deps
        .reporter(&job.repo, payload.repo.installation_id)
        .await?;
    let decision = decide_command(&reporter, &payload.author, &payload.body).await?;
    let comment = payload.comment_id;
    let unprivileged = matches!(
        decision,
        CommandDecision::Reply(_) | CommandDecision::Run(Command::Validate | Command::Help { .. })
    );
    if unprivileged && recent_commands(ctx, number).await? >= UNPRIVILEGED_PER_PR {
        // Anyone can comment: answers and validations that need no permission are
        // limited per pull request, so comments cannot make bakery spam or spin.
        ctx.log(
            "command",
            &format!(
                "comment {comment} not answered: more than {UNPRIVILEGED_PER_PR} commands on \
                 #{number} within {} minutes",
                COMMAND_WINDOW.as_secs() / 60
            ),
        )
        .await;
        return Ok(Some(json!({ "comment_id": comment, "rate_limited": true })));
    }
    match decision {
        CommandDecision::Ignore => {
            ctx.log(
                "command",
                &format!("comment {comment} holds no command for bakery"),
            )
            .await;
            Ok(Some(json!({ "comment_id": comment, "command": null })))
        }
        CommandDecision::Reply(text) | CommandDecision::Refuse(text) => {
            let answer = reporter.comment_on_pr(number, &text).await?;
            ctx.log(
                "command",
                &format!("answered comment {comment}: {}", answer.html_url),
            )
            .await;
            Ok(Some(
                json!({ "comment_id": comment, "answered": answer.html_url }),
            ))
        }
        CommandDecision::Run(Command::Cancel) => {
            let cancelled = cancel_pr_jobs(ctx, &reporter, number, &payload.author).await?;
            Ok(Some(
                json!({ "comment_id": comment, "command": "cancel", "cancelled": cancelled }),
            ))
        }
        CommandDecision::Run(command @ (Command::Validate | Command::Build { .. })) => {
            let info = reporter.pull_request(number).await?;
            anyhow::ensure!(
                info.state == "open",
                "pull request #{number} is {}: bakery acts on open pull requests only",
                info.state
            );
            let what = match &command {
                Command::Validate => "/bakery validate".to_string(),
                Command::Build { recipe: Some(r) } => format!("/bakery build {r}"),
                _ => "/bakery build".to_string(),
            };
            ctx.log(
                "command",
                &format!(
                    "{what} from {} on #{number} at {}",
                    payload.author, info.head_sha
                ),
            )
            .await;
            if let Command::Build { .. } = &command {
                // A build runs the pull request's code with the repository's credentials:
                // only the head the writer could have reviewed, the last one bakery
                // validated before the comment, is built. A push since needs a new approval.
                let approved = approved_head(ctx, number).await?;
                if approved.as_deref() != Some(info.head_sha.as_str()) {
                    let text = render::approval_outdated(
                        &payload.author,
                        approved.as_deref(),
                        &info.head_sha,
                    );
                    let answer = reporter.comment_on_pr(number, &text).await?;
                    ctx.log(
                        "command",
                        &format!(
                            "not built: the head is {} but the approved head is {}; answered {}",
                            info.head_sha,
                            approved.as_deref().unwrap_or("unknown"),
                            answer.html_url
                        ),
                    )
                    .await;
                    return Ok(Some(json!({
                        "comment_id": comment,
                        "command": "build",
                        "refused": "head moved after the approval",
                        "head_sha": info.head_sha,
                        "approved_sha": approved,
                    })));
                }
            }
            let pr = PullRequest {
                number,
                is_fork: info.is_fork(),
                head_sha: info.head_sha,
                base_ref: info.base_ref,
                head_repo: info.head_repo,
                author: info.author,
            };
            let builds = match command {
                Command::Build { recipe } => Builds::Requested {
                    recipe,
                    by: payload.author.clone(),
                },
                _ => Builds::Never,
            };
            let mut result =
                Box::pin(validation::validate(deps, ctx, &reporter, &pr, &builds)).await?;
            result["comment_id"] = json!(comment);
            Ok(Some(result))
        }
        CommandDecision::Run(Command::Help { problem }) => {
            // `decide_command` answers help itself; kept for completeness.
            let text = crate::github::render::help_text(problem.as_ref());
            reporter.comment_on_pr(number, &text).await?;
            Ok(Some(json!({ "comment_id": comment, "command": "help" })))
        }
    }
}

/// At most this many commands that need no permission (`/bakery validate`, `/bakery
/// help`, unknown commands) are answered per pull request within [`COMMAND_WINDOW`].
pub const UNPRIVILEGED_PER_PR: usize = 5;
pub const COMMAND_WINDOW: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Commands needing no permission on pull request `number`, in comments that arrived
/// before this one within the window (plain discussion does not count).
async fn recent_commands(ctx: &JobContext, number: u64) -> anyhow::Result<usize> {
    let since = ctx.job.created_at - chrono::Duration::from_std(COMMAND_WINDOW)?;
    let jobs = ctx
        .store
        .list_jobs(&JobFilter {
            kind: Some(crate::database::JobKind::Command),
            repo: Some(ctx.job.repo.clone()),
            ..JobFilter::default()
        })
        .await
        .context("cannot list the pull request's commands")?;
    Ok(jobs
        .iter()
        .filter(|j| {
            j.pr_number == Some(number as i64) && j.id < ctx.job.id && j.created_at >= since
        })
        .filter_map(|j| CommandSpec::from_job(j).ok())
        .filter(|spec| {
            matches!(
                crate::github::webhook::commands::parse_command(&spec.body),
                Some(Command::Validate | Command::Help { .. })
            )
        })
        .count())
}

/// The head of pull request `number` that bakery last validated before this comment
/// arrived (the newest validation job of the pull request older than this job): what a
/// writer commenting could have reviewed. `None` when bakery has validated none yet.
async fn approved_head(ctx: &JobContext, number: u64) -> anyhow::Result<Option<String>> {
    let jobs = ctx
        .store
        .list_jobs(&JobFilter {
            kind: Some(crate::database::JobKind::Validation),
            repo: Some(ctx.job.repo.clone()),
            ..JobFilter::default()
        })
        .await
        .context("cannot list the pull request's validations")?;
    Ok(jobs
        .into_iter()
        .filter(|j| j.pr_number == Some(number as i64) && j.id < ctx.job.id && !j.sha.is_empty())
        .max_by_key(|j| j.id)
        .map(|j| j.sha))
}

/// Asks every queued or running job of pull request `number` (but this one) to stop, and
/// says on the PR what was stopped.
async fn cancel_pr_jobs(
    ctx: &JobContext,
    reporter: &GitHubReporter,
    number: u64,
    author: &str,
) -> anyhow::Result<Vec<i64>> {
    let job = &ctx.job;
    let mut open = vec![];
    for state in [JobState::Queued, JobState::Running] {
        let jobs = ctx
            .store
            .list_jobs(&JobFilter {
                repo: Some(job.repo.clone()),
                state: Some(state),
                ..JobFilter::default()
            })
            .await
            .with_context(|| format!("cannot list the jobs of {}", job.repo))?;
        open.extend(
            jobs.into_iter()
                .filter(|j| j.pr_number == Some(number as i64) && j.id != job.id),
        );
    }
    open.sort_by_key(|j| j.id);
    let mut cancelled = vec![];
    for j in &open {
        ctx.store
            .request_cancel(j.id)
            .await
            .with_context(|| format!("cannot cancel job {}", j.id))?;
        cancelled.push(j.id);
    }
    let stopped: Vec<CancelledJob> = open
        .iter()
        .map(|j| CancelledJob {
            id: j.id,
            state: j.state.as_str().to_string(),
            work: match j.kind {
                crate::database::JobKind::Validation => {
                    CancelledWork::Validation { sha: j.sha.clone() }
                }
                crate::database::JobKind::Command => CancelledWork::Command {
                    line: CommandSpec::from_job(j).ok().and_then(|s| {
                        s.body
                            .lines()
                            .map(str::trim)
                            .find(|l| l.to_ascii_lowercase().starts_with("/bakery"))
                            .map(str::to_string)
                    }),
                },
                crate::database::JobKind::Release | crate::database::JobKind::Reconcile => {
                    CancelledWork::Release {
                        git_ref: j.git_ref.clone(),
                    }
                }
            },
        })
        .collect();
    let body = render::cancel_reply(author, &stopped);
    reporter.comment_on_pr(number, &body).await?;
    ctx.log(
        "command",
        &format!("cancel from {author}: asked job(s) {cancelled:?} to stop"),
    )
    .await;
    Ok(cancelled)
}
