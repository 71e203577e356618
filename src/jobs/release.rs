//! A release job: check out the tagged commit, build every recipe the tag asks for (each
//! after the recipe it starts from; its EC2 builder, then its `[qemu]` builder in
//! `release_qemu.rs`), and report on the commit: a check run per builder with a live step
//! summary, a comment with every image and disk image, and the GitHub Release.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::deps::JobDeps;
use super::noted;
use super::spec::{release_dedup_key, JobSpec, ReleaseSpec};
use super::tracked::TrackedBuild;
use crate::aws::release::MovedTag;
use crate::build::{BuildOutcome, Manifest};
use crate::database::ResolvedCommit;
use crate::github::api::reporter::Conclusion;
use crate::github::git::checkout::{CheckoutRefusal, Target, Workspace};
use crate::github::publish::{publish_failure, publish_release_with_files};
use crate::github::render::{self, BuildSummary, ImageRow, RecipeOutcome};
use crate::github::GitHubReporter;
use crate::plan::model::{BuildFacts, BuildPlan};
use crate::plan::{plan_build, PlanInput};
use crate::provenance::attach::{attach, Origin, Signed};
use crate::recipe::variables::VarOverrides;
use crate::recipe::Checked;
use crate::worker::JobContext;

pub async fn run(deps: &JobDeps, ctx: &JobContext) -> anyhow::Result<Option<serde_json::Value>> {
    let job = &ctx.job;
    let spec = ReleaseSpec::from_job(job)?;
    let reporter = match deps.reporter(&job.repo, spec.repo.installation_id).await {
        Ok(r) => r,
        Err(e) => {
            // Nothing can be reported on GitHub without a reporter: say it here.
            ctx.log(
                "report",
                &format!(
                    "cannot report on GitHub: {}",
                    deps.redactor.redact(&format!("{e:#}"))
                ),
            )
            .await;
            return Err(e);
        }
    };
    let result = attempt(deps, ctx, &reporter, &spec).await;
    match &result {
        // The next owner resumes the build and its check runs.
        Err(e) if super::tracked::handed_over(e) => {}
        _ => close_abandoned(deps, ctx, &reporter, &spec.tag, &result).await,
    }
    result
}

