//! Release notes from git history: the changes since the previous tag of the same
//! pattern, and the recipes they touched.
//!
//! History is read first-parent from the tag, so a merged pull request appears once, by
//! its title ("Merge pull request #12 from x/y" with the title in the body), as does a
//! squash merge ("Title (#12)"); other commits appear by their subject. Subjects in the
//! conventional-commit form (`feat(web): ...`) are grouped by type.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use anyhow::Context;
use git2::{Oid, Repository, Sort};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::github::sync::tag_matches;

/// One entry of the notes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The PR title, or the commit subject, without the conventional-commit prefix.
    pub title: String,
    /// The conventional-commit type (`feat`, `fix`...), when the subject has one.
    pub kind: Option<String>,
    pub scope: Option<String>,
    pub breaking: bool,
    pub pull_request: Option<u64>,
    pub sha: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseNotes {
    pub tag: String,
    /// The previous tag matching the same pattern; `None` for the first release.
    pub previous_tag: Option<String>,
    /// Newest first.
    pub changes: Vec<Change>,
    /// Recipes with a file changed under `recipes/<name>/` (all recipes for the first
    /// release), sorted.
    pub changed_recipes: Vec<String>,
}

impl ReleaseNotes {
    /// Whether the changes are grouped by conventional-commit type.
    pub fn is_conventional(&self) -> bool {
        self.changes.iter().any(|c| c.kind.is_some())
    }
}

/// Computes the notes for `tag` in `repo`. `patterns` are the release tag globs; the
/// previous tag is the nearest ancestor tag that matches the same pattern as `tag`.
pub fn compute(repo: &Repository, tag: &str, patterns: &[String]) -> anyhow::Result<ReleaseNotes> {
    let head = tag_commit(repo, tag)?
        .with_context(|| format!("tag {tag} is not in the checked-out repository"))?;
    let pattern = patterns
        .iter()
        .find(|p| tag_matches(p, tag))
        .cloned()
        .unwrap_or_else(|| tag.to_string());
    let previous = previous_tag(repo, tag, head, &pattern)?;

    let mut walk = repo
        .revwalk()
        .context("cannot walk the repository's history")?;
    walk.set_sorting(Sort::TOPOLOGICAL)?;
    walk.simplify_first_parent()?;
    walk.push(head)?;
    if let Some((_, prev)) = &previous {
        walk.hide(*prev)?;
    }
    let mut changes = Vec::new();
    for oid in walk {
        let oid = oid.context("cannot read the repository's history")?;
        let commit = repo.find_commit(oid)?;
        let message = commit.message().unwrap_or("").to_string();
        if let Some(change) = change_from_message(&message, commit.parent_count() > 1, oid) {
            changes.push(change);
        }
    }

    let changed_recipes = changed_recipes(repo, previous.as_ref().map(|(_, o)| *o), head)?;
    Ok(ReleaseNotes {
        tag: tag.to_string(),
        previous_tag: previous.map(|(t, _)| t),
        changes,
        changed_recipes,
    })
}

/// The commit a tag points at (through annotated tags), or `None` when there is no such tag.
fn tag_commit(repo: &Repository, tag: &str) -> anyhow::Result<Option<Oid>> {
    let reference = match repo.find_reference(&format!("refs/tags/{tag}")) {
        Ok(r) => r,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read tag {tag}")),
    };
    let commit = reference
        .peel_to_commit()
        .with_context(|| format!("tag {tag} does not point at a commit"))?;
    Ok(Some(commit.id()))
}

/// The nearest tag before `tag` that matches `pattern` and whose commit is an ancestor
/// of `head`. Ties (several tags on one commit) go to the highest version.
fn previous_tag(
    repo: &Repository,
    tag: &str,
    head: Oid,
    pattern: &str,
) -> anyhow::Result<Option<(String, Oid)>> {
    let names = repo.tag_names(None).context("cannot list tags")?;
    let mut best: Option<(usize, String, Oid)> = None;
    for name in names.iter().flatten().flatten() {
        if name == tag || !tag_matches(pattern, name) {
            continue;
        }
        let Some(oid) = tag_commit(repo, name)? else {
            continue;
        };
        let is_before = oid == head || repo.graph_descendant_of(head, oid)?;
        if !is_before {
            continue;
        }
        let (ahead, _) = repo.graph_ahead_behind(head, oid)?;
        if oid == head && version_cmp(name, tag).is_ge() {
            // Another tag on the same commit that is not older than this one.
            continue;
        }
        let better = match &best {
            None => true,
            Some((d, n, _)) => ahead < *d || (ahead == *d && version_cmp(name, n).is_gt()),
        };
        if better {
            best = Some((ahead, name.to_string(), oid));
        }
    }
    Ok(best.map(|(_, n, o)| (n, o)))
}

