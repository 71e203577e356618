//! A release's qemu builder: a recipe's `[qemu]` section built on the bot by the release
//! job, under its own check run `bakery/<recipe>/qemu`, with the same provisioning steps,
//! stamp, verify and seal as its EC2 builder (`crate::qemu::build`). The artifacts land in
//! the operator's artifact directory (`[artifacts] dir`); those up to
//! `artifacts.max_upload_bytes` are marked for upload to the GitHub Release, the others
//! are listed with where they are stored.
//!
//! Touches what the qemu build touches (its work folder, its QEMU process, the recipe's
//! artifact folder), the job log and the check run. A failed or cancelled build leaves no
//! QEMU and no partial artifact (`crate::qemu::build`, `crate::qemu::work`); after a crash,
//! the retried job builds the disk images again unless they are complete
//! ([`build_unless_complete`]), and that build first clears what the dead one left.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::deps::JobDeps;
use super::noted;
use super::JobLogSink;
use crate::build::{BuildLog, LogSink};
use crate::config::ArtifactsConfig;
use crate::github::api::reporter::Conclusion;
use crate::github::publish::{publish_failure, ReleaseFile};
use crate::github::render::{self, ArtifactPlace, ArtifactRow, BuildFailure, DiskBuild};
use crate::github::GitHubReporter;
use crate::plan::{plan_steps, PlanInput};
use crate::policy::BuildTimeLimit;
use crate::qemu::build::{QemuBuildOptions, QemuOutcome};
use crate::qemu::plan::QemuPlan;
use crate::recipe::variables::VarOverrides;
use crate::recipe::RecipeSet;
use crate::worker::JobContext;

/// Why a release did not build a recipe's qemu builder.
#[derive(Debug, thiserror::Error)]
pub enum QemuRefusal {
    #[error(
        "recipe {recipe} has a [qemu] builder, but this bot has no artifact directory: \
         its operator sets artifacts.dir (BAKERY_ARTIFACTS__DIR) to build disk images"
    )]
    NoArtifactDir { recipe: String },
}

/// A built qemu builder: what the reports show, and the files to upload.
#[derive(Debug, Clone)]
pub struct DiskBuilt {
    pub disk: DiskBuild,
    pub uploads: Vec<ReleaseFile>,
}

/// Where one artifact is listed: uploaded when it is small enough, else at the
/// operator's URL for the artifact directory, else at its path on the bot.
pub fn place(config: &ArtifactsConfig, root: &Path, path: &Path, size: u64) -> ArtifactPlace {
    if config.max_upload_bytes > 0 && size <= config.max_upload_bytes {
        return ArtifactPlace::ReleaseAsset;
    }
    match (&config.base_url, path.strip_prefix(root)) {
        (Some(base), Ok(rel)) => {
            let rel: Vec<String> = rel
                .components()
                .map(|c| url_segment(&c.as_os_str().to_string_lossy()))
                .collect();
            ArtifactPlace::Url {
                url: format!("{}/{}", base.trim_end_matches('/'), rel.join("/")),
            }
        }
        _ => ArtifactPlace::Path {
            path: path.display().to_string(),
        },
    }
}

/// One path segment of a URL, percent-encoded (unreserved characters kept).
fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The reports' rows of a finished qemu build, and the files to upload.
pub fn disk_built(
    config: &ArtifactsConfig,
    root: &Path,
    recipe: &str,
    outcome: &QemuOutcome,
    duration: Duration,
) -> DiskBuilt {
    let mut uploads = Vec::new();
    let artifacts = outcome
        .artifacts
        .iter()
        .map(|a| {
            let name = a
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let place = place(config, root, &a.path, a.size);
            if place == ArtifactPlace::ReleaseAsset {
                uploads.push(ReleaseFile {
                    name: name.clone(),
                    path: a.path.clone(),
                });
            }
            ArtifactRow {
                recipe: recipe.to_string(),
                name,
                format: a.format.extension().to_string(),
                size: a.size,
                sha256: a.sha256.clone(),
                place,
            }
        })
        .collect();
    DiskBuilt {
        disk: DiskBuild {
            recipe: recipe.to_string(),
            accelerator: outcome.accel.name().to_string(),
            release_file: outcome.release_file.clone(),
            duration,
            artifacts,
        },
        uploads,
    }
}