/// Concludes every check run an earlier attempt of this job left open (that attempt
/// stopped) and this attempt did not take over: a recipe this attempt never reached
/// would otherwise show in progress for ever.
async fn close_abandoned(
    deps: &JobDeps,
    ctx: &JobContext,
    reporter: &GitHubReporter,
    tag: &str,
    result: &anyhow::Result<Option<serde_json::Value>>,
) {
    let job = &ctx.job;
    // The commit, as recorded on the job (a `create` job records it once peeled).
    let commit = match deps.store.get_job(job.id).await {
        Ok(Some(stored)) if !stored.sha.is_empty() => stored.sha,
        _ if !job.sha.is_empty() => job.sha.clone(),
        _ => return,
    };
    let what = format!("list the open check runs of job {} on {commit}", job.id);
    let Some(open) = noted(
        ctx,
        &what,
        reporter.open_check_runs(&commit, &job.id.to_string()).await,
    )
    .await
    else {
        return;
    };
    let failure = match result {
        Ok(_) => None,
        Err(e) => Some(
            deps.redactor
                .redact(&format!("{e}"))
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
    };
    for progress in open {
        let (title, summary) = render::abandoned_check_run(tag, &progress.name, failure.as_deref());
        ctx.log(
            "report",
            &format!(
                "concluding {} left open by an earlier attempt",
                progress.name
            ),
        )
        .await;
        noted(
            ctx,
            &format!("complete check run {}", progress.name),
            reporter
                .complete_progress(&progress, Conclusion::Cancelled, &title, &summary, &[])
                .await,
        )
        .await;
    }
}

/// One attempt at the release: everything after the reporter is known.
async fn attempt(
    deps: &JobDeps,
    ctx: &JobContext,
    reporter: &GitHubReporter,
    spec: &ReleaseSpec,
) -> anyhow::Result<Option<serde_json::Value>> {
    let job = &ctx.job;
    let started = Instant::now();
    let tag = spec.tag.clone();

    let (workspace, mut set) = match prepare(deps, ctx, reporter, spec).await {
        Ok(Prepared::Ready { workspace, checked }) => (workspace, checked.set),
        Ok(Prepared::Covered { by }) => {
            ctx.log(
                "checkout",
                &format!("{tag} at this commit is job {by}'s: nothing more to do here"),
            )
            .await;
            return Ok(Some(json!({ "tag": tag, "covered_by": by })));
        }
        Err(early) => {
            report_early_failure(deps, ctx, reporter, &tag, &early).await;
            return Err(early.error);
        }
    };
    let sha = workspace.sha.clone();
    let root = workspace.path.clone();

    let recipes = set.recipes_for_tag(&tag);
    // From here on only the recipes this tag builds are read: many builds at once of a
    // repository with many recipes would otherwise each hold all of them, parsed.
    set.keep_only(&recipes);
    if recipes.is_empty() {
        ctx.log(
            "plan",
            &format!("tag {tag} builds no recipe (see bakery.toml's [[tags]])"),
        )
        .await;
        return Ok(Some(json!({ "tag": tag, "recipes": [] })));
    }
    ctx.log("plan", &format!("{tag} builds {}", recipes.join(", ")))
        .await;

    let mut outcomes = vec![];
    let mut images = vec![];
    let mut manifests = vec![];
    let mut built_any = false;
    let mut signed = vec![];
    let mut disk_builds = vec![];
    let mut uploads = vec![];
    let build_time = chrono::Utc::now();
    for recipe in &recipes {
        // A recipe's builders: EC2 (as before) unless it only has a `[qemu]` builder,
        // then its qemu builder, on the bot.
        let has_ec2 = set.recipes.get(recipe).is_none_or(|r| r.has_ec2_builder());
        let qemu_input = super::release_qemu::ReleaseInput {
            set: &set,
            recipe,
            version: &tag,
            git_sha: &sha,
            build_time,
            root: &root,
        };
        if !has_ec2 {
            if let Some(built) =
                super::release_qemu::build(deps, ctx, reporter, &qemu_input).await?
            {
                built_any = true;
                disk_builds.push(built.disk);
                uploads.extend(built.uploads);
            }
            continue;
        }
        let mut plan = plan_build(
            &set,
            &PlanInput {
                recipe,
                version: &tag,
                git_sha: &sha,
                build_time,
                vars: &VarOverrides::default(),
                ephemeral: false,
            },
        )
        .with_context(|| format!("cannot plan {recipe}"))?;
        plan.repo = Some(job.repo.clone());
        let result = build_recipe(deps, ctx, reporter, &plan, &root).await;
        match result {
            Ok(RecipeResult::Built {
                manifest,
                release_file,
                duration,
                provenance,
            }) => {
                built_any = true;
                signed.extend(provenance);
                images.extend(image_rows(&plan, &manifest));
                outcomes.push(RecipeOutcome {
                    recipe: recipe.clone(),
                    source_ami: manifest.builds[0]
                        .custom_data
                        .get("source_ami")
                        .cloned()
                        .unwrap_or_default(),
                    release_file,
                    duration,
                });
                manifests.push(manifest);
                if let Some(built) =
                    super::release_qemu::build(deps, ctx, reporter, &qemu_input).await?
                {
                    disk_builds.push(built.disk);
                    uploads.extend(built.uploads);
                }
            }
            Ok(RecipeResult::AlreadyReleased { manifest }) => {
                let rows = image_rows(&plan, &manifest);
                let body = render::already_built(&tag, recipe, &rows);
                reporter.comment_on_commit(&sha, &body).await?;
                images.extend(rows);
                manifests.push(manifest);
                // A qemu builder that failed or died with an earlier attempt is built now.
                if let Some(built) =
                    super::release_qemu::build_unless_complete(deps, ctx, reporter, &qemu_input)
                        .await?
                {
                    built_any = true;
                    disk_builds.push(built.disk);
                    uploads.extend(built.uploads);
                }
            }
            Err(e) => return Err(e),
        }
    }

    let summary = BuildSummary {
        version: tag.clone(),
        git_sha: sha.clone(),
        recipes: outcomes,
        images: images.clone(),
        duration: started.elapsed(),
        details_url: deps.details_url(job.id),
        disk_builds,
    };
    if built_any {
        let patterns: Vec<String> = set.config.tags.iter().map(|t| t.pattern.clone()).collect();
        let published = publish_release_with_files(
            reporter,
            &*deps.store,
            &root,
            &tag,
            &patterns,
            &summary,
            &signed,
            &uploads,
        )
        .await?;
        ctx.log(
            "report",
            &format!(
                "commented {} and {} release {}",
                published.comment_url,
                if published.release.created {
                    "created"
                } else {
                    "updated"
                },
                published.release.html_url
            ),
        )
        .await;
    }
    if let Err(e) = workspace.remove() {
        tracing::warn!("cannot remove the job's workspace: {e:#}");
    }
    Ok(Some(json!({
        "tag": tag,
        "sha": sha,
        "recipes": recipes,
        "images": images,
        "manifests": manifests,
        "disk_images": summary.disk_builds,
        "built": built_any,
    })))
}

/// A release job's state once its recipes are known.
enum Prepared {
    /// The tagged commit is checked out and its recipes validate.
    Ready {
        workspace: Workspace,
        checked: Box<Checked>,
    },
    /// Another job already covers this tag at this commit (its push arrived while this
    /// job, from the tag's `create`, was peeling the tag).
    Covered { by: i64 },
}

/// A failure before any recipe was known, and the commit to report it on (`None` when
/// the tag never resolved to one).
struct EarlyFailure {
    commit: Option<String>,
    error: anyhow::Error,
}

impl EarlyFailure {
    fn on(commit: Option<&str>, error: anyhow::Error) -> Self {
        EarlyFailure {
            commit: commit.filter(|c| !c.is_empty()).map(str::to_string),
            error,
        }
    }
}

/// Checks out the tagged commit (peeling an annotated tag), records the commit on a job
/// that came without one, and validates the recipes.
async fn prepare(
    deps: &JobDeps,
    ctx: &JobContext,
    reporter: &GitHubReporter,
    spec: &ReleaseSpec,
) -> Result<Prepared, EarlyFailure> {
    let job = &ctx.job;
    let tag = &spec.tag;
    let known = (!job.sha.is_empty()).then(|| job.sha.clone());
    ctx.log(
        "checkout",
        &match &known {
            Some(c) => format!("checking out {tag} ({c})"),
            None => format!("checking out {tag} (its commit is read from the tag)"),
        },
    )
    .await;
    let workspace = deps
        .check_out(
            ctx,
            reporter,
            &Target::Tag {
                name: tag.clone(),
                commit: known.clone(),
            },
        )
        .await
        .map_err(|e| {
            EarlyFailure::on(
                known.as_deref(),
                e.context(format!("cannot check out {tag}")),
            )
        })?;
    let sha = workspace.sha.clone();
    ctx.log(
        "checkout",
        &match &workspace.tag_object {
            Some(object) => format!("{tag} is annotated (tag object {object}) on commit {sha}"),
            None => format!("{tag} is on commit {sha}"),
        },
    )
    .await;

    if known.is_none() || spec.tag_object != workspace.tag_object {
        // Record the commit (and tag object) on the job, under the dedup key a push of
        // the tag would use, so the push merges with this job rather than building twice.
        let resolved = ReleaseSpec {
            tag_object: workspace.tag_object.clone(),
            ..spec.clone()
        };
        let recorded = deps
            .store
            .resolve_job_commit(
                job.id,
                &sha,
                &release_dedup_key(&job.repo, tag, &sha),
                &resolved.to_payload(),
            )
            .await
            .map_err(|e| EarlyFailure::on(Some(&sha), e))?;
        if let ResolvedCommit::Duplicate(by) = recorded {
            if let Err(e) = workspace.remove() {
                tracing::warn!("cannot remove the job's workspace: {e:#}");
            }
            return Ok(Prepared::Covered { by });
        }
    }

    let checked = {
        let root = workspace.path.clone();
        tokio::task::spawn_blocking(move || crate::recipe::load_repo(&root))
            .await
            .map_err(|e| {
                EarlyFailure::on(Some(&sha), anyhow::anyhow!("loading recipes died: {e}"))
            })?
            .map_err(|e| EarlyFailure::on(Some(&sha), e))?
    };
    if !checked.is_ok() {
        let errors: Vec<String> = checked
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| deps.redactor.redact(&d.to_string()))
            .collect();
        noted(
            ctx,
            &format!("comment on commit {sha}"),
            reporter
                .comment_on_commit(&sha, &render::invalid_recipes(tag, &errors))
                .await,
        )
        .await;
        return Err(EarlyFailure::on(
            Some(&sha),
            anyhow::anyhow!(
                "the recipes at {tag} have {} error(s):\n{}",
                errors.len(),
                errors.join("\n")
            ),
        ));
    }
    Ok(Prepared::Ready {
        workspace,
        checked: Box::new(checked),
    })
}

