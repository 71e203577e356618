//! A pull request's validation: check out its head, find what it changes against its
//! base, check the recipes and `bakery.toml`, and report on the PR: the check run
//! `bakery/validate` with one annotation per problem, and one sticky comment with the plan
//! of every changed recipe. Then, per the repository's `pull_requests` mode (or a
//! `/bakery build` from a writer), validation builds of the changed recipes into
//! throwaway images that are deregistered, with their snapshots, when the build ends.
//!
//! A pull request from a fork never builds on its own: its code would run with the
//! repository's cloud credentials. It gets a notice that says so, once, and builds only
//! when a user with write permission comments `/bakery build`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use serde_json::json;

use super::deps::JobDeps;
use super::release::image_rows;
use super::spec::{JobSpec, ValidationSpec};
use super::tracked::TrackedBuild;
use crate::aws::resource::{self, Deleted, ResourceKind, ResourceRef};
use crate::aws::{AwsSession, Target as AwsTarget};
use crate::build::{BuildLog, Manifest};
use crate::github::api::reporter::{Annotation, AnnotationLevel, Conclusion};
use crate::github::git::checkout::Target;
use crate::github::render::{self, NoBuild, PlanProblem, PLAN_MARKER};
use crate::github::GitHubReporter;
use crate::plan::model::BuildPlan;
use crate::plan::{plan_build, PlanInput};
use crate::recipe::variables::VarOverrides;
use crate::recipe::{Checked, Diagnostic, PullRequestMode, RecipeSet, RepoConfig, Severity};
use crate::worker::JobContext;

/// The check run that carries the validation result.
pub const VALIDATE_CHECK: &str = "bakery/validate";

/// The pull request being validated, at one head commit.
#[derive(Debug, Clone)]
pub struct PullRequest {
    pub number: u64,
    pub head_sha: String,
    pub base_ref: String,
    /// `owner/name` of the head repository, for the fork notice.
    pub head_repo: Option<String>,
    pub is_fork: bool,
    pub author: String,
}

/// Which validation builds to run after validating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Builds {
    /// As the repository's `pull_requests` mode says (a push to the pull request).
    ByMode,
    /// None (`/bakery validate`).
    Never,
    /// `/bakery build [recipe]` from `by`, a user with write permission.
    Requested { recipe: Option<String>, by: String },
}

pub async fn run(deps: &JobDeps, ctx: &JobContext) -> anyhow::Result<Option<serde_json::Value>> {
    let job = &ctx.job;
    let payload = ValidationSpec::from_job(job)?;
    let number = job
        .pr_number
        .context("a validation job needs its pull request number")?;
    anyhow::ensure!(
        !job.sha.is_empty(),
        "the validation job of #{number} has no head SHA"
    );
    let reporter = deps
        .reporter(&job.repo, payload.repo.installation_id)
        .await?;
    let pr = PullRequest {
        number: number as u64,
        head_sha: job.sha.clone(),
        base_ref: payload.base_ref,
        head_repo: payload.head_repo,
        is_fork: payload.is_fork,
        author: payload.author,
    };
    validate(deps, ctx, &reporter, &pr, &Builds::ByMode)
        .await
        .map(Some)
}

