//! What a change to `channels.toml` would move, like Atlantis's plan: for each channel and
//! recipe, from which version to which, in which accounts and regions; and what it
//! refuses: a version never released, a revoked one, one missing in a target the channel
//! needs, a channel a revocation would leave empty.
//!
//! The targets a channel needs for a recipe are where the version it points at now
//! exists; for a recipe new to the channel, everywhere any release of that recipe exists.
//!
//! Pure: the two files and the registry's images in, the plan out.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::channels::{Channels, Release};
use super::model::{ImageState, RegistryImage};

/// One account and region, as `account/region`.
pub type Where = (String, String);

/// One recipe of one channel moving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Move {
    pub channel: String,
    pub recipe: String,
    /// `None`: the recipe joins the channel.
    pub from: Option<String>,
    /// `None`: the recipe leaves the channel.
    pub to: Option<String>,
    /// Where the channel's parameter and tag change.
    pub targets: Vec<Where>,
    /// It leaves because its release was revoked.
    pub revoked: bool,
}

/// Why the change cannot be reconciled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    /// No image of this release exists anywhere.
    NeverReleased { channel: String, release: Release },
    /// The release is revoked (in the file, or tagged `bakery:revoked`).
    Revoked {
        channel: String,
        release: Release,
        reason: String,
    },
    /// The release has no image in targets the channel needs.
    Missing {
        channel: String,
        release: Release,
        targets: Vec<Where>,
    },
    /// Revocations would leave the channel without any image.
    Emptied { channel: String },
}

/// The plan of one change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChannelPlan {
    pub moves: Vec<Move>,
    pub refusals: Vec<Refusal>,
}

impl ChannelPlan {
    pub fn is_clean(&self) -> bool {
        self.refusals.is_empty()
    }
}

fn live(images: &[RegistryImage]) -> impl Iterator<Item = &RegistryImage> {
    images
        .iter()
        .filter(|i| i.state != ImageState::Deregistered)
}

fn targets_of<'a>(images: impl Iterator<Item = &'a RegistryImage>) -> BTreeSet<Where> {
    images
        .map(|i| (i.account.clone(), i.region.clone()))
        .collect()
}

fn release_images<'a>(
    images: &'a [RegistryImage],
    recipe: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'a RegistryImage> {
    live(images).filter(move |i| i.recipe == recipe && i.version == version)
}

