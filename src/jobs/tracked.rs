//! One recipe's build as GitHub shows it: a check run `bakery/<recipe>` with a live step
//! summary, the job's log, and a failure report naming the failing step and its last
//! lines. Release builds and pull-request validation builds both run through here.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::deps::JobDeps;
use super::progress::StepTracker;
use super::JobLogSink;
use crate::aws::AwsSession;
use crate::build::liveness::Liveness;
use crate::build::{
    BuildLog, BuildOptions, BuildOutcome, BuildRequest, HandedOver, LogSink, StepFailed,
};
use crate::github::api::reporter::{Conclusion, Progress};
use crate::github::render::{self, BuildFailure};
use crate::github::GitHubReporter;
use crate::plan::model::{BuildPlan, ProvisionStep};
use crate::policy::BuildTimeLimit;
use crate::provision::ProvisionStepFailed;
use crate::worker::JobContext;

/// How often the check run's live step summary is refreshed while a build runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A build in progress under its check run.
pub struct TrackedBuild {
    /// Reports on the build's commit.
    reporter: GitHubReporter,
    pub progress: Progress,
    pub tracker: StepTracker,
    pub job_log: Arc<JobLogSink>,
    pub log: BuildLog,
    pub started: Instant,
    pub details_url: Option<String>,
    stop_updates: CancellationToken,
    updates: tokio::task::JoinHandle<()>,
}

/// How a tracked build ended.
pub struct Finished {
    pub result: anyhow::Result<BuildOutcome>,
    /// The session the build used, to act on its images afterwards.
    pub session: Option<Arc<AwsSession>>,
    /// The step running when the build ended, e.g. `provision: Install tools`.
    pub running_step: String,
}

impl TrackedBuild {
    /// Starts the check run and the live summary.
    pub async fn start(
        deps: &JobDeps,
        ctx: &JobContext,
        reporter: &GitHubReporter,
        plan: &BuildPlan,
        title: String,
    ) -> anyhow::Result<Self> {
        let job = &ctx.job;
        let details_url = deps.details_url(job.id);
        let progress = reporter
            .start_progress(
                &format!("bakery/{}", plan.recipe),
                &plan.git_sha,
                details_url.as_deref(),
                Some(&job.id.to_string()),
            )
            .await?;
        let tracker = StepTracker::new();
        // The job log also writes the lines it keeps to the process log: a build that
        // floods its output fills neither.
        let job_log = JobLogSink::start(deps.store.clone(), job.id, (&deps.config.logs).into());
        let sinks: Vec<Arc<dyn LogSink>> = vec![job_log.clone(), Arc::new(tracker.clone())];
        let log = BuildLog::new(deps.redactor.clone(), sinks);
        let stop_updates = CancellationToken::new();
        let updates = tokio::spawn(live_summary(
            reporter.clone(),
            progress.clone(),
            tracker.clone(),
            title,
            stop_updates.clone(),
        ));
        Ok(TrackedBuild {
            reporter: reporter.clone(),
            progress,
            tracker,
            job_log,
            log,
            started: Instant::now(),
            details_url,
            stop_updates,
            updates,
        })
    }

