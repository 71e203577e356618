//! `[lifecycle]`: when a recipe's releases are retired. In a recipe, or at the top of
//! `bakery.toml` as the default every recipe inherits key by key:
//!
//! ```toml
//! [lifecycle]
//! keep = 3                      # the newest 3 releases are never retired
//! deprecate_after = "90d"       # older releases are deprecated (hidden from listings)
//! deregister_after = "365d"     # and deregistered, with snapshots and parameters
//! grace_period = "1d"           # nothing younger is ever touched (default 1 day)
//! ```
//!
//! Only reads and checks the table (with positions, like every other key); what the rules
//! decide is `registry::lifecycle`'s. Pure.

use serde::Serialize;

use super::reader::{Cx, Loc, Table};

/// A release younger than this is never retired, unless the rules say otherwise.
pub const DEFAULT_GRACE_PERIOD_SECS: u64 = 24 * 60 * 60;

/// `[lifecycle]` as written, with positions.
#[derive(Debug, Clone, Default)]
pub struct LifecycleSpec {
    pub keep: Option<Loc<u32>>,
    pub deprecate_after_secs: Option<Loc<u64>>,
    pub deregister_after_secs: Option<Loc<u64>>,
    pub grace_period_secs: Option<Loc<u64>>,
}

/// The rules of one recipe, positions dropped. `None`: not set here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LifecycleRules {
    /// The newest `keep` releases are never retired; older ones are deregistered (once
    /// older than `deregister_after_secs`, when that is set too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deprecate_after_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deregister_after_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period_secs: Option<u64>,
}

impl LifecycleRules {
    pub fn from_spec(spec: &LifecycleSpec) -> Self {
        LifecycleRules {
            keep: spec.keep.as_ref().map(|k| k.value),
            deprecate_after_secs: spec.deprecate_after_secs.as_ref().map(|d| d.value),
            deregister_after_secs: spec.deregister_after_secs.as_ref().map(|d| d.value),
            grace_period_secs: spec.grace_period_secs.as_ref().map(|d| d.value),
        }
    }

    /// These rules, each key not set here taken from `defaults`.
    pub fn or(self, defaults: LifecycleRules) -> Self {
        LifecycleRules {
            keep: self.keep.or(defaults.keep),
            deprecate_after_secs: self.deprecate_after_secs.or(defaults.deprecate_after_secs),
            deregister_after_secs: self
                .deregister_after_secs
                .or(defaults.deregister_after_secs),
            grace_period_secs: self.grace_period_secs.or(defaults.grace_period_secs),
        }
    }

    /// Whether any rule retires anything (a grace period alone does not).
    pub fn retires(&self) -> bool {
        self.keep.is_some()
            || self.deprecate_after_secs.is_some()
            || self.deregister_after_secs.is_some()
    }

    pub fn grace_period_secs(&self) -> u64 {
        self.grace_period_secs.unwrap_or(DEFAULT_GRACE_PERIOD_SECS)
    }
}

/// Reads a `[lifecycle]` table and checks its values.
pub fn read_lifecycle(cx: &Cx, mut t: Table<'_, '_, '_>) -> LifecycleSpec {
    let keep = t.integer("keep", 1, 10_000).map(|k| k.map(|v| v as u32));
    let deprecate_after_secs = t.duration("deprecate_after");
    let deregister_after_secs = t.duration("deregister_after");
    let grace_period_secs = t.duration("grace_period");
    t.finish();
    super::values::check_retire_order(
        cx,
        deprecate_after_secs.as_ref(),
        deregister_after_secs.as_ref(),
    );
    LifecycleSpec {
        keep,
        deprecate_after_secs,
        deregister_after_secs,
        grace_period_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipe_rule_wins_key_by_key_over_the_default() {
        let recipe = LifecycleRules {
            keep: Some(2),
            ..LifecycleRules::default()
        };
        let defaults = LifecycleRules {
            keep: Some(5),
            deregister_after_secs: Some(3600),
            ..LifecycleRules::default()
        };
        let r = recipe.or(defaults);
        assert_eq!(r.keep, Some(2));
        assert_eq!(r.deregister_after_secs, Some(3600));
        assert_eq!(r.deprecate_after_secs, None);
        assert_eq!(r.grace_period_secs(), DEFAULT_GRACE_PERIOD_SECS);
        assert!(r.retires());
        assert!(!LifecycleRules {
            grace_period_secs: Some(1),
            ..LifecycleRules::default()
        }
        .retires());
    }
}