/// Validates `pr` at its head commit, reports on it, and runs the builds `builds` asks
/// for. Returns the job's result.
pub async fn validate(
    deps: &JobDeps,
    ctx: &JobContext,
    reporter: &GitHubReporter,
    pr: &PullRequest,
    builds: &Builds,
) -> anyhow::Result<serde_json::Value> {
    let number = pr.number;
    let sha = pr.head_sha.clone();
    ctx.log(
        "checkout",
        &format!("checking out pull request #{number} at {sha}"),
    )
    .await;
    let workspace = deps
        .check_out(
            ctx,
            reporter,
            &Target::PullRequest {
                number,
                sha: sha.clone(),
            },
        )
        .await
        .with_context(|| format!("cannot check out pull request #{number}"))?;
    let root = workspace.path.clone();

    let (changed, checked, trusted) = {
        let (root, base) = (root.clone(), pr.base_ref.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let changed = changed_files(&root, &base)?;
            let checked = crate::recipe::load_repo(&root)?;
            let trusted = base_config(&root, &base)?;
            Ok((changed, checked, trusted))
        })
        .await
        .context("reading the pull request's changes died")??
    };
    // The pull request's own bakery.toml is validated like any file it changes, but it
    // decides nothing about its own trust: the mode and the defaults any build uses come
    // from the base branch.
    let build_set = RecipeSet {
        config: trusted,
        ..checked.set.clone()
    };
    let explicit_recipe = match builds {
        Builds::Requested {
            recipe: Some(r), ..
        } => Some(r.clone()),
        _ => None,
    };
    if crate::registry::channels_source::touches_channels(&changed) {
        let planned = super::channels_review::comment_plan(
            deps,
            ctx,
            reporter,
            number,
            &sha,
            &pr.base_ref,
            &root,
        )
        .await;
        if let Err(e) = planned {
            ctx.log(
                "channels",
                &format!("cannot plan the channels change: {e:#}"),
            )
            .await;
        }
    }
    if !crate::recipe::touches_recipes(&changed) && explicit_recipe.is_none() {
        let message = format!(
            "pull request #{number} changes no recipe and not bakery.toml ({} file(s) changed): nothing to validate",
            changed.len()
        );
        ctx.log("validate", &message).await;
        if matches!(builds, Builds::Requested { .. }) {
            reporter
                .comment_on_pr(number, &render::nothing_to_build())
                .await?;
        }
        remove_workspace(workspace);
        return Ok(json!({
            "pr": number,
            "sha": sha,
            "changed_files": changed.len(),
            "validated": false,
            "recipes": [],
            "builds": [],
        }));
    }

    let touched = checked.set.recipes_touched_by(&changed);
    ctx.log(
        "validate",
        &format!(
            "{} file(s) changed; recipes touched: {}",
            changed.len(),
            if touched.is_empty() {
                "none".to_string()
            } else {
                touched.join(", ")
            }
        ),
    )
    .await;

    // Plans of the changed recipes, when the recipes validate.
    let build_time = chrono::Utc::now();
    let version = pr_version(number, &sha);
    let mut plans: Vec<BuildPlan> = vec![];
    let mut plan_errors: Vec<PlanProblem> = vec![];
    // A recipe with only a `[qemu]` builder has no AMI plan: it is validated above, and
    // built by release tags only.
    let builds_ami = |r: &str| {
        build_set
            .recipes
            .get(r)
            .is_none_or(|spec| spec.has_ec2_builder())
    };
    if checked.is_ok() {
        for recipe in touched.iter().filter(|r| builds_ami(r)) {
            match plan_build(
                &build_set,
                &PlanInput {
                    recipe,
                    version: &version,
                    git_sha: &sha,
                    build_time,
                    vars: &VarOverrides::default(),
                    ephemeral: true,
                },
            ) {
                Ok(p) => plans.push(p),
                Err(e) => plan_errors.push(PlanProblem {
                    path: format!(
                        "{}/{recipe}/{}",
                        crate::recipe::RECIPES_DIR,
                        crate::recipe::RECIPE_FILE
                    ),
                    line: None,
                    message: deps.redactor.redact(&format!("{e:#}")),
                }),
            }
        }
    }

    let valid = checked.is_ok() && plan_errors.is_empty();
    report_validation(deps, ctx, reporter, pr, &checked, &touched, &plan_errors).await?;
    let mut problems = problems_of(&checked, &deps.redactor);
    problems.extend(plan_errors.iter().cloned());
    let comment = reporter
        .upsert_sticky_comment(
            number,
            PLAN_MARKER,
            &render::plan_comment(&sha, &plans, &problems),
        )
        .await?;
    ctx.log("report", &format!("plan comment {}", comment.html_url))
        .await;

    let mode = build_set.config.pull_request_mode();
    if pr.is_fork && mode != PullRequestMode::Never && !matches!(builds, Builds::Requested { .. }) {
        let notice = render::fork_needs_approval(
            &pr.author,
            pr.head_repo.as_deref().unwrap_or("a deleted fork"),
        );
        reporter
            .upsert_sticky_comment(number, &render::marker("fork-approval"), &notice)
            .await?;
    }

    // Which recipes to build, or why none.
    let wanted: Result<Vec<String>, NoBuild> = match builds {
        Builds::Never => Err(NoBuild::ValidationOnly),
        Builds::ByMode => match mode {
            PullRequestMode::Never => Err(NoBuild::ModeNever {
                base_ref: pr.base_ref.clone(),
            }),
            PullRequestMode::OnCommand => Err(NoBuild::ModeOnCommand {
                base_ref: pr.base_ref.clone(),
            }),
            PullRequestMode::Always if pr.is_fork => Err(NoBuild::Fork),
            PullRequestMode::Always => Ok(touched.clone()),
        },
        Builds::Requested { recipe, .. } => {
            if mode == PullRequestMode::Never {
                Err(NoBuild::CommandButNever {
                    base_ref: pr.base_ref.clone(),
                })
            } else {
                match recipe {
                    Some(r) if checked.set.names.contains(r) => Ok(vec![r.clone()]),
                    Some(r) => Err(NoBuild::NoSuchRecipe {
                        recipe: r.clone(),
                        head_sha: sha.clone(),
                        recipes: checked.set.names.iter().cloned().collect(),
                    }),
                    None if touched.is_empty() => Err(NoBuild::ChangesNoRecipe),
                    None => Ok(touched.clone()),
                }
            }
        }
    };
    let wanted = match wanted {
        Ok(w) if !valid => Err(NoBuild::Invalid {
            recipes: w,
            check: VALIDATE_CHECK.to_string(),
        }),
        other => other,
    };
    let wanted = wanted.map(|w| w.into_iter().filter(|r| builds_ami(r)).collect::<Vec<_>>());
    let recipes = match wanted {
        Ok(r) if !r.is_empty() => r,
        Ok(_) | Err(_) => {
            let reason = match wanted {
                Err(reason) => reason,
                Ok(_) => NoBuild::NoRecipeChanged,
            };
            ctx.log("build", &format!("no validation build: {reason}"))
                .await;
            if let Builds::Requested { by, .. } = builds {
                reporter
                    .comment_on_pr(number, &render::did_not_build(by, &reason))
                    .await?;
            }
            remove_workspace(workspace);
            return Ok(json!({
                "pr": number,
                "sha": sha,
                "changed_files": changed.len(),
                "validated": true,
                "valid": valid,
                "recipes": touched,
                "builds": [],
                "no_build": reason.to_string(),
            }));
        }
    };

    if let Builds::Requested { by, .. } = builds {
        ctx.log(
            "build",
            &format!(
                "validation build of {} asked for by {by}",
                recipes.join(", ")
            ),
        )
        .await;
    }
    let mut results = vec![];
    let mut failed: Vec<String> = vec![];
    for recipe in &recipes {
        let mut plan = match plans.iter().find(|p| &p.recipe == recipe) {
            Some(p) => p.clone(),
            None => plan_build(
                &build_set,
                &PlanInput {
                    recipe,
                    version: &version,
                    git_sha: &sha,
                    build_time,
                    vars: &VarOverrides::default(),
                    ephemeral: true,
                },
            )
            .with_context(|| format!("cannot plan {recipe}"))?,
        };
        plan.repo = Some(ctx.job.repo.clone());
        match build_recipe(deps, ctx, reporter, number, &plan, &root).await {
            Ok(images) => results.push(json!({ "recipe": recipe, "ok": true, "images": images })),
            Err(e) => {
                let error = deps.redactor.redact(&format!("{e:#}"));
                results.push(json!({ "recipe": recipe, "ok": false, "error": error }));
                failed.push(format!("{recipe}: {error}"));
                if ctx.cancel.is_cancelled() {
                    break;
                }
            }
        }
    }
    remove_workspace(workspace);
    if !failed.is_empty() {
        anyhow::bail!(
            "validation build(s) of #{number} failed:\n{}",
            failed.join("\n")
        );
    }
    Ok(json!({
        "pr": number,
        "sha": sha,
        "changed_files": changed.len(),
        "validated": true,
        "valid": valid,
        "recipes": touched,
        "builds": results,
    }))
}

