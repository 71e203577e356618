//! The names of the Parameter Store parameters bakery writes for a release:
//! `<prefix>/<repo>/<recipe>/versions/<version>` (and `.../channels/<channel>`), each
//! holding an AMI id with data type `aws:ec2:image`, so Terraform's `aws_ssm_parameter`
//! data source and launch templates' `resolve:ssm:` find an image by its version.
//!
//! The prefix is the operator's (`[aws] ssm_prefix`, `/bakery` by default). A build
//! without a repository (`bakery build` from a local checkout) leaves the repository
//! level out. Every name is checked against Parameter Store's rules before anything is
//! launched, so a version string it cannot hold fails the build early, not after the copies.
//!
//! Pure: touches nothing.

use serde::{Deserialize, Serialize};

/// Parameter Store's deepest hierarchy.
const MAX_LEVELS: usize = 15;
/// A parameter name's length, leaving room for the ARN around it (AWS counts the two
/// together against 1011 characters).
const MAX_NAME_LEN: usize = 940;

/// Why a parameter name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterNameError {
    #[error("aws.ssm_prefix {prefix:?} must start with \"/\" (like \"/bakery\")")]
    NotAbsolute { prefix: String },
    #[error("Parameter Store reserves names under /aws and /ssm: {name:?} cannot be used")]
    Reserved { name: String },
    #[error(
        "{what} {segment:?} cannot be part of the parameter name {name:?}: Parameter Store \
         allows letters, digits, \"_\", \".\" and \"-\" in each level"
    )]
    BadLevel {
        what: &'static str,
        segment: String,
        name: String,
    },
    #[error(
        "the parameter name {name:?} has {levels} levels; Parameter Store allows {MAX_LEVELS}"
    )]
    TooDeep { name: String, levels: usize },
    #[error("the parameter name {name:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong { name: String },
}

/// The hierarchy every bakery parameter lives under, e.g. `/bakery`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ParameterPrefix(String);

impl Default for ParameterPrefix {
    fn default() -> Self {
        ParameterPrefix("/bakery".into())
    }
}

impl ParameterPrefix {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ParameterPrefix {
    type Error = ParameterNameError;

    fn try_from(prefix: String) -> Result<Self, Self::Error> {
        if !prefix.starts_with('/') {
            return Err(ParameterNameError::NotAbsolute { prefix });
        }
        let trimmed = prefix.trim_end_matches('/').to_string();
        for level in trimmed.split('/').skip(1) {
            check_level("aws.ssm_prefix level", level, &prefix)?;
        }
        check_reserved(&format!("{trimmed}/x"))?;
        Ok(ParameterPrefix(trimmed))
    }
}

impl From<ParameterPrefix> for String {
    fn from(p: ParameterPrefix) -> String {
        p.0
    }
}

impl std::fmt::Display for ParameterPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "/" } else { &self.0 })
    }
}

/// `<prefix>/<repo>/<recipe>/versions/<version>`: the release's image in one account and
/// region.
pub fn version_parameter(
    prefix: &ParameterPrefix,
    repo: Option<&str>,
    recipe: &str,
    version: &str,
) -> Result<String, ParameterNameError> {
    name(prefix, repo, recipe, "versions", ("version", version))
}

/// `<prefix>/<repo>/<recipe>/channels/<channel>`: the image channel `<channel>` points
/// at for the recipe in one account and region.
pub fn channel_parameter(
    prefix: &ParameterPrefix,
    repo: Option<&str>,
    recipe: &str,
    channel: &str,
) -> Result<String, ParameterNameError> {
    name(prefix, repo, recipe, "channels", ("channel", channel))
}