/// Reports a release that stopped before its recipes were known under one check run,
/// `bakery/release` (a commit status in token mode), on the commit it was for; a tag
/// moved away from that commit also gets the refusal comment there.
async fn report_early_failure(
    deps: &JobDeps,
    ctx: &JobContext,
    reporter: &GitHubReporter,
    tag: &str,
    early: &EarlyFailure,
) {
    let reason = deps.redactor.redact(&format!("{:#}", early.error));
    let Some(commit) = early.commit.as_deref() else {
        ctx.log(
            "report",
            &format!("{tag} resolved to no commit, so nothing is reported on GitHub: {reason}"),
        )
        .await;
        return;
    };
    if let Some(CheckoutRefusal::TagMoved { found, .. }) = early.error.downcast_ref() {
        noted(
            ctx,
            &format!("comment on commit {commit}"),
            reporter
                .comment_on_commit(commit, &render::tag_moved_before_build(tag, commit, found))
                .await,
        )
        .await;
    }
    let (title, summary) = render::release_not_started(tag, &reason);
    let details_url = deps.details_url(ctx.job.id);
    let what = format!("report {} on commit {commit}", render::RELEASE_CHECK);
    let Some(progress) = noted(
        ctx,
        &what,
        reporter
            .start_progress(
                render::RELEASE_CHECK,
                commit,
                details_url.as_deref(),
                Some(&ctx.job.id.to_string()),
            )
            .await,
    )
    .await
    else {
        return;
    };
    noted(
        ctx,
        &what,
        reporter
            .complete_progress(&progress, Conclusion::Failure, &title, &summary, &[])
            .await,
    )
    .await;
}

