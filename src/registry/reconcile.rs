//! Reconciling the channels: the default branch's `channels.toml` against what the cloud
//! holds (the images' `bakery:channel:<name>` and `bakery:revoked` tags, and the channel
//! parameters in Parameter Store), as the list of actions that make the cloud match the
//! file.
//!
//! - Every channel's recipe points, in every account and region where its release has an
//!   image, at that image: the image is tagged `bakery:channel:<channel>` and the
//!   parameter `<prefix>/<repo>/<recipe>/channels/<channel>` holds its id. Any other image
//!   of the recipe loses the tag, and a target without the release loses the parameter.
//! - A revoked release (`[revoked]`) is deprecated now, tagged `bakery:revoked` with its
//!   reason, its version parameters are tagged `bakery:revoked` too, and it leaves every
//!   channel.
//! - What the channels plan refuses (a version never released, revoked, or missing where
//!   the channel needs it) is left as it is, and reported.
//!
//! Idempotent: a cloud that already matches the file yields no action. The moves and
//! refusals are those of [`channel_plan`](super::channel_plan), the cloud's current
//! channels taken as "before".
//!
//! Pure: the file, the images and the parameters read in; the actions out.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::channel_plan::{self, ChannelPlan, Refusal, Where};
use super::channels::{Channels, Release};
use super::model::{ImageState, RegistryImage};
use super::parameter_names::{
    channel_parameter, version_parameter, ParameterNameError, ParameterPrefix,
};

/// One change to the cloud.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Deprecate the image now, tag it `bakery:revoked`, and mark its version parameter.
    Revoke {
        target: Where,
        image_id: String,
        release: Release,
        reason: String,
        version_parameter: String,
    },
    /// Point the channel's parameter at the image: create it, or overwrite the one found.
    PutParameter {
        target: Where,
        channel: String,
        recipe: String,
        name: String,
        image_id: String,
        overwrite: bool,
    },
    /// Tag the image `bakery:channel:<channel>`.
    Tag {
        target: Where,
        channel: String,
        image_id: String,
    },
    /// Remove the tag `bakery:channel:<channel>` from the image.
    Untag {
        target: Where,
        channel: String,
        image_id: String,
    },
    /// The channel has no image of the recipe here any more.
    DeleteParameter {
        target: Where,
        channel: String,
        name: String,
    },
}

impl Action {
    pub fn target(&self) -> &Where {
        match self {
            Action::Revoke { target, .. }
            | Action::PutParameter { target, .. }
            | Action::Tag { target, .. }
            | Action::Untag { target, .. }
            | Action::DeleteParameter { target, .. } => target,
        }
    }

    /// The channel the action changes; `None` for a revocation.
    pub fn channel(&self) -> Option<&str> {
        match self {
            Action::Revoke { .. } => None,
            Action::PutParameter { channel, .. }
            | Action::Tag { channel, .. }
            | Action::Untag { channel, .. }
            | Action::DeleteParameter { channel, .. } => Some(channel),
        }
    }
}

/// A release revoked by this reconcile, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revocation {
    pub release: Release,
    pub reason: String,
    pub targets: Vec<Where>,
}

/// What a reconcile does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reconcile {
    /// The channel moves and the refusals, against the cloud's current channels.
    pub plan: ChannelPlan,
    pub revocations: Vec<Revocation>,
    pub actions: Vec<Action>,
}

impl Reconcile {
    /// The channels a deployment is reported for: those that move or were refused.
    pub fn channels(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.plan.moves.iter().map(|m| m.channel.clone()).collect();
        out.extend(
            self.plan
                .refusals
                .iter()
                .map(|r| refused_channel(r).to_string()),
        );
        out
    }
}

/// The channel a refusal is about.
pub fn refused_channel(r: &Refusal) -> &str {
    match r {
        Refusal::NeverReleased { channel, .. }
        | Refusal::Revoked { channel, .. }
        | Refusal::Missing { channel, .. }
        | Refusal::Emptied { channel } => channel,
    }
}

/// The parameters a reconcile reads: keyed by target and name, the value an AMI id.
pub type Parameters = BTreeMap<(Where, String), String>;

