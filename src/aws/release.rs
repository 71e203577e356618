//! Immutable releases: a recipe's version is built once.
//!
//! Final images carry `bakery:recipe`, `ImageVersion`, `bakery:git-sha`, and
//! `bakery:released` once every copy of their build is available. Before anything is
//! launched, each copy target is searched for such images: if they exist from the same
//! commit the build is already done; from another commit, the tag was moved and the build
//! is refused. Images tagged `bakery:ephemeral` (pull-request builds) are never releases,
//! and a plan with a repository (`bakery:repo`) sees only that repository's images.
//!
//! One DescribeImages per copy target answers both this and pre-flight's name check: the
//! images of this account named as the plan names its image. A release of this version
//! carries that name (the recipe at the commit names it), so the images found are either
//! this version's release or a name that is taken ([`NameTaken`], reported by pre-flight).
//! A tag moved to a commit whose recipe also renamed the image is not seen here; the
//! version parameter, created only if absent, refuses that build before release.
//!
//! In the builder region, a source given as a filter is asked in the same DescribeImages
//! (its owners and `self`, its pattern and the image's name): pre-flight chooses the
//! source from that answer ([`super::source_filter`]) instead of asking again.

use aws_sdk_ec2::types::{Filter, Image};
use futures::future::join_all;

use super::error::SdkResultExt;
use super::session::{AwsSession, Target};
use super::source_filter;
use super::{policy, tags};
use crate::plan::model::{tag_keys, BuildPlan, SourcePlan};

/// A final image of an earlier, complete build of this version.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReleasedImage {
    pub target: Target,
    pub image_id: String,
    pub git_sha: String,
    pub build_id: String,
    pub snapshot_ids: Vec<String>,
}

/// The version was released from another commit: the tag was moved since.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{recipe} {version} was already released from commit {built_sha} ({image_id} in {target}), but the tag now points at {new_sha}: \
     a released version is immutable, so tag a new version instead of moving this one"
)]
pub struct MovedTag {
    pub recipe: String,
    pub version: String,
    pub built_sha: String,
    pub new_sha: String,
    pub image_id: String,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReleaseState {
    /// Nothing released yet: build.
    New,
    /// Every target already has this version from this commit: build nothing.
    Released(Vec<ReleasedImage>),
}

/// An image that is not this version's release already has the plan's image name in a
/// target: image names are unique per account and region, so the copy there would fail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "image name {name:?} is taken in {target} by {image_id}: image names are unique per region, \
     so bump the version or deregister that image"
)]
pub struct NameTaken {
    pub name: String,
    pub target: Target,
    pub image_id: String,
}

/// What the images named as the plan's image say, in every target.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    pub state: ReleaseState,
    /// The targets where another image holds the name (pre-flight refuses them).
    pub taken: Vec<NameTaken>,
    /// A filter source's images in the builder region, asked with that region's name
    /// lookup and kept as the source's own request would have returned them; `None` when
    /// the builder region is not a target or the source is not a filter.
    pub source_images: Option<Vec<Image>>,
}

/// Looks for released images of `plan`'s recipe and version in `targets`.
pub async fn check(
    session: &AwsSession,
    plan: &BuildPlan,
    targets: &[Target],
) -> anyhow::Result<ReleaseState> {
    Ok(lookup(session, plan, targets).await?.state)
}

/// [`check`], and the targets where the plan's image name is taken by another image, from
/// one DescribeImages per target.
pub async fn lookup(
    session: &AwsSession,
    plan: &BuildPlan,
    targets: &[Target],
) -> anyhow::Result<Lookup> {
    let builder = Target {
        account: session.home_account().to_string(),
        region: plan.builder.region.clone(),
    };
    let found = join_all(targets.iter().map(|t| {
        let with_source = (t == &builder)
            .then_some(&plan.source)
            .filter(|s| matches!(s, SourcePlan::Filter { .. }));
        named_in(session, plan, t, with_source)
    }))
    .await;
    let mut images = vec![];
    let mut taken = vec![];
    let mut source_images = None;
    for r in found {
        let (released, other, source) = r?;
        images.extend(released);
        taken.extend(other);
        source_images = source_images.or(source);
    }
    Ok(Lookup {
        state: classify(plan, targets, images)?,
        taken,
        source_images,
    })
}

