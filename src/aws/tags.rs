//! Tags bakery puts on what it creates, beyond the image tags of the plan
//! ([`crate::plan::model::tag_keys`]).

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use crate::plan::model::{tag_keys, BuildPlan};

/// What a resource is for: [`role::BUILDER`], [`role::INTERMEDIATE`] or [`role::FINAL`].
pub const ROLE: &str = "bakery:role";
/// When bakery created the resource (RFC 3339); the janitor's clock for resources that
/// have no creation time of their own (security groups).
pub const CREATED_AT: &str = "bakery:created-at";
/// On final images once every copy of the build is available: the release is complete.
pub const RELEASED: &str = "bakery:released";
/// On final images of a build with signed provenance: `sha256:` and the SHA-256 of the
/// signed statement (the DSSE envelope's payload), attached to the release.
pub const PROVENANCE: &str = "bakery:provenance";
/// Which bakery installation created the resource (`aws.installation` in the server's
/// configuration). Set at creation on everything bakery creates; the janitor and the
/// failure cleanup only ever touch resources that carry their own installation's
/// marker, so two installations sharing an account never delete each other's work.
pub const INSTALLATION: &str = "bakery:installation";
/// The installation id when the configuration names none.
pub const DEFAULT_INSTALLATION: &str = "default";

/// Whether `id` can be an installation marker: a non-empty EC2 tag value of letters,
/// digits and `-_.:/`, at most 64 characters.
pub fn valid_installation(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
}

pub mod role {
    /// The builder instance, its key pair and security group.
    pub const BUILDER: &str = "builder";
    /// The unencrypted image taken from the builder, removed once the copies exist.
    pub const INTERMEDIATE: &str = "intermediate";
    /// An encrypted copy in a target account and region: the product.
    pub const FINAL: &str = "final";
}

/// Tags for the builder's resources (instance, volumes, key pair, security group).
pub fn builder_tags(
    plan: &BuildPlan,
    build_id: &str,
    installation: &str,
    now: &str,
) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    t.insert(
        tag_keys::NAME.to_string(),
        format!("bakery builder {} {}", plan.recipe, plan.version),
    );
    t.insert(tag_keys::BUILD_ID.to_string(), build_id.to_string());
    t.insert(tag_keys::RECIPE.to_string(), plan.recipe.clone());
    t.insert(tag_keys::IMAGE_VERSION.to_string(), plan.version.clone());
    t.insert(ROLE.to_string(), role::BUILDER.to_string());
    t.insert(CREATED_AT.to_string(), now.to_string());
    t.insert(INSTALLATION.to_string(), installation.to_string());
    t
}

pub fn to_ec2(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub fn spec(kind: ResourceType, tags: &BTreeMap<String, String>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(to_ec2(tags)))
        .build()
}

/// A tag's value in an EC2 tag list.
pub fn value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// An EC2 tag list as a map.
pub fn to_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// The DescribeImages/DescribeInstances filter "tagged `key` = `value`".
pub fn tagged(key: &str, value: impl Into<String>) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

/// The filter "has the tag `key`", whatever its value.
pub fn has_tag(key: &str) -> Filter {
    Filter::builder().name("tag-key").values(key).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_the_tag_as_ec2_expects() {
        let f = tagged(tag_keys::BUILD_ID, "b-1");
        assert_eq!(f.name(), Some("tag:bakery:build-id"));
        assert_eq!(f.values(), ["b-1".to_string()]);
        let f = has_tag(RELEASED);
        assert_eq!(f.name(), Some("tag-key"));
        assert_eq!(f.values(), [RELEASED.to_string()]);
    }
}
