//! The registry's entries: one final image in one account and region, its state, its
//! parent, and the query that selects entries. Pure: built from an image's tags.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aws::tags as aws_tags;
use crate::plan::model::tag_keys;

/// `bakery:channel:<name>`: the image is in channel `<name>`.
pub const CHANNEL_TAG_PREFIX: &str = "bakery:channel:";
/// `bakery:revoked`: the image was revoked; the value is the reason.
pub const REVOKED_TAG: &str = "bakery:revoked";

/// Where a released image stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageState {
    /// Launchable and listed.
    Available,
    /// Past its deprecation time: still launchable by id, hidden from listings.
    Deprecated,
    /// Withdrawn (`bakery:revoked`), with a reason.
    Revoked,
    /// Gone from the cloud; known from the store's record of its build.
    Deregistered,
}

impl ImageState {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageState::Available => "available",
            ImageState::Deprecated => "deprecated",
            ImageState::Revoked => "revoked",
            ImageState::Deregistered => "deregistered",
        }
    }
}

/// The image a build started from (`bakery:source-ami`), and its release when bakery
/// released it too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    pub image_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One released image in one account and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryImage {
    pub recipe: String,
    pub version: String,
    pub git_sha: String,
    /// `owner/name`; `None` for a command-line build without `--repository`.
    pub repo: Option<String>,
    pub account: String,
    pub region: String,
    pub image_id: String,
    pub name: Option<String>,
    /// RFC 3339, as the cloud reports it.
    pub created_at: Option<String>,
    pub build_id: String,
    pub channels: Vec<String>,
    pub state: ImageState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_reason: Option<String>,
    pub parent: Option<Parent>,
}

/// The cloud's view of one image, as the registry needs it.
#[derive(Debug, Clone, Default)]
pub struct CloudImage {
    pub image_id: String,
    pub name: Option<String>,
    pub created_at: Option<String>,
    /// RFC 3339, when the image is (or was) deprecated.
    pub deprecation_time: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl RegistryImage {
    /// The entry for a released image found in `account`/`region`, or `None` when it is
    /// not a release (no recipe or version tag, or a pull request's image).
    pub fn from_cloud(
        account: &str,
        region: &str,
        image: &CloudImage,
        now: DateTime<Utc>,
    ) -> Option<RegistryImage> {
        let tags = &image.tags;
        if tags.contains_key(tag_keys::EPHEMERAL) || !tags.contains_key(aws_tags::RELEASED) {
            return None;
        }
        let recipe = tags.get(tag_keys::RECIPE)?.clone();
        let version = tags.get(tag_keys::IMAGE_VERSION)?.clone();
        let revoked_reason = tags.get(REVOKED_TAG).cloned();
        let deprecated = image
            .deprecation_time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t.with_timezone(&Utc) <= now);
        let state = if revoked_reason.is_some() {
            ImageState::Revoked
        } else if deprecated {
            ImageState::Deprecated
        } else {
            ImageState::Available
        };
        Some(RegistryImage {
            recipe,
            version,
            git_sha: tags.get(tag_keys::GIT_SHA).cloned().unwrap_or_default(),
            repo: tags.get(tag_keys::REPO).cloned(),
            account: account.to_string(),
            region: region.to_string(),
            image_id: image.image_id.clone(),
            name: image.name.clone(),
            created_at: image.created_at.clone(),
            build_id: tags.get(tag_keys::BUILD_ID).cloned().unwrap_or_default(),
            channels: tags
                .keys()
                .filter_map(|k| k.strip_prefix(CHANNEL_TAG_PREFIX))
                .map(str::to_string)
                .collect(),
            state,
            revoked_reason,
            parent: tags.get(tag_keys::SOURCE_AMI).map(|id| Parent {
                image_id: id.clone(),
                recipe: None,
                version: None,
            }),
        })
    }

    /// The order listings use: recipe, version, account, region.
    pub fn sort_key(&self) -> (&str, &str, &str, &str, &str) {
        (
            &self.recipe,
            &self.version,
            &self.account,
            &self.region,
            &self.image_id,
        )
    }
}

/// Names the parents that are bakery releases themselves: a parent's image id found
/// among `images` gets its recipe and version.
pub fn resolve_parents(images: &mut [RegistryImage]) {
    let known: BTreeMap<String, (String, String)> = images
        .iter()
        .map(|i| (i.image_id.clone(), (i.recipe.clone(), i.version.clone())))
        .collect();
    for image in images.iter_mut() {
        if let Some(p) = &mut image.parent {
            if let Some((recipe, version)) = known.get(&p.image_id) {
                p.recipe = Some(recipe.clone());
                p.version = Some(version.clone());
            }
        }
    }
}

/// Which entries a listing shows. Every field narrows; none set shows everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageQuery {
    pub recipe: Option<String>,
    pub version: Option<String>,
    pub channel: Option<String>,
    pub region: Option<String>,
    pub account: Option<String>,
}

