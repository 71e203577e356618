//! Immutable releases: a recipe's version is built once.
//!
//! Final images carry `bakery:recipe`, `ImageVersion`, `bakery:git-sha`, and
//! `bakery:released` once every copy of their build is available. Before anything is
//! launched, each copy target is searched for such images: if they exist from the same
//! commit the build is already done; from another commit, the tag was moved and the build
//! is refused. Images tagged `bakery:ephemeral` (pull-request builds) are never releases,
//! and a plan with a repository (`bakery:repo`) sees only that repository's images.

use futures::future::join_all;

use super::error::SdkResultExt;
use super::session::{AwsSession, Target};
use super::{policy, tags};
use crate::plan::model::{tag_keys, BuildPlan};

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

/// Looks for released images of `plan`'s recipe and version in `targets`.
pub async fn check(
    session: &AwsSession,
    plan: &BuildPlan,
    targets: &[Target],
) -> anyhow::Result<ReleaseState> {
    let found = join_all(targets.iter().map(|t| released_in(session, plan, t))).await;
    let mut images = vec![];
    for r in found {
        images.extend(r?);
    }
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

async fn released_in(
    session: &AwsSession,
    plan: &BuildPlan,
    target: &Target,
) -> anyhow::Result<Vec<ReleasedImage>> {
    let ec2 = session.ec2(target)?;
    let out = policy::call(
        &format!(
            "look for released {} {} in {target}",
            plan.recipe, plan.version
        ),
        || async {
            let mut req = ec2.describe_images().owners("self");
            // Only this repository's images: another repository's release of a recipe of
            // the same name is neither "already released" nor "moved" here.
            if let Some(repo) = &plan.repo {
                req = req.filters(tags::tagged(tag_keys::REPO, repo));
            }
            req.filters(tags::tagged(tag_keys::RECIPE, &plan.recipe))
                .filters(tags::tagged(tag_keys::IMAGE_VERSION, &plan.version))
                .filters(tags::has_tag(tags::RELEASED))
                .send()
                .await
                .aws()
        },
    )
    .await?;
    let mut images = vec![];
    // A pull request's image is never a release, whatever else it is tagged with.
    for i in out
        .images()
        .iter()
        .filter(|i| tags::value(i.tags(), tag_keys::EPHEMERAL).is_none())
    {
        let id = i.image_id().unwrap_or_default().to_string();
        images.push(ReleasedImage {
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
    Ok(images)
}
