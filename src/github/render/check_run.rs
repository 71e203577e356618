//! Check-run titles and summaries of builds and validations (`bakery/<recipe>`,
//! `bakery/validate`), and the comment of a pull request's validation build. Pure text;
//! the handlers in `jobs/` decide when each is shown.

use std::time::Duration;

use super::{code, inert, short_sha};

/// The title of a recipe's check run while a release builds it.
pub fn building_title(recipe: &str, version: &str) -> String {
    format!("Building {} {}", inert(recipe), inert(version))
}

/// The title of a recipe's check run once its images exist.
pub fn built_title(recipe: &str, version: &str) -> String {
    format!("Built {} {}", inert(recipe), inert(version))
}

/// The title of a recipe's check run when this version was released before.
pub fn released_before_title(recipe: &str, version: &str) -> String {
    format!(
        "{} {} was released before: nothing built",
        inert(recipe),
        inert(version)
    )
}

/// The title of a recipe's check run when the tag moved while it built.
pub fn moved_tag_title() -> String {
    "Refused: the tag was moved".into()
}

/// The title of a failed (or cancelled) build's check run: the step it stopped in.
pub fn failed_title(step: &str, cancelled: bool) -> String {
    if cancelled {
        format!("Cancelled during {}", inert(step))
    } else {
        format!("Failed during {}", inert(step))
    }
}

/// The summary of a finished build's check run: its steps, then the image table.
pub fn built_summary(steps: &str, table: &str) -> String {
    format!("{steps}\n{table}")
}

/// The summary of a failed (or cancelled) build's check run: its steps, then the
/// (redacted) error in a fenced block.
pub fn failed_summary(steps: &str, error: &str) -> String {
    format!("{steps}\n{}", super::code_block("", error))
}

/// The title of `bakery/validate`: whether the recipes validate, with the counts.
pub fn validation_title(errors: usize, warnings: usize) -> String {
    match (errors, warnings) {
        (0, 0) => "The recipes validate".into(),
        (0, w) => format!("The recipes validate, with {w} warning(s)"),
        (e, w) => format!("{e} error(s), {w} warning(s) in the recipes"),
    }
}

/// The title of a pull request's validation build's check run.
pub fn pr_build_title(recipe: &str, version: &str) -> String {
    format!(
        "Validation build of {} at {}",
        inert(recipe),
        inert(version)
    )
}

/// The summary of a pull request's finished validation build's check run.
pub fn pr_built_summary(steps: &str, table: &str) -> String {
    format!("{steps}\n{table}\nThe throwaway images were deregistered.\n")
}

/// A pull request's validation build that succeeded, for its sticky comment (under the
/// comment's `marker`).
pub struct PrBuilt<'a> {
    pub marker: &'a str,
    pub recipe: &'a str,
    pub git_sha: &'a str,
    pub took: Duration,
    /// The image table.
    pub table: &'a str,
    /// The images deregistered when the build ended.
    pub discarded: &'a [String],
}

/// The sticky comment of a pull request's validation build that succeeded.
pub fn pr_built_comment(b: &PrBuilt<'_>) -> String {
    format!(
        "{}\n### :white_check_mark: bakery built {} at {}\n\n\
         A validation build into throwaway images (tagged `bakery:ephemeral`) took {}.\n\n\
         {}\nThe images were deregistered with their snapshots ({}) when the build ended.\n",
        b.marker,
        inert(b.recipe),
        code(short_sha(b.git_sha)),
        super::duration(b.took),
        b.table,
        b.discarded
            .iter()
            .map(|i| inert(i))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::render::{image_table, marker, ImageRow};

    #[test]
    fn check_run_titles_snapshot() {
        let all = [
            building_title("web", "1.4.0"),
            built_title("web", "1.4.0"),
            released_before_title("web", "1.4.0"),
            moved_tag_title(),
            failed_title("provision: Install the agent", false),
            failed_title("image", true),
            validation_title(0, 0),
            validation_title(0, 2),
            validation_title(3, 1),
            pr_build_title("web", "pr-7-3f2a9c1"),
        ]
        .join("\n");
        insta::assert_snapshot!(all);
    }

    #[test]
    fn failed_summary_fences_the_error() {
        let s = failed_summary("- [x] credentials\n- [ ] preflight\n", "no ```key``` @acme");
        assert!(s.contains("````\nno ```key``` @acme\n````"), "{s}");
        insta::assert_snapshot!(s);
    }

    #[test]
    fn a_step_name_from_a_recipe_cannot_mention_anyone() {
        let t = failed_title("provision: ping @acme/security-team", false);
        assert!(!t.contains("@acme"), "{t}");
    }

    #[test]
    fn pr_build_snapshots() {
        let table = image_table(&[ImageRow {
            recipe: "web".into(),
            account: "111111111111".into(),
            region: "us-east-1".into(),
            ami: "ami-0abc".into(),
            kms_key: None,
        }]);
        insta::assert_snapshot!(
            "pr_built_summary",
            pr_built_summary("- [x] credentials\n- [x] preflight\n", &table)
        );
        insta::assert_snapshot!(
            "pr_built_comment",
            pr_built_comment(&PrBuilt {
                marker: &marker("pr-build:web"),
                recipe: "web",
                git_sha: "3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c",
                took: Duration::from_secs(245),
                table: &table,
                discarded: &["ami-0abc".into()],
            })
        );
    }
}
