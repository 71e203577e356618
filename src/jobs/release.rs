//! A release job: check out the tagged commit, build every recipe the tag asks for (each
//! after the recipe it starts from), and report on the commit: a check run per recipe
//! with a live step summary, a comment with every image, and the GitHub Release.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use serde_json::json;

use super::deps::JobDeps;
use super::tracked::TrackedBuild;
use crate::aws::release::MovedTag;
use crate::build::{BuildOutcome, Manifest};
use crate::github::checkout::Target;
use crate::github::publish::{publish_failure, publish_release};
use crate::github::render::{self, BuildSummary, ImageRow, RecipeOutcome};
use crate::github::reporter::Conclusion;
use crate::github::GitHubReporter;
use crate::plan::model::{BuildFacts, BuildPlan};
use crate::plan::{plan_build, PlanInput};
use crate::recipe::variables::VarOverrides;
use crate::worker::JobContext;

#[derive(Debug, Deserialize)]
struct ReleasePayload {
    tag: String,
    clone_url: String,
    installation_id: Option<i64>,
}

pub async fn run(deps: &JobDeps, ctx: &JobContext) -> anyhow::Result<Option<serde_json::Value>> {
    let job = &ctx.job;
    let started = Instant::now();
    let payload: ReleasePayload = serde_json::from_value(job.payload.clone())
        .context("the release job's payload is unreadable")?;
    let tag = payload.tag.clone();
    let reporter = deps.reporter(&job.repo, payload.installation_id).await?;
    let session = reporter.session().await?;

    // A tag's `create` carries no SHA: read it from GitHub.
    let sha = if job.sha.is_empty() {
        let tags = reporter.list_tags().await?;
        tags.into_iter()
            .find(|t| t.name == tag)
            .map(|t| t.sha)
            .with_context(|| format!("tag {tag} no longer exists in {}", job.repo))?
    } else {
        job.sha.clone()
    };
    ctx.log("checkout", &format!("checking out {tag} ({sha})"))
        .await;
    let workspace = match deps
        .checkouts
        .until(ctx.cancel.clone())
        .checkout(
            reporter.repo(),
            &payload.clone_url,
            Some(session.git_token()),
            &Target::Tag {
                name: tag.clone(),
                sha: sha.clone(),
            },
            &format!("job-{}", job.id),
        )
        .await
    {
        Ok(w) => w,
        Err(e) => {
            let message = format!("{e:#}");
            if message.contains("moved") {
                // The tag points elsewhere now: the push for the new commit makes its own job.
                let body = format!(
                    "{}\n\nbakery did not build `{tag}` from this commit: {message}\n",
                    render::marker("refusal")
                );
                reporter.comment_on_commit(&sha, &body).await.ok();
            }
            return Err(e.context(format!("cannot check out {tag}")));
        }
    };
    let root = workspace.path.clone();

    let checked = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || crate::recipe::load_repo(&root))
            .await
            .context("loading recipes died")??
    };
    if !checked.is_ok() {
        let errors: Vec<String> = checked
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        let body = format!(
            "{}\n### bakery did not build `{tag}`\n\nThe recipes at this commit do not validate:\n\n```\n{}\n```\n",
            render::marker("invalid-recipes"),
            deps.redactor.redact(&errors.join("\n"))
        );
        reporter.comment_on_commit(&sha, &body).await.ok();
        anyhow::bail!(
            "the recipes at {tag} have {} error(s):\n{}",
            errors.len(),
            errors.join("\n")
        );
    }
    let recipes = checked.set.recipes_for_tag(&tag);
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
    let build_time = chrono::Utc::now();
    for recipe in &recipes {
        let plan = plan_build(
            &checked.set,
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
        let result = build_recipe(deps, ctx, &reporter, &plan, &root).await;
        match result {
            Ok(RecipeResult::Built {
                manifest,
                release_file,
                duration,
            }) => {
                built_any = true;
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
            }
            Ok(RecipeResult::AlreadyReleased { manifest }) => {
                let rows = image_rows(&plan, &manifest);
                let body = render::already_built(&tag, recipe, &rows);
                reporter.comment_on_commit(&sha, &body).await?;
                images.extend(rows);
                manifests.push(manifest);
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
    };
    if built_any {
        let patterns: Vec<String> = checked
            .set
            .config
            .tags
            .iter()
            .map(|t| t.pattern.clone())
            .collect();
        let published = publish_release(&reporter, &root, &tag, &patterns, &summary).await?;
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
        "built": built_any,
    })))
}

enum RecipeResult {
    Built {
        manifest: Manifest,
        release_file: String,
        duration: Duration,
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
    let title = format!("Building {} {}", plan.recipe, plan.version);
    let mut tracked = TrackedBuild::start(deps, ctx, reporter, plan, title).await?;
    let finished = tracked.run(deps, ctx, plan, root).await;
    let steps = tracked.finish(finished.result.is_ok()).await;

    match finished.result {
        Ok(BuildOutcome::Built {
            manifest, build_id, ..
        }) => {
            reporter
                .complete_progress(
                    &tracked.progress,
                    Conclusion::Success,
                    &format!("Built {} {}", plan.recipe, plan.version),
                    &format!(
                        "{steps}\n{}",
                        render::image_table(&image_rows(plan, &manifest))
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
            })
        }
        Ok(BuildOutcome::AlreadyReleased { manifest, .. }) => {
            reporter
                .complete_progress(
                    &tracked.progress,
                    Conclusion::Success,
                    &format!(
                        "{} {} was released before: nothing built",
                        plan.recipe, plan.version
                    ),
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
                reporter
                    .complete_progress(
                        &tracked.progress,
                        Conclusion::Failure,
                        "Refused: the tag was moved",
                        &error,
                        &[],
                    )
                    .await
                    .ok();
                reporter
                    .comment_on_commit(
                        &plan.git_sha,
                        &render::moved_tag(&plan.version, &moved.built_sha, &moved.new_sha),
                    )
                    .await
                    .ok();
                return Err(e);
            }
            let failure = tracked
                .report_failure(deps, ctx, reporter, plan, &e, finished.running_step, &steps)
                .await;
            publish_failure(reporter, &failure, &deps.redactor)
                .await
                .ok();
            Err(e)
        }
    }
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