/// The version a pull request's throwaway images carry: `pr-<number>-<short SHA>`.
pub fn pr_version(number: u64, sha: &str) -> String {
    format!("pr-{number}-{}", render_short(sha))
}

fn render_short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn remove_workspace(workspace: crate::github::git::checkout::Workspace) {
    if let Err(e) = workspace.remove() {
        tracing::warn!("cannot remove the job's workspace: {e:#}");
    }
}

/// The files a pull request changes: from the merge base of its head (checked out in
/// `workspace`) and its base branch, to its head. Paths are repository-relative; a
/// renamed file is listed under both names.
pub fn changed_files(workspace: &Path, base_ref: &str) -> anyhow::Result<Vec<String>> {
    let repo = git2::Repository::open(workspace)
        .with_context(|| format!("cannot open the checkout {}", workspace.display()))?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .context("the checkout has no head commit")?;
    let base_name = format!("refs/remotes/origin/{base_ref}");
    let base = repo
        .find_reference(&base_name)
        .and_then(|r| r.peel_to_commit())
        .with_context(|| {
            format!(
                "the base branch {base_ref} is not in the repository (deleted since the pull \
                 request was opened?): retarget the pull request to an existing branch"
            )
        })?;
    let merge_base = repo.merge_base(head.id(), base.id()).with_context(|| {
        format!(
            "the pull request's head {} shares no history with {base_ref}",
            head.id()
        )
    })?;
    let old_tree = repo.find_commit(merge_base)?.tree()?;
    let new_tree = head.tree()?;
    let diff = repo
        .diff_tree_to_tree(Some(&old_tree), Some(&new_tree), None)
        .context("cannot compare the pull request with its base")?;
    let mut paths = BTreeSet::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(p) = file.path().and_then(|p| p.to_str()) {
                paths.insert(p.to_string());
            }
        }
    }
    Ok(paths.into_iter().collect())
}

