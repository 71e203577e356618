//! `push` and `create` deliveries for a tag, built from the real git repository the way
//! GitHub builds them: `after` is the tag ref's new value (the tag object for `git tag -a`
//! or `git tag -s`, the commit for a lightweight tag), `head_commit` is the commit it
//! points at, and `before`, `created`, `deleted`, `forced`, `base_ref`, `compare` and
//! `commits` follow from the ref's old and new values.
//!
//! The shape (and every field git does not decide: sender, pusher, repository details)
//! comes from GitHub's official examples (`@octokit/webhooks-examples`); the repository
//! and installation are the story's. No field is set to make a code path work.

use std::path::Path;

use serde_json::{json, Value};

use super::examples::example;
use super::git::git;

pub const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// How a release is tagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// `git tag NAME`.
    Lightweight,
    /// `git tag -a NAME -m MESSAGE` (a tag object, as `git tag -s` makes too).
    Annotated,
}

/// A tag ref update as the push made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedTag {
    pub name: String,
    /// The ref's value before the push (`ZERO_SHA` for a new tag).
    pub before: String,
    /// The ref's value after the push: a tag object or a commit.
    pub after: String,
    /// The commit `after` points at.
    pub commit: String,
}

impl PushedTag {
    pub fn is_annotated(&self) -> bool {
        self.after != self.commit
    }
}

