//! Applies a channels reconcile (see [`crate::registry::reconcile`]) to the cloud, and
//! reads the channel parameters it plans against.
//!
//! - A channel parameter is created with data type `aws:ec2:image` and tagged
//!   `bakery:channel` (the channel), `Recipe` and `bakery:repo`, or overwritten in place.
//! - An image joins a channel by the tag `bakery:channel:<name>` and leaves it by
//!   removing that tag (DeleteTags names that one key only).
//! - A revoked image is deprecated now (EnableImageDeprecation, a minute ahead, the
//!   nearest time EC2 accepts), its version parameter tagged `bakery:revoked`, and the
//!   image tagged `bakery:revoked` with the reason, last: an image with the tag is done.
//!
//! Touches only images found by the registry (bakery's released images, which carry
//! `bakery:build-id`) and parameters under the operator's prefix. Accounts and regions
//! come from the operator's policy through the registry's scope, never from a repository.

use anyhow::Context;
use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};

use super::error::SdkResultExt;
use super::parameter::{is_missing, IMAGE_DATA_TYPE};
use super::{policy, AwsSession, Target};
use crate::plan::model::tag_keys;
use crate::registry::channel_plan::Where;
use crate::registry::model::{CHANNEL_TAG_PREFIX, REVOKED_TAG};
use crate::registry::reconcile::{Action, Parameters};

/// The tag a channel parameter carries: which channel it is.
pub const CHANNEL_PARAMETER_TAG: &str = "bakery:channel";

fn target(w: &Where) -> Target {
    Target {
        account: w.0.clone(),
        region: w.1.clone(),
    }
}

/// The channel parameters among `reads` that exist, with their values.
pub async fn read_parameters(
    session: &AwsSession,
    reads: &[(Where, String)],
) -> anyhow::Result<Parameters> {
    let mut out = Parameters::new();
    for (w, name) in reads {
        let t = target(w);
        let ssm = session.ssm(&t)?;
        let got = policy::call(&format!("read parameter {name} in {t}"), || async {
            ssm.get_parameter().name(name).send().await.aws()
        })
        .await;
        match got {
            Ok(out_) => {
                if let Some(v) = out_.parameter().and_then(|p| p.value()) {
                    out.insert((w.clone(), name.clone()), v.to_string());
                }
            }
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(e.context(format!("cannot read parameter {name} in {t}"))),
        }
    }
    Ok(out)
}

/// A reason as a Parameter Store tag value holds it: letters, digits, spaces and
/// `_.:/=+-@`, at most 256 characters; anything else becomes a space.
pub fn ssm_tag_value(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c) {
                c
            } else {
                ' '
            }
        })
        .take(256)
        .collect()
}

/// An EC2 tag value: at most 256 characters.
fn ec2_tag_value(s: &str) -> String {
    s.chars().take(256).collect()
}

/// Applies one action. `repo` labels a new channel parameter.
pub async fn apply(session: &AwsSession, action: &Action, repo: &str) -> anyhow::Result<()> {
    let t = target(action.target());
    match action {
        Action::Tag {
            channel, image_id, ..
        } => {
            let key = format!("{CHANNEL_TAG_PREFIX}{channel}");
            super::image::tag_image(
                session,
                &t,
                image_id,
                (&key, "true"),
                &format!("tag {image_id} in {t} into channel {channel}"),
            )
            .await
        }
        Action::Untag {
            channel, image_id, ..
        } => {
            let ec2 = session.ec2(&t)?;
            let key = format!("{CHANNEL_TAG_PREFIX}{channel}");
            policy::call(
                &format!("untag {image_id} in {t} from channel {channel}"),
                || async {
                    ec2.delete_tags()
                        .resources(image_id)
                        .tags(aws_sdk_ec2::types::Tag::builder().key(&key).build())
                        .send()
                        .await
                        .aws()
                },
            )
            .await?;
            Ok(())
        }
        Action::PutParameter {
            channel,
            recipe,
            name,
            image_id,
            overwrite,
            ..
        } => {
            let ssm = session.ssm(&t)?;
            let tags = if *overwrite {
                None
            } else {
                Some(
                    [
                        (CHANNEL_PARAMETER_TAG, channel.as_str()),
                        (tag_keys::RECIPE, recipe.as_str()),
                        (tag_keys::REPO, repo),
                    ]
                    .into_iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect::<Result<Vec<_>, _>>()
                    .context("a parameter tag without key or value")?,
                )
            };
            policy::call(
                &format!("point parameter {name} in {t} at {image_id}"),
                || async {
                    ssm.put_parameter()
                        .name(name)
                        .value(image_id)
                        .r#type(ParameterType::String)
                        .data_type(IMAGE_DATA_TYPE)
                        .description(format!("bakery: the {recipe} image of channel {channel}"))
                        .overwrite(*overwrite)
                        .set_tags(tags.clone())
                        .send()
                        .await
                        .aws()
                },
            )
            .await?;
            Ok(())
        }
        Action::DeleteParameter { name, .. } => {
            match super::parameter::delete(session, &t, name).await {
                Err(e) if is_missing(&e) => Ok(()),
                other => other,
            }
        }
        Action::Revoke {
            image_id,
            reason,
            version_parameter,
            ..
        } => {
            let ec2 = session.ec2(&t)?;
            let at = chrono::Utc::now() + chrono::Duration::seconds(60);
            policy::call(&format!("deprecate {image_id} in {t}"), || async {
                ec2.enable_image_deprecation()
                    .image_id(image_id)
                    .deprecate_at(aws_sdk_ec2::primitives::DateTime::from_secs(at.timestamp()))
                    .send()
                    .await
                    .aws()
            })
            .await?;
            let ssm = session.ssm(&t)?;
            let mark = Tag::builder()
                .key(REVOKED_TAG)
                .value(ssm_tag_value(reason))
                .build()
                .context("the revoked tag")?;
            let marked = policy::call(
                &format!("mark parameter {version_parameter} in {t} revoked"),
                || async {
                    ssm.add_tags_to_resource()
                        .resource_type(ResourceTypeForTagging::Parameter)
                        .resource_id(version_parameter)
                        .tags(mark.clone())
                        .send()
                        .await
                        .aws()
                },
            )
            .await;
            match marked {
                // A release from before version parameters has none to mark.
                Err(e) if is_missing(&e) => {}
                other => {
                    other?;
                }
            }
            super::image::tag_image(
                session,
                &t,
                image_id,
                (REVOKED_TAG, &ec2_tag_value(reason)),
                &format!("tag {image_id} in {t} revoked"),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_becomes_a_tag_value_parameter_store_accepts() {
        assert_eq!(
            ssm_tag_value("CVE-2026-12345: openssl"),
            "CVE-2026-12345: openssl"
        );
        assert_eq!(ssm_tag_value("bad, very (bad)!"), "bad  very  bad  ");
        assert_eq!(ssm_tag_value(&"x".repeat(300)).len(), 256);
    }
}
