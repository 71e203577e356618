//! The disk images a release's qemu builders made, as the commit comment, the GitHub
//! Release and the qemu check run list them: each file with its size, sha256 and where it
//! is (a release asset, or where the operator stores it), and each build's
//! `/etc/release`. Pure.

use std::fmt::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{cell, code, code_block, duration};

/// Where an artifact can be fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArtifactPlace {
    /// Uploaded to the GitHub Release under its file name.
    ReleaseAsset,
    /// Too big to upload: stored in the artifact directory, at this URL (the operator's
    /// `artifacts.base_url`).
    Url { url: String },
    /// Too big to upload: stored in the artifact directory on the bot, at this path.
    Path { path: String },
}

/// One exported file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRow {
    pub recipe: String,
    /// The file name, e.g. `web-release-1.0.ova`.
    pub name: String,
    /// `qcow2`, `vmdk`, `ova` or `raw`.
    pub format: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub place: ArtifactPlace,
}

/// One recipe's qemu build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskBuild {
    pub recipe: String,
    /// `KVM` or `TCG`.
    pub accelerator: String,
    /// The release file written into the disk (`/etc/release`).
    pub release_file: String,
    pub duration: Duration,
    pub artifacts: Vec<ArtifactRow>,
}

/// The check run name of a recipe's qemu builder (its EC2 builder's is `bakery/<recipe>`).
pub fn qemu_check_name(recipe: &str) -> String {
    format!("bakery/{recipe}/qemu")
}

/// A size in bytes as people read it: `1.5 GiB (1610612736 bytes)`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {} ({bytes} bytes)", UNITS[unit])
}

fn place(p: &ArtifactPlace) -> String {
    match p {
        ArtifactPlace::ReleaseAsset => "release asset".into(),
        ArtifactPlace::Url { url } => format!("[download](<{}>)", url.replace('>', "%3E")),
        ArtifactPlace::Path { path } => format!("on the bot at {}", code(&cell(path))),
    }
}

/// The table of disk images: one row per file, sorted by recipe then file name.
pub fn artifact_table(builds: &[DiskBuild]) -> String {
    let mut rows: Vec<&ArtifactRow> = builds.iter().flat_map(|b| b.artifacts.iter()).collect();
    if rows.is_empty() {
        return "_No disk images._\n".into();
    }
    rows.sort_by(|a, b| (&a.recipe, &a.name).cmp(&(&b.recipe, &b.name)));
    let mut out = String::from("| Recipe | File | Size | SHA-256 | Where |\n");
    out.push_str("| --- | --- | --- | --- | --- |\n");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            cell(&r.recipe),
            code(&cell(&r.name)),
            size(r.size),
            code(&cell(&r.sha256)),
            place(&r.place)
        );
    }
    out
}

/// The commit comment's part: the table, then each build's accelerator, time and
/// `/etc/release`. Empty without disk images.
pub fn disk_images_comment(builds: &[DiskBuild]) -> String {
    if builds.is_empty() {
        return String::new();
    }
    let mut out = String::from("#### Disk images\n\n");
    out.push_str(&artifact_table(builds));
    out.push('\n');
    for b in builds {
        let _ = writeln!(
            out,
            "<details><summary><code>/etc/release</code> of {} (qemu, {}, {})</summary>\n",
            cell(&b.recipe),
            cell(&b.accelerator),
            duration(b.duration)
        );
        out.push_str(&code_block("", &b.release_file));
        out.push_str("\n</details>\n\n");
    }
    out
}

/// The GitHub Release's section. Empty without disk images.
pub fn disk_images_section(builds: &[DiskBuild]) -> String {
    if builds.iter().all(|b| b.artifacts.is_empty()) {
        return String::new();
    }
    let mut out = String::from("## Disk images\n\n");
    out.push_str(&artifact_table(builds));
    out.push_str(
        "\nEach file's `.sha256` (the `sha256sum -c` format) is stored beside it; \
         the digests above are the same.\n\n",
    );
    out
}

