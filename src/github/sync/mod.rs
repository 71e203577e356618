//! `bakery sync`: enqueue release jobs for release tags whose delivery was missed.
//!
//! GitHub sends no push events when more than three tags are pushed at once, and
//! deliveries can be lost. Sync lists the repository's tags through the API, keeps those
//! that match a release pattern, and enqueues a release job for each (repo, tag, SHA)
//! the store has no job for. The job's dedup key is the one intake uses, so a delivery
//! that arrives late merges with the synced job instead of building twice.
//!
//! Sync never rebuilds history. The first sync of a repository records when this
//! installation first saw it and the release tags it held then; that sync is a dry run
//! that reports what it would have built. Later syncs enqueue only tags that appeared
//! (or moved to another commit) since.
//!
//! A configured floor (`github.sync_floor`, a release tag) replaces the first sight:
//! sync then builds every matching tag without a job at or above the floor, on the first
//! sync too, and never one below it ([`crate::github::sync::floor`]).

use std::collections::HashSet;

use anyhow::Context;
use globset::Glob;
use serde::Serialize;

use crate::github::api::repo::RepoName;
use crate::github::api::reporter::TagRef;
mod floor;
use crate::database::{JobFilter, JobKind, Store};
use crate::jobs::spec::{JobSource, ReleaseSpec, RepoSpec};
pub use floor::SyncFloor;

/// The dedup key and tag patterns are intake's: a delivery that arrives late must merge
/// with the synced job.
pub use crate::server::intake::{release_dedup_key, TagPatterns};

/// True when `tag` matches the glob `pattern` (an invalid glob matches nothing).
pub fn tag_matches(pattern: &str, tag: &str) -> bool {
    Glob::new(pattern)
        .map(|g| g.compile_matcher().is_match(tag))
        .unwrap_or(false)
}

/// The tags that match a pattern and have no job under their dedup key, in the order
/// given.
pub fn select_missing<'a>(
    repo: &RepoName,
    tags: &'a [TagRef],
    patterns: &TagPatterns,
    known_keys: &HashSet<String>,
) -> Vec<&'a TagRef> {
    let full = repo.to_string();
    tags.iter()
        .filter(|t| patterns.matches(&t.name))
        .filter(|t| !known_keys.contains(&release_dedup_key(&full, &t.name, &t.sha)))
        .collect()
}

/// The outcome of syncing one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub repo: String,
    /// Tags the API listed.
    pub tags_seen: usize,
    /// Tags that matched a release pattern.
    pub matching: usize,
    /// Tags a job was enqueued for: `(tag, job id)`.
    pub enqueued: Vec<(String, i64)>,
    /// Tags that would be enqueued (`dry_run`), or that another process enqueued first.
    pub skipped: Vec<String>,
    /// True when this was the repository's first sync: its tags were recorded as
    /// history, and nothing was enqueued.
    pub first_sync: bool,
    /// Tags without a job that were there when the repository was first seen: history,
    /// never built by sync. On the first sync, what it would have built.
    pub history: Vec<String>,
    /// Tags without a job below the configured floor: never built by sync.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub below_floor: Vec<String>,
}

/// Where the repository lives, for the jobs sync creates.
#[derive(Debug, Clone)]
pub struct SyncTarget {
    pub repo: RepoName,
    pub clone_url: String,
    pub installation_id: Option<i64>,
}

