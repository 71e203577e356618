//! A repository's `owner/name`, and the path pieces of API routes.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RepoName {
    pub owner: String,
    pub name: String,
}

impl RepoName {
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> Self {
        RepoName {
            owner: owner.into(),
            name: name.into(),
        }
    }

    /// Parses `owner/name`.
    pub fn parse(full_name: &str) -> anyhow::Result<Self> {
        match full_name.split_once('/') {
            Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(RepoName::new(owner, name))
            }
            _ => anyhow::bail!(
                "{full_name:?} is not a repository name: write it as owner/name, e.g. acme/images"
            ),
        }
    }

    /// `/repos/{owner}/{repo}` with both parts escaped.
    pub fn route(&self) -> String {
        format!(
            "/repos/{}/{}",
            path_segment(&self.owner),
            path_segment(&self.name)
        )
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// Percent-encodes one path segment (a tag or user name may hold `/`, `#`, `?`...).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_routes() {
        let r = RepoName::parse("acme/images").unwrap();
        assert_eq!(r.route(), "/repos/acme/images");
        assert_eq!(r.to_string(), "acme/images");
        assert!(RepoName::parse("acme").is_err());
        assert!(RepoName::parse("a/b/c").is_err());
        assert!(RepoName::parse("/b").is_err());
    }

    #[test]
    fn escapes_path_segments() {
        assert_eq!(path_segment("release/1.0+x"), "release%2F1.0%2Bx");
        assert_eq!(path_segment("release-0.1.0"), "release-0.1.0");
    }
}
