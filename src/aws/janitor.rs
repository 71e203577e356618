//! The janitor: deletes what builds left behind.
//!
//! It looks at every resource tagged `bakery:build-id` (instances, key pairs, security
//! groups, images, snapshots) in the given accounts and regions, and deletes it when its
//! build is finished, failed, unknown to the store, or stopped (still `running` in the
//! store but with a stale heartbeat: then all but its final copies), and it is older than
//! the TTL. It
//! never touches a resource without the tag, and never a final image (or its snapshots)
//! that is a product: one from a succeeded build, one marked released, or one whose build
//! the store does not know (another store may own it). A pull request's image
//! (`bakery:ephemeral`) is never a product: it goes once past the TTL, whatever else it
//! is tagged with.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::resource::{self, delete_order, Deleted, ResourceKind, TaggedResource};
use super::session::{AwsSession, Target};
use super::tags;
use crate::database::{BuildFilter, BuildRecord, BuildState, JournalEntry, Store};
use crate::plan::model::{tag_keys, BuildPlan};

#[derive(Debug, Clone, Copy)]
pub struct JanitorOptions {
    pub ttl: Duration,
    pub dry_run: bool,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    Delete(String),
    Keep(String),
}

/// One resource and what the janitor made of it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: ResourceKind,
    pub id: String,
    pub target: Target,
    pub build_id: String,
    pub verdict: Verdict,
    /// Set on a real run: whether it was deleted now (false: already gone).
    pub deleted: Option<bool>,
    /// Why deleting it failed; the janitor goes on with the next resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct JanitorReport {
    pub dry_run: bool,
    pub findings: Vec<Finding>,
    /// Targets that could not be searched (a role that cannot be assumed, a region that
    /// does not answer): skipped with the reason, never the end of the run.
    pub skipped: Vec<String>,
}

impl JanitorReport {
    pub fn to_delete(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| matches!(f.verdict, Verdict::Delete(_)))
    }
}

/// Decides about one resource of a build that is still running in the store's eyes but
/// whose heartbeat is stale (its process died and nobody took it over). Its final copies
/// stay (a retried job may still adopt them); everything else goes after the TTL.
pub fn decide_stopped(res: &TaggedResource, build: &BuildRecord, opts: &JanitorOptions) -> Verdict {
    if is_final(res) {
        return Verdict::Keep("final copy of a build that stopped: a retried job adopts it".into());
    }
    let mut crashed = build.clone();
    crashed.state = BuildState::Failed;
    match decide(res, Some(&crashed), opts) {
        Verdict::Delete(_) => Verdict::Delete("its build stopped: its heartbeat is stale".into()),
        keep => keep,
    }
}

fn is_final(res: &TaggedResource) -> bool {
    res.role.as_deref() == Some(tags::role::FINAL)
        && matches!(
            res.resource.kind,
            ResourceKind::Image | ResourceKind::Snapshot
        )
}

/// Decides about one resource. Pure: the store's record and the clock come in.
pub fn decide(res: &TaggedResource, build: Option<&BuildRecord>, opts: &JanitorOptions) -> Verdict {
    if let Some(b) = build {
        if b.state == BuildState::Running {
            return Verdict::Keep("its build is running".into());
        }
    }
    let is_final = res.role.as_deref() == Some(tags::role::FINAL)
        && matches!(
            res.resource.kind,
            ResourceKind::Image | ResourceKind::Snapshot
        );
    // A pull request's image is never a product, whatever its other tags say.
    let ephemeral = res.tags.contains_key(tag_keys::EPHEMERAL);
    if is_final && !ephemeral {
        if res.tags.contains_key(tags::RELEASED) {
            return Verdict::Keep("released image: a product".into());
        }
        match build.map(|b| b.state) {
            Some(BuildState::Succeeded) => {
                return Verdict::Keep("final copy of a succeeded build: a product".into())
            }
            None => {
                return Verdict::Keep(
                    "final copy of a build this store does not know: delete it by hand if it is not a product"
                        .into(),
                )
            }
            _ => {}
        }
    }
    let created = res.created_at.or(build.map(|b| b.updated_at));
    let Some(created) = created else {
        return Verdict::Keep("its age is unknown".into());
    };
    let age = opts.now.signed_duration_since(created);
    let ttl = chrono::Duration::from_std(opts.ttl).unwrap_or(chrono::Duration::MAX);
    if age < ttl {
        return Verdict::Keep(format!(
            "younger than the TTL ({})",
            humantime::format_duration(opts.ttl)
        ));
    }
    Verdict::Delete(match build {
        None => "its build is unknown to the store".into(),
        Some(b) => format!("its build {}", b.state.as_str()),
    })
}