/// `bakery.toml` as the base branch has it: what decides a pull request's trust (its
/// `pull_requests` mode) and the defaults its builds use. A base branch without the file,
/// or with a file that does not parse, gives the built-in defaults (which never build
/// without a writer's command).
pub fn base_config(workspace: &Path, base_ref: &str) -> anyhow::Result<RepoConfig> {
    let repo = git2::Repository::open(workspace)
        .with_context(|| format!("cannot open the checkout {}", workspace.display()))?;
    let base = repo
        .find_reference(&format!("refs/remotes/origin/{base_ref}"))
        .and_then(|r| r.peel_to_commit())
        .with_context(|| format!("the base branch {base_ref} is not in the repository"))?;
    let tree = base.tree()?;
    let Ok(entry) = tree.get_path(Path::new(crate::recipe::repo_config::FILE_NAME)) else {
        return Ok(RepoConfig::default());
    };
    let Ok(blob) = entry.to_object(&repo).and_then(|o| o.peel_to_blob()) else {
        return Ok(RepoConfig::default());
    };
    let text = String::from_utf8_lossy(blob.content()).to_string();
    let parsed = crate::recipe::repo_config::parse_repo_config(crate::recipe::SourceFile::new(
        crate::recipe::repo_config::FILE_NAME,
        &text,
    ));
    if parsed.diagnostics.has_errors() {
        return Ok(RepoConfig::default());
    }
    Ok(parsed.config)
}

/// One check-run annotation per diagnostic.
pub fn annotations(checked: &Checked, redactor: &crate::redact::Redactor) -> Vec<Annotation> {
    checked
        .diagnostics
        .iter()
        .map(|d| annotation(d, redactor))
        .collect()
}

fn annotation(d: &Diagnostic, redactor: &crate::redact::Redactor) -> Annotation {
    let mut message = d.message.clone();
    if let Some(hint) = &d.hint {
        message.push_str(&format!("\nhint: {hint}"));
    }
    Annotation {
        path: d.file.clone(),
        line: d.line.max(1),
        level: match d.severity {
            Severity::Error => AnnotationLevel::Failure,
            Severity::Warning => AnnotationLevel::Warning,
        },
        message: redactor.redact(&message),
        title: None,
    }
}

/// The errors, as the plan comment lists them.
fn problems_of(checked: &Checked, redactor: &crate::redact::Redactor) -> Vec<PlanProblem> {
    checked
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| PlanProblem {
            path: d.file.clone(),
            line: Some(d.line),
            message: redactor.redact(&match &d.hint {
                Some(h) => format!("{} ({h})", d.message),
                None => d.message.clone(),
            }),
        })
        .collect()
}

