//! Work the server does on a timer: `sync` (release tags whose delivery was lost), the
//! janitor (leftover cloud resources of finished, failed, unknown or stopped builds, then
//! the lifecycle rules of every repository's releases: `jobs/lifecycle.rs`, then a
//! scheduled reconcile of every repository that has channels: `jobs/reconcile.rs`), and
//! log retention (the logs of jobs finished longer ago than `logs.retention_days`). Every
//! replica keeps the timers; each interval's run is claimed in the store, so one replica
//! runs it, not every one.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::deps::JobDeps;
use crate::aws::janitor::{self, JanitorOptions};
use crate::aws::AwsSession;
use crate::database::JobFilter;
use crate::github::sync::sync_repo;
use crate::github::RepoName;

/// Leftovers younger than this are never touched: their build may still be running.
const DEFAULT_JANITOR_TTL: Duration = Duration::from_secs(6 * 60 * 60);

/// How often old job logs are deleted.
const LOG_RETENTION_EVERY: Duration = Duration::from_secs(60 * 60);

/// Starts the timers configured in `deps.config`; they stop with `shutdown`.
pub fn spawn(deps: Arc<JobDeps>, job_queued: Arc<Notify>, shutdown: CancellationToken) {
    let sync_every = deps.config.github.sync_interval_secs;
    if sync_every > 0 && deps.github.is_some() {
        let (deps, job_queued, shutdown) = (deps.clone(), job_queued.clone(), shutdown.clone());
        tokio::spawn(async move {
            let period = Duration::from_secs(sync_every);
            every(period, &shutdown, || async {
                if !claimed(&deps, "sync", period).await {
                    return;
                }
                match sync_seen_repos(&deps).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!("sync enqueued {n} release job(s) for tags without one");
                        job_queued.notify_waiters();
                    }
                    Err(e) => tracing::warn!("periodic sync failed: {e:#}"),
                }
            })
            .await
        });
    }
    if deps.config.logs.retention_days > 0 {
        let (deps, shutdown) = (deps.clone(), shutdown.clone());
        tokio::spawn(async move {
            every(LOG_RETENTION_EVERY, &shutdown, || async {
                match prune_logs(&deps, chrono::Utc::now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("deleted {n} log line(s) of old finished jobs"),
                    Err(e) => tracing::warn!("log retention failed: {e:#}"),
                }
            })
            .await
        });
    }
    let janitor_every = deps.config.aws.janitor_interval_secs;
    if janitor_every > 0 {
        let job_queued = job_queued.clone();
        tokio::spawn(async move {
            let period = Duration::from_secs(janitor_every);
            every(period, &shutdown, || async {
                if !claimed(&deps, "janitor", period).await {
                    return;
                }
                if let Err(e) = run_janitor(&deps).await {
                    tracing::warn!("periodic janitor failed: {e:#}");
                }
                match super::lifecycle::run_lifecycle(&deps).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("lifecycle rules retired {n} image(s)"),
                    Err(e) => tracing::warn!("periodic lifecycle failed: {e:#}"),
                }
                match enqueue_scheduled_reconciles(&deps, period, chrono::Utc::now()).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::debug!("enqueued {n} scheduled reconcile(s)");
                        job_queued.notify_waiters();
                    }
                    Err(e) => tracing::warn!("scheduled reconcile failed: {e:#}"),
                }
            })
            .await
        });
    }
}

/// Whether this replica runs this interval's `task`: one replica per interval does.
async fn claimed(deps: &JobDeps, task: &str, period: Duration) -> bool {
    match deps
        .store
        .claim_periodic(task, &runner_name(), period)
        .await
    {
        Ok(true) => {
            tracing::debug!("periodic {task}: this replica runs it");
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!("periodic {task} skipped: {e:#}");
            false
        }
    }
}

fn runner_name() -> String {
    format!(
        "{}-{}",
        crate::build::journal::hostname(),
        std::process::id()
    )
}

async fn every<F, Fut>(period: Duration, shutdown: &CancellationToken, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        work().await;
    }
}

/// Syncs every repository the store has seen a job for. A repository's first sync
/// records its tags as history and enqueues nothing (see [`crate::github::sync`]).
/// Returns how many jobs were enqueued.
pub async fn sync_seen_repos(deps: &JobDeps) -> anyhow::Result<usize> {
    let client = deps.github()?;
    let repos: BTreeSet<String> = deps
        .store
        .list_jobs(&JobFilter::default())
        .await?
        .into_iter()
        .map(|j| j.repo)
        .collect();
    let mut enqueued = 0;
    for repo in repos {
        let name = RepoName::parse(&repo)?;
        let report = sync_repo(
            deps.store.as_ref(),
            client,
            &name,
            &deps.config.webhook.tag_patterns,
            deps.config.github.sync_floor().as_ref(),
            false,
        )
        .await?;
        enqueued += report.enqueued.len();
    }
    Ok(enqueued)
}

