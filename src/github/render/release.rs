//! Release notes as Markdown.

use std::fmt::Write;

use super::{code, image_table, DiskBuild, ImageRow};
use crate::github::git::release_notes::{Change, ReleaseNotes};
use crate::inventory::history::RecipePackages;

/// Section titles of conventional-commit types, in the order they are shown.
const SECTIONS: &[(&str, &str)] = &[
    ("feat", "Features"),
    ("fix", "Bug fixes"),
    ("perf", "Performance"),
    ("revert", "Reverts"),
    ("refactor", "Refactoring"),
    ("docs", "Documentation"),
    ("test", "Tests"),
    ("build", "Build"),
    ("ci", "Continuous integration"),
    ("style", "Style"),
    ("chore", "Chores"),
];

/// The release body: changes (grouped by conventional-commit type when the history uses
/// it), the recipes that changed, and the image table.
pub fn release_notes(notes: &ReleaseNotes, images: &[ImageRow]) -> String {
    release_notes_with_packages(notes, images, &[])
}

/// The release body with the "Packages" section (what changed inside each recipe's
/// image) between the recipes that changed and the image table.
pub fn release_notes_with_packages(
    notes: &ReleaseNotes,
    images: &[ImageRow],
    packages: &[RecipePackages],
) -> String {
    release_notes_with_disk_images(notes, images, packages, &[])
}

/// The release body with the qemu builders' disk images after the image table.
pub fn release_notes_with_disk_images(
    notes: &ReleaseNotes,
    images: &[ImageRow],
    packages: &[RecipePackages],
    disks: &[DiskBuild],
) -> String {
    let mut out = String::new();
    match &notes.previous_tag {
        Some(prev) => {
            let _ = writeln!(out, "## Changes since {}\n", code(prev));
        }
        None => out.push_str("## Changes\n\nFirst release.\n\n"),
    }
    if notes.changes.is_empty() {
        out.push_str("_No commits._\n\n");
    } else if notes.is_conventional() {
        let breaking: Vec<&Change> = notes.changes.iter().filter(|c| c.breaking).collect();
        if !breaking.is_empty() {
            out.push_str("### :warning: Breaking changes\n\n");
            for c in &breaking {
                line(&mut out, c);
            }
            out.push('\n');
        }
        for (kind, title) in SECTIONS {
            let group: Vec<&Change> = notes
                .changes
                .iter()
                .filter(|c| c.kind.as_deref() == Some(kind))
                .collect();
            if group.is_empty() {
                continue;
            }
            let _ = writeln!(out, "### {title}\n");
            for c in group {
                line(&mut out, c);
            }
            out.push('\n');
        }
        let known = |k: &str| SECTIONS.iter().any(|(s, _)| *s == k);
        let other: Vec<&Change> = notes
            .changes
            .iter()
            .filter(|c| !c.kind.as_deref().is_some_and(known))
            .collect();
        if !other.is_empty() {
            out.push_str("### Other changes\n\n");
            for c in other {
                line(&mut out, c);
            }
            out.push('\n');
        }
    } else {
        for c in &notes.changes {
            line(&mut out, c);
        }
        out.push('\n');
    }
    out.push_str("## Recipes changed\n\n");
    if notes.changed_recipes.is_empty() {
        out.push_str("_None._\n\n");
    } else {
        for r in &notes.changed_recipes {
            let _ = writeln!(out, "- {}", code(r));
        }
        out.push('\n');
    }
    out.push_str(&super::packages::packages_section(packages));
    if !images.is_empty() {
        out.push_str("## Images\n\n");
        out.push_str(&image_table(images));
        out.push('\n');
    }
    out.push_str(&super::artifacts::disk_images_section(disks));
    out.trim_end().to_string() + "\n"
}

fn line(out: &mut String, c: &Change) {
    let scope = c
        .scope
        .as_deref()
        .map(|s| format!("**{s}:** "))
        .unwrap_or_default();
    let kind = match c.kind.as_deref() {
        Some(k) if !SECTIONS.iter().any(|(s, _)| *s == k) => format!("{k}: "),
        _ => String::new(),
    };
    let pr = c
        .pull_request
        .map(|n| format!(" (#{n})"))
        .unwrap_or_default();
    let _ = writeln!(out, "- {scope}{kind}{}{pr}", c.title);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(title: &str, kind: Option<&str>, pr: Option<u64>) -> Change {
        Change {
            title: title.into(),
            kind: kind.map(str::to_string),
            scope: None,
            breaking: false,
            pull_request: pr,
            sha: "0".repeat(40),
        }
    }

    #[test]
    fn plain_history_is_a_flat_list_with_images() {
        let notes = ReleaseNotes {
            tag: "release-0.3.0".into(),
            previous_tag: Some("release-0.2.0".into()),
            changes: vec![
                change("Tune nginx workers", None, Some(21)),
                change("Update README", None, None),
            ],
            changed_recipes: vec!["web".into()],
        };
        let images = vec![ImageRow {
            recipe: "web".into(),
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            ami: "ami-0web".into(),
            kms_key: Some("alias/ami".into()),
        }];
        let md = release_notes(&notes, &images);
        assert!(
            !md.contains("###"),
            "no groups without conventional commits"
        );
        insta::assert_snapshot!(md);
    }
}