/// The check run `bakery/validate`: failure with the problems as annotations, or success.
async fn report_validation(
    deps: &JobDeps,
    ctx: &JobContext,
    reporter: &GitHubReporter,
    pr: &PullRequest,
    checked: &Checked,
    touched: &[String],
    plan_errors: &[PlanProblem],
) -> anyhow::Result<()> {
    let progress = reporter
        .start_progress(
            VALIDATE_CHECK,
            &pr.head_sha,
            deps.details_url(ctx.job.id).as_deref(),
            Some(&ctx.job.id.to_string()),
        )
        .await?;
    let annotations = annotations(checked, &deps.redactor);
    let errors = checked.diagnostics.error_count() + plan_errors.len();
    let warnings = checked.diagnostics.warning_count();
    let conclusion = if errors == 0 {
        Conclusion::Success
    } else {
        Conclusion::Failure
    };
    let title = render::validation_title(errors, warnings);
    let diagnostics: Vec<String> = checked
        .diagnostics
        .iter()
        .map(|d| deps.redactor.redact(&d.to_string()))
        .collect();
    let summary = render::validation_summary(touched, &diagnostics, plan_errors);
    reporter
        .complete_progress(&progress, conclusion, &title, &summary, &annotations)
        .await?;
    ctx.log(
        "validate",
        &format!(
            "{VALIDATE_CHECK}: {title} ({} annotation(s))",
            annotations.len()
        ),
    )
    .await;
    Ok(())
}

/// Builds one recipe into a throwaway image under its own check run, then deregisters
/// the image with its snapshots. The result goes on the PR as a comment of its own
/// (edited on the next build of the same recipe). Returns the image ids built.
async fn build_recipe(
    deps: &JobDeps,
    ctx: &JobContext,
    reporter: &GitHubReporter,
    number: u64,
    plan: &BuildPlan,
    root: &Path,
) -> anyhow::Result<Vec<String>> {
    anyhow::ensure!(
        plan.image.ephemeral,
        "a pull request builds throwaway images only"
    );
    let comment_marker = render::marker(&format!("pr-build:{}", plan.recipe));
    let title = render::pr_build_title(&plan.recipe, &plan.version);
    let mut tracked = TrackedBuild::start(deps, ctx, reporter, plan, title).await?;
    let finished = tracked.run(deps, ctx, plan, root).await;
    let (result, aws) = (finished.result, finished.session);
    let log = &tracked.log;

    // The images were only for trying the recipe: deregister them and their snapshots.
    let discarded = match (&result, &aws) {
        (Ok(outcome), Some(session)) => {
            Some(discard_images(session, outcome.manifest(), log).await)
        }
        _ => None,
    };
    let steps = tracked
        .finish(result.is_ok() && matches!(discarded, Some(Ok(_))))
        .await;

    match (result, discarded) {
        (Ok(outcome), Some(Ok(discarded))) => {
            let manifest = outcome.manifest();
            let images: Vec<String> = manifest
                .builds
                .iter()
                .flat_map(|b| b.copies.iter().map(|c| c.ami.clone()))
                .collect();
            let table = render::image_table(&image_rows(plan, manifest));
            reporter
                .complete_progress(
                    &tracked.progress,
                    Conclusion::Success,
                    &render::built_title(&plan.recipe, &plan.version),
                    &render::pr_built_summary(&steps, &table),
                    &[],
                )
                .await?;
            let body = render::pr_built_comment(&render::PrBuilt {
                marker: &comment_marker,
                recipe: &plan.recipe,
                git_sha: &plan.git_sha,
                took: tracked.started.elapsed(),
                table: &table,
                discarded: &discarded,
            });
            reporter
                .upsert_sticky_comment(number, &comment_marker, &body)
                .await?;
            ctx.log(
                "build",
                &format!(
                    "validation build of {} succeeded; {} image(s) deregistered",
                    plan.recipe,
                    images.len()
                ),
            )
            .await;
            Ok(images)
        }
        (result, discarded) => {
            let e = match (result, discarded) {
                (Err(e), _) => e,
                (Ok(_), Some(Err(e))) => e.context(
                    "the build succeeded but its throwaway images could not all be deregistered",
                ),
                (Ok(_), _) => anyhow::anyhow!("the build's AWS session was lost"),
            };
            if super::tracked::handed_over(&e) {
                return Err(e);
            }
            let failure = tracked
                .report_failure(deps, ctx, plan, &e, finished.running_step, &steps)
                .await;
            let body = format!(
                "{comment_marker}\n{}",
                render::failure_comment(&failure, &deps.redactor)
            );
            super::noted(
                ctx,
                &format!("comment on pull request #{number}"),
                reporter
                    .upsert_sticky_comment(number, &comment_marker, &body)
                    .await,
            )
            .await;
            Err(e)
        }
    }
}

