//! Applying the lifecycle rules: the repository's rules, channels file and source pins
//! read from a checkout of its default branch, the registry read from the cloud, the
//! plan made ([`super::lifecycle`]), then (unless a dry run) each copy deprecated or
//! deregistered ([`crate::aws::retire`]).
//!
//! Nothing is applied when a target could not be searched: an image there could be a
//! child of a release the plan would deregister. Every action goes into the journal of
//! the build that made the copy and into the log of that build's release job.
//!
//! Touches: the checkout (read), the cloud (through `aws::retire`), the store (journal and
//! job log entries).

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::channels::Channels;
use super::lifecycle::{self, Action, Entry, LifecyclePlan, PlanInput, Rules, SourcePin};
use super::parameter_names::{version_parameter, ParameterPrefix};
use super::ImageQuery;
use crate::aws::retire::{self as aws_retire, Retired};
use crate::aws::{AwsSession, Target};
use crate::database::{JournalEntry, Store};
use crate::recipe::spec::SourceSpec;

/// What a repository's default branch says about retiring its releases.
#[derive(Debug, Clone, Default)]
pub struct RepoLifecycle {
    pub rules: Rules,
    pub channels: Channels,
    pub pins: Vec<SourcePin>,
}

/// Why a checkout's lifecycle cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("the recipes on the default branch do not validate:\n{0}")]
    Recipes(String),
    #[error("{0} on the default branch does not validate:\n{1}")]
    Channels(super::channels_source::ChannelsSource, String),
}