/// Enqueues one scheduled reconcile per repository whose default branch has reconciled
/// channels before (a repository without channels never gets one), for the interval of
/// `period` that `now` falls in. The job reconciles the branch's head as GitHub serves it
/// (see `jobs/reconcile.rs`); the spec repeats what the last push's job recorded.
/// Returns how many jobs were new.
pub async fn enqueue_scheduled_reconciles(
    deps: &JobDeps,
    period: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<usize> {
    use crate::database::{JobKind, NewJob};
    use crate::jobs::spec::{
        scheduled_reconcile_dedup_key, JobSpec, ReconcileSpec, ReconcileTrigger,
    };

    let interval = now.timestamp().max(0) as u64 / period.as_secs().max(1);
    let mut latest = std::collections::BTreeMap::new();
    let jobs = deps
        .store
        .list_jobs(&JobFilter {
            kind: Some(JobKind::Reconcile),
            ..JobFilter::default()
        })
        .await?;
    for job in jobs {
        let Ok(spec) = ReconcileSpec::from_job(&job) else {
            continue;
        };
        if spec.trigger != ReconcileTrigger::Push {
            continue;
        }
        match latest.get(&job.repo) {
            Some((id, _, _)) if *id >= job.id => {}
            _ => {
                latest.insert(job.repo.clone(), (job.id, job.sha.clone(), spec));
            }
        }
    }
    let mut enqueued = 0;
    for (repo, (_, sha, spec)) in latest {
        let spec = ReconcileSpec {
            trigger: ReconcileTrigger::Schedule,
            ..spec
        };
        let new = NewJob {
            kind: JobKind::Reconcile,
            repo: repo.clone(),
            git_ref: format!("refs/heads/{}", spec.branch),
            sha,
            pr_number: None,
            dedup_key: scheduled_reconcile_dedup_key(&repo, interval),
            payload: spec.to_payload(),
        };
        if deps.store.enqueue_job(&new).await?.is_some() {
            enqueued += 1;
        }
    }
    Ok(enqueued)
}

/// Deletes the logs of jobs that finished more than `logs.retention_days` before `now`.
/// Returns the lines deleted.
pub async fn prune_logs(deps: &JobDeps, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<u64> {
    let days = deps.config.logs.retention_days;
    if days == 0 {
        return Ok(0);
    }
    let cutoff = now - chrono::Duration::days(days.min(100 * 365) as i64);
    deps.store.delete_finished_job_logs(cutoff).await
}

/// Runs the janitor over every account and region the store's builds used.
pub async fn run_janitor(deps: &JobDeps) -> anyhow::Result<()> {
    let builds = deps.store.list_builds(&Default::default()).await?;
    let Some(first) = builds.first() else {
        return Ok(());
    };
    let home_region = serde_json::from_value::<crate::plan::model::BuildPlan>(first.plan.clone())
        .map(|p| p.builder.region)
        .unwrap_or_else(|_| "us-east-1".into());
    let ttl = match &deps.config.aws.janitor_ttl {
        Some(t) => humantime::parse_duration(t)
            .map_err(|e| anyhow::anyhow!("aws.janitor_ttl {t:?}: {e}"))?,
        None => DEFAULT_JANITOR_TTL,
    };
    let session = AwsSession::connect(deps.aws.clone(), &home_region).await?;
    let targets = janitor::scope_from_store(&session, deps.store.as_ref(), &[]).await?;
    let report = janitor::run(
        &session,
        deps.store.as_ref(),
        &targets,
        &JanitorOptions {
            ttl,
            dry_run: false,
            now: chrono::Utc::now(),
        },
    )
    .await?;
    let deleted = report.to_delete().count();
    if deleted > 0 {
        tracing::info!("janitor deleted {deleted} leftover resource(s)");
    }
    for skipped in &report.skipped {
        tracing::warn!("janitor skipped {skipped}");
    }
    for f in report.findings.iter().filter(|f| f.error.is_some()) {
        tracing::warn!(
            "janitor could not delete {} in {}: {}",
            f.id,
            f.target,
            f.error.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}