/// Deregisters every image of a validation build with its snapshots. Returns the image
/// ids deregistered.
async fn discard_images(
    session: &AwsSession,
    manifest: &Manifest,
    log: &BuildLog,
) -> anyhow::Result<Vec<String>> {
    let mut done = vec![];
    let mut errors = vec![];
    for copy in manifest.builds.iter().flat_map(|b| b.copies.iter()) {
        let target = AwsTarget {
            account: copy.account.clone(),
            region: copy.region.clone(),
        };
        let image = ResourceRef::new(ResourceKind::Image, &copy.ami, &target);
        match resource::delete(session, &image).await {
            Ok(Deleted::Now { snapshots }) => {
                log.info(
                    "cleanup",
                    format!(
                        "deregistered throwaway {image} with snapshot(s) {}",
                        snapshots.join(", ")
                    ),
                );
                done.push(copy.ami.clone());
            }
            Ok(Deleted::AlreadyGone) => done.push(copy.ami.clone()),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if errors.is_empty() {
        Ok(done)
    } else {
        anyhow::bail!(
            "{}\nrun `bakery janitor` to delete what is left",
            errors.join("\n")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::git::testutil::GitRepo;

    #[test]
    fn changed_files_are_counted_from_the_merge_base() {
        let repo = GitRepo::init();
        repo.write("bakery.toml", "[defaults]\n");
        repo.write("recipes/base/recipe.toml", "name = \"base\"\n");
        repo.commit("initial");
        repo.git(&["branch", "feature"]);
        // The base moves on after the branch point: its changes are not the PR's.
        repo.write("README.md", "docs\n");
        repo.commit("docs on main");
        repo.git(&["checkout", "-q", "feature"]);
        repo.write("recipes/web/recipe.toml", "name = \"web\"\n");
        repo.git(&[
            "mv",
            "recipes/base/recipe.toml",
            "recipes/base/renamed.toml",
        ]);
        repo.commit("web");
        // The workspace layout: the base branch under refs/remotes/origin/.
        repo.git(&["update-ref", "refs/remotes/origin/main", "main"]);
        let changed = changed_files(repo.path(), "main").unwrap();
        assert_eq!(
            changed,
            vec![
                "recipes/base/recipe.toml",
                "recipes/base/renamed.toml",
                "recipes/web/recipe.toml"
            ]
        );
        let err = changed_files(repo.path(), "gone").unwrap_err();
        assert!(format!("{err:#}").contains("base branch gone"), "{err:#}");
    }

    #[test]
    fn diagnostics_become_annotations_with_their_hint() {
        let checked = crate::recipe::check_sources(
            Some("pull_requests = \"sometimes\"\n"),
            &[crate::recipe::RecipeSource::new(
                "base",
                "[builder]\nregion = \"eu-west-1\"\ninstance_typ = \"t3.micro\"\n",
            )],
        );
        let ann = annotations(&checked, &crate::redact::Redactor::new());
        assert_eq!(ann.len(), checked.diagnostics.len());
        assert!(!ann.is_empty());
        for (a, d) in ann.iter().zip(checked.diagnostics.iter()) {
            assert_eq!(a.path, d.file);
            assert_eq!(a.line, d.line);
            assert!(a.message.starts_with(&d.message));
            if let Some(h) = &d.hint {
                assert!(a.message.ends_with(&format!("hint: {h}")), "{}", a.message);
            }
            assert_eq!(
                a.level,
                if d.is_error() {
                    AnnotationLevel::Failure
                } else {
                    AnnotationLevel::Warning
                }
            );
        }
        assert!(ann.iter().any(|a| a.path == "bakery.toml" && a.line == 1));
        assert!(ann
            .iter()
            .any(|a| a.path == "recipes/base/recipe.toml" && a.line == 3));
    }

    #[test]
    fn pr_versions_name_the_pr_and_the_commit() {
        assert_eq!(
            pr_version(12, "3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c"),
            "pr-12-3f2a9c1"
        );
    }
}
