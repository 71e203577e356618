//! `bakery lifecycle`: applies the lifecycle rules of one repository's recipes to its
//! releases in every account and region of the operator's configuration, or (with
//! `--dry-run`) prints exactly what it would do. The rules, channels and source pins come
//! from a checkout of the repository's default branch.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{ConfigArgs, OutputFormat};
use crate::aws::AwsSession;
use crate::config::ServerConfig;
use crate::registry::{self, retire};

#[derive(Debug, clap::Args)]
pub struct LifecycleArgs {
    /// The operator's configuration: the store, `aws.*` and the policy's accounts and
    /// regions apply as in the server.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print what would be deprecated or deregistered, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// A checkout of the repository's default branch: its recipes' and `bakery.toml`'s
    /// `[lifecycle]`, `channels.toml`, and the releases recipes build on.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Whose releases (`owner/name`, as the images' `bakery:repo` tag says). Without it,
    /// the releases built without a repository.
    #[arg(long, value_name = "OWNER/NAME", value_parser = super::build::parse_repository)]
    pub repository: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

pub async fn run(args: LifecycleArgs) -> anyhow::Result<ExitCode> {
    let config = ServerConfig::from_env(args.config.config.as_deref())?;
    let (root, _) = crate::recipe::find_repo_root(&args.repo)?;
    let lifecycle = retire::read_checkout(&root)?;
    let store = crate::database::SqlStore::connect(config.database_url.expose()).await?;
    let session =
        AwsSession::connect(config.aws.settings(), config.policy.registry_region()).await?;
    let targets = registry::scope::targets(&session, &store, &config.policy).await?;
    let report = retire::run(
        &session,
        &store,
        &targets,
        args.repository.as_deref(),
        &lifecycle,
        &retire::RetireOptions {
            dry_run: args.dry_run,
            now: chrono::Utc::now(),
            ssm_prefix: config.aws.ssm_prefix.clone(),
        },
    )
    .await?;
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => print!("{}", registry::lifecycle_text::render(&report)),
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