    /// Runs the build and stops the live summary.
    pub async fn run(
        &self,
        deps: &JobDeps,
        ctx: &JobContext,
        plan: &BuildPlan,
        root: &Path,
    ) -> Finished {
        let mut session = None;
        let result = async {
            // The operator's policy, before anything is launched: a plan outside it is
            // refused naming the policy key; a pull request's plan is held to its profile.
            let mut plan = plan.clone();
            let profile = deps.config.policy.apply(&ctx.job.repo, &mut plan)?;
            if !profile.dropped_copies.is_empty() || profile.dropped_launch_permissions {
                ctx.log(
                    "plan",
                    &format!(
                        "pull-request profile: copies to {:?} and launch permissions dropped",
                        profile.dropped_copies
                    ),
                )
                .await;
            }
            // The operator's limit on the whole build: past it, the build is stopped the
            // way a cancel stops it (everything it made is cleaned up) and fails.
            let limit = deps.config.policy.for_repo(&ctx.job.repo).max_build_secs;
            let cancel = ctx.cancel.child_token();
            let timer = {
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(limit)).await;
                    cancel.cancel();
                })
            };
            let built = deps
                .engine
                .build(BuildRequest {
                    plan: cap_step_timeouts(
                        plan,
                        deps.config.workers.max_step_timeout_secs,
                        &self.log,
                    ),
                    log: self.log.clone(),
                    options: BuildOptions {
                        repo_root: root.to_path_buf(),
                        job_id: Some(ctx.job.id),
                        cancel: cancel.clone(),
                        hand_over: ctx.hand_over.clone(),
                        liveness: Liveness::stale_after(Duration::from_secs(
                            deps.config.workers.build_stale_secs,
                        )),
                        ssm_prefix: deps.config.aws.ssm_prefix.clone(),
                        budgets: deps.config.aws.budgets,
                        ..BuildOptions::default()
                    },
                })
                .await;
            session = built.session;
            let result = built.result;
            timer.abort();
            if cancel.is_cancelled() && !ctx.cancel.is_cancelled() && result.is_err() {
                // The time limit stopped it (cleanup has run): a failure, not a cancel.
                return Err(anyhow::Error::new(BuildTimeLimit { secs: limit }));
            }
            result
        }
        .await;
        self.stop_updates.cancel();
        Finished {
            result,
            session,
            running_step: self.tracker.current(),
        }
    }

    /// Marks the steps done (or the running one failed), flushes the job log, and returns
    /// the step summary as Markdown.
    pub async fn finish(&mut self, success: bool) -> String {
        self.stop_updates.cancel();
        let _ = (&mut self.updates).await;
        self.tracker.finish(success);
        self.job_log.flush().await;
        let (rows, _) = self.tracker.snapshot();
        render::progress_summary(&rows)
    }

    /// Completes the check run as failed (or cancelled) with the error, and returns the
    /// failure report for a comment.
    pub async fn report_failure(
        &self,
        deps: &JobDeps,
        ctx: &JobContext,
        plan: &BuildPlan,
        e: &anyhow::Error,
        running_step: String,
        steps: &str,
    ) -> BuildFailure {
        let error = deps.redactor.redact(&format!("{e:#}"));
        let step = failing_step(e, running_step);
        let (conclusion, title) = if ctx.cancel.is_cancelled() {
            (Conclusion::Cancelled, render::failed_title(&step, true))
        } else {
            (Conclusion::Failure, render::failed_title(&step, false))
        };
        super::noted(
            ctx,
            &format!("complete check run {}", self.progress.name),
            self.reporter
                .complete_progress(
                    &self.progress,
                    conclusion,
                    &title,
                    &render::failed_summary(steps, &error),
                    &[],
                )
                .await,
        )
        .await;
        let step_log = step
            .strip_prefix("provision: ")
            .unwrap_or(&step)
            .to_string();
        BuildFailure {
            version: plan.version.clone(),
            git_sha: plan.git_sha.clone(),
            recipe: plan.recipe.clone(),
            log_tail: self.job_log.tail(&step_log),
            step,
            error,
            duration: self.started.elapsed(),
            details_url: self.details_url.clone(),
            cleanup: Some(cleanup_summary(&self.job_log)),
        }
    }
}

/// Lowers every step timeout above the server's maximum to it, saying so in the log: a
/// recipe cannot keep a builder (and a worker) busy for longer than the server allows.
pub fn cap_step_timeouts(mut plan: BuildPlan, max_secs: u64, log: &BuildLog) -> BuildPlan {
    for step in &mut plan.provision {
        let (name, timeout) = match step {
            ProvisionStep::Shell(s) => (&s.name, &mut s.timeout_secs),
            ProvisionStep::Ansible(s) => (&s.name, &mut s.timeout_secs),
            ProvisionStep::File(_) => continue,
        };
        if *timeout > max_secs {
            log.info(
                "plan",
                format!(
                    "step `{name}`: timeout lowered from {} to the server's maximum of {}",
                    humantime::format_duration(Duration::from_secs(*timeout)),
                    humantime::format_duration(Duration::from_secs(max_secs))
                ),
            );
            *timeout = max_secs;
        }
    }
    plan
}

/// Whether a build stopped to be handed over (shutdown, a lost lease): its check run stays
/// open for the next attempt to take over, and nothing is reported as failed.
pub fn handed_over(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<HandedOver>())
}