/// Every account and region the store's builds used, plus `extra` regions of the home
/// account. Target accounts' roles are assumed on the way.
pub async fn scope_from_store(
    session: &AwsSession,
    store: &dyn Store,
    extra_regions: &[String],
) -> anyhow::Result<Vec<Target>> {
    let mut targets = BTreeSet::new();
    for r in extra_regions {
        targets.insert(Target {
            account: session.home_account().to_string(),
            region: r.clone(),
        });
    }
    for b in store.list_builds(&BuildFilter::default()).await? {
        let Ok(plan) = serde_json::from_value::<BuildPlan>(b.plan.clone()) else {
            continue;
        };
        targets.insert(Target {
            account: session.home_account().to_string(),
            region: plan.builder.region.clone(),
        });
        for c in &plan.distribute.copies {
            if let Some(a) = &c.account {
                // An account whose role cannot be assumed stays in scope: the run reports
                // it as skipped and goes on with the others.
                if let Err(e) = session.assume_role(a, "bakery-janitor").await {
                    tracing::warn!(
                        account = %a.account_id,
                        "janitor: cannot assume {}: {e:#}",
                        a.role_arn
                    );
                }
            }
            targets.insert(Target {
                account: session.account_of(c.account.as_ref()),
                region: c.region.clone(),
            });
        }
    }
    Ok(targets.into_iter().collect())
}

/// Finds and (unless `dry_run`) deletes leftovers in `targets`.
pub async fn run(
    session: &AwsSession,
    store: &dyn Store,
    targets: &[Target],
    opts: &JanitorOptions,
) -> anyhow::Result<JanitorReport> {
    let mut report = JanitorReport {
        dry_run: opts.dry_run,
        findings: vec![],
        skipped: vec![],
    };
    for target in targets {
        let mut found = match resource::find_tagged(session, target, None).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("janitor: skipping {target}: {e:#}");
                report.skipped.push(format!("{target}: {e:#}"));
                continue;
            }
        };
        found.sort_by_key(|r| delete_order(r.resource.kind));
        for res in found {
            let build = store.get_build(&res.build_id).await?;
            let verdict = match &build {
                Some(b) if b.state == BuildState::Running && stopped(store, b).await? => {
                    decide_stopped(&res, b, opts)
                }
                _ => decide(&res, build.as_ref(), opts),
            };
            let mut deleted = None;
            if matches!(verdict, Verdict::Delete(_)) && !opts.dry_run {
                let d = match resource::delete(session, &res.resource).await {
                    Ok(d) => d,
                    Err(e) => {
                        // One resource that cannot be deleted does not stop the others.
                        tracing::warn!("janitor: cannot delete {}: {e:#}", res.resource.id);
                        report.findings.push(Finding {
                            kind: res.resource.kind,
                            id: res.resource.id.clone(),
                            target: target.clone(),
                            build_id: res.build_id.clone(),
                            verdict,
                            deleted: Some(false),
                            error: Some(format!("{e:#}")),
                        });
                        continue;
                    }
                };
                deleted = Some(matches!(d, Deleted::Now { .. }));
                if build.is_some() {
                    store
                        .append_journal(
                            &res.build_id,
                            &JournalEntry {
                                kind: "deleted".into(),
                                data: serde_json::json!({
                                    "type": res.resource.kind,
                                    "id": res.resource.id,
                                    "region": res.resource.region,
                                    "account": res.resource.account,
                                    "by": "janitor",
                                }),
                            },
                        )
                        .await?;
                }
            }
            report.findings.push(Finding {
                kind: res.resource.kind,
                id: res.resource.id.clone(),
                target: target.clone(),
                build_id: res.build_id.clone(),
                verdict,
                deleted,
                error: None,
            });
        }
    }
    // KMS grants carry no tags: they are found through the store's journals.
    report
        .findings
        .extend(super::janitor_grants::run(session, store, opts).await?);
    count_leaks(&report);
    Ok(report)
}

/// The run and what it found to delete go to the metrics.
fn count_leaks(report: &JanitorReport) {
    let m = crate::metrics::metrics();
    m.janitor_runs.inc();
    for f in report.to_delete() {
        m.janitor_leaked
            .get_or_create(&crate::metrics::ResourceLabels {
                kind: f.kind.as_str().replace(' ', "_"),
            })
            .inc();
    }
}

