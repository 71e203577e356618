//! `bakery build` of a recipe's `[qemu]` builder: plans it beside the EC2 builder, runs
//! the local build (`crate::qemu::build`) with the command line's progress output and
//! Ctrl-C handling, and prints the artifacts. Touches what the qemu build touches.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::build::BuildArgs;
use crate::build::progress::{PlainSink, TerminalSink};
use crate::build::{BuildLog, LogSink, Manifest};
use crate::qemu::build::{QemuBuildOptions, QemuOutcome};
use crate::qemu::plan::QemuPlan;
use crate::redact::Redactor;

/// The recipe's qemu builder, if it has one, and whether it also builds on EC2. `None`
/// for a plan file (EC2 only).
pub fn plan(args: &BuildArgs) -> anyhow::Result<Option<(QemuPlan, bool)>> {
    if args.plan_file.is_some() {
        return Ok(None);
    }
    let (Some(recipe), Some(version)) = (args.recipe.as_deref(), args.version.as_deref()) else {
        return Ok(None);
    };
    let (qemu, ec2) = crate::qemu::plan::from_repo(&args.recipe_args.repo, recipe, version)?;
    Ok(qemu.map(|q| (q, ec2)))
}

/// The artifact directory: `--artifact-dir`, else `<repo>/.bakery/artifacts`.
pub fn artifact_root(args: &BuildArgs) -> PathBuf {
    args.artifact_dir
        .clone()
        .unwrap_or_else(|| args.recipe_args.repo.join(".bakery").join("artifacts"))
}

/// Builds the qemu artifacts; returns the outcome and its manifest.
pub async fn run(args: &BuildArgs, plan: &QemuPlan) -> anyhow::Result<(QemuOutcome, Manifest)> {
    let recipe = args.recipe.as_deref().context("name the recipe to build")?;
    let version = args.version.as_deref().context("give --version")?;
    let repo = &args.recipe_args.repo;
    let git_sha = match &args.recipe_args.git_sha {
        Some(sha) => sha.clone(),
        None => super::build::head_sha(repo)?,
    };
    let steps = crate::plan::steps_from_repo(&crate::plan::PlanRequest {
        repo_root: repo,
        recipe,
        version,
        git_sha: &git_sha,
        build_time: chrono::Utc::now(),
        vars: super::build::parse_vars(&args.recipe_args.vars)?,
        var_files: args.recipe_args.var_files.clone(),
        ephemeral: false,
    })?;

    let terminal_sink = std::io::stderr()
        .is_terminal()
        .then(|| Arc::new(TerminalSink::new()));
    let sink: Arc<dyn LogSink> = match &terminal_sink {
        Some(t) => t.clone(),
        None => Arc::new(PlainSink),
    };
    let log = BuildLog::new(Redactor::global().clone(), vec![sink]);
    let mut options = QemuBuildOptions::new(repo.clone(), artifact_root(args), log.clone());
    options.boot_budget = args.qemu_boot_timeout;
    super::build::spawn_signal_handler(options.cancel.clone(), log);
    let outcome = crate::qemu::build::build(plan, &steps, &options).await;
    if let Some(t) = &terminal_sink {
        t.finish();
    }
    let outcome = outcome?;
    let manifest = crate::qemu::build::manifest(plan, &outcome);
    print_outcome(&outcome);
    Ok((outcome, manifest))
}

fn print_outcome(o: &QemuOutcome) {
    println!("qemu build {} succeeded ({})", o.build_id, o.accel.name());
    println!("{:<6} {:>14}  {:<64}  file", "format", "bytes", "sha256");
    for a in &o.artifacts {
        println!(
            "{:<6} {:>14}  {:<64}  {}",
            a.format.extension(),
            a.size,
            a.sha256,
            a.path.display()
        );
    }
}