fn live(images: &[RegistryImage]) -> impl Iterator<Item = &RegistryImage> {
    images
        .iter()
        .filter(|i| i.state != ImageState::Deregistered)
}

fn target_of(i: &RegistryImage) -> Where {
    (i.account.clone(), i.region.clone())
}

/// Every (channel, recipe) the file or the cloud's tags name.
fn pairs(file: &Channels, images: &[RegistryImage]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (channel, recipes) in &file.channels {
        for recipe in recipes.keys() {
            out.insert((channel.clone(), recipe.clone()));
        }
    }
    for i in live(images) {
        for c in &i.channels {
            out.insert((c.clone(), i.recipe.clone()));
        }
    }
    out
}

/// The channel parameters to read before planning: every (channel, recipe) the file or
/// the tags name, in every target where the recipe has an image.
pub fn parameters_to_read(
    file: &Channels,
    images: &[RegistryImage],
    prefix: &ParameterPrefix,
    repo: &str,
) -> Result<Vec<(Where, String)>, ParameterNameError> {
    let mut out = BTreeSet::new();
    for (channel, recipe) in pairs(file, images) {
        let name = channel_parameter(prefix, Some(repo), &recipe, &channel)?;
        for i in live(images).filter(|i| i.recipe == recipe) {
            out.insert((target_of(i), name.clone()));
        }
    }
    Ok(out.into_iter().collect())
}

/// The channels as the cloud's tags show them (a recipe with several tagged versions
/// counts its most tagged one). A channel entry of the file whose release is revoked and
/// no longer tagged counts as still there, so its leaving is not reported twice.
fn cloud_channels(file: &Channels, images: &[RegistryImage]) -> Channels {
    let mut counts: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
    for i in live(images) {
        for c in &i.channels {
            *counts
                .entry((c.clone(), i.recipe.clone()))
                .or_default()
                .entry(i.version.clone())
                .or_default() += 1;
        }
    }
    let mut out = Channels::default();
    for ((channel, recipe), versions) in counts {
        let (version, _) = versions
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .expect("counted at least once");
        out.channels
            .entry(channel)
            .or_default()
            .insert(recipe, version);
    }
    for (channel, recipes) in &file.channels {
        for (recipe, version) in recipes {
            let revoked = is_revoked(file, images, recipe, version);
            let here = out.channels.get(channel).and_then(|c| c.get(recipe));
            if revoked && here.is_none() {
                out.channels
                    .entry(channel.clone())
                    .or_default()
                    .insert(recipe.clone(), version.clone());
            }
        }
    }
    out
}

fn is_revoked(file: &Channels, images: &[RegistryImage], recipe: &str, version: &str) -> bool {
    let release = Release {
        recipe: recipe.into(),
        version: version.into(),
    };
    file.revoked.contains_key(&release)
        || live(images)
            .any(|i| i.recipe == recipe && i.version == version && i.state == ImageState::Revoked)
}

