//! `bakery images`: every image bakery released, read from the cloud's tags across every
//! account and region of the server configuration's policy and of the store's builds.

use std::process::ExitCode;

use super::ConfigArgs;
use crate::aws::AwsSession;
use crate::config::ServerConfig;
use crate::registry::{self, ImageQuery};

/// How `bakery images` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ImagesFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Only this recipe's images.
    pub recipe: Option<String>,
    /// Only this version (e.g. `release-0.1.0`).
    #[arg(long)]
    pub version: Option<String>,
    /// Only the images in this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Only this region.
    #[arg(long)]
    pub region: Option<String>,
    /// Only this account id.
    #[arg(long)]
    pub account: Option<String>,
    /// Only images built on a revoked parent, or on a parent older than its recipe's
    /// newest release, each with the reason.
    #[arg(long)]
    pub outdated: bool,
    #[arg(long, value_enum, default_value_t = ImagesFormat::Table)]
    pub format: ImagesFormat,
}

pub async fn run(args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let config = ServerConfig::from_env(args.config.config.as_deref())?;
    let store = crate::database::SqlStore::connect(config.database_url.expose()).await?;
    let session =
        AwsSession::connect(config.aws.settings(), config.policy.registry_region()).await?;
    let targets = registry::scope::targets(&session, &store, &config.policy).await?;
    let query = ImageQuery {
        recipe: args.recipe,
        version: args.version,
        channel: args.channel,
        region: args.region,
        account: args.account,
    };
    if args.outdated {
        // Parents and their newest releases are judged against everything, then narrowed.
        let all = ImageQuery::default();
        let report = registry::lookup(&session, &store, &targets, &all, chrono::Utc::now()).await?;
        let found: Vec<_> = registry::outdated::outdated(&report.images)
            .into_iter()
            .filter(|o| query.matches(&o.image))
            .collect();
        match args.format {
            ImagesFormat::Json => println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({ "outdated": found, "skipped": report.skipped })
                )?
            ),
            ImagesFormat::Table => {
                let images: Vec<_> = found.iter().map(|o| o.image.clone()).collect();
                print!("{}", registry::table::render(&images));
                for o in &found {
                    println!(
                        "{} ({} in {} for account {}): {}",
                        o.image.image_id,
                        o.image.version,
                        o.image.region,
                        o.image.account,
                        o.outdated
                    );
                }
                for s in &report.skipped {
                    eprintln!("skipped {s}");
                }
            }
        }
        return Ok(if report.skipped.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let report = registry::lookup(&session, &store, &targets, &query, chrono::Utc::now()).await?;
    match args.format {
        ImagesFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ImagesFormat::Table => {
            print!("{}", registry::table::render(&report.images));
            for s in &report.skipped {
                eprintln!("skipped {s}");
            }
        }
    }
    Ok(if report.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
