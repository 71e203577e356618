//! What the lifecycle rules retire: from the images the registry found, each recipe's
//! rules (`[lifecycle]`), the channels file of the default branch and the parents in use,
//! the releases to deprecate or deregister, and those a rule would retire but that are
//! spared (with why).
//!
//! A release (`recipe@version`, every copy of it) is judged as one:
//! - `keep = N`: the newest N releases (by creation, revoked ones not counted) are never
//!   retired; older ones are deregistered (once older than `deregister_after`, when that
//!   is set too);
//! - `deregister_after`: a release older than that is deregistered;
//! - `deprecate_after`: a release older than that is deprecated (its available copies).
//!
//! Never retired: a release a channel points at (in the channels file or by its
//! `bakery:channel:*` tag), one a recipe names as its source (`latest`: the newest usable
//! release), one another image still in the cloud was built on (its parent link, the
//! `bakery:source-ami` tag, whatever its repository), and one younger than its grace
//! period. A revoked release (`bakery:revoked`, or listed in `[revoked]`) holds no `keep`
//! place: the rules retire it like any older release.
//!
//! Pure: the registry's entries, the rules and the clock in, the plan out.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::channels::{Channels, Release};
use super::model::{ImageState, RegistryImage};
use crate::recipe::lifecycle::LifecycleRules;

/// The rules of every recipe: `recipes` holds each recipe's own, already filled in from
/// `default` (`bakery.toml`'s), which applies to a recipe the repository no longer has.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub default: LifecycleRules,
    pub recipes: BTreeMap<String, LifecycleRules>,
}

impl Rules {
    pub fn for_recipe(&self, recipe: &str) -> LifecycleRules {
        self.recipes.get(recipe).copied().unwrap_or(self.default)
    }
}

/// A recipe's `[source] recipe = ...`: the release its next build starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePin {
    /// The recipe that builds on it.
    pub by: String,
    pub recipe: String,
    /// A version, or `latest`.
    pub version: String,
}

/// What the planner reads.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// Whose releases are retired (`None`: releases built without a repository).
    pub repo: Option<&'a str>,
    /// Every image the registry found, of every repository: a parent is in use whoever
    /// built on it.
    pub images: &'a [RegistryImage],
    pub rules: &'a Rules,
    /// The channels file of the default branch.
    pub channels: &'a Channels,
    pub pins: &'a [SourcePin],
    pub now: DateTime<Utc>,
}

/// What happens to a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Its deprecation time is set: hidden from listings, still launchable by id.
    Deprecate,
    /// Deregistered with its snapshots, launch permissions and version parameters.
    Deregister,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deprecate => "deprecate",
            Action::Deregister => "deregister",
        }
    }
}

/// Which rule asks for the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Why {
    /// Older than the newest `keep` releases (`rank` 1 is the newest).
    Keep {
        keep: u32,
        rank: usize,
    },
    DeregisterAfter {
        after_secs: u64,
    },
    DeprecateAfter {
        after_secs: u64,
    },
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = |s: u64| humantime::format_duration(std::time::Duration::from_secs(s));
        match self {
            Why::Keep { keep, rank } => {
                write!(f, "release {rank} by age, beyond keep = {keep}")
            }
            Why::DeregisterAfter { after_secs } => {
                write!(f, "older than deregister_after = {}", d(*after_secs))
            }
            Why::DeprecateAfter { after_secs } => {
                write!(f, "older than deprecate_after = {}", d(*after_secs))
            }
        }
    }
}

/// Why a release a rule would retire stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Spared {
    /// A channel points at it.
    Channel { channel: String },
    /// A recipe's `[source]` names it.
    Source { by: String },
    /// An image in the cloud was built on it.
    Parent { child: Release },
    /// Younger than its grace period.
    GracePeriod { until: DateTime<Utc> },
}

impl std::fmt::Display for Spared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Spared::Channel { channel } => write!(f, "channel {channel} points at it"),
            Spared::Source { by } => write!(f, "recipe {by} builds on it"),
            Spared::Parent { child } => write!(f, "{child} was built on it"),
            Spared::GracePeriod { until } => write!(
                f,
                "in its grace period until {}",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        }
    }
}

/// The plan for one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Retire {
        action: Action,
        why: Why,
    },
    /// `action` is what the rules would do.
    Spare {
        action: Action,
        why: Why,
        spared: Spared,
    },
}

/// One copy an action applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    pub account: String,
    pub region: String,
    pub image_id: String,
    pub build_id: String,
}

/// One release and what happens to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub recipe: String,
    pub version: String,
    pub repo: Option<String>,
    /// RFC 3339: the release's oldest copy.
    pub created_at: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The copies the action applies to (for a deprecation, those still available).
    pub copies: Vec<Copy>,
}

impl Entry {
    /// The action to take now, if not spared.
    pub fn retires(&self) -> Option<Action> {
        match &self.verdict {
            Verdict::Retire { action, .. } => Some(*action),
            Verdict::Spare { .. } => None,
        }
    }
}

/// What the rules decide, in recipe order, oldest release first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LifecyclePlan {
    pub entries: Vec<Entry>,
}

/// One release as found: its copies still in the cloud.
struct Found<'a> {
    release: Release,
    created: Option<DateTime<Utc>>,
    copies: Vec<&'a RegistryImage>,
    revoked: bool,
}