/// The step a build failed in, from the typed contexts of its error ([`StepFailed`], then
/// [`ProvisionStepFailed`] inside the provision step), e.g. `provision: Install the agent`;
/// `fallback` when the error names none.
pub fn failing_step(e: &anyhow::Error, fallback: String) -> String {
    let top = e.downcast_ref::<StepFailed>().map(|s| s.step);
    let inner = e
        .downcast_ref::<ProvisionStepFailed>()
        .map(|p| p.name.as_str());
    match (top, inner) {
        (Some(t), Some(i)) => format!("{t}: {i}"),
        (Some(t), None) => t.to_string(),
        (None, _) => fallback,
    }
}

/// What cleanup reported in the log.
fn cleanup_summary(log: &JobLogSink) -> String {
    let lines = log.tail("cleanup");
    if lines.is_empty() {
        "nothing was left to clean up".to_string()
    } else {
        lines.join("; ")
    }
}

/// Pushes the live step summary to the check run while the build runs.
async fn live_summary(
    reporter: GitHubReporter,
    progress: Progress,
    tracker: StepTracker,
    title: String,
    stop: CancellationToken,
) {
    loop {
        let (rows, changed) = tracker.snapshot();
        if changed {
            if let Err(e) = reporter
                .update_progress(&progress, &title, &render::progress_summary(&rows))
                .await
            {
                tracing::warn!("cannot update {}: {e:#}", progress.name);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PROGRESS_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::log::MemorySink;
    use crate::plan::{plan_build, PlanInput};
    use crate::recipe::variables::VarOverrides;
    use crate::recipe::{check_sources, RecipeSource};

    /// A recipe asks for a 5-hour step; the server allows 2 hours: the step gets 2, the
    /// log says so, and a step within the limit keeps its own.
    #[test]
    fn step_timeouts_never_exceed_the_servers_maximum() {
        let recipe = r#"
[source]
ami = "ami-0123456789abcdef0"

[builder]
ssh_user = "ubuntu"

[[provision]]
type = "shell"
name = "Long"
inline = ["sleep 1"]
timeout = "5h"

[[provision]]
type = "shell"
name = "Short"
inline = ["true"]
timeout = "10m"

[image]
name = "x-{{ version }}"

[distribute]
regions = ["us-east-1"]
kms_key = "alias/ami"
"#;
        let checked = check_sources(
            Some("[defaults]\nregion = \"us-east-1\"\n"),
            &[RecipeSource::new("x", recipe)],
        );
        assert!(checked.is_ok(), "{}", checked.diagnostics);
        let vars = VarOverrides::default();
        let plan = plan_build(
            &checked.set,
            &PlanInput {
                recipe: "x",
                version: "release-1",
                git_sha: "0123456789abcdef0123456789abcdef01234567",
                build_time: chrono::Utc::now(),
                vars: &vars,
                ephemeral: false,
            },
        )
        .unwrap();
        let sink = Arc::new(MemorySink::default());
        let log = BuildLog::new(crate::redact::Redactor::new(), vec![sink.clone()]);
        let capped = cap_step_timeouts(plan, 7200, &log);
        let timeouts: Vec<u64> = capped
            .provision
            .iter()
            .map(|s| match s {
                ProvisionStep::Shell(s) => s.timeout_secs,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(timeouts, vec![7200, 600]);
        assert_eq!(
            sink.text(),
            "step `Long`: timeout lowered from 5h to the server's maximum of 2h\n"
        );
    }

    #[test]
    fn names_the_provisioning_step_from_the_error_chain() {
        let e = anyhow::anyhow!("`exit 3` exited with status 3")
            .context(ProvisionStepFailed {
                name: "Install the agent".into(),
                kind: "shell",
            })
            .context(StepFailed { step: "provision" });
        assert_eq!(failing_step(&e, "x".into()), "provision: Install the agent");
        let e = anyhow::anyhow!("no such key").context(StepFailed { step: "preflight" });
        assert_eq!(failing_step(&e, "x".into()), "preflight");
        // A message that merely reads like a step failure names nothing.
        let e = anyhow::anyhow!("step provision failed");
        assert_eq!(failing_step(&e, "setup".into()), "setup");
        assert_eq!(
            failing_step(&anyhow::anyhow!("boom"), "setup".into()),
            "setup"
        );
    }
}
