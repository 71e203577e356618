//! `bakery promote RECIPE VERSION CHANNEL`: break-glass. Points the channel's parameter
//! and `bakery:channel:<name>` tag at the release in every account and region where it
//! has an image, now, without a change to the repository.
//!
//! The repository's channels on the default branch (`channels.toml`, or `[channels]` in
//! `bakery.toml`) stay the source of truth: the next reconcile (a push that changes them,
//! or the server's scheduled reconcile after its janitor) restores what they say unless
//! the file changes too. The command says so every time.
//!
//! Touches: the cloud (the registry's scope of the operator's policy; the channel's
//! parameters and tags of the recipe's images only) and the store (read-only).

use std::process::ExitCode;

use super::ConfigArgs;
use crate::aws::AwsSession;
use crate::config::ServerConfig;
use crate::registry::{self, reconcile, ImageQuery};

#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The recipe, e.g. `base-ubuntu`.
    pub recipe: String,
    /// The released version, e.g. `release-0.2.0`.
    pub version: String,
    /// The channel, e.g. `production`.
    pub channel: String,
    /// The repository (`owner/name`) that released it; needed only when several did.
    #[arg(long)]
    pub repository: Option<String>,
}

/// What `bakery promote` always prints last.
pub const SOURCE_OF_TRUTH: &str = "the channels on the default branch (channels.toml, or \
[channels] in bakery.toml) are the source of truth: the next reconcile (a push that changes \
them, or the server's scheduled reconcile, every aws.janitor_interval_secs) restores what \
they say unless the file changes too.";

pub async fn run(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        registry::channels::is_channel_name(&args.channel),
        "{:?} is not a channel name: letters, digits, \"-\", \"_\" and \".\", at most 64",
        args.channel
    );
    let config = ServerConfig::from_env(args.config.config.as_deref())?;
    let store = crate::database::SqlStore::connect(config.database_url.expose()).await?;
    let session =
        AwsSession::connect(config.aws.settings(), config.policy.registry_region()).await?;
    let targets = registry::scope::targets(&session, &store, &config.policy).await?;
    let query = ImageQuery {
        recipe: Some(args.recipe.clone()),
        ..ImageQuery::default()
    };
    let report = registry::lookup(&session, &store, &targets, &query, chrono::Utc::now()).await?;
    for s in &report.skipped {
        eprintln!("skipped {s}");
    }
    let repos: std::collections::BTreeSet<String> = report
        .images
        .iter()
        .filter(|i| i.version == args.version)
        .filter_map(|i| i.repo.clone())
        .collect();
    let repo = match (&args.repository, repos.len()) {
        (Some(r), _) => r.clone(),
        (None, 1) => repos.into_iter().next().expect("one"),
        (None, 0) => anyhow::bail!(
            "{}@{} was never released by a repository (or every image of it is gone)",
            args.recipe,
            args.version
        ),
        (None, _) => anyhow::bail!(
            "{}@{} was released by several repositories ({}): name one with --repository",
            args.recipe,
            args.version,
            repos.into_iter().collect::<Vec<_>>().join(", ")
        ),
    };
    let images: Vec<_> = report
        .images
        .into_iter()
        .filter(|i| i.repo.as_deref() == Some(repo.as_str()))
        .collect();
    let prefix = &config.aws.ssm_prefix;
    let mut file = registry::channels::Channels::default();
    file.channels
        .entry(args.channel.clone())
        .or_default()
        .insert(args.recipe.clone(), args.version.clone());
    let reads = reconcile::parameters_to_read(&file, &images, prefix, &repo)?;
    let parameters = crate::aws::channels::read_parameters(&session, &reads).await?;
    let plan = reconcile::promote(
        &images,
        &parameters,
        prefix,
        &repo,
        &args.recipe,
        &args.version,
        &args.channel,
    )?;
    if !plan.plan.is_clean() {
        for r in &plan.plan.refusals {
            eprintln!("refused: {}", serde_json::to_string(r)?);
        }
        eprintln!("nothing changed");
        return Ok(ExitCode::FAILURE);
    }
    let mut failed = 0usize;
    for action in &plan.actions {
        let line = serde_json::to_string(action)?;
        match crate::aws::channels::apply(&session, action, &repo).await {
            Ok(()) => println!("done: {line}"),
            Err(e) => {
                failed += 1;
                eprintln!("failed: {line}: {e:#}");
            }
        }
    }
    if plan.actions.is_empty() {
        println!(
            "{} already points at {}@{} everywhere",
            args.channel, args.recipe, args.version
        );
    }
    println!("{SOURCE_OF_TRUTH}");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
