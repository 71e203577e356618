//! A push to the default branch that changed the channels (`channels.toml`, or
//! `[channels]` in `bakery.toml`) reconciles them: the channels at the branch's head (as
//! GitHub serves it now, never a pull request's) against the cloud, in every account and
//! region the operator's policy names. The server's timer reconciles again
//! ([`ReconcileTrigger::Schedule`], see `jobs/periodic.rs`), which puts back what a
//! break-glass `bakery promote` moved; a scheduled reconcile that finds everything in
//! place says nothing on GitHub.
//!
//! Hops: checkout of the default branch → read the channels → registry lookup (this
//! repository's images) → read the channel parameters → plan
//! ([`crate::registry::reconcile`]) → apply each action ([`crate::aws::channels`]) → the
//! `bakery/reconcile` check run on the commit → one deployment and status per channel
//! that moved or was refused.
//!
//! A file with problems changes nothing. A reconcile that finds everything in place makes
//! no call that changes the cloud and creates no deployment.
//!
//! Touches: the checkout, the cloud (through the registry's scope and the reconcile's
//! actions only), one check run and the channels' deployments.

use anyhow::Context;
use serde_json::json;

use crate::github::api::deployments::DeploymentState;
use crate::github::api::reporter::Conclusion;
use crate::github::git::checkout::Target;
use crate::github::render::{self, ActionFailure};
use crate::jobs::deps::JobDeps;
use crate::jobs::noted;
use crate::jobs::spec::{JobSpec, ReconcileSpec, ReconcileTrigger};
use crate::registry::channels_source::{self, ChannelsSource, ReadChannels};
use crate::registry::reconcile;
use crate::worker::JobContext;

