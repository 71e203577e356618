//! The "Packages" section of the release notes and the totals line of the commit comment:
//! per recipe, the kernel and the OS release first when they changed, then packages
//! upgraded (`old → new`), downgraded, added and removed, long lists folded into
//! `<details>`. Names and versions come from the builder: they only appear in code spans.

use std::fmt::Write;

use super::code;
use crate::inventory::diff::{Changed, VersionChange};
use crate::inventory::history::{PackageReport, RecipePackages};
use crate::inventory::{InventoryDiff, OsRelease, Package};

/// Lists longer than this fold into a `<details>` block.
pub const FOLD_AFTER: usize = 10;

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `1 upgraded, 2 added, 0 removed` (downgrades only when there are some).
fn counts(d: &InventoryDiff) -> String {
    let mut parts = vec![format!("{} upgraded", d.upgraded.len())];
    if !d.downgraded.is_empty() {
        parts.push(format!("{} downgraded", d.downgraded.len()));
    }
    parts.push(format!("{} added", d.added.len()));
    parts.push(format!("{} removed", d.removed.len()));
    parts.join(", ")
}

/// One line of totals for a recipe, as the commit comment and the notes show it.
pub fn totals_line(r: &RecipePackages) -> String {
    match &r.report {
        PackageReport::NoInventory => "no package inventory (no known package manager)".into(),
        PackageReport::First { packages, .. } => {
            format!(
                "first release: {}",
                plural(*packages, "package", "packages")
            )
        }
        PackageReport::PreviousUnknown { previous, packages } => format!(
            "{}; no inventory of {} to compare with",
            plural(*packages, "package", "packages"),
            code(previous)
        ),
        PackageReport::Compared {
            previous,
            packages,
            diff,
        } => format!(
            "{} since {} ({} in all{})",
            counts(diff),
            code(previous),
            packages,
            match (&diff.kernel, &diff.os) {
                (Some(_), Some(_)) => "; new kernel and OS release",
                (Some(_), None) => "; new kernel",
                (None, Some(_)) => "; new OS release",
                (None, None) => "",
            }
        ),
    }
}

/// The commit comment's packages paragraph: one line per recipe.
pub fn packages_totals(recipes: &[RecipePackages]) -> String {
    if recipes.is_empty() {
        return String::new();
    }
    let mut out = String::from("**Packages:**");
    if let [only] = recipes {
        let _ = writeln!(out, " {}\n", totals_line(only));
        return out;
    }
    out.push_str("\n\n");
    for r in recipes {
        let _ = writeln!(out, "- {}: {}", code(&r.recipe), totals_line(r));
    }
    out.push('\n');
    out
}

fn os_name(os: &Option<OsRelease>) -> String {
    os.as_ref()
        .map(|o| code(&o.pretty_name))
        .unwrap_or_else(|| "_unknown_".into())
}

fn kernel_name(k: &Option<String>) -> String {
    k.as_deref().map(code).unwrap_or_else(|| "_unknown_".into())
}

fn list(out: &mut String, title: &str, lines: Vec<String>) {
    if lines.is_empty() {
        return;
    }
    if lines.len() > FOLD_AFTER {
        let _ = writeln!(
            out,
            "<details><summary>{title} ({})</summary>\n",
            lines.len()
        );
        for l in &lines {
            let _ = writeln!(out, "- {l}");
        }
        out.push_str("\n</details>\n\n");
    } else {
        let _ = writeln!(out, "**{title}**\n");
        for l in &lines {
            let _ = writeln!(out, "- {l}");
        }
        out.push('\n');
    }
}

fn moved(c: &VersionChange) -> String {
    format!("{} {} → {}", code(&c.name), code(&c.old), code(&c.new))
}

fn package(p: &Package) -> String {
    format!("{} {}", code(&p.name), code(&p.version))
}

