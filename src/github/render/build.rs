//! Build comments on the tagged commit, and the check run's live step summary.

use std::fmt::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{cell, code, code_block, duration, image_table, short_sha, BuildFailure, BuildSummary};
use crate::inventory::history::RecipePackages;
use crate::redact::Redactor;

/// Log lines a failure comment shows at most.
pub const LOG_TAIL_LINES: usize = 30;

/// The success comment: the image table, source AMIs, release files and duration.
pub fn success_comment(s: &BuildSummary) -> String {
    release_comment(s, &[])
}

/// The success comment with the totals of each recipe's package changes under the image
/// table.
pub fn release_comment(s: &BuildSummary, packages: &[RecipePackages]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### :white_check_mark: bakery built {} from {}\n",
        code(&s.version),
        code(short_sha(&s.git_sha))
    );
    let disk_files: usize = s.disk_builds.iter().map(|b| b.artifacts.len()).sum();
    if s.images.is_empty() && disk_files > 0 {
        // Only qemu builders: no AMI to list.
        let _ = writeln!(
            out,
            "{disk_files} disk image{} in {}.\n",
            if disk_files == 1 { "" } else { "s" },
            duration(s.duration)
        );
    } else {
        let _ = writeln!(
            out,
            "{} image{} in {}.\n",
            s.images.len(),
            if s.images.len() == 1 { "" } else { "s" },
            duration(s.duration)
        );
        out.push_str(&image_table(&s.images));
        out.push('\n');
    }
    out.push_str(&super::artifacts::disk_images_comment(&s.disk_builds));
    out.push_str(&super::packages::packages_totals(packages));
    if !s.recipes.is_empty() {
        out.push_str("| Recipe | Source AMI | Build time |\n| --- | --- | --- |\n");
        for r in &s.recipes {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                cell(&r.recipe),
                code(&r.source_ami),
                duration(r.duration)
            );
        }
        out.push('\n');
        for r in &s.recipes {
            let _ = writeln!(
                out,
                "<details><summary><code>/etc/release</code> of {}</summary>\n",
                cell(&r.recipe)
            );
            out.push_str(&code_block("", &r.release_file));
            out.push_str("\n</details>\n\n");
        }
    }
    if let Some(url) = &s.details_url {
        let _ = writeln!(out, "[Build details]({url})");
    }
    out.trim_end().to_string() + "\n"
}

/// The failure comment: the failing step, the error and the log's last lines, every
/// secret the redactor knows masked.
pub fn failure_comment(f: &BuildFailure, redactor: &Redactor) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### :x: bakery could not build {} ({}) from {}\n",
        code(&f.version),
        cell(&f.recipe),
        code(short_sha(&f.git_sha))
    );
    let _ = writeln!(
        out,
        "The step **{}** failed after {}:\n",
        cell(&redactor.redact(&f.step)),
        duration(f.duration)
    );
    out.push_str(&code_block("", &redactor.redact(&f.error)));
    out.push('\n');
    if !f.log_tail.is_empty() {
        let skip = f.log_tail.len().saturating_sub(LOG_TAIL_LINES);
        let tail: Vec<String> = f.log_tail[skip..]
            .iter()
            .map(|l| redactor.redact(l))
            .collect();
        let _ = writeln!(out, "Last {} lines of its log:\n", tail.len());
        out.push_str(&code_block("text", &tail.join("\n")));
        out.push('\n');
    }
    if let Some(cleanup) = &f.cleanup {
        let _ = writeln!(out, "Cleanup: {}\n", redactor.redact(cleanup));
    }
    if let Some(url) = &f.details_url {
        let _ = writeln!(out, "[Full log]({url})");
    }
    out.trim_end().to_string() + "\n"
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Running,
    Done,
    Failed,
    Skipped,
}

/// A step as the live summary shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepProgress {
    pub name: String,
    pub state: StepState,
    /// Set once the step ended (or, while running, how long it has run).
    pub elapsed: Option<Duration>,
}

