//! The `[qemu]` builder section of a recipe: a local QEMU virtual machine that starts
//! from a disk image and is exported as qcow2, VMDK, OVA and raw files.
//!
//! ```toml
//! [qemu]
//! source = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
//! sha256 = "0123…"          # required: the source is checked before it boots
//! disk_size_gb = 8          # the exported disk; at least the source's own size
//! memory_mb = 2048
//! cpus = 2
//! ssh_user = "debian"
//! boot = "bios"             # "bios", "uefi", or { kernel = "...", initrd = "...", append = "..." }
//! outputs = ["qcow2", "vmdk", "ova", "raw"]
//! ```
//!
//! A local source, kernel or initrd is a path inside the recipe's folder, never a path on
//! the bot's machine: repository content does not choose what the bot reads. Pure: reads
//! the parsed TOML and records positioned diagnostics, touches no file.

use toml::de::DeValue;

use super::diagnostic::did_you_mean;
use super::reader::{type_name, Cx, Loc, Table};
use super::values::resolve_path;

/// The largest disk, in GiB (qcow2 and VMDK both allow more; this keeps typos out).
pub const MAX_DISK_GB: i64 = 16384;
/// The guest memory range, in MiB.
pub const MIN_MEMORY_MB: i64 = 128;
pub const MAX_MEMORY_MB: i64 = 1024 * 1024;
pub const MAX_CPUS: i64 = 64;

/// An export format of the qemu builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiskFormat {
    /// qcow2, compressed: Proxmox, OpenStack, libvirt.
    Qcow2,
    /// VMDK, streamOptimized: vSphere, VirtualBox.
    Vmdk,
    /// An OVF descriptor, a manifest and a streamOptimized VMDK in one tar.
    Ova,
    /// A raw disk: AWS ImportImage, GCE, `dd`.
    Raw,
}

impl DiskFormat {
    pub const ALL: [DiskFormat; 4] = [
        DiskFormat::Qcow2,
        DiskFormat::Vmdk,
        DiskFormat::Ova,
        DiskFormat::Raw,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Ova => "ova",
            DiskFormat::Raw => "raw",
        }
    }

    pub fn parse(s: &str) -> Option<DiskFormat> {
        DiskFormat::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// Where the source disk comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// Downloaded over https.
    Url(String),
    /// A file in the repository, relative to its root (already resolved and contained).
    Repo(String),
}

/// How the guest boots.
#[derive(Debug, Clone, PartialEq)]
pub enum BootSpec {
    /// SeaBIOS, then the disk's own boot loader.
    Bios,
    /// OVMF firmware, then the disk's EFI boot loader.
    Uefi,
    /// QEMU loads a kernel and initrd from the repository; the disk holds the root file system.
    /// Both paths are relative to the repository root.
    DirectKernel {
        kernel: Loc<String>,
        initrd: Option<Loc<String>>,
        append: String,
    },
}

#[derive(Debug, Clone)]
pub struct QemuSpec {
    pub span: std::ops::Range<usize>,
    pub source: Loc<DiskSource>,
    pub sha256: Loc<String>,
    pub disk_size_gb: Option<Loc<u64>>,
    pub memory_mb: Option<Loc<u64>>,
    pub cpus: Option<Loc<u32>>,
    pub ssh_user: Loc<String>,
    pub boot: Loc<BootSpec>,
    /// In the order written, each once.
    pub outputs: Vec<Loc<DiskFormat>>,
}

