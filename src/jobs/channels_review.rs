//! A pull request that changes the channels (`channels.toml`, or `[channels]` in
//! `bakery.toml`: [`channels_source`]) gets the channels plan comment: the base branch's
//! channels against the pull request's, planned against the images the registry
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

use crate::github::api::reporter::{Conclusion, GitHubReporter};
use crate::github::render;
use crate::jobs::deps::JobDeps;
use crate::registry::channel_plan;
use crate::registry::channels_source::{self, ChannelsSource, ReadChannels};
use crate::worker::JobContext;

/// The channels on `base_ref` (`origin/<base_ref>` in the checkout).
pub fn base_channels(workspace: &Path, base_ref: &str) -> anyhow::Result<ReadChannels> {
    let repo = git2::Repository::open(workspace)
        .with_context(|| format!("cannot open the checkout {}", workspace.display()))?;
    let base = repo
        .find_reference(&format!("refs/remotes/origin/{base_ref}"))
        .and_then(|r| r.peel_to_commit())
        .with_context(|| format!("the base branch {base_ref} is not in the repository"))?;
    let tree = base.tree()?;
    channels_source::read_tree(&repo, &tree)
}

/// Plans the pull request's channels and writes the sticky comment. `None` when neither
/// the base nor the pull request has channels (a change to `bakery.toml` elsewhere).
pub async fn comment_plan(
    deps: &JobDeps,
    ctx: &JobContext,
    reporter: &GitHubReporter,
    number: u64,
    head_sha: &str,
    base_ref: &str,
    root: &Path,
) -> anyhow::Result<Option<channel_plan::ChannelPlan>> {
    let (before, after) = {
        let (root, base) = (root.to_path_buf(), base_ref.to_string());
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            Ok((
                base_channels(&root, &base)?,
                channels_source::read_dir(&root)?,
            ))
        })
        .await
        .context("reading the channels died")??
    };
    if before.source == ChannelsSource::Nowhere
        && after.source == ChannelsSource::Nowhere
        && after.diagnostics.is_empty()
    {
        return Ok(None);
    }
    let problems: Vec<String> = after.diagnostics.iter().map(|d| d.to_string()).collect();
    let (before, after) = (before.channels, after.channels);
    let scope = super::registry_view::scope(deps).await?;
    let images = super::registry_view::repo_images(deps, &scope, &ctx.job.repo)
        .await?
        .images;
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
    Ok(Some(plan))
}
