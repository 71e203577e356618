//! Where a repository keeps its channels: `channels.toml` at the root, or a `[channels]`
//! table in `bakery.toml` (with `[channels.revoked]`). One of the two, never both: a
//! repository that has both gets an error on the table, so nobody wonders which one wins.
//!
//! Every reader of the channels goes through here: the pull request's plan (both sides of
//! the change), the reconcile of the default branch, and the lifecycle rules.
//!
//! Touches: the files of a checkout, or the blobs of a git tree; nothing else.

use std::path::Path;

use anyhow::Context;

use super::channels::{self, Channels, RepoConfigTable, CHANNELS_FILE};
use crate::recipe::diagnostic::{Diagnostic, Diagnostics, SourceFile};
use crate::recipe::repo_config::FILE_NAME as REPO_CONFIG_FILE;

/// Which file the channels were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelsSource {
    /// `channels.toml`.
    ChannelsFile,
    /// The `[channels]` table of `bakery.toml`.
    RepoConfig,
    /// Neither: the repository has no channels.
    Nowhere,
}

impl std::fmt::Display for ChannelsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChannelsSource::ChannelsFile => CHANNELS_FILE,
            ChannelsSource::RepoConfig => "[channels] in bakery.toml",
            ChannelsSource::Nowhere => "no channels file",
        })
    }
}

/// The channels of one tree, with the problems found in them.
#[derive(Debug, Clone)]
pub struct ReadChannels {
    pub channels: Channels,
    pub diagnostics: Diagnostics,
    pub source: ChannelsSource,
}

/// Whether a change to these paths (relative to the repository root) can change the
/// channels.
pub fn touches_channels(changed: &[String]) -> bool {
    changed
        .iter()
        .any(|f| f == CHANNELS_FILE || f == REPO_CONFIG_FILE)
}

/// The channels from the two files' texts (`None`: the file does not exist). A
/// `bakery.toml` that does not parse is an error here too: a reconcile must not read
/// "no channels" into a file it could not read.
pub fn from_texts(channels_file: Option<&str>, repo_config: Option<&str>) -> ReadChannels {
    let table = match repo_config {
        Some(text) => channels::parse_repo_config_table(REPO_CONFIG_FILE, text),
        None => RepoConfigTable::Absent,
    };
    let mut read = match (channels_file, table) {
        (Some(text), RepoConfigTable::Present(..)) => {
            let (channels, mut diagnostics) = channels::parse(CHANNELS_FILE, text);
            let config_text = repo_config.unwrap_or_default();
            let file = SourceFile::new(REPO_CONFIG_FILE, config_text);
            diagnostics.push(
                Diagnostic::error(
                    &file,
                    table_span(config_text),
                    format!(
                        "the channels are in {CHANNELS_FILE} already: [channels] here would be \
                         a second source"
                    ),
                )
                .with_hint(format!(
                    "keep the channels in one place: remove this table or {CHANNELS_FILE}"
                )),
            );
            return ReadChannels {
                channels,
                diagnostics,
                source: ChannelsSource::ChannelsFile,
            };
        }
        (None, RepoConfigTable::Present(channels, diagnostics)) => {
            return ReadChannels {
                channels,
                diagnostics,
                source: ChannelsSource::RepoConfig,
            }
        }
        (Some(text), table) => {
            let (channels, diagnostics) = channels::parse(CHANNELS_FILE, text);
            (
                ReadChannels {
                    channels,
                    diagnostics,
                    source: ChannelsSource::ChannelsFile,
                },
                table,
            )
        }
        (None, table) => (
            ReadChannels {
                channels: Channels::default(),
                diagnostics: Diagnostics::new(),
                source: ChannelsSource::Nowhere,
            },
            table,
        ),
    };
    if let RepoConfigTable::Unreadable(problems) = read.1 {
        read.0.diagnostics.extend(problems);
    }
    read.0
}

/// Where `[channels]` starts in `bakery.toml`, for the diagnostic (the whole file when it
/// cannot be found, which a parsed table rules out in practice).
fn table_span(text: &str) -> std::ops::Range<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        let assigned = t
            .strip_prefix("channels")
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if t.starts_with("[channels]") || t.starts_with("[channels.") || assigned {
            let start = offset + (line.len() - t.len());
            return start..start + t.trim_end().len();
        }
        offset += line.len();
    }
    0..0
}