/// The tag's version, commit and build time a release builds with.
pub struct ReleaseInput<'a> {
    pub set: &'a RecipeSet,
    pub recipe: &'a str,
    pub version: &'a str,
    pub git_sha: &'a str,
    pub build_time: chrono::DateTime<chrono::Utc>,
    pub root: &'a Path,
}

impl ReleaseInput<'_> {
    /// The recipe's `[qemu]` builder, if it has one.
    fn qemu_spec(&self) -> Option<&crate::recipe::qemu::QemuSpec> {
        self.set
            .recipes
            .get(self.recipe)
            .and_then(|r| r.qemu.as_ref())
    }
}

/// Builds `input.recipe`'s qemu builder under its check run and reports a failure on the
/// commit. `Ok(None)` when the recipe has no qemu builder.
pub async fn build(
    deps: &JobDeps,
    ctx: &JobContext,
    reporter: &GitHubReporter,
    input: &ReleaseInput<'_>,
) -> anyhow::Result<Option<DiskBuilt>> {
    let Some(spec) = input.qemu_spec() else {
        return Ok(None);
    };
    let plan = QemuPlan::from_spec(spec, input.recipe, input.version);
    let started = Instant::now();
    let details_url = deps.details_url(ctx.job.id);
    let progress = reporter
        .start_progress(
            &render::qemu_check_name(input.recipe),
            input.git_sha,
            details_url.as_deref(),
            Some(&ctx.job.id.to_string()),
        )
        .await?;
    let job_log = JobLogSink::start(deps.store.clone(), ctx.job.id, (&deps.config.logs).into());
    let log = BuildLog::new(
        deps.redactor.clone(),
        vec![job_log.clone() as Arc<dyn LogSink>],
    );
    let result = run(deps, ctx, input, &plan, log).await;
    job_log.flush().await;
    match result {
        Ok((outcome, root)) => {
            let built = disk_built(
                &deps.config.artifacts,
                &root,
                input.recipe,
                &outcome,
                started.elapsed(),
            );
            reporter
                .complete_progress(
                    &progress,
                    Conclusion::Success,
                    &render::qemu_built_title(input.recipe, input.version),
                    &render::artifact_table(std::slice::from_ref(&built.disk)),
                    &[],
                )
                .await?;
            Ok(Some(built))
        }
        Err(e) => {
            let error = deps.redactor.redact(&format!("{e:#}"));
            let cancelled =
                ctx.cancel.is_cancelled() && e.downcast_ref::<BuildTimeLimit>().is_none();
            let (title, summary) = render::qemu_failed(input.recipe, input.version, &error);
            noted(
                ctx,
                &format!("complete check run {}", progress.name),
                reporter
                    .complete_progress(
                        &progress,
                        if cancelled {
                            Conclusion::Cancelled
                        } else {
                            Conclusion::Failure
                        },
                        &title,
                        &summary,
                        &[],
                    )
                    .await,
            )
            .await;
            if !cancelled {
                let failure = BuildFailure {
                    version: input.version.to_string(),
                    git_sha: input.git_sha.to_string(),
                    recipe: input.recipe.to_string(),
                    step: "qemu builder".into(),
                    error,
                    log_tail: Vec::new(),
                    duration: started.elapsed(),
                    details_url,
                    cleanup: Some(
                        "the VM was stopped and its work folder and unfinished files removed"
                            .into(),
                    ),
                };
                noted(
                    ctx,
                    &format!("comment on commit {} with the failure", input.git_sha),
                    publish_failure(reporter, &failure, &deps.redactor).await,
                )
                .await;
            }
            Err(e)
        }
    }
}