enum RecipeResult {
    Built {
        manifest: Manifest,
        release_file: String,
        duration: Duration,
        /// The signed provenance, when a signing key is configured.
        provenance: Option<Signed>,
    },
    AlreadyReleased {
        manifest: Manifest,
    },
}

/// Builds one recipe under its own check run.
async fn build_recipe(
    deps: &JobDeps,
    ctx: &JobContext,
    reporter: &GitHubReporter,
    plan: &BuildPlan,
    root: &std::path::Path,
) -> anyhow::Result<RecipeResult> {
    let title = render::building_title(&plan.recipe, &plan.version);
    let mut tracked = TrackedBuild::start(deps, ctx, reporter, plan, title).await?;
    let finished = tracked.run(deps, ctx, plan, root).await;
    let steps = tracked.finish(finished.result.is_ok()).await;
    let session = finished.session.as_deref();

    match finished.result {
        Ok(BuildOutcome::Built {
            manifest, build_id, ..
        }) => {
            let provenance = sign_provenance(
                deps, ctx, reporter, plan, &manifest, &build_id, root, session,
            )
            .await?;
            reporter
                .complete_progress(
                    &tracked.progress,
                    Conclusion::Success,
                    &render::built_title(&plan.recipe, &plan.version),
                    &render::built_summary(
                        &steps,
                        &render::image_table(&image_rows(plan, &manifest)),
                    ),
                    &[],
                )
                .await?;
            let source_ami = manifest.builds[0]
                .custom_data
                .get("source_ami")
                .cloned()
                .unwrap_or_default();
            let release_file = plan.release_file(&BuildFacts {
                build_id,
                source_ami,
            });
            Ok(RecipeResult::Built {
                manifest,
                release_file,
                duration: tracked.started.elapsed(),
                provenance,
            })
        }
        Ok(BuildOutcome::AlreadyReleased { manifest, .. }) => {
            reporter
                .complete_progress(
                    &tracked.progress,
                    Conclusion::Success,
                    &render::released_before_title(&plan.recipe, &plan.version),
                    &render::image_table(&image_rows(plan, &manifest)),
                    &[],
                )
                .await?;
            Ok(RecipeResult::AlreadyReleased { manifest })
        }
        Err(e) if super::tracked::handed_over(&e) => Err(e),
        Err(e) => {
            if let Some(moved) = e.downcast_ref::<MovedTag>() {
                let error = deps.redactor.redact(&format!("{e:#}"));
                noted(
                    ctx,
                    &format!("complete check run {}", tracked.progress.name),
                    reporter
                        .complete_progress(
                            &tracked.progress,
                            Conclusion::Failure,
                            &render::moved_tag_title(),
                            &error,
                            &[],
                        )
                        .await,
                )
                .await;
                noted(
                    ctx,
                    &format!("comment on commit {}", plan.git_sha),
                    reporter
                        .comment_on_commit(
                            &plan.git_sha,
                            &render::moved_tag(&plan.version, &moved.built_sha, &moved.new_sha),
                        )
                        .await,
                )
                .await;
                return Err(e);
            }
            let failure = tracked
                .report_failure(deps, ctx, plan, &e, finished.running_step, &steps)
                .await;
            noted(
                ctx,
                &format!("comment on commit {} with the failure", plan.git_sha),
                publish_failure(reporter, &failure, &deps.redactor).await,
            )
            .await;
            Err(e)
        }
    }
}