/// The qemu check run's title when it built.
pub fn qemu_built_title(recipe: &str, version: &str) -> String {
    format!(
        "Built {} {} disk images",
        super::inert(recipe),
        super::inert(version)
    )
}

/// The qemu check run's title while it builds.
pub fn qemu_building_title(recipe: &str, version: &str) -> String {
    format!(
        "Building {} {} disk images",
        super::inert(recipe),
        super::inert(version)
    )
}

/// The qemu check run's title when it failed, and its summary (the error, fenced).
pub fn qemu_failed(recipe: &str, version: &str, error: &str) -> (String, String) {
    (
        format!(
            "Could not build {} {} disk images",
            super::inert(recipe),
            super::inert(version)
        ),
        code_block("text", error),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn builds() -> Vec<DiskBuild> {
        vec![DiskBuild {
            recipe: "debian-ova".into(),
            accelerator: "TCG".into(),
            release_file: "release-1.0\nRECIPE=debian-ova\nSOURCE_SHA256=ab12\n".into(),
            duration: Duration::from_secs(95),
            artifacts: vec![
                ArtifactRow {
                    recipe: "debian-ova".into(),
                    name: "debian-ova-release-1.0.raw".into(),
                    format: "raw".into(),
                    size: 1_610_612_736,
                    sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                        .into(),
                    place: ArtifactPlace::Path {
                        path: "/srv/bakery/artifacts/debian-ova/debian-ova-release-1.0/debian-ova-release-1.0.raw"
                            .into(),
                    },
                },
                ArtifactRow {
                    recipe: "debian-ova".into(),
                    name: "debian-ova-release-1.0.ova".into(),
                    format: "ova".into(),
                    size: 143_917_056,
                    sha256: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
                        .into(),
                    place: ArtifactPlace::ReleaseAsset,
                },
                ArtifactRow {
                    recipe: "debian-ova".into(),
                    name: "debian-ova-release-1.0.qcow2".into(),
                    format: "qcow2".into(),
                    size: 140_000_000,
                    sha256: "fd61a03af4f77d870fc21e05e7e80678095c92d808cfb3b5c279ee04c74aca13"
                        .into(),
                    place: ArtifactPlace::Url {
                        url: "https://images.example.com/artifacts/debian-ova/debian-ova-release-1.0/debian-ova-release-1.0.qcow2".into(),
                    },
                },
            ],
        }]
    }

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(size(512), "512 bytes");
        assert_eq!(size(1_610_612_736), "1.5 GiB (1610612736 bytes)");
        assert_eq!(size(2048), "2.0 KiB (2048 bytes)");
    }

    #[test]
    fn the_comment_lists_every_file_with_its_digest_and_place() {
        let s = disk_images_comment(&builds());
        for b in builds() {
            for a in &b.artifacts {
                assert!(s.contains(&a.sha256), "{s}");
                assert!(s.contains(&a.name), "{s}");
            }
        }
        assert!(s.contains("SOURCE_SHA256=ab12"));
        insta::assert_snapshot!(s);
    }

    #[test]
    fn the_release_section_lists_every_file() {
        let s = disk_images_section(&builds());
        assert!(s.starts_with("## Disk images\n"));
        insta::assert_snapshot!(s);
        assert_eq!(disk_images_section(&[]), "");
    }

    #[test]
    fn a_file_name_cannot_break_the_table_or_mention_anyone() {
        let mut b = builds();
        b[0].artifacts.truncate(1);
        b[0].artifacts[0].name = "x|@team <!--.raw".into();
        let s = artifact_table(&b);
        assert!(!s.contains("x|@"), "{s}");
        assert!(!s.contains("@team"), "{s}");
    }

    #[test]
    fn qemu_check_run_titles_snapshot() {
        let (failed, summary) = qemu_failed("web", "release-1.0", "qemu-img convert failed");
        insta::assert_snapshot!(format!(
            "{}\n{}\n{}\n{}\n{}",
            qemu_check_name("web"),
            qemu_building_title("web", "release-1.0"),
            qemu_built_title("web", "release-1.0"),
            failed,
            summary
        ));
    }
}