/// Plans the reconcile of `file` for repository `repo`. `images` are the repository's
/// images, `parameters` the channel parameters found (see [`parameters_to_read`]).
pub fn reconcile(
    file: &Channels,
    images: &[RegistryImage],
    parameters: &Parameters,
    prefix: &ParameterPrefix,
    repo: &str,
) -> Result<Reconcile, ParameterNameError> {
    let before = cloud_channels(file, images);
    let mut plan = channel_plan::plan(&before, file, images);
    // A revoked release that no image carries in the channel any more has left already.
    plan.moves.retain(|m| {
        !m.revoked
            || live(images).any(|i| {
                i.recipe == m.recipe
                    && Some(&i.version) == m.from.as_ref()
                    && i.channels.contains(&m.channel)
            })
    });
    plan.refusals.retain(|r| match r {
        Refusal::Emptied { channel } => plan.moves.iter().any(|m| &m.channel == channel),
        _ => true,
    });
    let blocked: BTreeSet<(String, String)> = plan
        .refusals
        .iter()
        .filter_map(|r| match r {
            Refusal::NeverReleased { channel, release }
            | Refusal::Revoked {
                channel, release, ..
            }
            | Refusal::Missing {
                channel, release, ..
            } => Some((channel.clone(), release.recipe.clone())),
            Refusal::Emptied { .. } => None,
        })
        .collect();

    let mut actions = BTreeSet::new();
    let mut revocations = vec![];
    for (release, reason) in &file.revoked {
        let name = version_parameter(prefix, Some(repo), &release.recipe, &release.version)?;
        let mut targets = vec![];
        for i in live(images).filter(|i| {
            i.recipe == release.recipe
                && i.version == release.version
                && i.state != ImageState::Revoked
        }) {
            targets.push(target_of(i));
            actions.insert(Action::Revoke {
                target: target_of(i),
                image_id: i.image_id.clone(),
                release: release.clone(),
                reason: reason.clone(),
                version_parameter: name.clone(),
            });
        }
        if !targets.is_empty() {
            revocations.push(Revocation {
                release: release.clone(),
                reason: reason.clone(),
                targets,
            });
        }
    }

    for (channel, recipe) in pairs(file, images) {
        if blocked.contains(&(channel.clone(), recipe.clone())) {
            continue;
        }
        let name = channel_parameter(prefix, Some(repo), &recipe, &channel)?;
        let wanted = file
            .channels
            .get(&channel)
            .and_then(|c| c.get(&recipe))
            .filter(|v| !is_revoked(file, images, &recipe, v));
        // The image the channel points at in each target: the newest of the release there.
        let mut desired: BTreeMap<Where, &RegistryImage> = BTreeMap::new();
        if let Some(version) = wanted {
            for i in live(images).filter(|i| i.recipe == recipe && &i.version == version) {
                let slot = desired.entry(target_of(i)).or_insert(i);
                if i.created_at > slot.created_at {
                    *slot = i;
                }
            }
        }
        for (target, image) in &desired {
            if !image.channels.contains(&channel) {
                actions.insert(Action::Tag {
                    target: target.clone(),
                    channel: channel.clone(),
                    image_id: image.image_id.clone(),
                });
            }
            let found = parameters.get(&(target.clone(), name.clone()));
            if found != Some(&image.image_id) {
                actions.insert(Action::PutParameter {
                    target: target.clone(),
                    channel: channel.clone(),
                    recipe: recipe.clone(),
                    name: name.clone(),
                    image_id: image.image_id.clone(),
                    overwrite: found.is_some(),
                });
            }
        }
        for i in live(images).filter(|i| i.recipe == recipe && i.channels.contains(&channel)) {
            let keep = desired
                .get(&target_of(i))
                .is_some_and(|d| d.image_id == i.image_id);
            if !keep {
                actions.insert(Action::Untag {
                    target: target_of(i),
                    channel: channel.clone(),
                    image_id: i.image_id.clone(),
                });
            }
        }
        for (target, _) in parameters
            .iter()
            .filter(|((_, n), _)| n == &name)
            .map(|(k, v)| (&k.0, v))
        {
            if !desired.contains_key(target) {
                actions.insert(Action::DeleteParameter {
                    target: target.clone(),
                    channel: channel.clone(),
                    name: name.clone(),
                });
            }
        }
    }
    Ok(Reconcile {
        plan,
        revocations,
        actions: actions.into_iter().collect(),
    })
}