fn section(out: &mut String, r: &RecipePackages) {
    let _ = writeln!(out, "### {}\n", code(&r.recipe));
    match &r.report {
        PackageReport::First { os, kernel, .. } => {
            let _ = writeln!(
                out,
                "{}; {}, kernel {}.\n",
                capitalised(&totals_line(r)),
                os_name(os),
                kernel_name(kernel)
            );
        }
        PackageReport::NoInventory | PackageReport::PreviousUnknown { .. } => {
            let _ = writeln!(out, "{}.\n", capitalised(&totals_line(r)));
        }
        PackageReport::Compared { diff, .. } => {
            if let Some(Changed { old, new }) = &diff.kernel {
                let _ = writeln!(
                    out,
                    "- **Kernel:** {} → {}",
                    kernel_name(old),
                    kernel_name(new)
                );
            }
            if let Some(Changed { old, new }) = &diff.os {
                let _ = writeln!(out, "- **OS:** {} → {}", os_name(old), os_name(new));
            }
            if diff.kernel.is_some() || diff.os.is_some() {
                out.push('\n');
            }
            let _ = writeln!(out, "{}.\n", capitalised(&totals_line(r)));
            list(out, "Upgraded", diff.upgraded.iter().map(moved).collect());
            list(
                out,
                "Downgraded",
                diff.downgraded.iter().map(moved).collect(),
            );
            list(out, "Added", diff.added.iter().map(package).collect());
            list(out, "Removed", diff.removed.iter().map(package).collect());
        }
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// The release notes' "Packages" section (empty without recipes).
pub fn packages_section(recipes: &[RecipePackages]) -> String {
    if recipes.is_empty() {
        return String::new();
    }
    let mut out = String::from("## Packages\n\n");
    for r in recipes {
        section(&mut out, r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            source: None,
        }
    }

    fn change(name: &str, old: &str, new: &str) -> VersionChange {
        VersionChange {
            name: name.into(),
            arch: "amd64".into(),
            old: old.into(),
            new: new.into(),
        }
    }

    fn debian(v: &str) -> OsRelease {
        OsRelease {
            id: "debian".into(),
            version_id: v.into(),
            pretty_name: format!("Debian GNU/Linux {v}"),
        }
    }

    fn compared() -> RecipePackages {
        RecipePackages {
            recipe: "web".into(),
            report: PackageReport::Compared {
                previous: "release-0.1.0".into(),
                packages: 412,
                diff: Box::new(InventoryDiff {
                    kernel: Some(Changed {
                        old: Some("6.1.0-18-cloud-amd64".into()),
                        new: Some("6.1.0-25-cloud-amd64".into()),
                    }),
                    os: Some(Changed {
                        old: Some(debian("12.5")),
                        new: Some(debian("12.7")),
                    }),
                    upgraded: (0..12)
                        .map(|i| change(&format!("lib{i}"), "1.0-1", "1.0-2"))
                        .chain([change("openssl", "3.0.11-1~deb12u2", "3.0.15-1~deb12u1")])
                        .collect(),
                    downgraded: vec![],
                    added: vec![pkg("htop", "3.2.2-2")],
                    removed: vec![pkg("nano", "7.2-1")],
                    unchanged: 398,
                }),
            },
        }
    }

    #[test]
    fn compared_release_with_kernel_first_and_a_folded_list() {
        let md = packages_section(&[compared()]);
        assert!(md.find("**Kernel:**").unwrap() < md.find("Upgraded").unwrap());
        assert!(md.contains("<details><summary>Upgraded (13)</summary>"));
        assert!(md.contains("**Added**\n\n- `htop` `3.2.2-2`"));
        insta::assert_snapshot!(md);
    }

    #[test]
    fn first_release_counts_packages() {
        let first = RecipePackages {
            recipe: "base".into(),
            report: PackageReport::First {
                packages: 311,
                os: Some(debian("12")),
                kernel: Some("6.1.0-18-cloud-amd64".into()),
            },
        };
        let md = packages_section(std::slice::from_ref(&first));
        assert!(md.contains("First release: 311 packages"), "{md}");
        insta::assert_snapshot!(md);
        assert_eq!(
            packages_totals(&[first]),
            "**Packages:** first release: 311 packages\n\n"
        );
    }

    #[test]
    fn commit_comment_totals_per_recipe() {
        let none = RecipePackages {
            recipe: "appliance".into(),
            report: PackageReport::NoInventory,
        };
        insta::assert_snapshot!(packages_totals(&[compared(), none]));
    }

    #[test]
    fn builder_text_cannot_escape_its_code_span() {
        let r = RecipePackages {
            recipe: "web".into(),
            report: PackageReport::Compared {
                previous: "v1".into(),
                packages: 1,
                diff: Box::new(InventoryDiff {
                    added: vec![pkg("evil`<img src=x>@team", "1`#2")],
                    ..Default::default()
                }),
            },
        };
        let md = packages_section(&[r]);
        assert!(
            md.contains("`` evil`<img src=x>@team `` `` 1`#2 ``"),
            "{md}"
        );
    }
}
