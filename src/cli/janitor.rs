//! `bakery janitor`: deletes what finished, failed or unknown builds left behind.

use std::process::ExitCode;
use std::time::Duration;

use super::{ConfigArgs, OutputFormat};
use crate::aws::janitor::{self, JanitorOptions, Verdict};
use crate::aws::AwsSession;
use crate::config::ServerConfig;

#[derive(Debug, clap::Args)]
pub struct JanitorArgs {
    /// The operator's configuration: `aws.endpoint_url`, `aws.endpoints` and
    /// `aws.installation` apply as in the server.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Show what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only resources older than this are deleted.
    #[arg(long, default_value = "6h", value_parser = humantime::parse_duration, env = "BAKERY_AWS__JANITOR_TTL")]
    pub ttl: Duration,
    /// Also look in this region of the home account (repeatable). The regions and
    /// accounts of every build in the store are always looked at.
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// The build state store.
    #[arg(
        long,
        value_name = "URL",
        env = "BAKERY_DATABASE_URL",
        default_value = "sqlite://.bakery/bakery.db"
    )]
    pub state_db: String,
    /// Send every AWS call without an endpoint of its own in the configuration's
    /// `[aws.endpoints]` here (default: the configuration's `aws.endpoint_url`).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// This installation's id: only resources carrying it in their `bakery:installation`
    /// tag are looked at (default: the configuration's `aws.installation`, else `default`).
    #[arg(long, value_name = "ID")]
    pub installation: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

pub async fn run(args: JanitorArgs) -> anyhow::Result<ExitCode> {
    let config = ServerConfig::from_env(args.config.config.as_deref())?;
    let settings = super::aws_settings(
        &config,
        args.endpoint_url.as_deref(),
        args.installation.as_deref(),
    )?;
    let store = crate::database::SqlStore::connect(&args.state_db).await?;
    let home_region = args
        .regions
        .first()
        .cloned()
        .unwrap_or_else(|| "us-east-1".to_string());
    let session = AwsSession::connect(settings, &home_region).await?;
    let targets = janitor::scope_from_store(&session, &store, &args.regions).await?;
    anyhow::ensure!(
        !targets.is_empty(),
        "no region to look in: the store has no builds; name regions with --region"
    );
    let opts = JanitorOptions {
        ttl: args.ttl,
        dry_run: args.dry_run,
        now: chrono::Utc::now(),
    };
    let report = janitor::run(&session, &store, &targets, &opts).await?;
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => {
            for f in &report.findings {
                let (what, reason) = match &f.verdict {
                    Verdict::Delete(r) if args.dry_run => ("would delete", r),
                    Verdict::Delete(_) if f.error.is_some() => {
                        ("NOT deleted", f.error.as_ref().expect("an error"))
                    }
                    Verdict::Delete(r) => ("deleted", r),
                    Verdict::Keep(r) => ("kept", r),
                };
                println!(
                    "{what:<12} {:<15} {:<24} {} (build {}): {reason}",
                    f.kind.as_str(),
                    f.id,
                    f.target,
                    f.build_id
                );
            }
            for s in &report.skipped {
                println!("skipped      {s}");
            }
            let n = report.to_delete().count();
            if args.dry_run {
                println!("{n} resource(s) would be deleted (dry run)");
            } else {
                println!("{n} resource(s) deleted");
            }
        }
    }
    let failed = report.findings.iter().any(|f| f.error.is_some()) || !report.skipped.is_empty();
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