/// Enqueues release jobs for `target`'s tags (as listed in `tags`) that have none.
pub async fn enqueue_missing(
    store: &dyn Store,
    target: &SyncTarget,
    tags: &[TagRef],
    patterns: &[String],
    floor: Option<&SyncFloor>,
    dry_run: bool,
) -> anyhow::Result<SyncReport> {
    let patterns = TagPatterns::new(patterns)?;
    let full = target.repo.to_string();
    let known: HashSet<String> = store
        .list_jobs(&JobFilter {
            kind: Some(JobKind::Release),
            repo: Some(full.clone()),
            ..JobFilter::default()
        })
        .await
        .with_context(|| format!("cannot list the release jobs of {full}"))?
        .into_iter()
        .map(|j| j.dedup_key)
        .collect();
    let mut missing = select_missing(&target.repo, tags, &patterns, &known);
    let mut below_floor = vec![];
    if let Some(floor) = floor {
        let (keep, below): (Vec<&TagRef>, Vec<&TagRef>) =
            missing.into_iter().partition(|t| floor.admits(&t.name));
        missing = keep;
        below_floor = below.iter().map(|t| t.name.clone()).collect();
    }
    let mut report = SyncReport {
        repo: full.clone(),
        tags_seen: tags.len(),
        matching: tags.iter().filter(|t| patterns.matches(&t.name)).count(),
        below_floor,
        ..SyncReport::default()
    };
    let history = store
        .repo_history(&full)
        .await
        .with_context(|| format!("cannot read when {full} was first seen"))?;
    let history_tags = match (history, floor) {
        (Some(h), _) => Some(h.tags),
        // A configured floor replaces the first sight: record the tags (so that a floor
        // removed later still leaves them history) and go on to build what the floor admits.
        (None, Some(_)) => {
            report.first_sync = true;
            if !dry_run {
                let present: Vec<(String, String)> = tags
                    .iter()
                    .filter(|t| patterns.matches(&t.name))
                    .map(|t| (t.name.clone(), t.sha.clone()))
                    .collect();
                store
                    .record_repo_history(&full, &present)
                    .await
                    .with_context(|| format!("cannot record the tag history of {full}"))?;
            }
            Some(Default::default())
        }
        (None, None) => None,
    };
    let Some(history_tags) = history_tags else {
        // First sight of the repository: what is there now is history. Record it (a
        // dry run records nothing) and build none of it.
        report.first_sync = true;
        report.history = missing.iter().map(|t| t.name.clone()).collect();
        if !dry_run {
            let present: Vec<(String, String)> = tags
                .iter()
                .filter(|t| patterns.matches(&t.name))
                .map(|t| (t.name.clone(), t.sha.clone()))
                .collect();
            store
                .record_repo_history(&full, &present)
                .await
                .with_context(|| format!("cannot record the tag history of {full}"))?;
        }
        if !report.history.is_empty() {
            tracing::info!(
                repo = %full,
                "first sync of {full}: {} release tag(s) without a job were already there and \
                 are not built: {}",
                report.history.len(),
                report.history.join(", ")
            );
        }
        return Ok(report);
    };
    // Under a floor, the floor alone decides: what the repository held when first seen
    // is built too if the floor admits it.
    let (old, missing): (Vec<&TagRef>, Vec<&TagRef>) = missing
        .into_iter()
        .partition(|t| floor.is_none() && history_tags.contains(&(t.name.clone(), t.sha.clone())));
    report.history = old.iter().map(|t| t.name.clone()).collect();
    for tag in missing {
        if dry_run {
            report.skipped.push(tag.name.clone());
            continue;
        }
        // The API lists each tag with the commit it points at, annotated or not: the
        // same commit (and so the same dedup key) as a late delivery's `head_commit`.
        let job = ReleaseSpec {
            repo: RepoSpec {
                clone_url: target.clone_url.clone(),
                default_branch: None,
                installation_id: target.installation_id,
            },
            tag: tag.name.clone(),
            tag_object: None,
            source: JobSource::Sync,
        }
        .into_job(&full, Some(&tag.sha), "sync");
        match store
            .enqueue_job(&job)
            .await
            .with_context(|| format!("cannot enqueue a release job for {full}@{}", tag.name))?
        {
            Some(id) => {
                tracing::info!(repo = %full, tag = %tag.name, job = id, "sync enqueued a release job");
                report.enqueued.push((tag.name.clone(), id));
            }
            None => report.skipped.push(tag.name.clone()),
        }
    }
    Ok(report)
}

