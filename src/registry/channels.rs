//! `channels.toml`: which release of each recipe every channel points at, and which
//! releases are revoked. The file lives at the repository's root on the default branch:
//!
//! ```toml
//! production = { base-ubuntu = "release-0.1.0", docker-host = "release-0.1.0" }
//! staging = { base-ubuntu = "release-0.2.0" }
//!
//! [revoked]
//! "base-ubuntu@release-0.0.9" = "CVE-2026-12345: openssl"
//! ```
//!
//! Every problem is a positioned diagnostic (`channels.toml:line:col`), like every other
//! key bakery reads from a repository.
//!
//! Pure: parses text, touches nothing.

use std::collections::BTreeMap;

use serde::Serialize;
use toml::Spanned;

use crate::recipe::diagnostic::{Diagnostic, Diagnostics, SourceFile};
use crate::recipe::is_recipe_name;

/// Where the channels live in a repository.
pub const CHANNELS_FILE: &str = "channels.toml";
/// The table of revoked releases.
const REVOKED: &str = "revoked";

/// One release of one recipe: `recipe@version`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Release {
    pub recipe: String,
    pub version: String,
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.recipe, self.version)
    }
}

/// The channels file, read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Channels {
    /// Channel → recipe → version.
    pub channels: BTreeMap<String, BTreeMap<String, String>>,
    /// Revoked release → reason.
    pub revoked: BTreeMap<Release, String>,
}

/// A channel name: what a GitHub environment, a tag key and a parameter level can all hold.
pub fn is_channel_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s != REVOKED
}

type RawTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

type RawChannels = BTreeMap<Spanned<String>, Spanned<RawTable>>;

/// Reads `text` (the file at `path`). Problems are diagnostics; what could be read is
/// returned with them.
pub fn parse(path: &str, text: &str) -> (Channels, Diagnostics) {
    let file = SourceFile::new(path, text);
    let mut diags = Diagnostics::new();
    match toml::from_str::<RawChannels>(text) {
        Ok(raw) => {
            let out = read_raw(&file, raw, &mut diags);
            (out, diags)
        }
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            diags.push(
                Diagnostic::error(&file, span, format!("not a channels file: {}", e.message()))
                    .with_hint(
                        "each top-level key is a channel: `production = { base-ubuntu = \
                         \"release-0.1.0\" }`; revoked releases go in `[revoked]`",
                    ),
            );
            (Channels::default(), diags)
        }
    }
}

/// What `bakery.toml` says about channels.
#[derive(Debug)]
pub enum RepoConfigTable {
    /// No `[channels]` table.
    Absent,
    /// The table, read like `channels.toml`; positions point into `bakery.toml`.
    Present(Channels, Diagnostics),
    /// The file does not parse, so nobody can tell whether it has channels.
    Unreadable(Diagnostics),
}

/// The `[channels]` table of `bakery.toml` (the file at `path`), which holds what
/// `channels.toml` would: `[channels] production = { … }` and `[channels.revoked]`.
pub fn parse_repo_config_table(path: &str, text: &str) -> RepoConfigTable {
    #[derive(serde::Deserialize)]
    struct Present {
        channels: Option<serde::de::IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct Typed {
        channels: Spanned<RawChannels>,
    }
    let file = SourceFile::new(path, text);
    let mut diags = Diagnostics::new();
    match toml::from_str::<Present>(text) {
        Ok(Present { channels: None }) => return RepoConfigTable::Absent,
        Ok(_) => {}
        Err(e) => {
            diags.push(Diagnostic::error(
                &file,
                e.span().unwrap_or(0..0),
                format!(
                    "{path} does not parse, so its channels cannot be read: {}",
                    e.message()
                ),
            ));
            return RepoConfigTable::Unreadable(diags);
        }
    }
    match toml::from_str::<Typed>(text) {
        Ok(doc) => {
            let out = read_raw(&file, doc.channels.into_inner(), &mut diags);
            RepoConfigTable::Present(out, diags)
        }
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            diags.push(
                Diagnostic::error(&file, span, format!("[channels]: {}", e.message())).with_hint(
                    "each key of [channels] is a channel: `production = { base-ubuntu = \
                     \"release-0.1.0\" }`; revoked releases go in `[channels.revoked]`",
                ),
            );
            RepoConfigTable::Present(Channels::default(), diags)
        }
    }
}

