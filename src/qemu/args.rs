//! The command lines of `qemu-img` and `qemu-system-x86_64`, built as argument vectors
//! (never a shell string). Pure: what runs them lives in the build.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::plan::{BootPlan, Format};

/// Where QEMU runs the guest's instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation: `/dev/kvm` opened and answered.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The disk format `qemu-img` names.
pub fn image_format(f: Format) -> &'static str {
    match f {
        Format::Qcow2 => "qcow2",
        // An OVA carries a streamOptimized VMDK.
        Format::Vmdk | Format::Ova => "vmdk",
        Format::Raw => "raw",
    }
}

fn os(parts: &[&str]) -> Vec<OsString> {
    parts.iter().map(OsString::from).collect()
}

/// `qemu-img create`: a qcow2 overlay whose backing file is the (checked) source, so the
/// source is never written. `size_gb` grows the overlay beyond the source's size.
pub fn create_overlay(
    source: &Path,
    source_format: &str,
    overlay: &Path,
    size_gb: Option<u64>,
) -> Vec<OsString> {
    let mut a = os(&["create", "-q", "-f", "qcow2", "-F", source_format, "-b"]);
    a.push(source.into());
    a.push(overlay.into());
    if let Some(g) = size_gb {
        a.push(format!("{g}G").into());
    }
    a
}

/// `qemu-img convert` of the build disk into one export format.
///
/// - qcow2: compressed (`-c`), so only written clusters take space;
/// - VMDK and the OVA's disk: `subformat=streamOptimized`, the compressed, sequential
///   VMDK vSphere and VirtualBox import, with the adapter OVF declares (`lsilogic`);
/// - raw: every byte, for AWS ImportImage.
pub fn convert(disk: &Path, disk_format: &str, format: Format, out: &Path) -> Vec<OsString> {
    let mut a = os(&[
        "convert",
        "-q",
        "-f",
        disk_format,
        "-O",
        image_format(format),
    ]);
    match format {
        Format::Qcow2 => a.push("-c".into()),
        Format::Vmdk | Format::Ova => {
            a.push("-o".into());
            a.push("subformat=streamOptimized,adapter_type=lsilogic".into());
        }
        Format::Raw => {}
    }
    a.push(disk.into());
    a.push(out.into());
    a
}

/// `qemu-img compare`: exits 0 when both disks hold the same bytes.
pub fn compare(a: &Path, a_format: &str, b: &Path, b_format: &str) -> Vec<OsString> {
    let mut v = os(&["compare", "-q", "-f", a_format, "-F", b_format]);
    v.push(a.into());
    v.push(b.into());
    v
}

/// `qemu-img info` as JSON: the format and virtual size of a file.
pub fn info(path: &Path) -> Vec<OsString> {
    let mut v = os(&["info", "--output=json"]);
    v.push(path.into());
    v
}

/// Everything `qemu-system-x86_64` needs to start a build VM.
#[derive(Debug, Clone)]
pub struct VmArgs {
    pub accel: Accel,
    pub cpus: u32,
    pub memory_mb: u64,
    /// The qcow2 overlay the guest writes.
    pub disk: PathBuf,
    /// The NoCloud seed disk (vfat, label CIDATA), read-only.
    pub seed: Option<PathBuf>,
    /// The host port forwarded to the guest's port 22, on 127.0.0.1 only.
    pub ssh_port: u16,
    pub boot: VmBoot,
    /// The serial console, written to a file for the build log.
    pub console: PathBuf,
    pub pidfile: PathBuf,
}

/// The boot mode with its host files resolved.
#[derive(Debug, Clone)]
pub enum VmBoot {
    Bios,
    /// OVMF's code (read-only) and a writable copy of its variable store.
    Uefi {
        code: PathBuf,
        vars: PathBuf,
    },
    DirectKernel {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        append: String,
    },
}

impl VmBoot {
    /// The host files of a plan's boot mode: repository paths under `repo_root`.
    pub fn from_plan(
        boot: &BootPlan,
        repo_root: &Path,
        uefi: Option<(PathBuf, PathBuf)>,
    ) -> Option<VmBoot> {
        Some(match boot {
            BootPlan::Bios => VmBoot::Bios,
            BootPlan::Uefi => {
                let (code, vars) = uefi?;
                VmBoot::Uefi { code, vars }
            }
            BootPlan::DirectKernel {
                kernel,
                initrd,
                append,
            } => VmBoot::DirectKernel {
                kernel: repo_root.join(kernel),
                initrd: initrd.as_ref().map(|i| repo_root.join(i)),
                append: append.clone(),
            },
        })
    }
}