/// Compares tag names with digit runs as numbers: `release-0.10.0` > `release-0.9.1`.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, xa), (db, xb)) in ca.iter().zip(cb.iter()) {
        let ord = if *da && *db {
            let (ta, tb) = (xa.trim_start_matches('0'), xb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            xa.cmp(xb)
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

fn merge_pr_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^Merge pull request #(\d+) from (\S+)").expect("valid regex"))
}

fn squash_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^(.+?) \(#(\d+)\)$").expect("valid regex"))
}

fn conventional_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^([A-Za-z]+)(?:\(([^()]+)\))?(!)?: (.+)$").expect("valid regex"))
}

/// What a commit message contributes to the notes. Merge commits that are not pull
/// request merges ("Merge branch 'x'") contribute nothing: their content shows through
/// the branch's own merge or squash commit.
fn change_from_message(message: &str, is_merge: bool, sha: Oid) -> Option<Change> {
    let mut lines = message.lines();
    let subject = lines.next().unwrap_or("").trim();
    let (title, pull_request) = if let Some(m) = merge_pr_re().captures(subject) {
        let number = m[1].parse().ok();
        let body_title = lines.map(str::trim).find(|l| !l.is_empty());
        let title = match body_title {
            Some(t) => t.to_string(),
            None => format!("Merge {}", &m[2]),
        };
        (title, number)
    } else if is_merge {
        return None;
    } else if let Some(m) = squash_re().captures(subject) {
        (m[1].to_string(), m[2].parse().ok())
    } else {
        (subject.to_string(), None)
    };
    if title.is_empty() {
        return None;
    }
    let breaking_footer =
        message.contains("\nBREAKING CHANGE:") || message.contains("\nBREAKING-CHANGE:");
    let change = match conventional_re().captures(&title) {
        Some(c) => Change {
            kind: Some(c[1].to_ascii_lowercase()),
            scope: c.get(2).map(|s| s.as_str().to_string()),
            breaking: c.get(3).is_some() || breaking_footer,
            title: c[4].to_string(),
            pull_request,
            sha: sha.to_string(),
        },
        None => Change {
            title,
            kind: None,
            scope: None,
            breaking: breaking_footer,
            pull_request,
            sha: sha.to_string(),
        },
    };
    Some(change)
}

/// Recipe names with a file changed between `from` (exclusive) and `to`; every recipe in
/// `to` when there is no `from`.
fn changed_recipes(repo: &Repository, from: Option<Oid>, to: Oid) -> anyhow::Result<Vec<String>> {
    let new_tree = repo.find_commit(to)?.tree()?;
    let old_tree = match from {
        Some(f) => Some(repo.find_commit(f)?.tree()?),
        None => None,
    };
    let diff = repo
        .diff_tree_to_tree(old_tree.as_ref(), Some(&new_tree), None)
        .context("cannot diff the release against the previous one")?;
    let mut names = BTreeSet::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(name) = file.path().and_then(recipe_of) {
                names.insert(name);
            }
        }
    }
    Ok(names.into_iter().collect())
}