/// Compares `before` (the default branch's file, or none) with `after` against the
/// images the registry knows for this repository.
pub fn plan(before: &Channels, after: &Channels, images: &[RegistryImage]) -> ChannelPlan {
    let mut out = ChannelPlan::default();
    let revoked_reason = |recipe: &str, version: &str| -> Option<String> {
        let release = Release {
            recipe: recipe.into(),
            version: version.into(),
        };
        if let Some(r) = after.revoked.get(&release) {
            return Some(r.clone());
        }
        release_images(images, recipe, version)
            .find(|i| i.state == ImageState::Revoked)
            .map(|i| i.revoked_reason.clone().unwrap_or_default())
    };
    let empty = BTreeMap::new();
    let names: BTreeSet<&String> = before
        .channels
        .keys()
        .chain(after.channels.keys())
        .collect();
    for channel in names {
        let old = before.channels.get(channel).unwrap_or(&empty);
        let new = after.channels.get(channel).unwrap_or(&empty);
        let recipes: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        let mut remaining = 0usize;
        for recipe in recipes {
            let from = old.get(recipe);
            let to = new.get(recipe);
            let needed: BTreeSet<Where> = match from {
                Some(v) => targets_of(release_images(images, recipe, v)),
                None => targets_of(live(images).filter(|i| &i.recipe == recipe)),
            };
            let Some(version) = to else {
                if let Some(from) = from {
                    out.moves.push(Move {
                        channel: channel.clone(),
                        recipe: recipe.clone(),
                        from: Some(from.clone()),
                        to: None,
                        targets: needed.into_iter().collect(),
                        revoked: false,
                    });
                }
                continue;
            };
            let release = Release {
                recipe: recipe.clone(),
                version: version.clone(),
            };
            if let Some(reason) = revoked_reason(recipe, version) {
                if from == Some(version) {
                    // Revoked while in the channel: it leaves.
                    out.moves.push(Move {
                        channel: channel.clone(),
                        recipe: recipe.clone(),
                        from: Some(version.clone()),
                        to: None,
                        targets: needed.into_iter().collect(),
                        revoked: true,
                    });
                } else {
                    out.refusals.push(Refusal::Revoked {
                        channel: channel.clone(),
                        release,
                        reason,
                    });
                }
                continue;
            }
            remaining += 1;
            if from == Some(version) {
                continue;
            }
            let have = targets_of(release_images(images, recipe, version));
            if have.is_empty() {
                out.refusals.push(Refusal::NeverReleased {
                    channel: channel.clone(),
                    release,
                });
                continue;
            }
            let missing: Vec<Where> = needed.difference(&have).cloned().collect();
            if !missing.is_empty() {
                out.refusals.push(Refusal::Missing {
                    channel: channel.clone(),
                    release,
                    targets: missing,
                });
                continue;
            }
            out.moves.push(Move {
                channel: channel.clone(),
                recipe: recipe.clone(),
                from: from.cloned(),
                to: Some(version.clone()),
                targets: have.into_iter().collect(),
                revoked: false,
            });
        }
        let revoked_here = out.moves.iter().any(|m| &m.channel == channel && m.revoked);
        if revoked_here && remaining == 0 {
            out.refusals.push(Refusal::Emptied {
                channel: channel.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::channels::{parse, CHANNELS_FILE};

    fn image(recipe: &str, version: &str, account: &str, region: &str) -> RegistryImage {
        RegistryImage {
            recipe: recipe.into(),
            version: version.into(),
            git_sha: "0".repeat(40),
            repo: Some("acme/images".into()),
            account: account.into(),
            region: region.into(),
            image_id: format!("ami-{version}-{region}"),
            name: None,
            created_at: None,
            build_id: "b".into(),
            channels: vec![],
            state: ImageState::Available,
            revoked_reason: None,
            parent: None,
        }
    }

    fn file(text: &str) -> Channels {
        let (c, d) = parse(CHANNELS_FILE, text);
        assert!(d.is_empty(), "{d:?}");
        c
    }

    fn registry() -> Vec<RegistryImage> {
        let mut v = vec![];
        for version in ["release-0.1.0", "release-0.2.0"] {
            for (a, r) in [
                ("111", "us-east-1"),
                ("111", "eu-west-1"),
                ("222", "us-east-1"),
            ] {
                v.push(image("base", version, a, r));
            }
        }
        // release-0.3.0 only made it to one region.
        v.push(image("base", "release-0.3.0", "111", "us-east-1"));
        v
    }

    #[test]
    fn a_version_bump_moves_in_every_target() {
        let p = plan(
            &file("production = { base = \"release-0.1.0\" }"),
            &file("production = { base = \"release-0.2.0\" }"),
            &registry(),
        );
        assert!(p.is_clean(), "{p:?}");
        assert_eq!(p.moves.len(), 1);
        let m = &p.moves[0];
        assert_eq!(m.from.as_deref(), Some("release-0.1.0"));
        assert_eq!(m.to.as_deref(), Some("release-0.2.0"));
        assert_eq!(m.targets.len(), 3);
    }

    #[test]
    fn never_released_revoked_and_missing_versions_are_refused() {
        let p = plan(
            &file("production = { base = \"release-0.1.0\" }"),
            &file(
                "production = { base = \"release-0.3.0\" }\n\
                 staging = { base = \"release-9.9.9\" }\n\
                 canary = { base = \"release-0.2.0\" }\n\
                 [revoked]\n\"base@release-0.2.0\" = \"CVE-2026-1: openssl\"\n",
            ),
            &registry(),
        );
        assert!(p.moves.is_empty(), "{p:?}");
        assert_eq!(p.refusals.len(), 3, "{p:#?}");
        assert!(p.refusals.contains(&Refusal::Missing {
            channel: "production".into(),
            release: Release {
                recipe: "base".into(),
                version: "release-0.3.0".into()
            },
            targets: vec![
                ("111".into(), "eu-west-1".into()),
                ("222".into(), "us-east-1".into())
            ],
        }));
        assert!(p.refusals.iter().any(|r| matches!(
            r,
            Refusal::NeverReleased { channel, .. } if channel == "staging"
        )));
        assert!(p.refusals.iter().any(|r| matches!(
            r,
            Refusal::Revoked { channel, reason, .. } if channel == "canary" && reason == "CVE-2026-1: openssl"
        )));
    }

    #[test]
    fn a_revocation_takes_the_release_out_and_an_emptied_channel_is_refused() {
        let before = file(
            "production = { base = \"release-0.1.0\" }\n\
             staging = { base = \"release-0.1.0\", app = \"release-0.2.0\" }\n",
        );
        let mut images = registry();
        images.push(image("app", "release-0.2.0", "111", "us-east-1"));
        let after = file(
            "production = { base = \"release-0.1.0\" }\n\
             staging = { base = \"release-0.1.0\", app = \"release-0.2.0\" }\n\
             [revoked]\n\"base@release-0.1.0\" = \"bad\"\n",
        );
        let p = plan(&before, &after, &images);
        let left: Vec<(&str, bool)> = p
            .moves
            .iter()
            .map(|m| (m.channel.as_str(), m.revoked))
            .collect();
        assert_eq!(left, vec![("production", true), ("staging", true)]);
        assert_eq!(
            p.refusals,
            vec![Refusal::Emptied {
                channel: "production".into()
            }]
        );
    }

    #[test]
    fn a_deregistered_release_counts_as_never_released() {
        let mut images = registry();
        for i in images.iter_mut().filter(|i| i.version == "release-0.2.0") {
            i.state = ImageState::Deregistered;
        }
        let p = plan(
            &Channels::default(),
            &file("production = { base = \"release-0.2.0\" }"),
            &images,
        );
        assert!(matches!(p.refusals[..], [Refusal::NeverReleased { .. }]));
    }
}
