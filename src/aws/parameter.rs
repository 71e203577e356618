//! A release's version parameters in Parameter Store: one `aws:ec2:image` parameter per
//! target account and region, holding that copy's AMI id, named by
//! [`crate::registry::parameter_names`].
//!
//! Each parameter is a build resource like an image: journaled before and after
//! `PutParameter`, tagged with the build id as it is created (never overwritten: a
//! released version is immutable), and deleted with the rest when the build fails. A
//! parameter that already exists is this build's only when its `bakery:build-id` says
//! so (a resumed build); anyone else's is refused, never overwritten.
//!
//! Touches only Parameter Store (`PutParameter`, `ListTagsForResource`,
//! `DeleteParameter`) on the names of this build's release, and the build's journal.

use std::collections::BTreeMap;

use anyhow::Context;
use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};
use futures::future::try_join_all;
use serde_json::json;

use super::distribute::CopyOutcome;
use super::error::{aws_error, SdkResultExt};
use super::resource::{ResourceKind, ResourceRef};
use super::session::{AwsSession, Target};
use super::{policy, tags, EngineCtx};
use crate::plan::model::tag_keys;

/// Parameter Store's data type for an AMI id, which `resolve:ssm:` and Terraform read.
pub const IMAGE_DATA_TYPE: &str = "aws:ec2:image";

/// The version parameter exists already, and another build wrote it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "parameter {name} in {target} already exists and was not written by this build \
     (its bakery:build-id is {owner:?}): a released version's parameter is never \
     overwritten; delete it by hand if it is a leftover"
)]
pub struct ParameterTaken {
    pub name: String,
    pub target: String,
    pub owner: Option<String>,
}

/// Writes `name` = each copy's AMI id in the copy's account and region.
pub async fn put_versions(
    ctx: EngineCtx<'_>,
    name: &str,
    outcomes: &[CopyOutcome],
) -> anyhow::Result<()> {
    try_join_all(outcomes.iter().map(|o| put_one(ctx, name, o))).await?;
    ctx.log.info(
        "distribute",
        format!(
            "version parameter {name} written in {} target(s)",
            outcomes.len()
        ),
    );
    Ok(())
}

fn parameter_tags(ctx: &EngineCtx<'_>) -> BTreeMap<String, String> {
    let plan = ctx.plan;
    let mut t = BTreeMap::new();
    t.insert(tag_keys::BUILD_ID.to_string(), ctx.build_id.to_string());
    t.insert(tag_keys::RECIPE.to_string(), plan.recipe.clone());
    t.insert(tag_keys::IMAGE_VERSION.to_string(), plan.version.clone());
    if let Some(repo) = &plan.repo {
        t.insert(tag_keys::REPO.to_string(), repo.clone());
    }
    t.insert(tags::CREATED_AT.to_string(), ctx.now());
    t
}

async fn put_one(ctx: EngineCtx<'_>, name: &str, copy: &CopyOutcome) -> anyhow::Result<()> {
    let target = &copy.target;
    let ssm = ctx.session.ssm(target)?;
    let res = ResourceRef::new(ResourceKind::Parameter, name, target);
    let tag_list: Vec<Tag> = parameter_tags(&ctx)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Result<_, _>>()
        .context("a parameter tag without key or value")?;
    ctx.journal
        .creating(ResourceKind::Parameter, target, json!({ "name": name }))
        .await?;
    let out = policy::call(&format!("write parameter {name} in {target}"), || async {
        ssm.put_parameter()
            .name(name)
            .value(&copy.image_id)
            .r#type(ParameterType::String)
            .data_type(IMAGE_DATA_TYPE)
            .description(format!(
                "bakery: {} {} image",
                ctx.plan.recipe, ctx.plan.version
            ))
            .overwrite(false)
            .set_tags(Some(tag_list.clone()))
            .send()
            .await
            .aws()
    })
    .await;
    if let Err(e) = &out {
        super::owned::settle_refused(ctx.journal, ResourceKind::Parameter, target, e).await?;
        if aws_error(e).is_some_and(|a| a.is_code("ParameterAlreadyExists")) {
            let owner = build_of(ctx.session, target, name).await?;
            if owner.as_deref() != Some(ctx.build_id) {
                return Err(ParameterTaken {
                    name: name.to_string(),
                    target: target.to_string(),
                    owner,
                }
                .into());
            }
            // Written by this build before a crash or a lost answer: it is ours.
            ctx.journal
                .created(&res, json!({ "image_id": copy.image_id, "adopted": true }))
                .await?;
            return Ok(());
        }
    }
    out.with_context(|| {
        format!(
            "cannot write parameter {name} in {target}: the role needs ssm:PutParameter and \
             ssm:AddTagsToResource on it"
        )
    })?;
    ctx.journal
        .created(&res, json!({ "image_id": copy.image_id }))
        .await?;
    Ok(())
}

/// The `bakery:build-id` of parameter `name` in `target`; `None` without one. A missing
/// parameter is an error [`is_missing`] recognises.
pub async fn build_of(
    session: &AwsSession,
    target: &Target,
    name: &str,
) -> anyhow::Result<Option<String>> {
    let ssm = session.ssm(target)?;
    let out = policy::call(
        &format!("read the tags of parameter {name} in {target}"),
        || async {
            ssm.list_tags_for_resource()
                .resource_type(ResourceTypeForTagging::Parameter)
                .resource_id(name)
                .send()
                .await
                .aws()
        },
    )
    .await?;
    Ok(out
        .tag_list()
        .iter()
        .find(|t| t.key() == tag_keys::BUILD_ID)
        .map(|t| t.value().to_string()))
}

/// The parameter `name` in `target` if build `build_id` wrote it: for a `PutParameter`
/// whose answer was lost.
pub async fn find_build_parameter(
    session: &AwsSession,
    target: &Target,
    name: &str,
    build_id: &str,
) -> anyhow::Result<Option<ResourceRef>> {
    match build_of(session, target, name).await {
        Ok(Some(owner)) if owner == build_id => Ok(Some(ResourceRef::new(
            ResourceKind::Parameter,
            name,
            target,
        ))),
        Ok(_) => Ok(None),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parameter Store answers `InvalidResourceId` for the tags of a parameter that does not
/// exist, and `ParameterNotFound` elsewhere.
pub fn is_missing(err: &anyhow::Error) -> bool {
    aws_error(err).is_some_and(|e| e.is_not_found() || e.is_code("InvalidResourceId"))
}

/// Deletes parameter `name` (a build's own, see [`super::resource::delete`]).
pub async fn delete(session: &AwsSession, target: &Target, name: &str) -> anyhow::Result<()> {
    let ssm = session.ssm(target)?;
    policy::call(&format!("delete parameter {name} in {target}"), || async {
        ssm.delete_parameter().name(name).send().await.aws()
    })
    .await?;
    Ok(())
}
