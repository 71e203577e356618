//! The qemu builder's part of a plan: what the build boots and what it exports, with
//! every default applied. Pure: made from the recipe's `[qemu]` section and the version.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::recipe::qemu::{BootSpec, DiskFormat, DiskSource, QemuSpec};

pub const DEFAULT_MEMORY_MB: u64 = 1024;
pub const DEFAULT_CPUS: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceDisk {
    Url {
        url: String,
    },
    /// Relative to the repository root.
    Repo {
        path: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum BootPlan {
    Bios,
    Uefi,
    /// Kernel and initrd relative to the repository root.
    DirectKernel {
        kernel: String,
        initrd: Option<String>,
        append: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Qcow2,
    Vmdk,
    Ova,
    Raw,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Ova => "ova",
            Format::Raw => "raw",
        }
    }

    /// Where people take this format.
    pub fn goes_to(self) -> &'static str {
        match self {
            Format::Qcow2 => "Proxmox, OpenStack, libvirt",
            Format::Vmdk => "vSphere (as a disk), VirtualBox",
            Format::Ova => "vSphere content library, VirtualBox import",
            Format::Raw => "AWS ImportImage, dd",
        }
    }
}

impl From<DiskFormat> for Format {
    fn from(f: DiskFormat) -> Self {
        match f {
            DiskFormat::Qcow2 => Format::Qcow2,
            DiskFormat::Vmdk => Format::Vmdk,
            DiskFormat::Ova => Format::Ova,
            DiskFormat::Raw => Format::Raw,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuPlan {
    pub recipe: String,
    pub version: String,
    pub source: SourceDisk,
    /// Lowercase hex.
    pub sha256: String,
    /// `None`: the source's own virtual size.
    pub disk_size_gb: Option<u64>,
    pub memory_mb: u64,
    pub cpus: u32,
    pub ssh_user: String,
    pub boot: BootPlan,
    /// In the order the recipe lists them.
    pub outputs: Vec<Format>,
}

impl QemuPlan {
    pub fn from_spec(spec: &QemuSpec, recipe: &str, version: &str) -> QemuPlan {
        QemuPlan {
            recipe: recipe.to_string(),
            version: version.to_string(),
            source: match &spec.source.value {
                DiskSource::Url(u) => SourceDisk::Url { url: u.clone() },
                DiskSource::Repo(p) => SourceDisk::Repo { path: p.clone() },
            },
            sha256: spec.sha256.value.clone(),
            disk_size_gb: spec.disk_size_gb.as_ref().map(|d| d.value),
            memory_mb: spec
                .memory_mb
                .as_ref()
                .map(|m| m.value)
                .unwrap_or(DEFAULT_MEMORY_MB),
            cpus: spec.cpus.as_ref().map(|c| c.value).unwrap_or(DEFAULT_CPUS),
            ssh_user: spec.ssh_user.value.clone(),
            boot: match &spec.boot.value {
                BootSpec::Bios => BootPlan::Bios,
                BootSpec::Uefi => BootPlan::Uefi,
                BootSpec::DirectKernel {
                    kernel,
                    initrd,
                    append,
                } => BootPlan::DirectKernel {
                    kernel: kernel.value.clone(),
                    initrd: initrd.as_ref().map(|i| i.value.clone()),
                    append: append.clone(),
                },
            },
            outputs: spec.outputs.iter().map(|o| o.value.into()).collect(),
        }
    }

    /// The artifacts' base name: `<recipe>-<version>`, with every character a file name
    /// should not hold (a version may contain `/`) replaced by `_`.
    pub fn artifact_stem(&self) -> String {
        format!("{}-{}", self.recipe, self.version)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// The folder of this build's artifacts under the artifact directory:
    /// `<dir>/<recipe>/<stem>/`.
    pub fn artifact_dir(&self, root: &Path) -> PathBuf {
        root.join(&self.recipe).join(self.artifact_stem())
    }

    /// The final path of one export.
    pub fn artifact_path(&self, root: &Path, format: Format) -> PathBuf {
        self.artifact_dir(root)
            .join(format!("{}.{}", self.artifact_stem(), format.extension()))
    }
}

/// The text `bakery plan` shows for the qemu builder.
pub fn render_text(p: &QemuPlan) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "QEMU builder (local)");
    match &p.source {
        SourceDisk::Url { url } => {
            let _ = writeln!(o, "  source      {url}");
        }
        SourceDisk::Repo { path } => {
            let _ = writeln!(o, "  source      {path} (in the repository)");
        }
    }
    let _ = writeln!(o, "  sha256      {}", p.sha256);
    let size = match p.disk_size_gb {
        Some(g) => format!("{g} GiB"),
        None => "the source's own size".into(),
    };
    let _ = writeln!(o, "  disk        {size}");
    let _ = writeln!(o, "  machine     {} CPUs, {} MiB", p.cpus, p.memory_mb);
    let boot = match &p.boot {
        BootPlan::Bios => "BIOS".to_string(),
        BootPlan::Uefi => "UEFI (OVMF)".to_string(),
        BootPlan::DirectKernel { kernel, .. } => format!("direct kernel ({kernel})"),
    };
    let _ = writeln!(o, "  boot        {boot}");
    let _ = writeln!(o, "  ssh user    {}", p.ssh_user);
    let _ = writeln!(o, "  exports");
    for f in &p.outputs {
        let _ = writeln!(
            o,
            "    {:<28} for {}",
            format!("{}.{}", p.artifact_stem(), f.extension()),
            f.goes_to()
        );
    }
    o
}

/// What a recipe builds, read from a repository on disk: the qemu builder's plan, if the
/// recipe has a `[qemu]` section, and whether it also builds on EC2. Validation errors are
/// returned as `file:line:col: message` lines, as `bakery validate` prints them.
pub fn from_repo(
    repo_root: &Path,
    recipe: &str,
    version: &str,
) -> anyhow::Result<(Option<QemuPlan>, bool)> {
    let checked = crate::recipe::load_repo(repo_root)?;
    if !checked.is_ok() {
        let errors: Vec<String> = checked
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        anyhow::bail!(
            "the recipes have {} error(s); fix them (bakery validate lists them too):\n{}",
            errors.len(),
            errors.join("\n")
        );
    }
    let Some(spec) = checked.set.recipes.get(recipe) else {
        // Not a recipe at all: the EC2 planner names it, with its did-you-mean hint.
        return Ok((None, true));
    };
    Ok((
        spec.qemu
            .as_ref()
            .map(|q| QemuPlan::from_spec(q, recipe, version)),
        spec.has_ec2_builder(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{check_sources, RecipeSource};

    fn plan(text: &str, version: &str) -> QemuPlan {
        let c = check_sources(None, &[RecipeSource::new("deb", text)]);
        assert!(c.is_ok(), "{:?}", c.diagnostics);
        QemuPlan::from_spec(c.set.recipes["deb"].qemu.as_ref().unwrap(), "deb", version)
    }

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn defaults_apply_and_paths_are_from_the_repository_root() {
        let p = plan(
            &format!(
                "[qemu]\nsource = \"img/disk.qcow2\"\nsha256 = \"{SHA}\"\nssh_user = \"debian\"\n\
                 boot = {{ kernel = \"img/vmlinuz\", append = \"root=/dev/vda\" }}\noutputs = [\"ova\", \"raw\"]\n"
            ),
            "release-1.0",
        );
        assert_eq!(
            p.source,
            SourceDisk::Repo {
                path: "recipes/deb/img/disk.qcow2".into()
            }
        );
        assert_eq!(p.memory_mb, DEFAULT_MEMORY_MB);
        assert_eq!(p.cpus, DEFAULT_CPUS);
        assert_eq!(p.disk_size_gb, None);
        assert_eq!(
            p.boot,
            BootPlan::DirectKernel {
                kernel: "recipes/deb/img/vmlinuz".into(),
                initrd: None,
                append: "root=/dev/vda".into()
            }
        );
        assert_eq!(p.outputs, [Format::Ova, Format::Raw]);
    }

    #[test]
    fn artifacts_are_named_by_recipe_and_version() {
        let mut p = plan(
            &format!(
                "[qemu]\nsource = \"https://example.org/d.qcow2\"\nsha256 = \"{SHA}\"\nssh_user = \"debian\"\nboot = \"bios\"\noutputs = [\"qcow2\"]\n"
            ),
            "release-1.0",
        );
        let root = Path::new("/srv/artifacts");
        assert_eq!(
            p.artifact_path(root, Format::Qcow2),
            Path::new("/srv/artifacts/deb/deb-release-1.0/deb-release-1.0.qcow2")
        );
        p.version = "v2/rc(1)".into();
        assert_eq!(p.artifact_stem(), "deb-v2_rc_1_");
        assert!(render_text(&p).contains("deb-v2_rc_1_.qcow2"));
    }
}