/// The channels of the checkout at `root`.
pub fn read_dir(root: &Path) -> anyhow::Result<ReadChannels> {
    let read = |name: &str| -> anyhow::Result<Option<String>> {
        match std::fs::read_to_string(root.join(name)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {name}"))),
        }
    };
    let channels_file = read(CHANNELS_FILE)?;
    let repo_config = read(REPO_CONFIG_FILE)?;
    Ok(from_texts(channels_file.as_deref(), repo_config.as_deref()))
}

/// The channels of a commit's tree (the base of a pull request, say).
pub fn read_tree(repo: &git2::Repository, tree: &git2::Tree<'_>) -> anyhow::Result<ReadChannels> {
    let read = |name: &str| -> anyhow::Result<Option<String>> {
        let Ok(entry) = tree.get_path(Path::new(name)) else {
            return Ok(None);
        };
        let blob = entry
            .to_object(repo)
            .and_then(|o| o.peel_to_blob())
            .with_context(|| format!("cannot read {name} from the tree"))?;
        Ok(Some(String::from_utf8_lossy(blob.content()).into_owned()))
    };
    let channels_file = read(CHANNELS_FILE)?;
    let repo_config = read(REPO_CONFIG_FILE)?;
    Ok(from_texts(channels_file.as_deref(), repo_config.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "pull_requests = \"always\"\n\
                          \n\
                          [channels]\n\
                          production = { base-ubuntu = \"release-0.1.0\" }\n\
                          \n\
                          [channels.revoked]\n\
                          \"base-ubuntu@release-0.0.9\" = \"CVE-2026-12345: openssl\"\n";

    #[test]
    fn a_channels_table_in_bakery_toml_is_read_like_the_file() {
        let read = from_texts(None, Some(CONFIG));
        assert_eq!(read.source, ChannelsSource::RepoConfig);
        assert!(read.diagnostics.is_empty(), "{:?}", read.diagnostics);
        assert_eq!(
            read.channels.channels["production"]["base-ubuntu"],
            "release-0.1.0"
        );
        assert_eq!(read.channels.revoked.len(), 1);
        let same = channels::parse(
            CHANNELS_FILE,
            "production = { base-ubuntu = \"release-0.1.0\" }\n\
             [revoked]\n\"base-ubuntu@release-0.0.9\" = \"CVE-2026-12345: openssl\"\n",
        )
        .0;
        assert_eq!(read.channels, same);
    }

    #[test]
    fn problems_in_the_table_point_into_bakery_toml() {
        let text = "[defaults]\nregion = \"eu-west-1\"\n\n[channels]\n\"bad name\" = { base-ubuntu = \"release-0.1.0\" }\nstaging = { base-ubuntu = 3 }\n";
        let read = from_texts(None, Some(text));
        let found: Vec<(String, u32)> = read
            .diagnostics
            .iter()
            .map(|d| (d.file.clone(), d.line))
            .collect();
        assert_eq!(
            found,
            vec![("bakery.toml".into(), 5), ("bakery.toml".into(), 6)],
            "{:?}",
            read.diagnostics
        );

        let read = from_texts(None, Some("channels = \"production\"\n"));
        assert_eq!(read.diagnostics.error_count(), 1, "{:?}", read.diagnostics);
        assert_eq!(read.diagnostics.iter().next().unwrap().line, 1);
    }

    #[test]
    fn both_places_is_an_error_on_the_table_and_no_table_is_nowhere() {
        let read = from_texts(
            Some("staging = { base-ubuntu = \"release-0.2.0\" }\n"),
            Some(CONFIG),
        );
        assert_eq!(read.source, ChannelsSource::ChannelsFile);
        let errors: Vec<_> = read.diagnostics.iter().filter(|d| d.is_error()).collect();
        assert_eq!(errors.len(), 1, "{:?}", read.diagnostics);
        assert_eq!(
            (errors[0].file.as_str(), errors[0].line),
            ("bakery.toml", 3)
        );

        let read = from_texts(None, Some("pull_requests = \"always\"\n"));
        assert_eq!(read.source, ChannelsSource::Nowhere);
        assert!(read.channels.channels.is_empty());
        let read = from_texts(None, Some("not toml ["));
        assert_eq!(read.source, ChannelsSource::Nowhere);
        assert!(
            read.diagnostics.has_errors(),
            "an unreadable bakery.toml is not \"no channels\""
        );
    }

    #[test]
    fn a_change_to_either_file_touches_the_channels() {
        assert!(touches_channels(&["bakery.toml".into()]));
        assert!(touches_channels(&[
            "README.md".into(),
            "channels.toml".into()
        ]));
        assert!(!touches_channels(&["recipes/a/recipe.toml".into()]));
    }
}