/// With a signing key configured: the built recipe's provenance, signed, and its images
/// tagged with its digest (`provenance/attach.rs`).
#[allow(clippy::too_many_arguments)]
async fn sign_provenance(
    deps: &JobDeps,
    ctx: &JobContext,
    reporter: &GitHubReporter,
    plan: &BuildPlan,
    manifest: &Manifest,
    build_id: &str,
    root: &std::path::Path,
    session: Option<&crate::aws::AwsSession>,
) -> anyhow::Result<Option<Signed>> {
    let Some(key) = &deps.provenance else {
        ctx.log(
            "provenance",
            "no provenance signing key is configured: this release carries no signed provenance",
        )
        .await;
        return Ok(None);
    };
    let session = session.context("the build left no AWS session to tag its images with")?;
    let origin = Origin {
        builder_id: deps
            .config
            .provenance
            .builder_id
            .clone()
            .or_else(|| deps.config.public_url.clone())
            .unwrap_or_else(|| "urn:bakery:bot".to_string()),
        repository_url: Some(reporter.repository().await?.clone_url),
        root: root.to_path_buf(),
    };
    let signed = attach(
        &*deps.store,
        session,
        key,
        plan,
        manifest,
        build_id,
        &origin,
    )
    .await
    .with_context(|| format!("cannot sign the provenance of {}", plan.recipe))?;
    ctx.log(
        "provenance",
        &format!(
            "provenance signed with key {}; images tagged {} = {}",
            key.public().key_id(),
            crate::aws::tags::PROVENANCE,
            signed.digest
        ),
    )
    .await;
    Ok(Some(signed))
}

/// The image table's rows for one recipe's manifest.
pub fn image_rows(plan: &BuildPlan, manifest: &Manifest) -> Vec<ImageRow> {
    manifest
        .builds
        .iter()
        .flat_map(|b| b.copies.iter())
        .map(|c| ImageRow {
            recipe: plan.recipe.clone(),
            account: c.account.clone(),
            region: c.region.clone(),
            ami: c.ami.clone(),
            kms_key: c.kms_key_id.clone().or_else(|| {
                plan.distribute
                    .copies
                    .iter()
                    .find(|p| {
                        p.region == c.region
                            && p.account
                                .as_ref()
                                .map(|a| a.account_id.as_str())
                                .unwrap_or("")
                                == if p.account.is_some() {
                                    c.account.as_str()
                                } else {
                                    ""
                                }
                    })
                    .and_then(|p| p.kms_key_id.clone())
            }),
        })
        .collect()
}