/// Decides, for every release of `input.repo`, what the rules retire.
pub fn plan(input: PlanInput<'_>) -> LifecyclePlan {
    let mut by_release: BTreeMap<Release, Found<'_>> = BTreeMap::new();
    for image in input.images {
        if image.repo.as_deref() != input.repo || image.state == ImageState::Deregistered {
            continue;
        }
        let release = Release {
            recipe: image.recipe.clone(),
            version: image.version.clone(),
        };
        let created = image
            .created_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let found = by_release.entry(release.clone()).or_insert_with(|| Found {
            revoked: input.channels.revoked.contains_key(&release),
            release,
            created,
            copies: vec![],
        });
        found.created = match (found.created, created) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        found.revoked |= image.state == ImageState::Revoked;
        found.copies.push(image);
    }

    let mut by_recipe: BTreeMap<&str, Vec<&Found<'_>>> = BTreeMap::new();
    for found in by_release.values() {
        by_recipe
            .entry(found.release.recipe.as_str())
            .or_default()
            .push(found);
    }
    let mut entries = vec![];
    for (recipe, mut releases) in by_recipe {
        let rules = input.rules.for_recipe(recipe);
        if !rules.retires() {
            continue;
        }
        // Newest first; a release of unknown age counts as the newest.
        releases.sort_by(|a, b| match (a.created, b.created) {
            (Some(x), Some(y)) => y.cmp(&x),
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (None, None) => a.release.cmp(&b.release),
        });
        let newest_usable = releases.iter().find(|r| !r.revoked).map(|r| &r.release);
        let mut rank = 0;
        let mut recipe_entries = vec![];
        for found in releases {
            if !found.revoked {
                rank += 1;
            }
            let Some(created) = found.created else {
                continue;
            };
            let Some((action, why)) = rule_action(&rules, found, rank, created, input.now) else {
                continue;
            };
            let copies: Vec<Copy> = found
                .copies
                .iter()
                .filter(|c| action == Action::Deregister || c.state == ImageState::Available)
                .map(|c| Copy {
                    account: c.account.clone(),
                    region: c.region.clone(),
                    image_id: c.image_id.clone(),
                    build_id: c.build_id.clone(),
                })
                .collect();
            if copies.is_empty() {
                continue;
            }
            let verdict = match spared(&input, &rules, found, newest_usable, created) {
                Some(spared) => Verdict::Spare {
                    action,
                    why,
                    spared,
                },
                None => Verdict::Retire { action, why },
            };
            recipe_entries.push(Entry {
                recipe: found.release.recipe.clone(),
                version: found.release.version.clone(),
                repo: input.repo.map(str::to_string),
                created_at: created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                verdict,
                copies,
            });
        }
        recipe_entries.reverse();
        entries.extend(recipe_entries);
    }
    LifecyclePlan { entries }
}

/// What the rules alone ask of a release (`rank`: 1 is the newest usable one).
fn rule_action(
    rules: &LifecycleRules,
    found: &Found<'_>,
    rank: usize,
    created: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<(Action, Why)> {
    let kept = rules
        .keep
        .is_some_and(|k| !found.revoked && rank <= k as usize);
    if kept {
        return None;
    }
    let age = now.signed_duration_since(created).num_seconds().max(0) as u64;
    match (rules.deregister_after_secs, rules.keep) {
        (Some(after), _) if age >= after => {
            return Some((
                Action::Deregister,
                Why::DeregisterAfter { after_secs: after },
            ))
        }
        (None, Some(keep)) => return Some((Action::Deregister, Why::Keep { keep, rank })),
        _ => {}
    }
    match rules.deprecate_after_secs {
        Some(after) if age >= after => {
            Some((Action::Deprecate, Why::DeprecateAfter { after_secs: after }))
        }
        _ => None,
    }
}

/// Why a release must stay whatever the rules say, if it must.
fn spared(
    input: &PlanInput<'_>,
    rules: &LifecycleRules,
    found: &Found<'_>,
    newest_usable: Option<&Release>,
    created: DateTime<Utc>,
) -> Option<Spared> {
    let release = &found.release;
    let in_file = input
        .channels
        .channels
        .iter()
        .find(|(_, members)| members.get(&release.recipe) == Some(&release.version))
        .map(|(name, _)| name.clone());
    let tagged = found
        .copies
        .iter()
        .flat_map(|c| c.channels.iter())
        .next()
        .cloned();
    if let Some(channel) = in_file.or(tagged) {
        return Some(Spared::Channel { channel });
    }
    if let Some(pin) = input.pins.iter().find(|p| {
        p.recipe == release.recipe
            && (p.version == release.version
                || (p.version == "latest" && newest_usable == Some(release)))
    }) {
        return Some(Spared::Source { by: pin.by.clone() });
    }
    let ids: BTreeSet<&str> = found.copies.iter().map(|c| c.image_id.as_str()).collect();
    if let Some(child) = input.images.iter().find(|i| {
        i.state != ImageState::Deregistered
            && !(i.recipe == release.recipe && i.version == release.version)
            && i.parent.as_ref().is_some_and(|p| {
                ids.contains(p.image_id.as_str())
                    || (p.recipe.as_deref() == Some(release.recipe.as_str())
                        && p.version.as_deref() == Some(release.version.as_str()))
            })
    }) {
        return Some(Spared::Parent {
            child: Release {
                recipe: child.recipe.clone(),
                version: child.version.clone(),
            },
        });
    }
    let until = created + chrono::Duration::seconds(rules.grace_period_secs() as i64);
    if input.now < until {
        return Some(Spared::GracePeriod { until });
    }
    None
}

#[cfg(test)]
mod tests;
