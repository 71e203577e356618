//! `bakery sync`: enqueue release jobs for release tags whose delivery was missed. The
//! first sync of a repository records its tags as history and builds none of them.

use std::process::ExitCode;

use anyhow::Context;

use super::{ConfigArgs, OutputFormat};
use crate::config::ServerConfig;
use crate::database::SqlStore;
use crate::github::{sync, GitHubClient, RepoName};

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The repository to sync, as owner/name. May be repeated.
    #[arg(long = "repo", value_name = "OWNER/NAME", required = true)]
    pub repos: Vec<String>,
    /// Release tag globs; defaults to the configuration's `webhook.tag_patterns`.
    #[arg(long = "pattern", value_name = "GLOB")]
    pub patterns: Vec<String>,
    /// Never build a tag below this one (natural order); defaults to the configuration's
    /// `github.sync_floor`. Without a floor, the first sync of a repository builds nothing.
    #[arg(long, value_name = "TAG")]
    pub floor: Option<String>,
    /// List the tags that would be enqueued, and enqueue nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

pub async fn run(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let config = ServerConfig::from_env(args.config.config.as_deref())?;
    let repos = args
        .repos
        .iter()
        .map(|r| RepoName::parse(r))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let patterns = if args.patterns.is_empty() {
        config.webhook.tag_patterns.clone()
    } else {
        args.patterns.clone()
    };
    let floor = match &args.floor {
        Some(f) => sync::SyncFloor::new(f),
        None => config.github.sync_floor(),
    };
    let store = SqlStore::connect(config.database_url.expose()).await?;
    let client = GitHubClient::from_config(&config.github)?;
    let mut reports = Vec::new();
    for repo in &repos {
        let report = sync::sync_repo(
            &store,
            &client,
            repo,
            &patterns,
            floor.as_ref(),
            args.dry_run,
        )
        .await
        .with_context(|| format!("cannot sync {repo}"))?;
        reports.push(report);
    }
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        OutputFormat::Text => {
            for r in &reports {
                println!(
                    "{}: {} tags, {} matching, {} enqueued",
                    r.repo,
                    r.tags_seen,
                    r.matching,
                    r.enqueued.len()
                );
                for (tag, job) in &r.enqueued {
                    println!("  enqueued {tag} as job {job}");
                }
                if r.first_sync {
                    println!(
                        "  first sync: {} release tag(s) already there are history, recorded and not built",
                        r.history.len()
                    );
                }
                for tag in &r.history {
                    let why = if r.first_sync {
                        "would have built"
                    } else {
                        "history, not built"
                    };
                    println!("  {why} {tag}");
                }
                for tag in &r.below_floor {
                    println!("  below the floor, not built {tag}");
                }
                for tag in &r.skipped {
                    let why = if args.dry_run {
                        "would enqueue"
                    } else {
                        "already queued"
                    };
                    println!("  {why} {tag}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