pub async fn run(deps: &JobDeps, ctx: &JobContext) -> anyhow::Result<Option<serde_json::Value>> {
    let job = &ctx.job;
    let spec = ReconcileSpec::from_job(job)?;
    let reporter = deps.reporter(&job.repo, spec.repo.installation_id).await?;
    // The default branch as GitHub says it is now: a delivery cannot name another.
    let default_branch = reporter.repository().await?.default_branch;
    if default_branch != spec.branch {
        ctx.log(
            "channels",
            &format!(
                "{} is not the default branch ({default_branch}) any more: nothing to reconcile",
                spec.branch
            ),
        )
        .await;
        return Ok(Some(json!({ "skipped": "not the default branch" })));
    }
    let workspace = deps
        .check_out(
            ctx,
            &reporter,
            &Target::Branch {
                name: default_branch.clone(),
            },
        )
        .await
        .with_context(|| format!("cannot check out {default_branch}"))?;
    let sha = workspace.sha.clone();
    let root = workspace.path.clone();
    let read = tokio::task::spawn_blocking(move || channels_source::read_dir(&root))
        .await
        .context("reading the channels died")?;
    if let Err(e) = workspace.remove() {
        tracing::warn!("cannot remove the job's workspace: {e:#}");
    }
    let ReadChannels {
        channels: file,
        diagnostics: diags,
        source,
    } = read?;
    let scheduled = spec.trigger == ReconcileTrigger::Schedule;
    if scheduled && source == ChannelsSource::Nowhere {
        ctx.log(
            "channels",
            &format!("{default_branch} at {sha} has no channels"),
        )
        .await;
        return Ok(Some(json!({ "sha": sha, "skipped": "no channels" })));
    }
    ctx.log(
        "channels",
        &format!("reconciling {source} of {default_branch} at {sha}"),
    )
    .await;
    let details = deps.details_url(job.id);
    if diags.error_count() > 0 {
        let problems: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        if scheduled {
            // The push that brought them was reported on its commit already.
            ctx.log(
                "channels",
                &format!(
                    "nothing reconciled, {source} has problems:\n{}",
                    problems.join("\n")
                ),
            )
            .await;
            return Ok(Some(json!({ "sha": sha, "skipped": "problems" })));
        }
        let progress = reporter
            .start_progress(render::RECONCILE_CHECK, &sha, details.as_deref(), None)
            .await?;
        let summary = format!(
            "### {source} has problems: nothing was reconciled\n\n{}",
            render::code_block("", &problems.join("\n"))
        );
        reporter
            .complete_progress(
                &progress,
                Conclusion::Failure,
                &format!("{} problem(s) in {source}", problems.len()),
                &summary,
                &[],
            )
            .await?;
        anyhow::bail!("{source} has problems:\n{}", problems.join("\n"));
    }
    let progress = if scheduled {
        None
    } else {
        Some(
            reporter
                .start_progress(render::RECONCILE_CHECK, &sha, details.as_deref(), None)
                .await?,
        )
    };

    let scope = super::registry_view::scope(deps).await?;
    let found = super::registry_view::repo_images(deps, &scope, &job.repo).await?;
    for skipped in &found.skipped {
        ctx.log("channels", &format!("not searched: {skipped}"))
            .await;
    }
    let (session, images) = (&scope.session, found.images);
    let repo = job.repo.as_str();
    let prefix = &deps.config.aws.ssm_prefix;
    let reads = reconcile::parameters_to_read(&file, &images, prefix, repo)?;
    let parameters = crate::aws::channels::read_parameters(session, &reads).await?;
    let plan = reconcile::reconcile(&file, &images, &parameters, prefix, repo)?;
    if scheduled && plan.actions.is_empty() {
        ctx.log(
            "channels",
            "every channel is where the default branch says: nothing to do",
        )
        .await;
        return Ok(Some(json!({ "sha": sha, "changes": 0 })));
    }
    let progress = match progress {
        Some(p) => p,
        None => {
            reporter
                .start_progress(render::RECONCILE_CHECK, &sha, details.as_deref(), None)
                .await?
        }
    };

    let mut failures = vec![];
    for action in &plan.actions {
        let line = serde_json::to_string(action).unwrap_or_default();
        match crate::aws::channels::apply(session, action, repo).await {
            Ok(()) => ctx.log("channels", &format!("done: {line}")).await,
            Err(e) => {
                let error = deps.redactor.redact(&format!("{e:#}"));
                ctx.log("channels", &format!("failed: {line}: {error}"))
                    .await;
                failures.push(ActionFailure {
                    action: action.clone(),
                    error,
                });
            }
        }
    }
    ctx.log(
        "channels",
        &format!(
            "{} move(s), {} revocation(s), {} refusal(s), {} of {} change(s) failed",
            plan.plan.moves.len(),
            plan.revocations.len(),
            plan.plan.refusals.len(),
            failures.len(),
            plan.actions.len()
        ),
    )
    .await;

    let conclusion = if failures.is_empty() && plan.plan.refusals.is_empty() {
        Conclusion::Success
    } else {
        Conclusion::Failure
    };
    reporter
        .complete_progress(
            &progress,
            conclusion,
            &render::reconcile_check_title(&plan, &failures),
            &render::reconcile_summary(&sha, &plan, &failures),
            &[],
        )
        .await?;
    for channel in plan.channels() {
        let refused = plan
            .plan
            .refusals
            .iter()
            .any(|r| reconcile::refused_channel(r) == channel);
        let failed = failures
            .iter()
            .any(|f| f.action.channel() == Some(channel.as_str()));
        let state = if refused || failed {
            DeploymentState::Failure
        } else {
            DeploymentState::Success
        };
        let moves: Vec<_> = plan
            .plan
            .moves
            .iter()
            .filter(|m| m.channel == channel)
            .collect();
        let deployed = reporter
            .deploy(
                &sha,
                &channel,
                &render::deployment_description(&channel, &plan),
                json!({ "moves": moves }),
                state,
                &render::deployment_status_description(&channel, &plan, &failures),
                details.as_deref(),
            )
            .await;
        noted(
            ctx,
            &format!("report the deployment to {channel}"),
            deployed,
        )
        .await;
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {} cloud change(s) failed; the next reconcile tries again",
        failures.len(),
        plan.actions.len()
    );
    Ok(Some(json!({
        "sha": sha,
        "moves": plan.plan.moves.len(),
        "revocations": plan.revocations.len(),
        "refusals": plan.plan.refusals.len(),
        "changes": plan.actions.len(),
    })))
}
