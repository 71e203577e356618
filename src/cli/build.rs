//! `bakery build`: builds a recipe into images, like `packer build`.
//!
//! The operator's configuration (`--config`, `BAKERY_*`) decides what the recipe cannot:
//! its `[policy]` is applied to the plan as the server applies it (target accounts with
//! their roles and external IDs, regions, instance types, launch permissions, `connect`),
//! and its `[aws]` section gives the endpoints and the wait budgets. A recipe that
//! `bakery build` builds is one the bot would build.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;

use super::{ConfigArgs, RecipeArgs};
use crate::aws::{AwsSession, Budgets};
use crate::build::hooks::{NoProvisioner, PauseAt};
use crate::build::progress::{PlainSink, TerminalSink};
use crate::build::{BuildLog, BuildOptions, BuildOutcome, BuildRunner, LogSink};
use crate::config::ServerConfig;
use crate::database::{DynStore, SqlStore};
use crate::plan::model::BuildPlan;
use crate::provision::Provisioner;
use crate::redact::Redactor;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The recipe to build (a name under `recipes/`). Not needed with `--plan-file`.
    pub recipe: Option<String>,
    /// The version to build, e.g. `release-1.4.0`. Not needed with `--plan-file`.
    #[arg(long)]
    pub version: Option<String>,
    #[command(flatten)]
    pub recipe_args: RecipeArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Build this plan (JSON, as `bakery plan --format json` prints it) instead of
    /// planning from the repository.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["recipe", "version"])]
    pub plan_file: Option<PathBuf>,
    /// Write the result (Packer manifest format) here.
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// The GitHub repository (`owner/name`) the recipes belong to: the images are tagged
    /// `bakery:repo` with it, and release checks and `latest` see only its images, as in
    /// the bot's builds. Without it, they see every repository's images.
    #[arg(long, value_name = "OWNER/NAME", value_parser = parse_repository)]
    pub repository: Option<String>,
    /// The build state store; it keeps the step journal that lets an interrupted build
    /// be resumed or cleaned up. Default: `sqlite://<repo>/.bakery/bakery.db`.
    #[arg(long, value_name = "URL", env = "BAKERY_DATABASE_URL")]
    pub state_db: Option<String>,
    /// Send every AWS call without an endpoint of its own in the configuration's
    /// `[aws.endpoints]` to this endpoint (default: the configuration's `aws.endpoint_url`).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// This installation's id, the `bakery:installation` tag on everything the build
    /// creates (default: the configuration's `aws.installation`, else `default`).
    #[arg(long, value_name = "ID")]
    pub installation: Option<String>,
    /// How long the intermediate image may take to become available (default: the
    /// configuration's `aws.budgets.image_available`, else 90m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub image_timeout: Option<Duration>,
    /// How long one copy may take to become available (default: the configuration's
    /// `aws.budgets.copy_available`, else 3h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub copy_timeout: Option<Duration>,
    /// Copies running at once into one region.
    #[arg(long, default_value_t = crate::aws::distribute::DEFAULT_PER_REGION_CONCURRENCY)]
    pub copy_concurrency: usize,
    /// Where a `[qemu]` builder's artifacts go (`<dir>/<recipe>/<recipe>-<version>/`).
    /// Default: `<repo>/.bakery/artifacts`.
    #[arg(long, value_name = "DIR", env = "BAKERY_ARTIFACT_DIR")]
    pub artifact_dir: Option<PathBuf>,
    /// How long a `[qemu]` builder's VM may take from its start to a working SSH login.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub qemu_boot_timeout: Duration,
    /// Test hook: `none` skips SSH for plans without provision steps.
    #[arg(long, value_enum, default_value_t = ProvisionerKind::Ssh, hide = true)]
    pub provisioner: ProvisionerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProvisionerKind {
    Ssh,
    /// Test hook: connects to nothing.
    None,
}