/// Reads `[qemu]`. `dir` is the recipe's folder, relative to the repository root.
/// Returns `None` when a required part is missing or wrong (already reported).
pub fn read_qemu(dir: &str, mut t: Table<'_, '_, '_>) -> Option<QemuSpec> {
    let cx = t.cx;
    let span = t.span.clone();
    let source = t
        .required_string(
            "source",
            "\"https://…/disk.qcow2\" or \"disk.qcow2\" (beside the recipe)",
        )
        .and_then(|s| read_source(cx, dir, s));
    let sha256 = match t.string("sha256") {
        Some(s) if is_sha256(&s.value) => Some(Loc::new(s.value.to_ascii_lowercase(), s.span)),
        Some(s) => {
            cx.error(
                s.span.clone(),
                "`sha256` in [qemu] is not a sha256 digest",
                "write the 64 hexadecimal digits `sha256sum` prints for the source image",
            );
            None
        }
        None => {
            t.know(&["sha256"]);
            cx.error(
                t.key_span("source").unwrap_or(span.clone()),
                "missing required key `sha256` in [qemu]: the source image is not checked",
                "add sha256 = \"...\", the 64 hexadecimal digits `sha256sum` prints for the source image",
            );
            None
        }
    };
    let disk_size_gb = t
        .integer("disk_size_gb", 1, MAX_DISK_GB)
        .map(|l| l.map(|v| v as u64));
    let memory_mb = t
        .integer("memory_mb", MIN_MEMORY_MB, MAX_MEMORY_MB)
        .map(|l| l.map(|v| v as u64));
    let cpus = t.integer("cpus", 1, MAX_CPUS).map(|l| l.map(|v| v as u32));
    let ssh_user = t.required_string("ssh_user", "\"debian\"");
    if let Some(u) = &ssh_user {
        if !is_user_name(&u.value) {
            cx.error(
                u.span.clone(),
                format!("`{}` is not a user name", u.value),
                "use lowercase letters, digits, '-' and '_', starting with a letter or '_'",
            );
        }
    }
    let boot = match t.value("boot") {
        Some(v) => read_boot(cx, dir, v),
        None => {
            cx.error(
                span.clone(),
                "missing required key `boot` in [qemu]",
                "add boot = \"bios\", boot = \"uefi\", or boot = { kernel = \"vmlinuz\", initrd = \"initrd.img\", append = \"root=/dev/vda\" }",
            );
            None
        }
    };
    let outputs = read_outputs(&mut t);
    t.finish();
    Some(QemuSpec {
        span,
        source: source?,
        sha256: sha256?,
        disk_size_gb,
        memory_mb,
        cpus,
        ssh_user: ssh_user.filter(|u| is_user_name(&u.value))?,
        boot: boot?,
        outputs: outputs?,
    })
}

fn read_source(cx: &Cx, dir: &str, s: Loc<String>) -> Option<Loc<DiskSource>> {
    if let Some(rest) = s.value.strip_prefix("https://") {
        if rest.is_empty() || rest.starts_with('/') || rest.chars().any(char::is_whitespace) {
            cx.error(
                s.span.clone(),
                format!("`{}` is not an https URL", s.value),
                "write the full address, e.g. \"https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2\"",
            );
            return None;
        }
        return Some(Loc::new(DiskSource::Url(s.value.clone()), s.span));
    }
    if s.value.contains("://") {
        cx.error(
            s.span.clone(),
            format!("`{}`: only https sources are downloaded", s.value),
            "use an https URL, or a file beside the recipe",
        );
        return None;
    }
    repo_path(cx, dir, &s).map(|p| Loc::new(DiskSource::Repo(p), s.span))
}

fn repo_path(cx: &Cx, dir: &str, s: &Loc<String>) -> Option<String> {
    match resolve_path(dir, &s.value) {
        Ok(p) => Some(p),
        Err(e) => {
            cx.error(s.span.clone(), e.message, e.hint);
            None
        }
    }
}

fn read_boot(cx: &Cx, dir: &str, v: &toml::Spanned<DeValue<'_>>) -> Option<Loc<BootSpec>> {
    const MODES: [&str; 2] = ["bios", "uefi"];
    match v.get_ref() {
        DeValue::String(s) => match s.as_ref() {
            "bios" => Some(Loc::new(BootSpec::Bios, v.span())),
            "uefi" => Some(Loc::new(BootSpec::Uefi, v.span())),
            other => {
                let hint = match did_you_mean(other, MODES) {
                    Some(m) => format!("did you mean \"{m}\"?"),
                    None => "use \"bios\", \"uefi\", or { kernel = \"...\", initrd = \"...\", append = \"...\" } for direct kernel boot".into(),
                };
                cx.error(v.span(), format!("unknown boot mode `{other}`"), hint);
                None
            }
        },
        DeValue::Table(_) => {
            let mut t = Table::from_value(cx, v, "[qemu.boot]", "boot")?;
            let kernel = t.required_string("kernel", "\"vmlinuz\" (beside the recipe)");
            let initrd = t.string("initrd");
            let append = t.string("append");
            t.finish();
            let kernel = kernel?;
            let kernel = Loc::new(repo_path(cx, dir, &kernel)?, kernel.span);
            let initrd = match initrd {
                Some(i) => Some(Loc::new(repo_path(cx, dir, &i)?, i.span)),
                None => None,
            };
            Some(Loc::new(
                BootSpec::DirectKernel {
                    kernel,
                    initrd,
                    append: append.map(|a| a.value).unwrap_or_default(),
                },
                v.span(),
            ))
        }
        other => {
            cx.error(
                v.span(),
                format!(
                    "`boot` in [qemu] must be a string or a table, found {}",
                    type_name(other)
                ),
                "write boot = \"bios\", boot = \"uefi\" or boot = { kernel = \"...\" }",
            );
            None
        }
    }
}