/// The value of `refs/tags/NAME` in `bare`, if the tag exists there.
pub fn tag_value(bare: &Path, name: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(bare)
        .args(["rev-parse", "--verify", "-q", &format!("refs/tags/{name}")])
        .output()
        .expect("git runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Tags HEAD of `work` as `name` (moving the tag when `force`) and pushes the tag to
/// `bare` with the git CLI. Returns the ref update as GitHub sees it.
pub fn tag_and_push(work: &Path, bare: &Path, name: &str, kind: TagKind, force: bool) -> PushedTag {
    let before = tag_value(bare, name).unwrap_or_else(|| ZERO_SHA.to_string());
    let mut args = vec!["tag"];
    if force {
        args.push("-f");
    }
    // Dates are fixed in tests: a re-created tag object differs by its message.
    let message = if force {
        format!("Release {name}, tagged again")
    } else {
        format!("Release {name}")
    };
    if kind == TagKind::Annotated {
        args.extend(["-a", "-m", &message]);
    }
    args.push(name);
    git(work, &args);
    let mut push = vec!["push", "-q"];
    if force {
        push.push("-f");
    }
    push.extend(["origin", name]);
    git(work, &push);
    let after = tag_value(bare, name).expect("the tag was pushed");
    let commit = rev(bare, &format!("{after}^{{commit}}"));
    PushedTag {
        name: name.to_string(),
        before,
        after,
        commit,
    }
}

fn rev(bare: &Path, spec: &str) -> String {
    git(bare, &["rev-parse", spec]).trim().to_string()
}

/// GitHub's `push` payload for `pushed`, read from `bare` (the repository GitHub holds).
/// `web` is the repository's web URL (`https://github.com/owner/name`).
pub fn push_payload(bare: &Path, web: &str, pushed: &PushedTag) -> Value {
    let mut p = example("push", |e| {
        e["ref"] == "refs/tags/simple-tag" && e["deleted"] == false
    });
    let created = pushed.before == ZERO_SHA;
    let deleted = pushed.after == ZERO_SHA;
    let forced = !created && !deleted && !is_ancestor(bare, &pushed.before, &pushed.after);
    p["ref"] = json!(format!("refs/tags/{}", pushed.name));
    p["before"] = json!(pushed.before);
    p["after"] = json!(pushed.after);
    p["created"] = json!(created);
    p["deleted"] = json!(deleted);
    p["forced"] = json!(forced);
    p["base_ref"] = branch_at(bare, &pushed.commit)
        .map(|b| json!(format!("refs/heads/{b}")))
        .unwrap_or(Value::Null);
    p["compare"] = json!(if created {
        format!("{web}/compare/{}", pushed.name)
    } else {
        format!(
            "{web}/compare/{}...{}",
            &pushed.before[..12],
            &pushed.after[..12]
        )
    });
    // A tag push lists no commits; `head_commit` is the commit the tag points at.
    p["commits"] = json!([]);
    p["head_commit"] = if deleted {
        Value::Null
    } else {
        commit_object(bare, web, &pushed.commit)
    };
    p
}

/// GitHub's `push` payload for a branch moving from `before` to `after` in `bare` (a
/// fast-forward, as a merge makes it): `commits` lists every commit in between, oldest
/// first, each with the files it added, removed and modified; `head_commit` is `after`.
pub fn branch_push_payload(
    bare: &Path,
    web: &str,
    branch: &str,
    before: &str,
    after: &str,
) -> Value {
    let mut p = example("push", |e| {
        e["ref"] == "refs/heads/master" && e["deleted"] == false
    });
    p["ref"] = json!(format!("refs/heads/{branch}"));
    p["before"] = json!(before);
    p["after"] = json!(after);
    p["created"] = json!(false);
    p["deleted"] = json!(false);
    p["forced"] = json!(!is_ancestor(bare, before, after));
    p["base_ref"] = Value::Null;
    p["compare"] = json!(format!(
        "{web}/compare/{}...{}",
        &before[..12],
        &after[..12]
    ));
    let commits: Vec<Value> = git(
        bare,
        &["rev-list", "--reverse", &format!("{before}..{after}")],
    )
    .lines()
    .map(|c| commit_object(bare, web, c.trim()))
    .collect();
    p["commits"] = json!(commits);
    p["head_commit"] = commit_object(bare, web, after);
    p
}

/// GitHub's `create` payload for the tag `name` (it carries no SHA).
pub fn create_payload(default_branch: &str, name: &str) -> Value {
    let mut p = example("create", |e| e["ref_type"] == "tag");
    p["ref"] = json!(name);
    p["master_branch"] = json!(default_branch);
    p
}

fn is_ancestor(bare: &Path, older: &str, newer: &str) -> bool {
    std::process::Command::new("git")
        .arg("-C")
        .arg(bare)
        .args([
            "merge-base",
            "--is-ancestor",
            &format!("{older}^{{commit}}"),
            &format!("{newer}^{{commit}}"),
        ])
        .status()
        .expect("git runs")
        .success()
}

/// A branch whose head is `commit`, as GitHub's `base_ref` names it.
fn branch_at(bare: &Path, commit: &str) -> Option<String> {
    git(
        bare,
        &[
            "for-each-ref",
            "refs/heads",
            "--points-at",
            commit,
            "--format=%(refname:strip=2)",
        ],
    )
    .lines()
    .next()
    .map(str::to_string)
}

/// A commit as webhook payloads show it (`head_commit`).
fn commit_object(bare: &Path, web: &str, commit: &str) -> Value {
    let field = |format: &str| git(bare, &["show", "-s", &format!("--format={format}"), commit]);
    let mut added = vec![];
    let mut removed = vec![];
    let mut modified = vec![];
    let changes = git(
        bare,
        &[
            "diff-tree",
            "--root",
            "--no-commit-id",
            "--name-status",
            "-r",
            commit,
        ],
    );
    for line in changes.lines() {
        let Some((status, path)) = line.split_once('\t') else {
            continue;
        };
        match status.chars().next() {
            Some('A') => added.push(path.to_string()),
            Some('D') => removed.push(path.to_string()),
            _ => modified.push(path.to_string()),
        }
    }
    json!({
        "id": commit,
        "tree_id": field("%T").trim(),
        "distinct": true,
        "message": field("%B").trim_end(),
        "timestamp": field("%cI").trim(),
        "url": format!("{web}/commit/{commit}"),
        "author": { "name": field("%an").trim(), "email": field("%ae").trim() },
        "committer": { "name": field("%cn").trim(), "email": field("%ce").trim() },
        "added": added,
        "removed": removed,
        "modified": modified,
    })
}