pub async fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    // A recipe with only a `[qemu]` builder builds locally; with both, EC2 first.
    let qemu = super::build_qemu::plan(&args)?;
    if let Some((q, false)) = &qemu {
        let (_, manifest) = super::build_qemu::run(&args, q).await?;
        if let Some(path) = &args.manifest {
            manifest.write(path)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let config = ServerConfig::from_env(args.config.config.as_deref())?;
    let mut plan = load_plan(&args)?;
    if let Some(repo) = &args.repository {
        plan.repo = Some(repo.clone());
    }
    // The operator's policy, as the server applies it: it refuses a plan outside it before
    // anything is launched, and gives each target account its external ID.
    let repo_key = args.repository.clone().unwrap_or_default();
    let profile = config.policy.apply(&repo_key, &mut plan)?;
    let repo_root = args.recipe_args.repo.clone();
    let store = open_store(args.state_db.as_deref(), &repo_root).await?;
    let provisioner: Arc<dyn Provisioner> = match args.provisioner {
        ProvisionerKind::Ssh => ssh_provisioner()?,
        ProvisionerKind::None => Arc::new(NoProvisioner),
    };

    let terminal = std::io::stderr().is_terminal();
    let terminal_sink = terminal.then(|| Arc::new(TerminalSink::new()));
    let sink: Arc<dyn LogSink> = match &terminal_sink {
        Some(t) => t.clone(),
        None => Arc::new(PlainSink),
    };
    let log = BuildLog::new(Redactor::global().clone(), vec![sink]);
    if !profile.dropped_copies.is_empty() || profile.dropped_launch_permissions {
        log.info(
            "plan",
            format!(
                "pull-request profile: copies to {:?} and launch permissions dropped",
                profile.dropped_copies
            ),
        );
    }

    let settings = super::aws_settings(
        &config,
        args.endpoint_url.as_deref(),
        args.installation.as_deref(),
    )?;
    let session = Arc::new(AwsSession::connect(settings, &plan.builder.region).await?);

    let cancel = tokio_util::sync::CancellationToken::new();
    spawn_signal_handler(cancel.clone(), log.clone());
    let options = BuildOptions {
        repo_root,
        job_id: None,
        budgets: Budgets {
            image_available: args
                .image_timeout
                .unwrap_or(config.aws.budgets.image_available),
            copy_available: args
                .copy_timeout
                .unwrap_or(config.aws.budgets.copy_available),
            ..config.aws.budgets
        },
        per_region_concurrency: args.copy_concurrency,
        cancel,
        pause: PauseAt::from_env(),
        ..BuildOptions::default()
    };
    let runner = BuildRunner::new(session, store, provisioner, log, options);
    let outcome = runner.run(plan).await;
    if let Some(t) = &terminal_sink {
        t.finish();
    }
    let outcome = outcome?;
    print_outcome(&outcome);
    let mut manifest = outcome.manifest().clone();
    if let Some((q, true)) = &qemu {
        let (_, m) = super::build_qemu::run(&args, q).await?;
        manifest.builds.extend(m.builds);
    }
    if let Some(path) = &args.manifest {
        manifest.write(path)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn load_plan(args: &BuildArgs) -> anyhow::Result<BuildPlan> {
    if let Some(path) = &args.plan_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read plan file {}", path.display()))?;
        return serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a plan: write it with `bakery plan RECIPE --version V --format json`",
                path.display()
            )
        });
    }
    let recipe = args
        .recipe
        .as_deref()
        .context("name the recipe to build (or give --plan-file)")?;
    let version = args
        .version
        .as_deref()
        .context("give the version to build with --version")?;
    let repo = &args.recipe_args.repo;
    let git_sha = match &args.recipe_args.git_sha {
        Some(sha) => sha.clone(),
        None => head_sha(repo)?,
    };
    let vars = parse_vars(&args.recipe_args.vars)?;
    crate::plan::plan_from_repo(&crate::plan::PlanRequest {
        repo_root: repo,
        recipe,
        version,
        git_sha: &git_sha,
        build_time: chrono::Utc::now(),
        vars,
        var_files: args.recipe_args.var_files.clone(),
        ephemeral: false,
    })
}

/// `owner/name`, as GitHub spells a repository.
pub(super) fn parse_repository(s: &str) -> Result<String, String> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match s.split_once('/') {
        Some((owner, name)) if ok_part(owner) && ok_part(name) => Ok(s.to_string()),
        _ => Err(format!(
            "{s:?} is not a repository: write it as owner/name, e.g. acme/images"
        )),
    }
}

pub(super) fn parse_vars(vars: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    vars.iter()
        .map(|v| {
            let (k, val) = v
                .split_once('=')
                .with_context(|| format!("--var {v:?}: write it as name=value"))?;
            Ok((k.trim().to_string(), val.to_string()))
        })
        .collect()
}

pub(super) fn head_sha(repo: &Path) -> anyhow::Result<String> {
    let repo = git2::Repository::discover(repo).with_context(|| {
        format!(
            "{} is not inside a git repository: pass --git-sha",
            repo.display()
        )
    })?;
    let head = repo
        .head()
        .context("the repository has no HEAD commit: commit first or pass --git-sha")?;
    let commit = head.peel_to_commit().context("HEAD is not a commit")?;
    Ok(commit.id().to_string())
}

/// Opens the build state store (default: an SQLite file under the repository).
pub async fn open_store(url: Option<&str>, repo_root: &Path) -> anyhow::Result<DynStore> {
    let url = match url {
        Some(u) => u.to_string(),
        None => format!(
            "sqlite://{}",
            repo_root.join(".bakery").join("bakery.db").display()
        ),
    };
    Ok(Arc::new(SqlStore::connect(&url).await?))
}

fn ssh_provisioner() -> anyhow::Result<Arc<dyn Provisioner>> {
    Ok(Arc::new(crate::provision::ssh::SshProvisioner::default()))
}

/// SIGINT or SIGTERM cancels the build, which then deletes what it created.
pub(super) fn spawn_signal_handler(cancel: tokio_util::sync::CancellationToken, log: BuildLog) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        log.info("cancel", "interrupted: cleaning up before exiting");
        cancel.cancel();
    });
}

fn print_outcome(outcome: &BuildOutcome) {
    let manifest = outcome.manifest();
    match outcome {
        BuildOutcome::Built {
            build_id, resumed, ..
        } => {
            let how = if *resumed { " (resumed)" } else { "" };
            println!("build {build_id} succeeded{how}");
        }
        BuildOutcome::AlreadyReleased { .. } => {
            println!("already released from this commit: nothing was built");
        }
    }
    println!("{:<14} {:<16} {:<24} KMS key", "account", "region", "image");
    for b in &manifest.builds {
        for c in &b.copies {
            println!(
                "{:<14} {:<16} {:<24} {}",
                c.account,
                c.region,
                c.ami,
                c.kms_key_id.as_deref().unwrap_or("-")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_repository;

    #[test]
    fn a_repository_is_owner_slash_name() {
        assert_eq!(parse_repository("acme/images").unwrap(), "acme/images");
        assert_eq!(parse_repository("a-b_c/d.e").unwrap(), "a-b_c/d.e");
        for bad in [
            "acme",
            "/images",
            "acme/",
            "acme/images/x",
            "acme/im ages",
            "",
        ] {
            let err = parse_repository(bad).unwrap_err();
            assert!(err.contains("owner/name"), "{bad}: {err}");
        }
    }
}