/// Commas in a file name would split a QEMU option: QEMU escapes them by doubling.
fn opt_path(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

pub fn qemu_system(v: &VmArgs) -> Vec<OsString> {
    let mut a: Vec<String> = vec![
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-machine".into(),
        format!("q35,accel={}", v.accel.name()),
        "-cpu".into(),
        match v.accel {
            Accel::Kvm => "host".into(),
            Accel::Tcg => "max".into(),
        },
        "-smp".into(),
        v.cpus.to_string(),
        "-m".into(),
        v.memory_mb.to_string(),
        "-display".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-serial".into(),
        format!("file:{}", v.console.display()),
        "-pidfile".into(),
        v.pidfile.to_string_lossy().into_owned(),
        "-drive".into(),
        format!(
            "file={},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
            opt_path(&v.disk)
        ),
    ];
    if let Some(seed) = &v.seed {
        a.push("-drive".into());
        a.push(format!(
            "file={},if=virtio,format=raw,readonly=on",
            opt_path(seed)
        ));
    }
    a.push("-netdev".into());
    a.push(format!(
        "user,id=net0,hostfwd=tcp:127.0.0.1:{}-:22",
        v.ssh_port
    ));
    a.push("-device".into());
    a.push("virtio-net-pci,netdev=net0".into());
    match &v.boot {
        VmBoot::Bios => {}
        VmBoot::Uefi { code, vars } => {
            a.push("-drive".into());
            a.push(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                opt_path(code)
            ));
            a.push("-drive".into());
            a.push(format!(
                "if=pflash,format=raw,unit=1,file={}",
                opt_path(vars)
            ));
        }
        VmBoot::DirectKernel {
            kernel,
            initrd,
            append,
        } => {
            a.push("-kernel".into());
            a.push(kernel.to_string_lossy().into_owned());
            if let Some(i) = initrd {
                a.push("-initrd".into());
                a.push(i.to_string_lossy().into_owned());
            }
            a.push("-append".into());
            a.push(append.clone());
        }
    }
    a.into_iter().map(OsString::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: Vec<OsString>) -> Vec<String> {
        v.into_iter().map(|o| o.into_string().unwrap()).collect()
    }

    #[test]
    fn the_overlay_never_writes_the_source() {
        assert_eq!(
            s(create_overlay(
                Path::new("/c/src.qcow2"),
                "qcow2",
                Path::new("/w/disk.qcow2"),
                Some(8)
            )),
            [
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "qcow2",
                "-b",
                "/c/src.qcow2",
                "/w/disk.qcow2",
                "8G"
            ]
        );
        assert_eq!(
            s(create_overlay(
                Path::new("/c/src.raw"),
                "raw",
                Path::new("/w/d"),
                None
            ))
            .last()
            .unwrap(),
            "/w/d"
        );
    }

    #[test]
    fn each_format_has_its_conversion() {
        let d = Path::new("/w/disk.qcow2");
        assert_eq!(
            s(convert(
                d,
                "qcow2",
                Format::Qcow2,
                Path::new("/a/x.qcow2.partial")
            )),
            [
                "convert",
                "-q",
                "-f",
                "qcow2",
                "-O",
                "qcow2",
                "-c",
                "/w/disk.qcow2",
                "/a/x.qcow2.partial"
            ]
        );
        let vmdk = [
            "convert",
            "-q",
            "-f",
            "qcow2",
            "-O",
            "vmdk",
            "-o",
            "subformat=streamOptimized,adapter_type=lsilogic",
            "/w/disk.qcow2",
            "/a/x.vmdk",
        ];
        assert_eq!(
            s(convert(d, "qcow2", Format::Vmdk, Path::new("/a/x.vmdk"))),
            vmdk
        );
        assert_eq!(
            s(convert(d, "qcow2", Format::Ova, Path::new("/a/x.vmdk"))),
            vmdk
        );
        assert_eq!(
            s(convert(d, "qcow2", Format::Raw, Path::new("/a/x.raw"))),
            [
                "convert",
                "-q",
                "-f",
                "qcow2",
                "-O",
                "raw",
                "/w/disk.qcow2",
                "/a/x.raw"
            ]
        );
        assert_eq!(
            s(compare(d, "qcow2", Path::new("/a/x.vmdk"), "vmdk")),
            [
                "compare",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "vmdk",
                "/w/disk.qcow2",
                "/a/x.vmdk"
            ]
        );
    }

    fn vm(boot: VmBoot, accel: Accel) -> Vec<String> {
        s(qemu_system(&VmArgs {
            accel,
            cpus: 2,
            memory_mb: 1024,
            disk: "/w/a,b/disk.qcow2".into(),
            seed: Some("/w/seed.img".into()),
            ssh_port: 40022,
            boot,
            console: "/w/console.log".into(),
            pidfile: "/w/qemu.pid".into(),
        }))
    }

    fn after<'a>(v: &'a [String], flag: &str) -> Vec<&'a str> {
        v.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn ssh_is_forwarded_from_loopback_only() {
        let v = vm(VmBoot::Bios, Accel::Tcg);
        assert_eq!(
            after(&v, "-netdev"),
            ["user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22"]
        );
        assert_eq!(after(&v, "-machine"), ["q35,accel=tcg"]);
        assert_eq!(after(&v, "-cpu"), ["max"]);
        assert_eq!(after(&v, "-smp"), ["2"]);
        assert_eq!(after(&v, "-m"), ["1024"]);
        assert!(v.contains(&"-nodefaults".to_string()));
        assert!(!v.contains(&"-kernel".to_string()));
        assert_eq!(
            after(&v, "-drive"),
            [
                "file=/w/a,,b/disk.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap",
                "file=/w/seed.img,if=virtio,format=raw,readonly=on",
            ]
        );
        assert_eq!(
            after(&vm(VmBoot::Bios, Accel::Kvm), "-machine"),
            ["q35,accel=kvm"]
        );
    }

    #[test]
    fn boot_modes() {
        let v = vm(
            VmBoot::DirectKernel {
                kernel: "/r/vmlinuz".into(),
                initrd: Some("/r/initrd.img".into()),
                append: "root=/dev/vda console=ttyS0".into(),
            },
            Accel::Tcg,
        );
        assert_eq!(after(&v, "-kernel"), ["/r/vmlinuz"]);
        assert_eq!(after(&v, "-initrd"), ["/r/initrd.img"]);
        assert_eq!(after(&v, "-append"), ["root=/dev/vda console=ttyS0"]);
        let v = vm(
            VmBoot::Uefi {
                code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
                vars: "/w/vars.fd".into(),
            },
            Accel::Tcg,
        );
        let drives = after(&v, "-drive");
        assert_eq!(
            &drives[2..],
            [
                "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
                "if=pflash,format=raw,unit=1,file=/w/vars.fd",
            ]
        );
    }
}