fn read_outputs(t: &mut Table<'_, '_, '_>) -> Option<Vec<Loc<DiskFormat>>> {
    let cx = t.cx;
    let names = DiskFormat::ALL.map(DiskFormat::name);
    let Some(list) = t.string_list("outputs") else {
        if !t.has("outputs") {
            t.missing("outputs", "[\"qcow2\", \"vmdk\", \"ova\", \"raw\"]");
        }
        return None;
    };
    if list.value.is_empty() {
        cx.error(
            list.span.clone(),
            "`outputs` in [qemu] is empty: the build would export nothing",
            format!("name one or more of {}", names.join(", ")),
        );
        return None;
    }
    let mut out: Vec<Loc<DiskFormat>> = Vec::new();
    let mut ok = true;
    for item in &list.value {
        match DiskFormat::parse(&item.value) {
            Some(f) if out.iter().any(|o| o.value == f) => {
                cx.error(
                    item.span.clone(),
                    format!("output `{}` is listed twice", item.value),
                    "list each format once",
                );
                ok = false;
            }
            Some(f) => out.push(Loc::new(f, item.span.clone())),
            None => {
                let hint = match did_you_mean(&item.value, names) {
                    Some(m) => format!("did you mean \"{m}\"?"),
                    None => format!("the formats are {}", names.join(", ")),
                };
                cx.error(
                    item.span.clone(),
                    format!("unknown output format `{}`", item.value),
                    hint,
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_user_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && s.len() <= 32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{check_sources, RecipeSource};

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn qemu(body: &str) -> String {
        format!("[qemu]\n{body}")
    }

    fn full(extra: &str) -> String {
        qemu(&format!(
            "source = \"disk.qcow2\"\nsha256 = \"{SHA}\"\nssh_user = \"debian\"\nboot = \"bios\"\noutputs = [\"qcow2\", \"ova\"]\n{extra}"
        ))
    }

    /// `line:col: message` of every diagnostic.
    fn check(text: &str) -> Vec<String> {
        let c = check_sources(None, &[RecipeSource::new("r", text)]);
        c.diagnostics
            .iter()
            .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message))
            .collect()
    }

    fn spec(text: &str) -> QemuSpec {
        let c = check_sources(None, &[RecipeSource::new("r", text)]);
        assert!(c.is_ok(), "{:?}", check(text));
        c.set.recipes["r"].qemu.clone().expect("a qemu section")
    }

    #[test]
    fn a_qemu_only_recipe_is_clean_and_read() {
        let s = spec(&full("disk_size_gb = 8\nmemory_mb = 1024\ncpus = 2\n"));
        assert_eq!(
            s.source.value,
            DiskSource::Repo("recipes/r/disk.qcow2".into())
        );
        assert_eq!(s.sha256.value, SHA);
        assert_eq!(s.disk_size_gb.map(|d| d.value), Some(8));
        assert_eq!(s.memory_mb.map(|d| d.value), Some(1024));
        assert_eq!(s.cpus.map(|d| d.value), Some(2));
        assert_eq!(s.ssh_user.value, "debian");
        assert_eq!(s.boot.value, BootSpec::Bios);
        let outputs: Vec<_> = s.outputs.iter().map(|o| o.value).collect();
        assert_eq!(outputs, [DiskFormat::Qcow2, DiskFormat::Ova]);
    }

    #[test]
    fn an_https_source_and_direct_kernel_boot_are_read() {
        let text = qemu(&format!(
            "source = \"https://example.org/d.qcow2\"\nsha256 = \"{}\"\nssh_user = \"u\"\n\
             boot = {{ kernel = \"vmlinuz\", initrd = \"initrd.img\", append = \"root=/dev/vda\" }}\n\
             outputs = [\"raw\"]\n",
            SHA.to_uppercase()
        ));
        let s = spec(&text);
        assert_eq!(
            s.source.value,
            DiskSource::Url("https://example.org/d.qcow2".into())
        );
        assert_eq!(s.sha256.value, SHA, "digests are kept in lowercase");
        match s.boot.value {
            BootSpec::DirectKernel {
                kernel,
                initrd,
                append,
            } => {
                assert_eq!(kernel.value, "recipes/r/vmlinuz");
                assert_eq!(initrd.unwrap().value, "recipes/r/initrd.img");
                assert_eq!(append, "root=/dev/vda");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_format_is_reported_where_it_is_written() {
        let text = qemu(&format!(
            "source = \"disk.qcow2\"\nsha256 = \"{SHA}\"\nssh_user = \"debian\"\nboot = \"bios\"\noutputs = [\"qcow2\", \"vhdx\", \"ovf\", \"raw\", \"raw\"]\n"
        ));
        assert_eq!(
            check(&text),
            [
                "recipes/r/recipe.toml:6:21: unknown output format `vhdx`",
                "recipes/r/recipe.toml:6:29: unknown output format `ovf`",
                "recipes/r/recipe.toml:6:43: output `raw` is listed twice",
            ]
        );
    }

    #[test]
    fn a_missing_or_malformed_checksum_is_an_error() {
        let text = qemu(
            "source = \"https://example.org/d.qcow2\"\nssh_user = \"debian\"\nboot = \"uefi\"\noutputs = [\"raw\"]\n",
        );
        assert_eq!(
            check(&text),
            ["recipes/r/recipe.toml:2:1: missing required key `sha256` in [qemu]: the source image is not checked"]
        );
        let text = qemu(
            "source = \"d.qcow2\"\nsha256 = \"abc\"\nssh_user = \"debian\"\nboot = \"uefi\"\noutputs = [\"raw\"]\n",
        );
        assert_eq!(
            check(&text),
            ["recipes/r/recipe.toml:3:10: `sha256` in [qemu] is not a sha256 digest"]
        );
    }

    #[test]
    fn impossible_sizes_are_errors() {
        assert_eq!(
            check(&full("disk_size_gb = 0\nmemory_mb = 16\ncpus = 500\n")),
            [
                "recipes/r/recipe.toml:7:16: `disk_size_gb` in [qemu] is 0, outside 1..=16384",
                "recipes/r/recipe.toml:8:13: `memory_mb` in [qemu] is 16, outside 128..=1048576",
                "recipes/r/recipe.toml:9:8: `cpus` in [qemu] is 500, outside 1..=64",
            ]
        );
        assert_eq!(
            check(&full("disk_size_gb = \"8G\"\n")),
            ["recipes/r/recipe.toml:7:16: `disk_size_gb` in [qemu] must be an integer, found a string"]
        );
    }

    #[test]
    fn sources_outside_the_repository_and_other_schemes_are_refused() {
        let mk = |src: &str| {
            qemu(&format!(
                "source = \"{src}\"\nsha256 = \"{SHA}\"\nssh_user = \"debian\"\nboot = \"bios\"\noutputs = [\"raw\"]\n"
            ))
        };
        for src in ["../../../etc/shadow", "/var/lib/images/x.qcow2"] {
            let d = check(&mk(src));
            assert_eq!(d.len(), 1, "{src}: {d:?}");
            assert!(d[0].contains(src), "{d:?}");
            assert!(d[0].starts_with("recipes/r/recipe.toml:2:10: "), "{d:?}");
        }
        assert_eq!(
            check(&mk("http://example.org/x.qcow2")),
            ["recipes/r/recipe.toml:2:10: `http://example.org/x.qcow2`: only https sources are downloaded"]
        );
    }

    #[test]
    fn boot_mode_and_user_are_checked() {
        let text = qemu(&format!(
            "source = \"d.qcow2\"\nsha256 = \"{SHA}\"\nssh_user = \"Root User\"\nboot = \"efi\"\noutputs = []\n"
        ));
        assert_eq!(
            check(&text),
            [
                "recipes/r/recipe.toml:4:12: `Root User` is not a user name",
                "recipes/r/recipe.toml:5:8: unknown boot mode `efi`",
                "recipes/r/recipe.toml:6:11: `outputs` in [qemu] is empty: the build would export nothing",
            ]
        );
    }
}