/// Syncs one repository end to end: finds its installation and clone URL, lists its
/// tags through the API, and enqueues what is missing.
pub async fn sync_repo(
    store: &dyn Store,
    client: &super::GitHubClient,
    repo: &RepoName,
    patterns: &[String],
    floor: Option<&SyncFloor>,
    dry_run: bool,
) -> anyhow::Result<SyncReport> {
    let installation_id = client.repo_installation(repo).await?;
    let reporter = super::GitHubReporter::new(client, repo.clone(), installation_id).await?;
    let info = reporter.repository().await?;
    let tags = reporter.list_tags().await?;
    let target = SyncTarget {
        repo: repo.clone(),
        clone_url: info.clone_url,
        installation_id: installation_id.map(|i| i as i64),
    };
    enqueue_missing(store, &target, &tags, patterns, floor, dry_run).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(name: &str, sha: &str) -> TagRef {
        TagRef {
            name: name.into(),
            sha: sha.into(),
        }
    }

    #[test]
    fn dedup_key_format_is_fixed() {
        assert_eq!(
            release_dedup_key("acme/images", "release-0.1.0", "abc123"),
            "release:acme/images:release-0.1.0:abc123"
        );
    }

    #[test]
    fn selects_matching_tags_without_jobs() {
        let repo = RepoName::new("acme", "images");
        let tags = vec![
            tag("release-0.1.0", "a1"),
            tag("release-0.2.0", "b2"),
            tag("v1.0", "c3"),
            tag("staging-3", "d4"),
        ];
        let patterns = TagPatterns::new(&["release-*".into(), "staging-*".into()]).unwrap();
        let known: HashSet<String> =
            [release_dedup_key("acme/images", "release-0.1.0", "a1")].into();
        let names: Vec<&str> = select_missing(&repo, &tags, &patterns, &known)
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, vec!["release-0.2.0", "staging-3"]);
    }

    #[test]
    fn a_moved_tag_is_new_work() {
        let repo = RepoName::new("acme", "images");
        let tags = vec![tag("release-0.1.0", "moved")];
        let patterns = TagPatterns::new(&["release-*".into()]).unwrap();
        let known: HashSet<String> = [release_dedup_key(
            "acme/images",
            "release-0.1.0",
            "original",
        )]
        .into();
        assert_eq!(select_missing(&repo, &tags, &patterns, &known).len(), 1);
    }

    #[test]
    fn patterns_are_checked() {
        assert!(TagPatterns::new(&[]).is_err());
        let err = TagPatterns::new(&["release-[".into()]).unwrap_err();
        assert!(err.to_string().contains("not a valid glob"));
        assert!(tag_matches("release-*", "release-1"));
        assert!(!tag_matches("release-[", "release-1"));
    }

    /// A repository with old release tags is synced for the first time: nothing is
    /// enqueued, the report names what would have been built, and a later sync enqueues
    /// only the tag pushed since (and a history tag moved to a new commit).
    #[tokio::test]
    async fn the_first_sync_builds_no_history() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bakery.db").display());
        let store = crate::database::SqlStore::connect(&url).await.unwrap();
        let target = SyncTarget {
            repo: RepoName::new("acme", "images"),
            clone_url: "https://github.com/acme/images.git".into(),
            installation_id: Some(42),
        };
        let patterns = vec!["release-*".to_string()];
        let mut tags: Vec<TagRef> = (1..=6)
            .map(|i| tag(&format!("release-0.{i}.0"), &format!("{i:040}")))
            .collect();
        tags.push(tag("v2", "b2"));

        let dry = enqueue_missing(&store, &target, &tags, &patterns, None, true)
            .await
            .unwrap();
        assert!(dry.first_sync && dry.enqueued.is_empty(), "{dry:?}");
        assert_eq!(dry.history.len(), 6);
        let first = enqueue_missing(&store, &target, &tags, &patterns, None, false)
            .await
            .unwrap();
        assert!(first.first_sync, "a dry run records nothing: {first:?}");
        assert!(first.enqueued.is_empty(), "history is not built: {first:?}");
        assert_eq!(first.history.len(), 6, "{first:?}");
        assert!(store
            .list_jobs(&JobFilter::default())
            .await
            .unwrap()
            .is_empty());

        tags.push(tag("release-1.0.0", "new"));
        tags[0].sha = "moved".into();
        let later = enqueue_missing(&store, &target, &tags, &patterns, None, false)
            .await
            .unwrap();
        assert!(!later.first_sync);
        let names: Vec<&str> = later.enqueued.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, vec!["release-0.1.0", "release-1.0.0"]);
        assert_eq!(later.history.len(), 5, "{later:?}");
    }

    /// An operator installs bakery on a repository with six old release tags and sets the
    /// sync floor to release-0.4.0: the first sync builds release-0.4.0 to 0.6.0 at once,
    /// never the three below the floor, not even when one of them moves to a new commit.
    #[tokio::test]
    async fn a_configured_floor_decides_what_sync_builds() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bakery.db").display());
        let store = crate::database::SqlStore::connect(&url).await.unwrap();
        let target = SyncTarget {
            repo: RepoName::new("acme", "images"),
            clone_url: "https://github.com/acme/images.git".into(),
            installation_id: Some(42),
        };
        let patterns = vec!["release-*".to_string()];
        let floor = SyncFloor::new("release-0.4.0").unwrap();
        let mut tags: Vec<TagRef> = (1..=6)
            .map(|i| tag(&format!("release-0.{i}.0"), &format!("{i:040}")))
            .collect();
        let dry = enqueue_missing(&store, &target, &tags, &patterns, Some(&floor), true)
            .await
            .unwrap();
        assert!(dry.enqueued.is_empty(), "{dry:?}");
        assert_eq!(
            dry.skipped,
            ["release-0.4.0", "release-0.5.0", "release-0.6.0"]
        );
        let first = enqueue_missing(&store, &target, &tags, &patterns, Some(&floor), false)
            .await
            .unwrap();
        let names: Vec<&str> = first.enqueued.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, ["release-0.4.0", "release-0.5.0", "release-0.6.0"]);
        assert_eq!(
            first.below_floor,
            ["release-0.1.0", "release-0.2.0", "release-0.3.0"]
        );

        tags[0].sha = "moved".into();
        tags.push(tag("release-0.10.0", "new"));
        let later = enqueue_missing(&store, &target, &tags, &patterns, Some(&floor), false)
            .await
            .unwrap();
        let names: Vec<&str> = later.enqueued.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, ["release-0.10.0"], "{later:?}");
        assert!(later.below_floor.contains(&"release-0.1.0".to_string()));
    }

    #[tokio::test]
    async fn enqueues_once_per_tag_and_sha() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bakery.db").display());
        let store = crate::database::SqlStore::connect(&url).await.unwrap();
        let target = SyncTarget {
            repo: RepoName::new("acme", "images"),
            clone_url: "https://github.com/acme/images.git".into(),
            installation_id: Some(42),
        };
        let tags = vec![tag("release-0.1.0", "a1"), tag("v2", "b2")];
        let patterns = vec!["release-*".to_string()];

        // Seen before any tag: every tag is new.
        enqueue_missing(&store, &target, &[], &patterns, None, false)
            .await
            .unwrap();
        let dry = enqueue_missing(&store, &target, &tags, &patterns, None, true)
            .await
            .unwrap();
        assert_eq!(dry.skipped, vec!["release-0.1.0"]);
        assert!(dry.enqueued.is_empty());

        let first = enqueue_missing(&store, &target, &tags, &patterns, None, false)
            .await
            .unwrap();
        assert_eq!(first.enqueued.len(), 1);
        assert_eq!(first.matching, 1);
        let job = store.get_job(first.enqueued[0].1).await.unwrap().unwrap();
        assert_eq!(job.kind, JobKind::Release);
        assert_eq!(job.dedup_key, "release:acme/images:release-0.1.0:a1");
        assert_eq!(job.git_ref, "release-0.1.0");
        use crate::jobs::spec::JobSpec;
        let spec = ReleaseSpec::from_job(&job).unwrap();
        assert_eq!(spec.repo.installation_id, Some(42));
        assert_eq!(spec.source, JobSource::Sync);

        let second = enqueue_missing(&store, &target, &tags, &patterns, None, false)
            .await
            .unwrap();
        assert!(second.enqueued.is_empty(), "{second:?}");
        assert!(
            second.skipped.is_empty(),
            "already known, not even attempted"
        );
    }
}