impl ImageQuery {
    pub fn matches(&self, image: &RegistryImage) -> bool {
        fn ok(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| w == have)
        }
        ok(&self.recipe, &image.recipe)
            && ok(&self.version, &image.version)
            && ok(&self.region, &image.region)
            && ok(&self.account, &image.account)
            && self
                .channel
                .as_deref()
                .is_none_or(|c| image.channels.iter().any(|have| have == c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    fn released(extra: &[(&str, &str)]) -> CloudImage {
        let mut tags: BTreeMap<String, String> = [
            (tag_keys::RECIPE, "base"),
            (tag_keys::IMAGE_VERSION, "release-1.0.0"),
            (tag_keys::GIT_SHA, "abc"),
            (tag_keys::BUILD_ID, "b-1"),
            (tag_keys::REPO, "acme/images"),
            (tag_keys::SOURCE_AMI, "ami-parent"),
            (aws_tags::RELEASED, "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            tags.insert(k.to_string(), v.to_string());
        }
        CloudImage {
            image_id: "ami-1".into(),
            tags,
            ..CloudImage::default()
        }
    }

    #[test]
    fn a_released_image_is_an_entry_with_its_tags() {
        let e = RegistryImage::from_cloud("111", "eu-west-1", &released(&[]), now()).unwrap();
        assert_eq!(e.recipe, "base");
        assert_eq!(e.version, "release-1.0.0");
        assert_eq!(e.repo.as_deref(), Some("acme/images"));
        assert_eq!(e.state, ImageState::Available);
        assert_eq!(e.parent.unwrap().image_id, "ami-parent");
    }

    #[test]
    fn unreleased_and_pull_request_images_are_not_entries() {
        let mut unreleased = released(&[]);
        unreleased.tags.remove(aws_tags::RELEASED);
        assert!(RegistryImage::from_cloud("1", "r", &unreleased, now()).is_none());
        let pr = released(&[(tag_keys::EPHEMERAL, "true")]);
        assert!(RegistryImage::from_cloud("1", "r", &pr, now()).is_none());
    }

    #[test]
    fn state_follows_deprecation_time_and_revocation() {
        let mut past = released(&[]);
        past.deprecation_time = Some("2026-05-01T00:00:00Z".into());
        assert_eq!(
            RegistryImage::from_cloud("1", "r", &past, now())
                .unwrap()
                .state,
            ImageState::Deprecated
        );
        let mut future = released(&[]);
        future.deprecation_time = Some("2026-12-01T00:00:00Z".into());
        assert_eq!(
            RegistryImage::from_cloud("1", "r", &future, now())
                .unwrap()
                .state,
            ImageState::Available
        );
        let mut revoked = released(&[(REVOKED_TAG, "CVE-2026-1: openssl")]);
        revoked.deprecation_time = Some("2026-05-01T00:00:00Z".into());
        let e = RegistryImage::from_cloud("1", "r", &revoked, now()).unwrap();
        assert_eq!(e.state, ImageState::Revoked);
        assert_eq!(e.revoked_reason.as_deref(), Some("CVE-2026-1: openssl"));
    }

    #[test]
    fn channel_tags_are_membership() {
        let e = RegistryImage::from_cloud(
            "1",
            "r",
            &released(&[
                ("bakery:channel:production", "true"),
                ("bakery:channel:staging", "true"),
            ]),
            now(),
        )
        .unwrap();
        assert_eq!(e.channels, vec!["production", "staging"]);
        let q = ImageQuery {
            channel: Some("production".into()),
            ..ImageQuery::default()
        };
        assert!(q.matches(&e));
        let q = ImageQuery {
            channel: Some("canary".into()),
            ..ImageQuery::default()
        };
        assert!(!q.matches(&e));
    }

    #[test]
    fn a_parent_released_by_bakery_is_named() {
        let mut parent = released(&[]);
        parent.image_id = "ami-parent".into();
        parent.tags.remove(tag_keys::SOURCE_AMI);
        let mut child = released(&[(tag_keys::RECIPE, "app")]);
        child.image_id = "ami-child".into();
        let mut all = vec![
            RegistryImage::from_cloud("1", "r", &parent, now()).unwrap(),
            RegistryImage::from_cloud("1", "r", &child, now()).unwrap(),
        ];
        resolve_parents(&mut all);
        let p = all[1].parent.as_ref().unwrap();
        assert_eq!(p.recipe.as_deref(), Some("base"));
        assert_eq!(p.version.as_deref(), Some("release-1.0.0"));
        assert!(all[0].parent.is_none());
    }

    #[test]
    fn the_query_narrows_on_every_field() {
        let e = RegistryImage::from_cloud("111", "eu-west-1", &released(&[]), now()).unwrap();
        assert!(ImageQuery::default().matches(&e));
        for q in [
            ImageQuery {
                recipe: Some("other".into()),
                ..Default::default()
            },
            ImageQuery {
                version: Some("release-2".into()),
                ..Default::default()
            },
            ImageQuery {
                region: Some("us-east-1".into()),
                ..Default::default()
            },
            ImageQuery {
                account: Some("222".into()),
                ..Default::default()
            },
        ] {
            assert!(!q.matches(&e), "{q:?}");
        }
        let q = ImageQuery {
            recipe: Some("base".into()),
            region: Some("eu-west-1".into()),
            account: Some("111".into()),
            ..Default::default()
        };
        assert!(q.matches(&e));
    }
}
