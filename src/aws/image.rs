//! The intermediate image: taken from the builder in the builder region (CreateImage
//! shuts it down cleanly first, so the snapshots are consistent), tagged at creation
//! (image and snapshots, so both carry the build id from the moment they exist), and
//! waited on under a time budget.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_ec2::types::{ImageState, ResourceType};
use serde_json::json;

use super::error::SdkResultExt;
use super::resource::{ResourceKind, ResourceRef};
use super::session::Target;
use super::wait::{self, Poll};
use super::{policy, tags, EngineCtx};
use crate::plan::model::BuildFacts;

/// The intermediate's name: the final name plus the build, so it never takes the final
/// copy's name in the builder region.
pub fn intermediate_name(final_name: &str, build_id: &str) -> String {
    let suffix = format!(" bakery-intermediate-{build_id}");
    let keep = 128usize.saturating_sub(suffix.len());
    let head: String = final_name.chars().take(keep).collect();
    format!("{head}{suffix}")
}

/// Tags for the intermediate image and its snapshots.
pub fn intermediate_tags(ctx: &EngineCtx<'_>, facts: &BuildFacts) -> BTreeMap<String, String> {
    let mut t = ctx.plan.image_tags(facts);
    t.insert(
        crate::plan::model::tag_keys::NAME.into(),
        intermediate_name(&ctx.plan.image.name, ctx.build_id),
    );
    t.insert(tags::ROLE.into(), tags::role::INTERMEDIATE.into());
    t.insert(tags::CREATED_AT.into(), ctx.now());
    t.insert(tags::INSTALLATION.into(), ctx.installation().into());
    t
}

/// How long the intermediate may take from CreateImage until it is available: the
/// builder's shutdown, which CreateImage does first (`instance_stopped`), and the image
/// itself (`image_available`).
pub fn intermediate_budget(budgets: &super::Budgets) -> Duration {
    budgets.instance_stopped + budgets.image_available
}

/// Creates the intermediate image from the builder. EC2 shuts the builder down cleanly
/// before it takes the snapshots (`NoReboot` false, said explicitly), as StopInstances
/// would, and boots it again after: one call where stopping first took StopInstances
/// and a wait for `stopped`. The builder is terminated once the image is available.
pub async fn create_intermediate(
    ctx: EngineCtx<'_>,
    target: &Target,
    instance_id: &str,
    facts: &BuildFacts,
) -> anyhow::Result<String> {
    let ec2 = ctx.session.ec2(target)?;
    let name = intermediate_name(&ctx.plan.image.name, ctx.build_id);
    let tags = intermediate_tags(&ctx, facts);
    ctx.journal
        .creating(ResourceKind::Image, target, json!({ "name": name }))
        .await?;
    let out = policy::call(&format!("create image {name:?} in {target}"), || async {
        ec2.create_image()
            .instance_id(instance_id)
            .name(&name)
            .description(&ctx.plan.image.description)
            .no_reboot(false)
            .tag_specifications(tags::spec(ResourceType::Image, &tags))
            .tag_specifications(tags::spec(ResourceType::Snapshot, &tags))
            .send()
            .await
            .aws()
    })
    .await;
    if let Err(e) = &out {
        super::owned::settle_refused(ctx.journal, ResourceKind::Image, target, e).await?;
    }
    let out = out
        .with_context(|| format!("cannot create an image of builder {instance_id} in {target}"))?;
    let image_id = out
        .image_id()
        .context("CreateImage returned no image id")?
        .to_string();
    ctx.journal
        .created(
            &ResourceRef::new(ResourceKind::Image, &image_id, target),
            json!({ "role": tags::role::INTERMEDIATE }),
        )
        .await?;
    ctx.log.info(
        "image",
        format!("intermediate image {image_id} created from {instance_id}"),
    );
    Ok(image_id)
}

/// An image reached a state it never leaves for `available` (`failed`, `error`,
/// `invalid`, `deregistered`, `disabled`), with EC2's reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "image {image_id} in {target} is {state}: {}{}",
    code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default(),
    message.as_deref().unwrap_or("EC2 gives no reason")
)]
pub struct ImageNotAvailable {
    pub image_id: String,
    pub target: Target,
    pub state: String,
    /// EC2's StateReason code, e.g. `Client.InvalidKMSKey.InvalidState`.
    pub code: Option<String>,
    pub message: Option<String>,
}

/// Waits until an image is available; a state it never leaves for `available` is an
/// [`ImageNotAvailable`] error at once. Returns its snapshot ids.
pub async fn wait_available(
    ctx: EngineCtx<'_>,
    target: &Target,
    image_id: &str,
    budget: Duration,
) -> anyhow::Result<Vec<String>> {
    let ec2 = ctx.session.ec2(target)?;
    wait::until(
        &format!("image {image_id} in {target} to be available"),
        budget,
        ctx.session.settings().poll,
        || async {
            let out = policy::call_fresh(&format!("describe image {image_id}"), || async {
                ec2.describe_images().image_ids(image_id).send().await.aws()
            })
            .await?;
            let image = out
                .images()
                .first()
                .with_context(|| format!("image {image_id} is gone from {target}"))?;
            match image.state() {
                Some(ImageState::Available) => Ok(Poll::Ready(
                    image
                        .block_device_mappings()
                        .iter()
                        .filter_map(|b| b.ebs().and_then(|e| e.snapshot_id()))
                        .map(str::to_string)
                        .collect(),
                )),
                Some(
                    state @ (ImageState::Failed
                    | ImageState::Error
                    | ImageState::Invalid
                    | ImageState::Deregistered
                    | ImageState::Disabled),
                ) => Err(ImageNotAvailable {
                    image_id: image_id.to_string(),
                    target: target.clone(),
                    state: state.as_str().to_string(),
                    code: image
                        .state_reason()
                        .and_then(|r| r.code())
                        .map(str::to_string),
                    message: image
                        .state_reason()
                        .and_then(|r| r.message())
                        .map(str::to_string),
                }
                .into()),
                other => Ok(Poll::Pending(
                    other.map(|s| s.as_str().to_string()).unwrap_or_default(),
                )),
            }
        },
    )
    .await
}

/// Records an image's snapshots in the journal as belonging to `image_id`. They were
/// tagged by the call that created them (`TagSpecification` with ResourceType `snapshot`).
pub async fn record_snapshots(
    ctx: EngineCtx<'_>,
    target: &Target,
    image_id: &str,
    snapshot_ids: &[String],
) -> anyhow::Result<()> {
    for snap in snapshot_ids {
        ctx.journal
            .created(
                &ResourceRef::new(ResourceKind::Snapshot, snap, target),
                json!({ "image": image_id }),
            )
            .await?;
    }
    Ok(())
}

/// Sets one tag on an existing image (`what` names the call in errors and retries): the
/// marks added once an image exists, such as `bakery:released` and `bakery:provenance`.
pub async fn tag_image(
    session: &super::AwsSession,
    target: &Target,
    image_id: &str,
    (key, value): (&str, &str),
    what: &str,
) -> anyhow::Result<()> {
    let ec2 = session.ec2(target)?;
    policy::call(what, || async {
        ec2.create_tags()
            .resources(image_id)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build(),
            )
            .send()
            .await
            .aws()
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intermediate_names_differ_from_the_final_name_and_fit_ec2() {
        let id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let n = intermediate_name("base-release-1.0", id);
        assert_eq!(n, format!("base-release-1.0 bakery-intermediate-{id}"));
        let long = intermediate_name(&"x".repeat(200), id);
        assert_eq!(long.chars().count(), 128);
        assert!(long.ends_with(id));
    }
}
