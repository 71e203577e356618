//! A pull request that changes `channels.toml` gets the channels plan comment: the base
//! branch's file against the pull request's, planned against the images the registry
//! reads from the cloud (this repository's only), with what it refuses.
//!
//! Nothing here acts on the pull request's file: it is only compared. The accounts and
//! regions searched, and the roles used to reach them, are the operator's policy's.
//!
//! Touches: the checkout (reads two versions of one file), the cloud (read-only registry
//! lookup), one sticky pull-request comment and the `bakery/channels` check run, failed
//! when the plan refuses the change.

use std::path::Path;

use anyhow::Context;

use crate::aws::AwsSession;
use crate::github::api::reporter::{Conclusion, GitHubReporter};
use crate::github::render;
use crate::jobs::deps::JobDeps;
use crate::registry::channel_plan;
use crate::registry::channels::{self, Channels, CHANNELS_FILE};
use crate::registry::ImageQuery;
use crate::worker::JobContext;

/// Whether the pull request's changed files include the channels file.
pub fn touches_channels(changed: &[String]) -> bool {
    changed.iter().any(|f| f == CHANNELS_FILE)
}

/// The channels file on `base_ref` (`origin/<base_ref>` in the checkout); empty without one.
pub fn base_channels(workspace: &Path, base_ref: &str) -> anyhow::Result<Channels> {
    let repo = git2::Repository::open(workspace)
        .with_context(|| format!("cannot open the checkout {}", workspace.display()))?;
    let base = repo
        .find_reference(&format!("refs/remotes/origin/{base_ref}"))
        .and_then(|r| r.peel_to_commit())
        .with_context(|| format!("the base branch {base_ref} is not in the repository"))?;
    let tree = base.tree()?;
    let Ok(entry) = tree.get_path(Path::new(CHANNELS_FILE)) else {
        return Ok(Channels::default());
    };
    let blob = entry.to_object(&repo)?.peel_to_blob()?;
    let text = String::from_utf8_lossy(blob.content()).to_string();
    Ok(channels::parse(CHANNELS_FILE, &text).0)
}

/// Plans the pull request's channels file and writes the sticky comment.
pub async fn comment_plan(
    deps: &JobDeps,
    ctx: &JobContext,
    reporter: &GitHubReporter,
    number: u64,
    head_sha: &str,
    base_ref: &str,
    root: &Path,
) -> anyhow::Result<channel_plan::ChannelPlan> {
    let (before, after, problems) = {
        let (root, base) = (root.to_path_buf(), base_ref.to_string());
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let before = base_channels(&root, &base)?;
            let text = std::fs::read_to_string(root.join(CHANNELS_FILE)).unwrap_or_default();
            let (after, diags) = channels::parse(CHANNELS_FILE, &text);
            let problems: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
            Ok((before, after, problems))
        })
        .await
        .context("reading the channels file died")??
    };
    let region = deps
        .config
        .policy
        .default
        .regions
        .first()
        .map(String::as_str)
        .unwrap_or("us-east-1");
    let session = AwsSession::connect(deps.aws.clone(), region).await?;
    let targets =
        crate::registry::scope::targets(&session, deps.store.as_ref(), &deps.config.policy).await?;
    let report = crate::registry::lookup(
        &session,
        deps.store.as_ref(),
        &targets,
        &ImageQuery::default(),
        chrono::Utc::now(),
    )
    .await?;
    let repo = &ctx.job.repo;
    let images: Vec<_> = report
        .images
        .into_iter()
        .filter(|i| i.repo.as_deref() == Some(repo.as_str()))
        .collect();
    let plan = channel_plan::plan(&before, &after, &images);
    let mut body = render::channels_plan_comment(head_sha, &plan);
    if !problems.is_empty() {
        body.push('\n');
        body.push_str(&render::code_block("", &problems.join("\n")));
    }
    reporter
        .upsert_sticky_comment(number, render::CHANNELS_MARKER, &body)
        .await?;
    let progress = reporter
        .start_progress(render::CHANNELS_CHECK, head_sha, None, None)
        .await?;
    let conclusion = if plan.is_clean() && problems.is_empty() {
        Conclusion::Success
    } else {
        Conclusion::Failure
    };
    reporter
        .complete_progress(
            &progress,
            conclusion,
            &render::channels_check_title(&plan, problems.len()),
            &body,
            &[],
        )
        .await?;
    ctx.log(
        "channels",
        &format!(
            "channels plan: {} move(s), {} refusal(s), {} problem(s)",
            plan.moves.len(),
            plan.refusals.len(),
            problems.len()
        ),
    )
    .await;
    Ok(plan)
}