/// The check run's live step summary: one line per step with its state.
pub fn progress_summary(steps: &[StepProgress]) -> String {
    let mut out = String::from("| | Step | Time |\n| --- | --- | --- |\n");
    for s in steps {
        let icon = match s.state {
            StepState::Pending => ":white_circle:",
            StepState::Running => ":hourglass_flowing_sand:",
            StepState::Done => ":white_check_mark:",
            StepState::Failed => ":x:",
            StepState::Skipped => ":fast_forward:",
        };
        let _ = writeln!(
            out,
            "| {icon} | {} | {} |",
            cell(&s.name),
            s.elapsed.map(duration).unwrap_or_default()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{ImageRow, RecipeOutcome};
    use super::*;

    fn summary() -> BuildSummary {
        BuildSummary {
            version: "release-0.1.0".into(),
            git_sha: "3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c".into(),
            recipes: vec![
                RecipeOutcome {
                    recipe: "base".into(),
                    source_ami: "ami-0source0000000001".into(),
                    release_file: "release-0.1.0\nRECIPE=base\nGIT_SHA=3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c\nBUILD_ID=b-01\n".into(),
                    duration: Duration::from_secs(312),
                },
                RecipeOutcome {
                    recipe: "web".into(),
                    source_ami: "ami-0source0000000002".into(),
                    release_file: "release-0.1.0\nRECIPE=web\n".into(),
                    duration: Duration::from_secs(401),
                },
            ],
            images: vec![
                ImageRow {
                    recipe: "web".into(),
                    account: "111111111111".into(),
                    region: "eu-west-1".into(),
                    ami: "ami-0web0000000000eu1".into(),
                    kms_key: Some("alias/ami".into()),
                },
                ImageRow {
                    recipe: "base".into(),
                    account: "222222222222".into(),
                    region: "us-east-1".into(),
                    ami: "ami-0base000000000us1".into(),
                    kms_key: Some("arn:aws:kms:us-east-1:222222222222:key/1234".into()),
                },
                ImageRow {
                    recipe: "base".into(),
                    account: "111111111111".into(),
                    region: "eu-west-1".into(),
                    ami: "ami-0base000000000eu1".into(),
                    kms_key: None,
                },
            ],
            duration: Duration::from_secs(431),
            details_url: Some("https://bakery.example.com/builds/b-01".into()),
            disk_builds: vec![],
        }
    }

    #[test]
    fn success_comment_snapshot() {
        let s = success_comment(&summary());
        assert!(s.contains("ami-0base000000000us1"));
        assert!(s.contains("RECIPE=base"));
        assert!(s.contains("7m 11s"));
        insta::assert_snapshot!(s);
    }

    #[test]
    fn success_comment_with_disk_images_snapshot() {
        let mut summary = summary();
        summary.disk_builds = super::super::artifacts::tests::builds();
        let s = success_comment(&summary);
        let images = s.find("ami-0base000000000us1").unwrap();
        let disks = s.find("#### Disk images").unwrap();
        assert!(images < disks, "the disk images follow the AMIs");
        insta::assert_snapshot!(s);
        // A release of qemu builders only lists no AMI table.
        summary.images.clear();
        summary.recipes.clear();
        let s = success_comment(&summary);
        assert!(s.contains("3 disk images in 7m 11s."), "{s}");
        assert!(!s.contains("No images"), "{s}");
    }

    #[test]
    fn failure_comment_redacts_and_keeps_the_tail() {
        let redactor = Redactor::new();
        redactor.add("hunter2-db-password");
        let mut log_tail: Vec<String> = (1..=40).map(|i| format!("line {i}")).collect();
        log_tail.push("export DB_PASSWORD=hunter2-db-password".into());
        log_tail.push("E: Unable to locate package nginx-extra".into());
        let f = BuildFailure {
            version: "release-0.1.0".into(),
            git_sha: "3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c".into(),
            recipe: "web".into(),
            step: "provision: install packages".into(),
            error: "command `apt-get install -y nginx-extra` exited with 100 (password hunter2-db-password)".into(),
            log_tail,
            duration: Duration::from_secs(95),
            details_url: Some("https://bakery.example.com/builds/b-02".into()),
            cleanup: Some("terminated i-0123456789abcdef0; deleted sg-0abc".into()),
        };
        let s = failure_comment(&f, &redactor);
        assert!(!s.contains("hunter2-db-password"), "{s}");
        assert!(s.contains("DB_PASSWORD=***"));
        assert!(
            !s.contains("line 12\n"),
            "only the last {LOG_TAIL_LINES} lines"
        );
        assert!(s.contains("line 13\n"));
        insta::assert_snapshot!(s);
    }

    #[test]
    fn progress_summary_snapshot() {
        let steps = vec![
            StepProgress {
                name: "launch builder".into(),
                state: StepState::Done,
                elapsed: Some(Duration::from_secs(42)),
            },
            StepProgress {
                name: "provision: install packages".into(),
                state: StepState::Running,
                elapsed: Some(Duration::from_secs(61)),
            },
            StepProgress {
                name: "seal".into(),
                state: StepState::Pending,
                elapsed: None,
            },
        ];
        insta::assert_snapshot!(progress_summary(&steps));
    }
}