/// Break-glass: the actions that point `channel` at `recipe@version` in every target
/// where the release has an image, and nothing else (no other channel or recipe moves,
/// nothing is revoked). Refused like a channels change when the release is revoked,
/// never released, or missing where the channel has an image of the recipe now.
#[allow(clippy::too_many_arguments)]
pub fn promote(
    images: &[RegistryImage],
    parameters: &Parameters,
    prefix: &ParameterPrefix,
    repo: &str,
    recipe: &str,
    version: &str,
    channel: &str,
) -> Result<Reconcile, ParameterNameError> {
    let name = channel_parameter(prefix, Some(repo), recipe, channel)?;
    // Only this recipe, and only this channel's membership, is looked at.
    let images: Vec<RegistryImage> = images
        .iter()
        .filter(|i| i.recipe == recipe)
        .cloned()
        .map(|mut i| {
            i.channels.retain(|c| c == channel);
            i
        })
        .collect();
    let parameters: Parameters = parameters
        .iter()
        .filter(|((_, n), _)| n == &name)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut file = Channels::default();
    file.channels
        .entry(channel.to_string())
        .or_default()
        .insert(recipe.to_string(), version.to_string());
    reconcile(&file, &images, &parameters, prefix, repo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::channels::{parse, CHANNELS_FILE};

    const REPO: &str = "acme/images";

    fn image(version: &str, account: &str, region: &str, channels: &[&str]) -> RegistryImage {
        RegistryImage {
            recipe: "base".into(),
            version: version.into(),
            git_sha: "0".repeat(40),
            repo: Some(REPO.into()),
            account: account.into(),
            region: region.into(),
            image_id: format!("ami-{version}-{account}-{region}"),
            name: None,
            created_at: None,
            build_id: "b".into(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
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

    const TARGETS: [(&str, &str); 2] = [("111", "us-east-1"), ("222", "eu-west-1")];

    fn two_releases(channel_on: Option<&str>) -> Vec<RegistryImage> {
        let mut v = vec![];
        for version in ["release-0.1.0", "release-0.2.0"] {
            for (a, r) in TARGETS {
                let tagged = channel_on == Some(version);
                v.push(image(
                    version,
                    a,
                    r,
                    if tagged { &["production"] } else { &[] },
                ));
            }
        }
        v
    }

    fn param(version: &str) -> Parameters {
        TARGETS
            .iter()
            .map(|(a, r)| {
                (
                    (
                        (a.to_string(), r.to_string()),
                        "/bakery/acme/images/base/channels/production".to_string(),
                    ),
                    format!("ami-{version}-{a}-{r}"),
                )
            })
            .collect()
    }

    fn run(f: &Channels, images: &[RegistryImage], params: &Parameters) -> Reconcile {
        reconcile(f, images, params, &ParameterPrefix::default(), REPO).unwrap()
    }

    fn kinds(r: &Reconcile) -> Vec<&'static str> {
        r.actions
            .iter()
            .map(|a| match a {
                Action::Revoke { .. } => "revoke",
                Action::PutParameter { .. } => "put",
                Action::Tag { .. } => "tag",
                Action::Untag { .. } => "untag",
                Action::DeleteParameter { .. } => "delete",
            })
            .collect()
    }

    #[test]
    fn a_new_channel_is_tagged_and_its_parameter_put_in_every_target() {
        let r = run(
            &file("production = { base = \"release-0.2.0\" }"),
            &two_releases(None),
            &Parameters::new(),
        );
        assert_eq!(kinds(&r), vec!["put", "put", "tag", "tag"]);
        assert_eq!(r.plan.moves.len(), 1);
        assert_eq!(r.plan.moves[0].to.as_deref(), Some("release-0.2.0"));
        assert!(r.actions.iter().all(|a| match a {
            Action::PutParameter {
                name,
                image_id,
                overwrite,
                ..
            } =>
                name == "/bakery/acme/images/base/channels/production"
                    && image_id.starts_with("ami-release-0.2.0")
                    && !overwrite,
            Action::Tag { image_id, .. } => image_id.starts_with("ami-release-0.2.0"),
            _ => false,
        }));
        assert_eq!(r.channels(), BTreeSet::from(["production".to_string()]));
    }

    #[test]
    fn a_cloud_that_matches_the_file_changes_nothing() {
        let r = run(
            &file("production = { base = \"release-0.2.0\" }"),
            &two_releases(Some("release-0.2.0")),
            &param("release-0.2.0"),
        );
        assert_eq!(r, Reconcile::default());
    }

    #[test]
    fn a_move_retags_and_overwrites_the_parameter() {
        let r = run(
            &file("production = { base = \"release-0.2.0\" }"),
            &two_releases(Some("release-0.1.0")),
            &param("release-0.1.0"),
        );
        assert_eq!(
            kinds(&r),
            vec!["put", "put", "tag", "tag", "untag", "untag"]
        );
        assert_eq!(r.plan.moves[0].from.as_deref(), Some("release-0.1.0"));
    }

    #[test]
    fn a_channel_gone_from_the_file_is_untagged_and_its_parameters_deleted() {
        let r = run(
            &Channels::default(),
            &two_releases(Some("release-0.1.0")),
            &param("release-0.1.0"),
        );
        assert_eq!(kinds(&r), vec!["untag", "untag", "delete", "delete"]);
    }

    #[test]
    fn a_revocation_deprecates_tags_and_takes_the_release_out_of_its_channel() {
        let f = file(
            "production = { base = \"release-0.1.0\" }\n\
             [revoked]\n\"base@release-0.1.0\" = \"CVE-2026-1: openssl\"\n",
        );
        let r = run(
            &f,
            &two_releases(Some("release-0.1.0")),
            &param("release-0.1.0"),
        );
        assert_eq!(
            kinds(&r),
            vec!["revoke", "revoke", "untag", "untag", "delete", "delete"]
        );
        assert!(
            matches!(&r.actions[0], Action::Revoke { version_parameter, reason, .. }
            if version_parameter == "/bakery/acme/images/base/versions/release-0.1.0"
                && reason == "CVE-2026-1: openssl")
        );
        assert_eq!(r.revocations.len(), 1);
        assert!(r.plan.moves[0].revoked);
        // The channel is left empty: reported, the revocation still happens.
        assert_eq!(
            r.plan.refusals,
            vec![Refusal::Emptied {
                channel: "production".into()
            }]
        );

        // Once done, the same file changes nothing and refuses nothing.
        let mut after = two_releases(None);
        for i in after.iter_mut().filter(|i| i.version == "release-0.1.0") {
            i.state = ImageState::Revoked;
            i.revoked_reason = Some("CVE-2026-1: openssl".into());
        }
        let again = run(&f, &after, &Parameters::new());
        assert_eq!(again, Reconcile::default());
    }

    #[test]
    fn a_refused_channel_is_left_as_it_is() {
        let r = run(
            &file("production = { base = \"release-9.9.9\" }"),
            &two_releases(Some("release-0.1.0")),
            &param("release-0.1.0"),
        );
        assert!(r.actions.is_empty(), "{r:#?}");
        assert!(matches!(
            r.plan.refusals[..],
            [Refusal::NeverReleased { .. }]
        ));
        assert_eq!(r.channels(), BTreeSet::from(["production".to_string()]));
    }

    #[test]
    fn promote_moves_one_channel_and_leaves_the_others() {
        let mut images = two_releases(Some("release-0.1.0"));
        for i in images.iter_mut() {
            i.channels.push("staging".into());
        }
        let r = promote(
            &images,
            &param("release-0.1.0"),
            &ParameterPrefix::default(),
            REPO,
            "base",
            "release-0.2.0",
            "production",
        )
        .unwrap();
        assert_eq!(
            kinds(&r),
            vec!["put", "put", "tag", "tag", "untag", "untag"]
        );
        assert!(r.actions.iter().all(|a| a.channel() == Some("production")));
        let refused = promote(
            &images,
            &param("release-0.1.0"),
            &ParameterPrefix::default(),
            REPO,
            "base",
            "release-9.9.9",
            "production",
        )
        .unwrap();
        assert!(refused.actions.is_empty());
        assert!(!refused.plan.is_clean());
    }

    #[test]
    fn the_parameters_read_are_those_of_named_channels_where_the_recipe_lives() {
        let reads = parameters_to_read(
            &file("staging = { base = \"release-0.1.0\" }"),
            &two_releases(Some("release-0.1.0")),
            &ParameterPrefix::default(),
            REPO,
        )
        .unwrap();
        let names: BTreeSet<&str> = reads.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(
            names,
            BTreeSet::from([
                "/bakery/acme/images/base/channels/production",
                "/bakery/acme/images/base/channels/staging"
            ])
        );
        assert_eq!(reads.len(), 4);
    }
}