/// A recipe's qemu builder on a rerun of a tag whose EC2 builder was released before (a
/// retried job, after a crash or a failed qemu build): built again unless every disk image
/// it lists is complete in the artifact directory. `Ok(None)` when there is nothing to
/// build.
pub async fn build_unless_complete(
    deps: &JobDeps,
    ctx: &JobContext,
    reporter: &GitHubReporter,
    input: &ReleaseInput<'_>,
) -> anyhow::Result<Option<DiskBuilt>> {
    let Some(spec) = input.qemu_spec() else {
        return Ok(None);
    };
    if let Some(root) = &deps.config.artifacts.dir {
        let plan = QemuPlan::from_spec(spec, input.recipe, input.version);
        if crate::qemu::export::all_complete(&plan, root) {
            ctx.log(
                "qemu",
                &format!(
                    "the disk images of {} {} are complete in {}: not built again",
                    input.recipe,
                    input.version,
                    plan.artifact_dir(root).display()
                ),
            )
            .await;
            return Ok(None);
        }
    }
    build(deps, ctx, reporter, input).await
}

/// The build itself, stopped by a cancel, a hand-over or the operator's time limit.
async fn run(
    deps: &JobDeps,
    ctx: &JobContext,
    input: &ReleaseInput<'_>,
    plan: &QemuPlan,
    log: BuildLog,
) -> anyhow::Result<(QemuOutcome, PathBuf)> {
    let root = deps
        .config
        .artifacts
        .dir
        .clone()
        .ok_or_else(|| QemuRefusal::NoArtifactDir {
            recipe: input.recipe.to_string(),
        })?;
    let steps = plan_steps(
        input.set,
        &PlanInput {
            recipe: input.recipe,
            version: input.version,
            git_sha: input.git_sha,
            build_time: input.build_time,
            vars: &VarOverrides::default(),
            ephemeral: false,
        },
    )?;
    let mut options = QemuBuildOptions::new(input.root.to_path_buf(), root.clone(), log);
    options.cancel = ctx.cancel.child_token();
    options.kvm = deps.config.artifacts.kvm;
    let limit = deps.config.policy.for_repo(&ctx.job.repo).max_build_secs;
    let timer = {
        let cancel = options.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(limit)).await;
            cancel.cancel();
        })
    };
    let result = crate::qemu::build::build(plan, &steps, &options).await;
    timer.abort();
    if options.cancel.is_cancelled() && !ctx.cancel.is_cancelled() && result.is_err() {
        return Err(anyhow::Error::new(BuildTimeLimit { secs: limit }));
    }
    Ok((result?, root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_are_uploaded_big_ones_listed_where_they_are() {
        let root = Path::new("/srv/artifacts");
        let file = root.join("deb/deb-v1 rc/deb-v1 rc.raw");
        let mut c = ArtifactsConfig {
            dir: Some(root.to_path_buf()),
            max_upload_bytes: 100,
            ..ArtifactsConfig::default()
        };
        assert_eq!(place(&c, root, &file, 100), ArtifactPlace::ReleaseAsset);
        assert_eq!(
            place(&c, root, &file, 101),
            ArtifactPlace::Path {
                path: "/srv/artifacts/deb/deb-v1 rc/deb-v1 rc.raw".into()
            }
        );
        c.base_url = Some("https://images.example.com/a/".into());
        assert_eq!(
            place(&c, root, &file, 101),
            ArtifactPlace::Url {
                url: "https://images.example.com/a/deb/deb-v1%20rc/deb-v1%20rc.raw".into()
            }
        );
        c.max_upload_bytes = 0;
        assert!(matches!(
            place(&c, root, &file, 1),
            ArtifactPlace::Url { .. }
        ));
    }
}
