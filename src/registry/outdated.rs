//! `bakery images --outdated`: the images built on a parent that was revoked, or on a
//! parent older than its recipe's newest release.
//!
//! A parent is known when bakery released it too ([`super::model::resolve_parents`]); the
//! newest release of a recipe is the one whose image was created last among those still
//! usable (neither revoked nor deregistered).
//!
//! Pure: the registry's entries in, the outdated ones out.

use serde::Serialize;

use super::model::{ImageState, RegistryImage};

/// Why an image is outdated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outdated {
    /// Its parent release was revoked.
    ParentRevoked {
        parent: String,
        reason: Option<String>,
    },
    /// Its parent recipe has a newer release.
    ParentSuperseded { parent: String, newest: String },
}

impl std::fmt::Display for Outdated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outdated::ParentRevoked { parent, reason } => {
                write!(f, "parent {parent} is revoked")?;
                if let Some(r) = reason {
                    write!(f, ": {r}")?;
                }
                Ok(())
            }
            Outdated::ParentSuperseded { parent, newest } => {
                write!(
                    f,
                    "parent {parent} is older than its newest release {newest}"
                )
            }
        }
    }
}

/// One outdated image and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutdatedImage {
    #[serde(flatten)]
    pub image: RegistryImage,
    pub outdated: Outdated,
}

/// Every image in `all` whose parent is revoked or superseded, in `all`'s order.
pub fn outdated(all: &[RegistryImage]) -> Vec<OutdatedImage> {
    let usable =
        |i: &&RegistryImage| !matches!(i.state, ImageState::Revoked | ImageState::Deregistered);
    let mut out = vec![];
    for image in all {
        let Some(parent) = &image.parent else {
            continue;
        };
        let (Some(recipe), Some(version)) = (&parent.recipe, &parent.version) else {
            continue;
        };
        let name = format!("{recipe}@{version}");
        if let Some(revoked) = all.iter().find(|i| {
            &i.recipe == recipe && &i.version == version && i.state == ImageState::Revoked
        }) {
            out.push(OutdatedImage {
                image: image.clone(),
                outdated: Outdated::ParentRevoked {
                    parent: name,
                    reason: revoked.revoked_reason.clone(),
                },
            });
            continue;
        }
        let newest = all
            .iter()
            .filter(usable)
            .filter(|i| &i.recipe == recipe)
            .max_by(|a, b| a.created_at.cmp(&b.created_at));
        if let Some(newest) = newest {
            if &newest.version != version {
                out.push(OutdatedImage {
                    image: image.clone(),
                    outdated: Outdated::ParentSuperseded {
                        parent: name,
                        newest: newest.version.clone(),
                    },
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::model::Parent;

    fn image(
        recipe: &str,
        version: &str,
        created: &str,
        parent: Option<(&str, &str)>,
    ) -> RegistryImage {
        RegistryImage {
            recipe: recipe.into(),
            version: version.into(),
            git_sha: "0".repeat(40),
            repo: Some("acme/images".into()),
            account: "111".into(),
            region: "us-east-1".into(),
            image_id: format!("ami-{recipe}-{version}"),
            name: None,
            created_at: Some(created.into()),
            build_id: "b".into(),
            channels: vec![],
            state: ImageState::Available,
            revoked_reason: None,
            parent: parent.map(|(r, v)| Parent {
                image_id: format!("ami-{r}-{v}"),
                recipe: Some(r.into()),
                version: Some(v.into()),
            }),
        }
    }

    #[test]
    fn a_child_of_an_older_or_revoked_parent_is_outdated() {
        let mut all = vec![
            image("base", "release-0.1.0", "2026-01-01T00:00:00Z", None),
            image("base", "release-0.2.0", "2026-02-01T00:00:00Z", None),
            image(
                "app",
                "release-1.0.0",
                "2026-01-02T00:00:00Z",
                Some(("base", "release-0.1.0")),
            ),
            image(
                "app",
                "release-1.1.0",
                "2026-02-02T00:00:00Z",
                Some(("base", "release-0.2.0")),
            ),
        ];
        let found = outdated(&all);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].image.version, "release-1.0.0");
        assert_eq!(
            found[0].outdated,
            Outdated::ParentSuperseded {
                parent: "base@release-0.1.0".into(),
                newest: "release-0.2.0".into()
            }
        );

        // base release-0.2.0 is revoked: its child is outdated for that, and 0.1.0 is the
        // newest usable release again.
        all[1].state = ImageState::Revoked;
        all[1].revoked_reason = Some("CVE-2026-1".into());
        let found = outdated(&all);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].image.version, "release-1.1.0");
        assert_eq!(
            found[0].outdated.to_string(),
            "parent base@release-0.2.0 is revoked: CVE-2026-1"
        );
    }

    #[test]
    fn a_parent_bakery_did_not_release_makes_nothing_outdated() {
        let mut child = image("app", "release-1.0.0", "2026-01-02T00:00:00Z", None);
        child.parent = Some(Parent {
            image_id: "ami-from-amazon".into(),
            recipe: None,
            version: None,
        });
        assert!(outdated(&[child]).is_empty());
    }
}