/// Whether a `running` build's heartbeat is stale (by the database's clock).
pub(crate) async fn stopped(store: &dyn Store, build: &BuildRecord) -> anyhow::Result<bool> {
    Ok(store
        .build_heartbeat_age(&build.build_id)
        .await?
        .is_none_or(|age| age >= crate::build::liveness::STALE_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::resource::ResourceRef;

    fn res(kind: ResourceKind, role: &str, age_h: i64, now: DateTime<Utc>) -> TaggedResource {
        let mut tags = std::collections::BTreeMap::new();
        tags.insert(tags::ROLE.to_string(), role.to_string());
        TaggedResource {
            resource: ResourceRef {
                kind,
                id: "x-1".into(),
                region: "eu-west-1".into(),
                account: "111111111111".into(),
            },
            build_id: "b1".into(),
            role: Some(role.into()),
            created_at: Some(now - chrono::Duration::hours(age_h)),
            name: None,
            tags,
        }
    }

    fn build(state: BuildState, now: DateTime<Utc>) -> BuildRecord {
        BuildRecord {
            build_id: "b1".into(),
            job_id: None,
            recipe: "base".into(),
            version: "release-1".into(),
            git_sha: "abc".into(),
            state,
            plan: serde_json::json!({}),
            manifest: None,
            error: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn verdicts() {
        let now = Utc::now();
        let opts = JanitorOptions {
            ttl: Duration::from_secs(6 * 3600),
            dry_run: true,
            now,
        };
        let old_instance = res(ResourceKind::Instance, tags::role::BUILDER, 7, now);
        let young_instance = res(ResourceKind::Instance, tags::role::BUILDER, 1, now);
        let final_image = res(ResourceKind::Image, tags::role::FINAL, 100, now);
        let inter = res(ResourceKind::Image, tags::role::INTERMEDIATE, 100, now);

        let failed = build(BuildState::Failed, now);
        let ok = build(BuildState::Succeeded, now);
        let running = build(BuildState::Running, now);

        assert!(matches!(
            decide(&old_instance, Some(&failed), &opts),
            Verdict::Delete(_)
        ));
        assert!(matches!(
            decide(&old_instance, None, &opts),
            Verdict::Delete(_)
        ));
        assert!(matches!(
            decide(&old_instance, Some(&ok), &opts),
            Verdict::Delete(_)
        ));
        assert!(matches!(
            decide(&old_instance, Some(&running), &opts),
            Verdict::Keep(_)
        ));
        assert!(matches!(
            decide(&young_instance, Some(&failed), &opts),
            Verdict::Keep(_)
        ));
        assert!(matches!(
            decide(&final_image, Some(&ok), &opts),
            Verdict::Keep(_)
        ));
        assert!(matches!(
            decide(&final_image, None, &opts),
            Verdict::Keep(_)
        ));
        assert!(matches!(
            decide(&final_image, Some(&failed), &opts),
            Verdict::Delete(_)
        ));
        assert!(matches!(
            decide(&inter, Some(&ok), &opts),
            Verdict::Delete(_)
        ));
        let mut released = final_image.clone();
        released.tags.insert(tags::RELEASED.into(), "now".into());
        assert!(matches!(
            decide(&released, Some(&failed), &opts),
            Verdict::Keep(_)
        ));
    }

    /// A pull-request image that somehow carries `bakery:released` (an older bakery
    /// tagged it, or its discard failed) is no product: past its TTL it goes, whatever
    /// its build's state.
    #[test]
    fn an_ephemeral_image_goes_whatever_its_other_tags_say() {
        let now = Utc::now();
        let opts = JanitorOptions {
            ttl: Duration::from_secs(6 * 3600),
            dry_run: true,
            now,
        };
        let mut pr_image = res(ResourceKind::Image, tags::role::FINAL, 100, now);
        pr_image
            .tags
            .insert(tag_keys::EPHEMERAL.into(), "true".into());
        pr_image.tags.insert(tags::RELEASED.into(), "now".into());
        for build in [
            Some(build(BuildState::Succeeded, now)),
            Some(build(BuildState::Failed, now)),
            None,
        ] {
            assert!(
                matches!(decide(&pr_image, build.as_ref(), &opts), Verdict::Delete(_)),
                "{build:?}"
            );
        }
        let mut young = pr_image.clone();
        young.created_at = Some(now - chrono::Duration::hours(1));
        assert!(matches!(
            decide(&young, Some(&build(BuildState::Succeeded, now)), &opts),
            Verdict::Keep(_)
        ));
    }
}
