use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::{OutputFormat, RecipeArgs};
use crate::plan::{plan_from_repo, render, PlanRequest};
use crate::recipe;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The recipe to plan (its folder name under recipes/).
    pub recipe: String,
    /// The version to build, e.g. the release tag `release-0.1.0`.
    #[arg(long)]
    pub version: String,
    #[command(flatten)]
    pub recipe_args: RecipeArgs,
    /// Plan a throwaway pull-request build: one copy in the builder region, shared with no one.
    #[arg(long)]
    pub ephemeral: bool,
    /// The build time to plan for (RFC 3339). Defaults to now.
    #[arg(long, value_name = "RFC3339")]
    pub build_time: Option<String>,
    /// `text` for people; `json` prints the BuildPlan the build engine consumes.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

pub async fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let (root, _) = recipe::find_repo_root(&args.recipe_args.repo)?;
    let git_sha = match &args.recipe_args.git_sha {
        Some(sha) => sha.clone(),
        None => {
            let (sha, note) = head_sha(&root);
            if let Some(note) = note {
                eprintln!("note: {note}");
            }
            sha
        }
    };
    let build_time = match &args.build_time {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .with_context(|| {
                format!("--build-time {t} is not an RFC 3339 time; write e.g. 2025-01-31T12:00:00Z")
            })?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let mut vars = BTreeMap::new();
    for v in &args.recipe_args.vars {
        let Some((name, value)) = v.split_once('=') else {
            bail!("--var {v}: expected NAME=VALUE, e.g. --var docker_version=27.3");
        };
        vars.insert(name.trim().to_string(), value.to_string());
    }
    // The local QEMU builder, shown after the EC2 one (or alone, for a qemu-only recipe).
    let (qemu, ec2) = crate::qemu::plan::from_repo(&root, &args.recipe, &args.version)?;
    if let (Some(q), false) = (&qemu, ec2) {
        match args.format {
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(q)?),
            OutputFormat::Text => print!("{}", crate::qemu::plan::render_text(q)),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let plan = plan_from_repo(&PlanRequest {
        repo_root: &root,
        recipe: &args.recipe,
        version: &args.version,
        git_sha: &git_sha,
        build_time,
        vars,
        var_files: args.recipe_args.var_files.clone(),
        ephemeral: args.ephemeral,
    })?;
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        OutputFormat::Text => print!("{}", render::render_text(&plan)),
    }
    if let (Some(q), OutputFormat::Text) = (&qemu, args.format) {
        print!("\n{}", crate::qemu::plan::render_text(q));
    }
    Ok(ExitCode::SUCCESS)
}

/// HEAD's commit id, and a note for the reader when the plan may not match a build of it.
pub fn head_sha(root: &Path) -> (String, Option<String>) {
    let repo = match git2::Repository::discover(root) {
        Ok(r) => r,
        Err(_) => {
            return (
                "uncommitted".into(),
                Some(format!(
                    "{} is not in a git repository; the plan uses git sha \"uncommitted\" (pass --git-sha to set one)",
                    root.display()
                )),
            )
        }
    };
    let sha = match repo.head().ok().and_then(|h| h.peel_to_commit().ok()) {
        Some(c) => c.id().to_string(),
        None => {
            return (
                "uncommitted".into(),
                Some(
                    "the repository has no commits yet; the plan uses git sha \"uncommitted\""
                        .into(),
                ),
            )
        }
    };
    // Status paths are relative to the work tree, which may hold the recipes in a subfolder.
    let prefix = repo
        .workdir()
        .and_then(|w| {
            root.canonicalize()
                .ok()?
                .strip_prefix(w.canonicalize().ok()?)
                .ok()
                .map(Path::to_path_buf)
        })
        .map(|p| {
            let p = p.to_string_lossy().into_owned();
            if p.is_empty() {
                p
            } else {
                format!("{p}/")
            }
        })
        .unwrap_or_default();
    let config_path = format!("{prefix}{}", recipe::repo_config::FILE_NAME);
    let recipes_dir = format!("{prefix}{}/", recipe::RECIPES_DIR);
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true).recurse_untracked_dirs(true);
    let dirty = repo
        .statuses(Some(&mut opts))
        .map(|s| {
            s.iter().any(|e| {
                e.path()
                    .ok()
                    .is_some_and(|p| p == config_path || p.starts_with(&recipes_dir))
            })
        })
        .unwrap_or(false);
    let note = dirty.then(|| {
        format!(
            "recipes have uncommitted changes; this plan shows the working tree, a build of {} would not include them",
            &sha[..12.min(sha.len())]
        )
    });
    (sha, note)
}
