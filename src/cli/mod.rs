//! The `bakery` command line: one binary for the bot (`serve`) and for people and CI
//! (`build`, `validate`, `plan`...). Each subcommand lives in its own module.

mod build;
mod build_qemu;
mod config_check;
mod doctor;
mod images;
mod janitor;
mod jobs;
mod lifecycle;
mod plan;
mod promote;
mod serve;
mod sync;
mod validate;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "bakery",
    version,
    about = "Turns a git tag into finished, versioned, encrypted VM images"
)]
pub struct Cli {
    /// Log output: `pretty` for people, `json` for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty, env = "BAKERY_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by the commands that read the server configuration.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Server configuration file (TOML). `BAKERY_*` environment variables override it.
    #[arg(long, short = 'c', env = "BAKERY_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The AWS settings a command runs with: the operator's configuration (`aws.endpoint_url`,
/// `aws.endpoints`, `aws.installation`, a file or `BAKERY_*`), with the command line's
/// `--endpoint-url` and `--installation` over it. The installation decides what cleanup
/// and the janitor may touch, so a command never falls back to the default id while the
/// configuration names another.
pub(crate) fn aws_settings(
    config: &crate::config::ServerConfig,
    endpoint_url: Option<&str>,
    installation: Option<&str>,
) -> anyhow::Result<crate::aws::AwsSettings> {
    let mut settings = config.aws.settings();
    if let Some(url) = endpoint_url {
        settings.endpoint_url = Some(url.to_string());
    }
    if let Some(id) = installation {
        anyhow::ensure!(
            crate::aws::tags::valid_installation(id),
            "--installation {id:?} must be 1 to 64 letters, digits or -_.:/"
        );
        settings.installation = id.to_string();
    }
    Ok(settings)
}

/// Output format for commands that print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// Options shared by the commands that read recipes.
#[derive(Debug, Clone, Args)]
pub struct RecipeArgs {
    /// The repository (or any folder inside it) holding `bakery.toml` and `recipes/`.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Override a recipe variable: `--var name=value`. May be repeated.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// A TOML file of variable values.
    #[arg(long = "var-file", value_name = "PATH")]
    pub var_files: Vec<PathBuf>,
    /// The git SHA to plan for. Defaults to the repository's HEAD.
    #[arg(long)]
    pub git_sha: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook listener and the build workers.
    Serve(serve::ServeArgs),
    /// List the jobs in the store.
    Jobs(jobs::JobsArgs),
    /// Inspect the server configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Check every recipe and the repository config; report every error at once.
    Validate(validate::ValidateArgs),
    /// Print exactly what a build would do, without calling any cloud.
    Plan(plan::PlanArgs),
    /// Build a recipe into images, like `packer build`.
    Build(build::BuildArgs),
    /// Delete leftover cloud resources of finished, failed or unknown builds.
    Janitor(janitor::JanitorArgs),
    /// Enqueue release jobs for tags whose delivery was missed.
    Sync(sync::SyncArgs),
    /// Check AWS and GitHub for everything bakery will need; change nothing.
    Doctor(doctor::DoctorArgs),
    /// List the images bakery released, from the cloud's tags.
    Images(images::ImagesArgs),
    /// Check an image against its release's signed provenance before launching it.
    Verify(verify::VerifyArgs),
    /// Deprecate and deregister old releases as the recipes' lifecycle rules say.
    Lifecycle(lifecycle::LifecycleArgs),
    /// Break-glass: point a channel at a release now, in every account and region.
    Promote(promote::PromoteArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the resolved configuration, secrets masked, and check it.
    Check(config_check::ConfigCheckArgs),
}

/// The stack of each runtime thread. A job's future (checkout, the build's steps, the
/// provisioner, reporting) nests deeply, and polling it needs more than tokio's default of
/// 2 MiB: a debug build of `bakery serve` overflowed it in a pull request's build. The
/// stack is reserved, not committed: a thread uses only what it touches.
const WORKER_STACK: usize = 16 * 1024 * 1024;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            let message = crate::redact::Redactor::global().redact(&format!("{e:#}"));
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Jobs(args) => jobs::run(args).await,
        Command::Config {
            command: ConfigCommand::Check(args),
        } => config_check::run(args).await,
        Command::Validate(args) => validate::run(args).await,
        Command::Plan(args) => plan::run(args).await,
        Command::Build(args) => build::run(args).await,
        Command::Janitor(args) => janitor::run(args).await,
        Command::Sync(args) => sync::run(args).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::Images(args) => images::run(args).await,
        Command::Verify(args) => verify::run(args).await,
        Command::Lifecycle(args) => lifecycle::run(args).await,
        Command::Promote(args) => promote::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::aws_settings;
    use crate::config::ServerConfig;

    fn config(vars: &[(&str, &str)]) -> ServerConfig {
        ServerConfig::load(
            None,
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .expect("a valid configuration")
    }

    #[test]
    fn the_configurations_installation_holds_unless_the_command_line_names_one() {
        let c = config(&[
            ("BAKERY_AWS__INSTALLATION", "blue"),
            ("BAKERY_AWS__ENDPOINT_URL", "http://127.0.0.1:9"),
        ]);
        let s = aws_settings(&c, None, None).unwrap();
        assert_eq!(s.installation, "blue");
        assert_eq!(s.endpoint_url.as_deref(), Some("http://127.0.0.1:9"));
        let s = aws_settings(&c, Some("http://127.0.0.1:8"), Some("green")).unwrap();
        assert_eq!(s.installation, "green");
        assert_eq!(s.endpoint_url.as_deref(), Some("http://127.0.0.1:8"));
        let s = aws_settings(&config(&[]), None, None).unwrap();
        assert_eq!(s.installation, crate::aws::tags::DEFAULT_INSTALLATION);
        assert!(aws_settings(&c, None, Some("not an id!")).is_err());
    }
}
