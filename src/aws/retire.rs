//! Retiring one copy of a release, as the lifecycle rules decided
//! ([`crate::registry::lifecycle`]): deprecate it, or deregister it with its snapshots,
//! its launch permissions and its version parameter.
//!
//! The plan was made from a listing; the copy is read again before anything changes, and
//! it is touched only when it still is a release of this installation by the build the
//! plan named (`bakery:released`, `bakery:installation`, `bakery:build-id`) and no channel
//! tag came onto it since. The version parameter goes only when its own `bakery:build-id`
//! is that build's.
//!
//! Touches: DescribeImages, DescribeImageAttribute, ModifyImageAttribute (launch
//! permissions removed), EnableImageDeprecation, DeregisterImage (and DeleteSnapshot for a
//! snapshot the deregistration left), ListTagsForResource and DeleteParameter on the
//! release's version parameter.

use anyhow::Context;
use aws_sdk_ec2::types::{ImageAttributeName, LaunchPermission, LaunchPermissionModifications};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::error::SdkResultExt;
use super::resource::{self, Deleted, ResourceKind, ResourceRef};
use super::session::{AwsSession, Target};
use super::{parameter, policy, tags};
use crate::plan::model::tag_keys;
use crate::registry::model::CHANNEL_TAG_PREFIX;

/// Why a copy in the plan is left as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Untouched {
    #[error("it is no longer in the cloud")]
    Gone,
    #[error("it is not a release of this installation (bakery:released, bakery:installation)")]
    NotOurs,
    #[error("its bakery:build-id is {found:?}, not the planned build's")]
    OtherBuild { found: Option<String> },
    #[error("it joined channel {channel} since the plan")]
    InChannel { channel: String },
}

/// What was done to one copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Retired {
    /// Deprecated from `at`.
    Deprecated {
        at: String,
    },
    /// Deregistered with these snapshots; `launch_permissions` removed first;
    /// `parameter` deleted when it was the build's.
    Deregistered {
        snapshots: Vec<String>,
        launch_permissions: usize,
        parameter: Option<String>,
    },
    Untouched(Untouched),
}

/// The copy as it is now, if it may be retired.
async fn recheck(
    session: &AwsSession,
    target: &Target,
    image_id: &str,
    build_id: &str,
) -> anyhow::Result<Result<(), Untouched>> {
    let ec2 = session.ec2(target)?;
    let out = policy::call(&format!("read image {image_id} in {target}"), || async {
        ec2.describe_images()
            .image_ids(image_id)
            .include_deprecated(true)
            .send()
            .await
            .aws()
    })
    .await;
    let out = match out {
        Ok(out) => out,
        Err(e) if super::error::is_not_found(&e) => return Ok(Err(Untouched::Gone)),
        Err(e) => return Err(e),
    };
    let Some(image) = out.images().first() else {
        return Ok(Err(Untouched::Gone));
    };
    let t = tags::to_map(image.tags());
    if !t.contains_key(tags::RELEASED)
        || t.get(tags::INSTALLATION).map(String::as_str) != Some(session.installation())
    {
        return Ok(Err(Untouched::NotOurs));
    }
    let found = t.get(tag_keys::BUILD_ID).cloned();
    if found.as_deref() != Some(build_id) {
        return Ok(Err(Untouched::OtherBuild { found }));
    }
    if let Some(channel) = t.keys().find_map(|k| k.strip_prefix(CHANNEL_TAG_PREFIX)) {
        return Ok(Err(Untouched::InChannel {
            channel: channel.to_string(),
        }));
    }
    Ok(Ok(()))
}

/// Deprecates `image_id` in `target` from `at` (EC2 takes no time in the past: a minute
/// ahead of now is as soon as it goes).
pub async fn deprecate(
    session: &AwsSession,
    target: &Target,
    image_id: &str,
    build_id: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<Retired> {
    if let Err(why) = recheck(session, target, image_id, build_id).await? {
        return Ok(Retired::Untouched(why));
    }
    let ec2 = session.ec2(target)?;
    policy::call(
        &format!("deprecate image {image_id} in {target}"),
        || async {
            ec2.enable_image_deprecation()
                .image_id(image_id)
                .deprecate_at(aws_sdk_ec2::primitives::DateTime::from_secs(at.timestamp()))
                .send()
                .await
                .aws()
        },
    )
    .await
    .with_context(|| format!("cannot deprecate {image_id} in {target}"))?;
    Ok(Retired::Deprecated {
        at: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// Deregisters `image_id` in `target`: its launch permissions removed, then the image
/// with its snapshots, then `parameter` (the release's version parameter there) when
/// the same build wrote it.
pub async fn deregister(
    session: &AwsSession,
    target: &Target,
    image_id: &str,
    build_id: &str,
    parameter: Option<&str>,
) -> anyhow::Result<Retired> {
    if let Err(why) = recheck(session, target, image_id, build_id).await? {
        return Ok(Retired::Untouched(why));
    }
    let launch_permissions = remove_launch_permissions(session, target, image_id).await?;
    let res = ResourceRef::new(ResourceKind::Image, image_id, target);
    let snapshots = match resource::delete(session, &res).await? {
        Deleted::Now { snapshots } => snapshots,
        Deleted::AlreadyGone => vec![],
    };
    let mut deleted_parameter = None;
    if let Some(name) = parameter {
        match parameter::build_of(session, target, name).await {
            Ok(Some(owner)) if owner == build_id => {
                match parameter::delete(session, target, name).await {
                    Ok(()) => deleted_parameter = Some(name.to_string()),
                    Err(e) if parameter::is_missing(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(_) => {}
            Err(e) if parameter::is_missing(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Retired::Deregistered {
        snapshots,
        launch_permissions,
        parameter: deleted_parameter,
    })
}

/// Removes every launch permission of `image_id`; returns how many there were.
async fn remove_launch_permissions(
    session: &AwsSession,
    target: &Target,
    image_id: &str,
) -> anyhow::Result<usize> {
    let ec2 = session.ec2(target)?;
    let out = policy::call(
        &format!("read the launch permissions of {image_id} in {target}"),
        || async {
            ec2.describe_image_attribute()
                .image_id(image_id)
                .attribute(ImageAttributeName::LaunchPermission)
                .send()
                .await
                .aws()
        },
    )
    .await?;
    let granted: Vec<LaunchPermission> = out.launch_permissions().to_vec();
    if granted.is_empty() {
        return Ok(0);
    }
    let mods = LaunchPermissionModifications::builder()
        .set_remove(Some(granted.clone()))
        .build();
    policy::call(
        &format!("remove the launch permissions of {image_id} in {target}"),
        || async {
            ec2.modify_image_attribute()
                .image_id(image_id)
                .launch_permission(mods.clone())
                .send()
                .await
                .aws()
        },
    )
    .await
    .with_context(|| format!("cannot remove the launch permissions of {image_id} in {target}"))?;
    Ok(granted.len())
}
