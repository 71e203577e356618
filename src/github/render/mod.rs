//! What bakery writes on GitHub, as pure functions from small input types to Markdown:
//! build comments, the live step summary, refusals, pull-request comments and release
//! notes. Everything that can hold build output goes through a [`crate::redact::Redactor`].

mod artifacts;
mod build;
mod channels;
mod check_run;
mod command;
mod packages;
mod pr;
mod reconcile;
mod refusal;
mod release;

pub use artifacts::{
    artifact_table, disk_images_comment, disk_images_section, qemu_building_title,
    qemu_built_title, qemu_check_name, qemu_failed, ArtifactPlace, ArtifactRow, DiskBuild,
};
pub use build::{
    failure_comment, progress_summary, release_comment, success_comment, StepProgress, StepState,
};
pub use channels::{channels_check_title, channels_plan_comment, CHANNELS_CHECK, CHANNELS_MARKER};
pub use check_run::{
    building_title, built_summary, built_title, failed_summary, failed_title, moved_tag_title,
    pr_build_title, pr_built_comment, pr_built_summary, released_before_title, validation_title,
    PrBuilt,
};
pub use command::{
    cancel_reply, did_not_build, nothing_to_build, CancelledJob, CancelledWork, NoBuild,
};
pub use packages::{packages_section, packages_totals};
pub use pr::{
    approval_outdated, fork_needs_approval, help_text, plan_comment, validation_summary,
    PlanProblem, PLAN_MARKER,
};
pub use reconcile::{
    deployment_description, deployment_status_description, reconcile_check_title,
    reconcile_summary, ActionFailure, RECONCILE_CHECK,
};
pub use refusal::{
    abandoned_check_run, already_built, invalid_recipes, moved_tag, release_not_started,
    tag_moved_before_build, RELEASE_CHECK,
};
pub use release::{release_notes, release_notes_with_disk_images, release_notes_with_packages};

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One finished image: a row of the image table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRow {
    pub recipe: String,
    /// The account id the copy lives in.
    pub account: String,
    pub region: String,
    pub ami: String,
    /// Key id, ARN or alias; `None` is the account's default EBS key.
    pub kms_key: Option<String>,
}

/// One recipe's part of a successful build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeOutcome {
    pub recipe: String,
    pub source_ami: String,
    /// The release file written into the image (`/etc/release`).
    pub release_file: String,
    pub duration: Duration,
}

/// A successful release build, as the commit comment and release notes show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSummary {
    pub version: String,
    pub git_sha: String,
    pub recipes: Vec<RecipeOutcome>,
    pub images: Vec<ImageRow>,
    pub duration: Duration,
    /// The build's page on bakery's server.
    pub details_url: Option<String>,
    /// The qemu builders' disk images.
    #[serde(default)]
    pub disk_builds: Vec<DiskBuild>,
}

/// A failed build, as the failure comment shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildFailure {
    pub version: String,
    pub git_sha: String,
    pub recipe: String,
    /// The step that failed, e.g. `provision: install packages`.
    pub step: String,
    pub error: String,
    /// The step's last log lines, oldest first (redacted again when rendered).
    pub log_tail: Vec<String>,
    pub duration: Duration,
    pub details_url: Option<String>,
    /// What cleanup did, e.g. `terminated i-0abc; deleted sg-0def`.
    pub cleanup: Option<String>,
}

/// A hidden HTML comment that identifies a comment kind, so bakery finds its own comment
/// again to edit it: `<!-- bakery:plan -->`.
pub fn marker(kind: &str) -> String {
    format!("<!-- bakery:{kind} -->")
}

/// A duration in whole seconds, as `4m 5s`.
pub fn duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Escapes text for a Markdown table cell.
pub(crate) fn cell(s: &str) -> String {
    inert(
        &s.replace('\\', "\\\\")
            .replace('|', "\\|")
            .replace(['\n', '\r'], " "),
    )
}

/// Text from a repository, a builder or a commenter, for prose and table cells (code
/// spans and blocks are inert already): an `@` cannot mention a person or a team (a word
/// joiner follows it), `<` cannot open HTML or a hidden marker comment, and `#123` or
/// `org/repo#1` cannot link issues.
pub fn inert(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '@' => out.push_str("@\u{2060}"),
            '#' => out.push_str("#\u{2060}"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A Markdown code span for `s`, with a fence long enough for backticks inside it.
pub(crate) fn code(s: &str) -> String {
    let longest = longest_run(s, '`');
    let fence = "`".repeat(longest + 1);
    if longest > 0 || s.starts_with(' ') || s.ends_with(' ') {
        format!("{fence} {s} {fence}")
    } else {
        format!("{fence}{s}{fence}")
    }
}

/// A fenced code block for `s`, with a fence longer than any backtick run inside it.
pub fn code_block(lang: &str, s: &str) -> String {
    let fence = "`".repeat((longest_run(s, '`') + 1).max(3));
    let body = s.trim_end_matches('\n');
    format!("{fence}{lang}\n{body}\n{fence}\n")
}

fn longest_run(s: &str, ch: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for c in s.chars() {
        if c == ch {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

/// The image table: every AMI by recipe, account and region, with its KMS key.
pub fn image_table(images: &[ImageRow]) -> String {
    if images.is_empty() {
        return "_No images._\n".into();
    }
    let mut rows: Vec<&ImageRow> = images.iter().collect();
    rows.sort_by(|a, b| {
        (&a.recipe, &a.account, &a.region).cmp(&(&b.recipe, &b.account, &b.region))
    });
    let mut out = String::from("| Recipe | Account | Region | AMI | KMS key |\n");
    out.push_str("| --- | --- | --- | --- | --- |\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            cell(&r.recipe),
            cell(&r.account),
            cell(&r.region),
            code(&r.ami),
            r.kms_key
                .as_deref()
                .map(|k| code(&cell(k)))
                .unwrap_or_else(|| "default EBS key".into()),
        ));
    }
    out
}

/// The first 7 characters of a SHA, as GitHub shows them.
pub(crate) fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_are_escaped_and_rows_sorted() {
        let t = image_table(&[
            ImageRow {
                recipe: "web".into(),
                account: "222222222222".into(),
                region: "eu-west-1".into(),
                ami: "ami-2".into(),
                kms_key: None,
            },
            ImageRow {
                recipe: "base|x".into(),
                account: "111111111111".into(),
                region: "us-east-1".into(),
                ami: "ami-1".into(),
                kms_key: Some("alias/ami".into()),
            },
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[2].starts_with("| base\\|x | 111111111111 |"), "{t}");
        assert!(lines[3].ends_with("| default EBS key |"), "{t}");
    }

    #[test]
    fn untrusted_text_mentions_nobody_and_opens_no_html() {
        let t = inert("ping @acme/security-team <!-- bakery:plan --> see #12");
        assert!(!t.contains("@acme"), "{t}");
        assert!(!t.contains("<!--"), "{t}");
        assert!(!t.contains("#12"), "{t}");
        assert_eq!(
            t.replace('\u{2060}', ""),
            "ping @acme/security-team &lt;!-- bakery:plan --&gt; see #12"
        );
        assert!(cell("a|b @x").starts_with("a\\|b @\u{2060}x"));
    }

    #[test]
    fn code_spans_survive_backticks() {
        assert_eq!(code("ami-1"), "`ami-1`");
        assert_eq!(code("a`b"), "`` a`b ``");
        assert!(code_block("", "```\nx").starts_with("````\n"));
    }

    #[test]
    fn durations_are_whole_seconds() {
        assert_eq!(duration(Duration::from_millis(245_678)), "4m 5s");
    }
}