/// Reads the rules, channels and source pins of the checkout at `root`. A checkout whose
/// recipes or channels have errors is refused: retiring on half-read rules could remove
/// what a channel or a pin protects.
pub fn read_checkout(root: &Path) -> anyhow::Result<RepoLifecycle> {
    let checked = crate::recipe::load_repo(root)?;
    if !checked.is_ok() {
        let lines: Vec<String> = checked.diagnostics.iter().map(|d| d.to_string()).collect();
        return Err(Unreadable::Recipes(lines.join("\n")).into());
    }
    let read = super::channels_source::read_dir(root)?;
    if read.diagnostics.has_errors() {
        let lines: Vec<String> = read.diagnostics.iter().map(|d| d.to_string()).collect();
        return Err(Unreadable::Channels(read.source, lines.join("\n")).into());
    }
    let channels = read.channels;
    let set = &checked.set;
    let mut rules = Rules {
        default: set.config.lifecycle,
        ..Rules::default()
    };
    let mut pins = vec![];
    for (name, spec) in &set.recipes {
        rules
            .recipes
            .insert(name.clone(), spec.lifecycle_rules(&set.config));
        if let Some(loc) = &spec.source {
            if let SourceSpec::Recipe { recipe, version } = &loc.value {
                if version.value.is_literal() {
                    pins.push(SourcePin {
                        by: name.clone(),
                        recipe: recipe.value.clone(),
                        version: version.value.source_text(),
                    });
                }
            }
        }
    }
    Ok(RepoLifecycle {
        rules,
        channels,
        pins,
    })
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct RetireOptions {
    pub dry_run: bool,
    pub now: DateTime<Utc>,
    pub ssm_prefix: ParameterPrefix,
}

/// One copy and what happened to it (`None` on a dry run or a spared release).
#[derive(Debug, Clone, Serialize)]
pub struct CopyResult {
    pub account: String,
    pub region: String,
    pub image_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Retired>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One planned release and what happened to each of its copies.
#[derive(Debug, Clone, Serialize)]
pub struct EntryResult {
    #[serde(flatten)]
    pub entry: Entry,
    pub results: Vec<CopyResult>,
}

/// A lifecycle run.
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleReport {
    pub dry_run: bool,
    pub repo: Option<String>,
    pub entries: Vec<EntryResult>,
    /// Targets that could not be searched; nothing was applied when there are any.
    pub skipped: Vec<String>,
}

impl LifecycleReport {
    pub fn failed(&self) -> bool {
        !self.skipped.is_empty()
            || self
                .entries
                .iter()
                .flat_map(|e| &e.results)
                .any(|c| c.error.is_some())
    }
}

/// Plans the lifecycle of `repo`'s releases in `targets` and, unless a dry run, applies it.
pub async fn run(
    session: &AwsSession,
    store: &dyn Store,
    targets: &[Target],
    repo: Option<&str>,
    lifecycle: &RepoLifecycle,
    opts: &RetireOptions,
) -> anyhow::Result<LifecycleReport> {
    let found = super::lookup(session, store, targets, &ImageQuery::default(), opts.now).await?;
    let plan: LifecyclePlan = lifecycle::plan(PlanInput {
        repo,
        images: &found.images,
        rules: &lifecycle.rules,
        channels: &lifecycle.channels,
        pins: &lifecycle.pins,
        now: opts.now,
    });
    let apply = !opts.dry_run && found.skipped.is_empty();
    let mut entries = vec![];
    for entry in plan.entries {
        let mut results = vec![];
        for copy in &entry.copies {
            let mut result = CopyResult {
                account: copy.account.clone(),
                region: copy.region.clone(),
                image_id: copy.image_id.clone(),
                result: None,
                error: None,
            };
            if let (true, Some(action)) = (apply, entry.retires()) {
                match retire_copy(session, &entry, copy, action, opts).await {
                    Ok(r) => result.result = Some(r),
                    Err(e) => {
                        tracing::warn!(
                            "lifecycle: cannot {} {} in {}/{}: {e:#}",
                            action.as_str(),
                            copy.image_id,
                            copy.account,
                            copy.region
                        );
                        result.error = Some(format!("{e:#}"));
                    }
                }
                record(store, &entry, copy, &result).await;
            }
            results.push(result);
        }
        entries.push(EntryResult { entry, results });
    }
    Ok(LifecycleReport {
        dry_run: opts.dry_run,
        repo: repo.map(str::to_string),
        entries,
        skipped: found.skipped,
    })
}

async fn retire_copy(
    session: &AwsSession,
    entry: &Entry,
    copy: &lifecycle::Copy,
    action: Action,
    opts: &RetireOptions,
) -> anyhow::Result<Retired> {
    let target = Target {
        account: copy.account.clone(),
        region: copy.region.clone(),
    };
    match action {
        Action::Deprecate => {
            let at = opts.now + chrono::Duration::minutes(1);
            aws_retire::deprecate(session, &target, &copy.image_id, &copy.build_id, at).await
        }
        Action::Deregister => {
            let parameter = version_parameter(
                &opts.ssm_prefix,
                entry.repo.as_deref(),
                &entry.recipe,
                &entry.version,
            )
            .ok();
            aws_retire::deregister(
                session,
                &target,
                &copy.image_id,
                &copy.build_id,
                parameter.as_deref(),
            )
            .await
        }
    }
}

/// The action in the journal of the copy's build and the log of its release job. A
/// store that refuses is a warning: the cloud already changed.
async fn record(store: &dyn Store, entry: &Entry, copy: &lifecycle::Copy, result: &CopyResult) {
    let line = super::lifecycle_text::copy_line(entry, result);
    tracing::info!("lifecycle: {line}");
    let build = match store.get_build(&copy.build_id).await {
        Ok(Some(b)) => b,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!("lifecycle: cannot read build {}: {e:#}", copy.build_id);
            return;
        }
    };
    let data = serde_json::json!({
        "by": "lifecycle",
        "recipe": entry.recipe,
        "version": entry.version,
        "account": copy.account,
        "region": copy.region,
        "image_id": copy.image_id,
        "result": result.result,
        "error": result.error,
    });
    if let Err(e) = store
        .append_journal(
            &copy.build_id,
            &JournalEntry {
                kind: "lifecycle".into(),
                data,
            },
        )
        .await
    {
        tracing::warn!("lifecycle: cannot journal {}: {e:#}", copy.image_id);
    }
    if let Some(job) = build.job_id {
        if let Err(e) = store.append_job_log(job, "lifecycle", &line).await {
            tracing::warn!("lifecycle: cannot log to job {job}: {e:#}");
        }
    }
}