/// `recipes/<name>/...` → `name`.
pub fn recipe_of(path: &std::path::Path) -> Option<String> {
    let mut parts = path.components();
    let first = parts.next()?.as_os_str().to_str()?;
    let name = parts.next()?.as_os_str().to_str()?;
    // A file directly in recipes/ is no recipe's.
    parts.next()?;
    (first == "recipes").then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::git::testutil::GitRepo;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_cmp("release-0.10.0", "release-0.9.1").is_gt());
        assert!(version_cmp("release-1.0.0", "release-1.0.0").is_eq());
        assert!(version_cmp("release-1.0", "release-1.0.1").is_lt());
    }

    #[test]
    fn recipe_paths() {
        use std::path::Path;
        assert_eq!(
            recipe_of(Path::new("recipes/web/recipe.toml")),
            Some("web".into())
        );
        assert_eq!(recipe_of(Path::new("recipes/README.md")), None);
        assert_eq!(recipe_of(Path::new("scripts/web/x.sh")), None);
    }

    #[test]
    fn messages_become_changes() {
        let sha = Oid::ZERO_SHA1;
        let merge = change_from_message(
            "Merge pull request #12 from acme/web-recipe\n\nfeat(web): add the web recipe\n",
            true,
            sha,
        )
        .unwrap();
        assert_eq!(merge.title, "add the web recipe");
        assert_eq!(merge.kind.as_deref(), Some("feat"));
        assert_eq!(merge.scope.as_deref(), Some("web"));
        assert_eq!(merge.pull_request, Some(12));
        let squash = change_from_message("fix!: pin the kernel (#14)", false, sha).unwrap();
        assert_eq!(squash.title, "pin the kernel");
        assert!(squash.breaking);
        assert_eq!(squash.pull_request, Some(14));
        assert!(change_from_message("Merge branch 'main' into x", true, sha).is_none());
        let plain =
            change_from_message("Update README\n\nBREAKING CHANGE: none", false, sha).unwrap();
        assert_eq!(plain.kind, None);
        assert!(plain.breaking);
    }

    /// A history with a first release, a PR merge, a squash merge, a plain commit and a
    /// tag of another pattern, built with the real git CLI at fixed dates.
    fn history() -> GitRepo {
        let g = GitRepo::init();
        g.write("bakery.toml", "[defaults]\n");
        g.write("recipes/base/recipe.toml", "name = \"base\"\n");
        g.commit("chore: initial recipes");
        g.git(&["tag", "release-0.1.0"]);
        // A PR merged with a merge commit.
        g.git(&["checkout", "-q", "-b", "web-recipe"]);
        g.write("recipes/web/recipe.toml", "name = \"web\"\n");
        g.commit("add web recipe");
        g.write("recipes/web/files/site.conf", "server {}\n");
        g.commit("web: site config");
        g.git(&["checkout", "-q", "main"]);
        g.git(&[
            "merge",
            "--no-ff",
            "-q",
            "web-recipe",
            "-m",
            "Merge pull request #12 from acme/web-recipe",
            "-m",
            "feat(web): add the web recipe",
        ]);
        // A squash merge, and a direct commit.
        g.write("recipes/base/recipe.toml", "name = \"base\"\n# pinned\n");
        g.commit("fix(base): pin the kernel (#14)");
        g.write("README.md", "hello\n");
        g.commit("docs: explain tagging");
        g.git(&["tag", "-a", "staging-7", "-m", "not a release"]);
        g.write("recipes/base/recipe.toml", "name = \"base\"\n# pinned 2\n");
        g.commit("feat!: drop the old AMI names\n\nBREAKING CHANGE: names changed");
        g.git(&["tag", "-a", "release-0.2.0", "-m", "Release 0.2.0"]);
        g
    }

    #[test]
    fn notes_since_the_previous_release_snapshot() {
        let g = history();
        let repo = Repository::open(g.path()).unwrap();
        let patterns = vec!["release-*".to_string(), "staging-*".to_string()];
        let notes = compute(&repo, "release-0.2.0", &patterns).unwrap();
        assert_eq!(notes.previous_tag.as_deref(), Some("release-0.1.0"));
        assert_eq!(notes.changed_recipes, vec!["base", "web"]);
        let titles: Vec<&str> = notes.changes.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(
            titles,
            vec![
                "drop the old AMI names",
                "explain tagging",
                "pin the kernel",
                "add the web recipe"
            ],
            "first-parent: the PR's own commits show through its merge"
        );
        let rendered = crate::github::render::release_notes(&notes, &[]);
        insta::assert_snapshot!(rendered);
    }

    #[test]
    fn first_release_lists_every_commit_and_recipe() {
        let g = history();
        let repo = Repository::open(g.path()).unwrap();
        let notes = compute(&repo, "release-0.1.0", &["release-*".to_string()]).unwrap();
        assert_eq!(notes.previous_tag, None);
        assert_eq!(notes.changes.len(), 1);
        assert_eq!(notes.changed_recipes, vec!["base"]);
    }

    #[test]
    fn another_pattern_has_its_own_previous_tag() {
        let g = history();
        let repo = Repository::open(g.path()).unwrap();
        g.write("recipes/web/recipe.toml", "name = \"web\"\n# v2\n");
        g.commit("Tune nginx");
        g.git(&["tag", "staging-8"]);
        let patterns = vec!["release-*".to_string(), "staging-*".to_string()];
        let notes = compute(&repo, "staging-8", &patterns).unwrap();
        assert_eq!(notes.previous_tag.as_deref(), Some("staging-7"));
        let titles: Vec<&str> = notes.changes.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(titles, vec!["Tune nginx", "drop the old AMI names"]);
        assert_eq!(notes.changed_recipes, vec!["base", "web"]);
        assert!(compute(&repo, "no-such-tag", &patterns).is_err());
    }
}
