//! Reads the registry: DescribeImages (owned, tagged `bakery:released`) in every target,
//! then the store's succeeded builds for the copies the cloud no longer shows
//! (deregistered). Read-only: it changes nothing in the cloud or the store.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use serde::Serialize;

use super::model::{resolve_parents, CloudImage, ImageQuery, ImageState, Parent, RegistryImage};
use crate::aws::error::SdkResultExt;
use crate::aws::{policy, tags, AwsSession, Target};
use crate::build::manifest::Manifest;
use crate::database::{BuildFilter, BuildState, Store};
use crate::plan::model::BuildPlan;

/// The images found, and the targets that could not be searched (with the reason).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LookupReport {
    pub images: Vec<RegistryImage>,
    pub skipped: Vec<String>,
}

/// Every released image in `targets` that `query` selects, sorted by recipe, version,
/// account and region. Parents are resolved against all images found, whatever the query.
pub async fn lookup(
    session: &AwsSession,
    store: &dyn Store,
    targets: &[Target],
    query: &ImageQuery,
    now: DateTime<Utc>,
) -> anyhow::Result<LookupReport> {
    let targets: Vec<&Target> = targets
        .iter()
        .filter(|t| query.region.as_deref().is_none_or(|r| r == t.region))
        .filter(|t| query.account.as_deref().is_none_or(|a| a == t.account))
        .collect();
    let found = join_all(targets.iter().map(|t| released_in(session, t))).await;
    let mut report = LookupReport::default();
    let mut searched = BTreeSet::new();
    for (target, result) in targets.iter().zip(found) {
        match result {
            Ok(images) => {
                searched.insert((*target).clone());
                report.images.extend(images.iter().filter_map(|i| {
                    RegistryImage::from_cloud(&target.account, &target.region, i, now)
                }));
            }
            Err(e) => report.skipped.push(format!("{target}: {e:#}")),
        }
    }
    let seen: BTreeSet<(String, String, String)> = report
        .images
        .iter()
        .map(|i| (i.account.clone(), i.region.clone(), i.image_id.clone()))
        .collect();
    report
        .images
        .extend(deregistered(store, &searched, &seen).await?);
    resolve_parents(&mut report.images);
    report.images.retain(|i| query.matches(i));
    report
        .images
        .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    Ok(report)
}

/// The owned images of `target` tagged `bakery:released`.
async fn released_in(session: &AwsSession, target: &Target) -> anyhow::Result<Vec<CloudImage>> {
    let ec2 = session.ec2(target)?;
    let out = policy::call(&format!("list released images in {target}"), || async {
        ec2.describe_images()
            .owners("self")
            .include_deprecated(true)
            .filters(tags::has_tag(tags::RELEASED))
            .send()
            .await
            .aws()
    })
    .await?;
    Ok(out
        .images()
        .iter()
        .map(|i| CloudImage {
            image_id: i.image_id().unwrap_or_default().to_string(),
            name: i.name().map(str::to_string),
            created_at: i.creation_date().map(str::to_string),
            deprecation_time: i.deprecation_time().map(str::to_string),
            tags: tags::to_map(i.tags()),
        })
        .collect())
}

/// The copies of succeeded release builds that a searched target no longer has.
async fn deregistered(
    store: &dyn Store,
    searched: &BTreeSet<Target>,
    seen: &BTreeSet<(String, String, String)>,
) -> anyhow::Result<Vec<RegistryImage>> {
    let builds = store
        .list_builds(&BuildFilter {
            state: Some(BuildState::Succeeded),
            ..BuildFilter::default()
        })
        .await?;
    let mut out = vec![];
    for b in builds {
        let Ok(plan) = serde_json::from_value::<BuildPlan>(b.plan.clone()) else {
            continue;
        };
        if plan.image.ephemeral {
            continue;
        }
        let Some(manifest) = b
            .manifest
            .clone()
            .and_then(|m| serde_json::from_value::<Manifest>(m).ok())
        else {
            continue;
        };
        for build in &manifest.builds {
            let parent = build.custom_data.get("source_ami").map(|id| Parent {
                image_id: id.clone(),
                recipe: None,
                version: None,
            });
            for c in &build.copies {
                let target = Target {
                    account: c.account.clone(),
                    region: c.region.clone(),
                };
                if !searched.contains(&target)
                    || seen.contains(&(c.account.clone(), c.region.clone(), c.ami.clone()))
                {
                    continue;
                }
                out.push(RegistryImage {
                    recipe: b.recipe.clone(),
                    version: b.version.clone(),
                    git_sha: b.git_sha.clone(),
                    repo: plan.repo.clone(),
                    account: c.account.clone(),
                    region: c.region.clone(),
                    image_id: c.ami.clone(),
                    name: Some(plan.image.name.clone()),
                    created_at: None,
                    build_id: b.build_id.clone(),
                    channels: vec![],
                    state: ImageState::Deregistered,
                    revoked_reason: None,
                    parent: parent.clone(),
                });
            }
        }
    }
    Ok(out)
}
