//! `[aws.budgets]`: how long each wait of a build may take, as the operator configures
//! them for the server (`bakery build` takes the same section, and its flags win). Each
//! value is a duration such as `"15m"` or `"3h"`; a missing key keeps its default.
//!
//! Touches nothing: configuration and its checks. The waits read [`super::Budgets`].

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// A budget that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("aws.budgets.{key} must be at least one second")]
pub struct BudgetTooShort {
    pub key: &'static str,
}

impl super::Budgets {
    /// Refuses a zero budget, which would fail every build at its first wait.
    pub fn check(&self) -> Result<(), BudgetTooShort> {
        for (key, d) in [
            ("instance_running", self.instance_running),
            ("instance_stopped", self.instance_stopped),
            ("image_available", self.image_available),
            ("copy_available", self.copy_available),
            ("console_fingerprints", self.console_fingerprints),
        ] {
            if d < Duration::from_secs(1) {
                return Err(BudgetTooShort { key });
            }
        }
        Ok(())
    }
}

/// A duration written as people write it (`"90m"`, `"3h 30m"`).
pub(crate) mod human {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration ({e}); write it like \"15m\" or \"3h\""
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Budgets;
    use std::time::Duration;

    #[derive(serde::Deserialize)]
    struct Holder {
        #[serde(default)]
        budgets: Budgets,
    }

    #[test]
    fn a_configured_budget_replaces_only_its_own_default() {
        let h: Holder = toml::from_str("[budgets]\nimage_available = \"2h\"\n").unwrap();
        assert_eq!(h.budgets.image_available, Duration::from_secs(2 * 3600));
        assert_eq!(h.budgets.copy_available, Budgets::default().copy_available);
        let h: Holder = toml::from_str("").unwrap();
        assert_eq!(h.budgets, Budgets::default());
    }

    #[test]
    fn a_budget_is_a_duration_of_at_least_a_second() {
        let err = toml::from_str::<Holder>("[budgets]\ncopy_available = \"soon\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("is not a duration"), "{err}");
        let err = toml::from_str::<Holder>("[budgets]\nimage_availble = \"1h\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
        let h: Holder = toml::from_str("[budgets]\ninstance_running = \"0s\"\n").unwrap();
        assert_eq!(h.budgets.check().unwrap_err().key, "instance_running");
    }
}