fn classify(
    plan: &BuildPlan,
    targets: &[Target],
    images: Vec<ReleasedImage>,
) -> anyhow::Result<ReleaseState> {
    if images.is_empty() {
        return Ok(ReleaseState::New);
    }
    if let Some(moved) = images.iter().find(|i| i.git_sha != plan.git_sha) {
        return Err(MovedTag {
            recipe: plan.recipe.clone(),
            version: plan.version.clone(),
            built_sha: moved.git_sha.clone(),
            new_sha: plan.git_sha.clone(),
            image_id: moved.image_id.clone(),
            target: moved.target.to_string(),
        }
        .into());
    }
    let missing: Vec<String> = targets
        .iter()
        .filter(|t| !images.iter().any(|i| &i.target == *t))
        .map(|t| t.to_string())
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{} {} was released from this commit, but its image is missing in {}: it was removed \
             by hand; release a new version (a released version is never rebuilt)",
            plan.recipe,
            plan.version,
            missing.join(", ")
        );
    }
    Ok(ReleaseState::Released(images))
}

/// Whether an image is a release of `plan`'s recipe and version: marked released, not a
/// pull request's, and this repository's when the plan names one.
fn is_release_of(plan: &BuildPlan, tags_of: &[aws_sdk_ec2::types::Tag]) -> bool {
    let has = |key: &str, want: &str| tags::value(tags_of, key) == Some(want);
    tags::value(tags_of, tags::RELEASED).is_some()
        && tags::value(tags_of, tag_keys::EPHEMERAL).is_none()
        && has(tag_keys::RECIPE, &plan.recipe)
        && has(tag_keys::IMAGE_VERSION, &plan.version)
        && plan
            .repo
            .as_deref()
            .is_none_or(|repo| has(tag_keys::REPO, repo))
}

/// The images of `target`'s account named as the plan's image: this version's releases,
/// and the others, which hold the name. With `source` (a filter source, in the builder
/// region), the same call asks for the source's images too, and returns them as the
/// source's own request would have.
async fn named_in(
    session: &AwsSession,
    plan: &BuildPlan,
    target: &Target,
    source: Option<&SourcePlan>,
) -> anyhow::Result<(Vec<ReleasedImage>, Vec<NameTaken>, Option<Vec<Image>>)> {
    let ec2 = session.ec2(target)?;
    let name = &plan.image.name;
    let filter_source = match source {
        Some(SourcePlan::Filter {
            owners,
            name: pattern,
            architecture,
            ..
        }) => Some((owners, pattern, architecture.as_deref())),
        _ => None,
    };
    let out = policy::call(
        &format!("look up image name {name:?} in {target}"),
        || async {
            let mut owners: Vec<String> = vec![];
            let mut names = vec![name.clone()];
            if let Some((source_owners, pattern, _)) = filter_source {
                owners.extend(source_owners.iter().cloned());
                names.push(pattern.clone());
            }
            if !owners.iter().any(|o| o == "self") {
                owners.push("self".into());
            }
            ec2.describe_images()
                .set_owners(Some(owners))
                .filters(
                    Filter::builder()
                        .name("name")
                        .set_values(Some(names))
                        .build(),
                )
                .send()
                .await
                .aws()
        },
    )
    .await?;
    let source_images = filter_source.map(|(owners, pattern, architecture)| {
        out.images()
            .iter()
            .filter(|i| {
                source_filter::is_candidate(i, owners, pattern, architecture, &target.account)
            })
            .cloned()
            .collect()
    });
    let mut released = vec![];
    let mut taken = vec![];
    // This account's images with the plan's image name exactly (with a filter source, the
    // answer also holds the source's images).
    let named = out
        .images()
        .iter()
        .filter(|i| i.name() == Some(name.as_str()))
        .filter(|i| filter_source.is_none() || i.owner_id() == Some(target.account.as_str()));
    for i in named {
        let id = i.image_id().unwrap_or_default().to_string();
        if !is_release_of(plan, i.tags()) {
            taken.push(NameTaken {
                name: name.clone(),
                target: target.clone(),
                image_id: id,
            });
            continue;
        }
        released.push(ReleasedImage {
            target: target.clone(),
            git_sha: tags::value(i.tags(), tag_keys::GIT_SHA)
                .unwrap_or_default()
                .to_string(),
            build_id: tags::value(i.tags(), tag_keys::BUILD_ID)
                .unwrap_or_default()
                .to_string(),
            snapshot_ids: i
                .block_device_mappings()
                .iter()
                .filter_map(|b| b.ebs().and_then(|e| e.snapshot_id()))
                .map(str::to_string)
                .collect(),
            image_id: id,
        });
    }
    Ok((released, taken, source_images))
}
