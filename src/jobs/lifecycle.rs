//! The server applies the lifecycle rules with the periodic janitor: for every
//! repository the store has jobs of (through the installation its newest delivery named),
//! the rules, channels and source pins of its default
//! branch (as GitHub names it, fetched into the repository's mirror with the
//! installation's token) are planned against the registry and applied
//! ([`crate::registry::retire`]). Each action goes into the log of the release job that
//! built the image, and into the server log.
//!
//! A repository that cannot be read (no installation, a checkout that fails, recipes or a
//! channels file with errors) is skipped with a warning; the others go on.
//!
//! Touches: GitHub (the repository's metadata and a fetch), a workspace under the work
//! directory (removed after), the cloud and the store through `registry::retire`.

use std::collections::BTreeMap;

use anyhow::Context;

use super::deps::JobDeps;
use crate::aws::AwsSession;
use crate::database::JobFilter;
use crate::github::git::checkout::Target;
use crate::registry::retire::{self, RetireOptions};

/// Runs the lifecycle rules of every repository seen. Returns the images retired.
pub async fn run_lifecycle(deps: &JobDeps) -> anyhow::Result<usize> {
    if deps.github.is_none() {
        return Ok(0);
    }
    // Each repository with the installation its newest delivery named: the App acts on a
    // repository only through its installation.
    let mut repos: BTreeMap<String, Option<(i64, i64)>> = BTreeMap::new();
    for job in deps.store.list_jobs(&JobFilter::default()).await? {
        let slot = repos.entry(job.repo.clone()).or_default();
        if let Some(installation) = job.payload["installation_id"].as_i64() {
            if slot.is_none_or(|(id, _)| job.id > id) {
                *slot = Some((job.id, installation));
            }
        }
    }
    if repos.is_empty() {
        return Ok(0);
    }
    let scope = super::registry_view::scope(deps).await?;
    let mut retired = 0;
    for (repo, newest) in repos {
        let installation = newest.map(|(_, installation)| installation);
        match one_repo(deps, &scope.session, &scope.targets, &repo, installation).await {
            Ok(n) => retired += n,
            Err(e) => tracing::warn!("lifecycle of {repo} skipped: {e:#}"),
        }
    }
    Ok(retired)
}

async fn one_repo(
    deps: &JobDeps,
    session: &AwsSession,
    targets: &[crate::aws::Target],
    repo: &str,
    installation: Option<i64>,
) -> anyhow::Result<usize> {
    let reporter = deps.reporter(repo, installation).await?;
    let info = reporter.repository().await?;
    let token = reporter.session().await?;
    let workspace = deps
        .checkouts
        .checkout(
            reporter.repo(),
            &info.clone_url,
            Some(token.git_token()),
            &Target::Branch {
                name: info.default_branch.clone(),
            },
            &format!("lifecycle-{repo}"),
        )
        .await?;
    let root = workspace.path.clone();
    let lifecycle = tokio::task::spawn_blocking(move || retire::read_checkout(&root))
        .await
        .context("reading the default branch died")?;
    if let Err(e) = workspace.remove() {
        tracing::warn!("cannot remove the lifecycle checkout of {repo}: {e:#}");
    }
    let lifecycle = lifecycle?;
    let report = retire::run(
        session,
        deps.store.as_ref(),
        targets,
        Some(repo),
        &lifecycle,
        &RetireOptions {
            dry_run: false,
            now: chrono::Utc::now(),
            ssm_prefix: deps.config.aws.ssm_prefix.clone(),
        },
    )
    .await?;
    for s in &report.skipped {
        tracing::warn!("lifecycle of {repo}: nothing applied, {s} could not be searched");
    }
    Ok(report
        .entries
        .iter()
        .flat_map(|e| &e.results)
        .filter(|c| {
            matches!(
                c.result,
                Some(
                    crate::aws::retire::Retired::Deprecated { .. }
                        | crate::aws::retire::Retired::Deregistered { .. }
                )
            )
        })
        .count())
}