fn read_raw(file: &SourceFile, raw: RawChannels, diags: &mut Diagnostics) -> Channels {
    let mut out = Channels::default();
    for (name, table) in raw {
        if name.get_ref() == REVOKED {
            for (key, reason) in table.into_inner() {
                let Some((recipe, version)) = key.get_ref().split_once('@') else {
                    diags.push(
                        Diagnostic::error(
                            file,
                            key.span(),
                            format!("{:?} is not `recipe@version`", key.get_ref()),
                        )
                        .with_hint("name a release like \"base-ubuntu@release-0.1.0\""),
                    );
                    continue;
                };
                if !is_recipe_name(recipe) || version.is_empty() {
                    diags.push(Diagnostic::error(
                        file,
                        key.span(),
                        format!("{:?} is not `recipe@version`", key.get_ref()),
                    ));
                    continue;
                }
                let Some(why) = reason.get_ref().as_str().filter(|r| !r.trim().is_empty()) else {
                    diags.push(
                        Diagnostic::error(
                            file,
                            reason.span(),
                            "a revocation needs its reason as a non-empty string",
                        )
                        .with_hint("\"base-ubuntu@release-0.1.0\" = \"CVE-2026-12345: openssl\""),
                    );
                    continue;
                };
                out.revoked.insert(
                    Release {
                        recipe: recipe.into(),
                        version: version.into(),
                    },
                    why.to_string(),
                );
            }
            continue;
        }
        if !is_channel_name(name.get_ref()) {
            diags.push(
                Diagnostic::error(
                    file,
                    name.span(),
                    format!("{:?} is not a channel name", name.get_ref()),
                )
                .with_hint("letters, digits, \"-\", \"_\" and \".\", at most 64"),
            );
            continue;
        }
        let mut members = BTreeMap::new();
        for (recipe, version) in table.into_inner() {
            if !is_recipe_name(recipe.get_ref()) {
                diags.push(Diagnostic::error(
                    file,
                    recipe.span(),
                    format!("{:?} is not a recipe name", recipe.get_ref()),
                ));
                continue;
            }
            match version.get_ref().as_str() {
                Some(v) if !v.is_empty() => {
                    members.insert(recipe.get_ref().clone(), v.to_string());
                }
                _ => diags.push(
                    Diagnostic::error(
                        file,
                        version.span(),
                        format!(
                            "channel {}: the version of {} must be a string",
                            name.get_ref(),
                            recipe.get_ref()
                        ),
                    )
                    .with_hint("like \"release-0.1.0\""),
                ),
            }
        }
        out.channels.insert(name.get_ref().clone(), members);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_and_revocations_are_read() {
        let (c, d) = parse(
            CHANNELS_FILE,
            "production = { base-ubuntu = \"release-0.1.0\", docker-host = \"release-0.1.0\" }\n\
             staging = { base-ubuntu = \"release-0.2.0\" }\n\
             \n\
             [revoked]\n\
             \"base-ubuntu@release-0.0.9\" = \"CVE-2026-12345: openssl\"\n",
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.channels["production"]["docker-host"], "release-0.1.0");
        assert_eq!(c.channels["staging"]["base-ubuntu"], "release-0.2.0");
        assert_eq!(
            c.revoked[&Release {
                recipe: "base-ubuntu".into(),
                version: "release-0.0.9".into()
            }],
            "CVE-2026-12345: openssl"
        );
    }

    #[test]
    fn problems_point_at_their_line() {
        let (c, d) = parse(
            CHANNELS_FILE,
            "production = { base-ubuntu = \"release-0.1.0\" }\n\
             \"bad name\" = { base-ubuntu = \"release-0.1.0\" }\n\
             staging = { base-ubuntu = 3 }\n\
             [revoked]\n\
             \"base-ubuntu\" = \"no version\"\n\
             \"base-ubuntu@release-0.1.0\" = \"\"\n",
        );
        let lines: Vec<String> = d
            .iter()
            .map(|d| format!("{}:{}", d.line, d.message))
            .collect();
        assert_eq!(d.error_count(), 4, "{lines:#?}");
        for (line, what) in [
            (2, "is not a channel name"),
            (3, "must be a string"),
            (5, "is not `recipe@version`"),
            (6, "needs its reason"),
        ] {
            assert!(
                d.iter().any(|x| x.line == line && x.message.contains(what)),
                "line {line}: {what}: {lines:#?}"
            );
        }
        assert_eq!(c.channels["production"]["base-ubuntu"], "release-0.1.0");
        assert!(c.revoked.is_empty());

        let (_, d) = parse(CHANNELS_FILE, "production = \"release-0.1.0\"\n");
        assert_eq!(d.error_count(), 1);
        assert_eq!(d.iter().next().unwrap().line, 1);
    }
}