fn name(
    prefix: &ParameterPrefix,
    repo: Option<&str>,
    recipe: &str,
    kind: &str,
    (what, leaf): (&'static str, &str),
) -> Result<String, ParameterNameError> {
    let mut levels: Vec<(&'static str, &str)> = vec![];
    if let Some(repo) = repo {
        for part in repo.split('/') {
            levels.push(("repository", part));
        }
    }
    levels.push(("recipe", recipe));
    levels.push(("kind", kind));
    levels.push((what, leaf));
    let mut name = prefix.0.clone();
    for (_, level) in &levels {
        name.push('/');
        name.push_str(level);
    }
    for (what, level) in &levels {
        check_level(what, level, &name)?;
    }
    check_reserved(&name)?;
    let depth = name.split('/').skip(1).count();
    if depth > MAX_LEVELS {
        return Err(ParameterNameError::TooDeep {
            name,
            levels: depth,
        });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ParameterNameError::TooLong { name });
    }
    Ok(name)
}

fn check_level(what: &'static str, level: &str, name: &str) -> Result<(), ParameterNameError> {
    if level.is_empty()
        || !level
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(ParameterNameError::BadLevel {
            what,
            segment: level.into(),
            name: name.into(),
        });
    }
    Ok(())
}

fn check_reserved(name: &str) -> Result<(), ParameterNameError> {
    let first = name
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return Err(ParameterNameError::Reserved { name: name.into() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> ParameterPrefix {
        ParameterPrefix::try_from(p.to_string()).unwrap()
    }

    #[test]
    fn a_release_is_named_by_repository_recipe_and_version() {
        let p = ParameterPrefix::default();
        assert_eq!(
            version_parameter(&p, Some("acme/images"), "base-ubuntu", "release-0.1.0").unwrap(),
            "/bakery/acme/images/base-ubuntu/versions/release-0.1.0"
        );
        assert_eq!(
            version_parameter(&p, None, "base-ubuntu", "v1.2.3").unwrap(),
            "/bakery/base-ubuntu/versions/v1.2.3"
        );
        assert_eq!(
            version_parameter(&prefix("/org/amis/"), Some("a/b"), "r", "v1").unwrap(),
            "/org/amis/a/b/r/versions/v1"
        );
        assert_eq!(
            channel_parameter(&p, Some("acme/images"), "base-ubuntu", "production").unwrap(),
            "/bakery/acme/images/base-ubuntu/channels/production"
        );
    }

    #[test]
    fn prefixes_parameter_store_refuses_are_refused_by_kind() {
        for (p, want) in [
            ("bakery", "NotAbsolute"),
            ("/aws/bakery", "Reserved"),
            ("/SSM-things", "Reserved"),
            ("/my prefix", "BadLevel"),
            ("/a//b", "BadLevel"),
        ] {
            let err = ParameterPrefix::try_from(p.to_string()).unwrap_err();
            let kind = match err {
                ParameterNameError::NotAbsolute { .. } => "NotAbsolute",
                ParameterNameError::Reserved { .. } => "Reserved",
                ParameterNameError::BadLevel { .. } => "BadLevel",
                ParameterNameError::TooDeep { .. } => "TooDeep",
                ParameterNameError::TooLong { .. } => "TooLong",
            };
            assert_eq!(kind, want, "{p}: {err}");
        }
        let p: ParameterPrefix = toml::from_str::<toml::Value>("p = \"/x\"")
            .unwrap()
            .get("p")
            .cloned()
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(p.as_str(), "/x");
    }

    #[test]
    fn versions_that_cannot_be_a_level_are_refused_before_anything_runs() {
        let p = ParameterPrefix::default();
        let err = version_parameter(&p, Some("acme/images"), "base", "v1.0+build 7").unwrap_err();
        assert!(matches!(
            err,
            ParameterNameError::BadLevel {
                what: "version",
                ..
            }
        ));
        let deep = prefix("/a/b/c/d/e/f/g/h/i/j/k");
        assert!(matches!(
            version_parameter(&deep, Some("o/r"), "base", "v1"),
            Err(ParameterNameError::TooDeep { levels: 16, .. })
        ));
        let long = "v".repeat(MAX_NAME_LEN);
        assert!(matches!(
            version_parameter(&p, None, "base", &long),
            Err(ParameterNameError::TooLong { .. })
        ));
    }
}
