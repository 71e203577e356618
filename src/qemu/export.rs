//! Exports the build disk into every format the plan lists, in the artifact directory,
//! each with a `.sha256` file beside it.
//!
//! No half-written artifact is ever seen under its final name: every file is written as
//! `<name>.partial` and renamed once complete, the artifact first, its `.sha256` last.
//! [`remove_partials`] clears what a killed export left (any `.partial`, and an artifact
//! whose `.sha256` never appeared); the build calls it before exporting and on restart.
//! Touches only the build's own artifact folder and the work folder it is given.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::process::Command;

use super::args;
use super::ova;
use super::ovf;
use super::plan::{Format, QemuPlan};

pub const PARTIAL_SUFFIX: &str = ".partial";

/// One exported file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub format: Format,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("qemu-img {what} failed ({status}): {stderr}")]
    QemuImg {
        what: &'static str,
        status: String,
        stderr: String,
    },
    #[error("cannot run qemu-img: {0}")]
    Spawn(std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("qemu-img info gave no virtual size for {0}")]
    NoSize(PathBuf),
    #[error("qemu-img info gave no format for {0}")]
    NoFormat(PathBuf),
}

async fn qemu_img(
    what: &'static str,
    argv: Vec<std::ffi::OsString>,
) -> Result<Vec<u8>, ExportError> {
    let mut cmd = Command::new("qemu-img");
    cmd.args(argv).kill_on_drop(true);
    // A `kill -9` of bakery mid-export leaves no qemu-img writing on.
    super::vm::dies_with_bakery(&mut cmd);
    let out = cmd.output().await.map_err(ExportError::Spawn)?;
    if !out.status.success() {
        return Err(ExportError::QemuImg {
            what,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// The virtual size of a disk, in bytes.
pub async fn virtual_size(path: &Path) -> Result<u64, ExportError> {
    let out = qemu_img("info", args::info(path)).await?;
    let v: serde_json::Value =
        serde_json::from_slice(&out).map_err(|_| ExportError::NoSize(path.to_path_buf()))?;
    v.get("virtual-size")
        .and_then(|s| s.as_u64())
        .ok_or_else(|| ExportError::NoSize(path.to_path_buf()))
}

/// The format `qemu-img` detects for a disk (`qcow2`, `raw`, ...).
pub async fn detected_format(path: &Path) -> Result<String, ExportError> {
    let out = qemu_img("info", args::info(path)).await?;
    let v: serde_json::Value =
        serde_json::from_slice(&out).map_err(|_| ExportError::NoFormat(path.to_path_buf()))?;
    v.get("format")
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .ok_or_else(|| ExportError::NoFormat(path.to_path_buf()))
}

/// Runs `qemu-img` with an argument vector from `args.rs`; its stdout.
pub async fn run_qemu_img(
    what: &'static str,
    argv: Vec<std::ffi::OsString>,
) -> Result<Vec<u8>, ExportError> {
    qemu_img(what, argv).await
}

fn partial(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(PARTIAL_SUFFIX);
    PathBuf::from(s)
}

fn sha_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// Removes every `.partial` file in `dir`, and every artifact of `plan` without its
/// `.sha256`. Returns what it removed.
pub fn remove_partials(plan: &QemuPlan, root: &Path) -> std::io::Result<Vec<PathBuf>> {
    remove_incomplete(&plan.artifact_dir(root))
}

/// Removes what an export left unfinished in an artifact folder: every `.partial` file,
/// and every artifact (a file named `<stem>.<format>`) whose `.sha256` never appeared.
/// Other files are left alone.
pub fn remove_incomplete(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for e in entries {
        let p = e?.path();
        if p.to_string_lossy().ends_with(PARTIAL_SUFFIX) {
            std::fs::remove_file(&p)?;
            removed.push(p);
        }
    }
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let is_artifact = p.extension().is_some_and(|x| {
            Format::ALL_FORMATS
                .iter()
                .any(|f| x == std::ffi::OsStr::new(f.extension()))
        });
        if is_artifact && p.is_file() && !sha_path(&p).exists() {
            std::fs::remove_file(&p)?;
            removed.push(p);
        }
    }
    Ok(removed)
}

/// Whether every artifact the plan lists is complete under `root`: the file under its
/// final name and its `.sha256` beside it (the last thing an export writes).
pub fn all_complete(plan: &QemuPlan, root: &Path) -> bool {
    plan.outputs.iter().all(|&f| {
        let p = plan.artifact_path(root, f);
        p.is_file() && sha_path(&p).is_file()
    })
}

/// Moves a finished file to its final name and writes its `.sha256` beside it.
fn publish(format: Format, tmp: &Path, dest: &Path) -> std::io::Result<Artifact> {
    let sha256 = ova::sha256_file(tmp)?;
    let size = std::fs::metadata(tmp)?.len();
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sha = sha_path(dest);
    let sha_tmp = partial(&sha);
    // The `sha256sum -c` format.
    std::fs::write(&sha_tmp, format!("{sha256}  {name}\n"))?;
    std::fs::rename(tmp, dest)?;
    std::fs::rename(&sha_tmp, &sha)?;
    Ok(Artifact {
        format,
        path: dest.to_path_buf(),
        size,
        sha256,
    })
}

/// [`publish`] on the blocking pool: hashing a disk of gigabytes takes seconds, which
/// must not hold up the runtime's other tasks (a job's lease renewal among them).
async fn publish_blocking(format: Format, tmp: &Path, dest: &Path) -> std::io::Result<Artifact> {
    let (tmp, dest) = (tmp.to_path_buf(), dest.to_path_buf());
    tokio::task::spawn_blocking(move || publish(format, &tmp, &dest))
        .await
        .map_err(std::io::Error::other)?
}

/// Exports `disk` (a `disk_format` image, the VM shut down) into every format of the
/// plan. `work` holds intermediate files (the OVA's disk when no VMDK is asked for).
/// `mtime` is the OVA members' time (the build time), so equal inputs give equal bytes.
pub async fn export_all(
    plan: &QemuPlan,
    disk: &Path,
    disk_format: &str,
    root: &Path,
    work: &Path,
    mtime: u64,
) -> Result<Vec<Artifact>, ExportError> {
    let dir = plan.artifact_dir(root);
    std::fs::create_dir_all(&dir)?;
    remove_partials(plan, root)?;
    let mut out = Vec::new();
    // The OVA's disk is the streamOptimized VMDK: made once, also for the VMDK export.
    let wants = |f: Format| plan.outputs.contains(&f);
    let mut vmdk: Option<PathBuf> = None;
    for &format in &plan.outputs {
        let dest = plan.artifact_path(root, format);
        let tmp = partial(&dest);
        match format {
            Format::Qcow2 | Format::Raw => {
                qemu_img("convert", args::convert(disk, disk_format, format, &tmp)).await?;
                out.push(publish_blocking(format, &tmp, &dest).await?);
            }
            Format::Vmdk => {
                qemu_img("convert", args::convert(disk, disk_format, format, &tmp)).await?;
                let a = publish_blocking(format, &tmp, &dest).await?;
                vmdk = Some(a.path.clone());
                out.push(a);
            }
            Format::Ova => {
                let member = match (&vmdk, wants(Format::Vmdk)) {
                    (Some(v), _) => v.clone(),
                    (None, _) => {
                        let v = work.join(format!("{}.vmdk", plan.artifact_stem()));
                        qemu_img("convert", args::convert(disk, disk_format, Format::Ova, &v))
                            .await?;
                        v
                    }
                };
                let capacity = virtual_size(disk).await?;
                let stem = plan.artifact_stem();
                let disk_name = format!("{stem}.vmdk");
                let descriptor = ovf::descriptor(&ovf::Descriptor {
                    name: stem.clone(),
                    disk_file: disk_name.clone(),
                    disk_file_size: std::fs::metadata(&member)?.len(),
                    capacity,
                    cpus: plan.cpus,
                    memory_mb: plan.memory_mb,
                    boot: plan.boot.clone(),
                    annotation: format!("{} {}, built by bakery", plan.recipe, plan.version),
                });
                let tmp2 = tmp.clone();
                let member2 = member.clone();
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp2)?);
                    ova::write_ova(
                        &mut f,
                        &format!("{stem}.ovf"),
                        &descriptor,
                        &[ova::Member {
                            name: &disk_name,
                            path: &member2,
                        }],
                        mtime,
                    )?;
                    use std::io::Write;
                    f.flush()?;
                    f.get_ref().sync_all()
                })
                .await
                .map_err(std::io::Error::other)??;
                out.push(publish_blocking(format, &tmp, &dest).await?);
            }
        }
    }
    Ok(out)
}

impl Format {
    pub const ALL_FORMATS: [Format; 4] = [Format::Qcow2, Format::Vmdk, Format::Ova, Format::Raw];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::plan::{BootPlan, SourceDisk};

    fn plan(outputs: Vec<Format>) -> QemuPlan {
        QemuPlan {
            recipe: "web".into(),
            version: "release-1.0".into(),
            source: SourceDisk::Repo {
                path: "recipes/web/d.qcow2".into(),
            },
            sha256: "0".repeat(64),
            disk_size_gb: None,
            memory_mb: 512,
            cpus: 1,
            ssh_user: "debian".into(),
            boot: BootPlan::Bios,
            outputs,
        }
    }

    /// A 64 MiB qcow2 disk with a few written regions, made with qemu-img and qemu-io.
    fn disk(dir: &Path) -> PathBuf {
        let d = dir.join("disk.qcow2");
        let ok = |c: &mut std::process::Command| assert!(c.status().unwrap().success(), "{c:?}");
        ok(std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&d)
            .arg("64M"));
        for (pattern, at) in [("0xab", "0"), ("0x5a", "10M"), ("0x11", "63M")] {
            ok(std::process::Command::new("qemu-io")
                .args(["-f", "qcow2", "-c", &format!("write -P {pattern} {at} 1M")])
                .arg(&d)
                .stdout(std::process::Stdio::null()));
        }
        d
    }

    #[tokio::test]
    async fn every_export_holds_the_disk_and_a_checksum() {
        let tmp = tempfile::tempdir().unwrap();
        let d = disk(tmp.path());
        let root = tmp.path().join("artifacts");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let p = plan(vec![Format::Qcow2, Format::Vmdk, Format::Ova, Format::Raw]);
        let arts = export_all(&p, &d, "qcow2", &root, &work, 1_700_000_000)
            .await
            .unwrap();
        assert_eq!(arts.len(), 4);
        for a in &arts {
            let fmt = match a.format {
                Format::Ova => continue,
                f => args::image_format(f),
            };
            qemu_img("compare", args::compare(&d, "qcow2", &a.path, fmt))
                .await
                .unwrap_or_else(|e| panic!("{:?} differs: {e}", a.format));
            let sha = std::fs::read_to_string(sha_path(&a.path)).unwrap();
            let name = a.path.file_name().unwrap().to_string_lossy();
            assert_eq!(sha, format!("{}  {name}\n", a.sha256));
            assert_eq!(a.sha256, ova::sha256_file(&a.path).unwrap());
        }
        assert_eq!(
            arts[0].path,
            root.join("web/web-release-1.0/web-release-1.0.qcow2")
        );
        // Complete until one checksum is missing.
        assert!(all_complete(&p, &root));
        std::fs::remove_file(sha_path(&arts[3].path)).unwrap();
        assert!(!all_complete(&p, &root));
        assert!(all_complete(&plan(vec![Format::Qcow2]), &root));
        // A second reader of the VMDK: libvmdk's vmdkinfo.
        let info = std::process::Command::new("vmdkinfo")
            .arg(&arts[1].path)
            .output()
            .unwrap();
        assert!(
            info.status.success(),
            "{}",
            String::from_utf8_lossy(&info.stderr)
        );
        let info = String::from_utf8_lossy(&info.stdout);
        assert!(info.contains("Stream optimized"), "{info}");
        assert!(info.contains("(67108864 bytes)"), "{info}");
        // The OVA: descriptor, manifest, the VMDK; the manifest's digests match.
        let ova_bytes = std::fs::read(&arts[2].path).unwrap();
        let members = ova::list(&ova_bytes).unwrap();
        let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "web-release-1.0.ovf",
                "web-release-1.0.mf",
                "web-release-1.0.vmdk"
            ]
        );
        let vmdk_sha = arts[1].sha256.clone();
        let mf_start = 512 + members[0].1.div_ceil(512) as usize * 512 + 512;
        let mf =
            std::str::from_utf8(&ova_bytes[mf_start..mf_start + members[1].1 as usize]).unwrap();
        let digests = ova::parse_manifest(mf).unwrap();
        assert_eq!(digests[1], ("web-release-1.0.vmdk".to_string(), vmdk_sha));
        let ovf = std::str::from_utf8(&ova_bytes[512..512 + members[0].1 as usize]).unwrap();
        assert_eq!(digests[0].1, ova::sha256_hex(ovf.as_bytes()));
        assert!(ovf.contains(&format!("ovf:capacity=\"{}\"", 64u64 << 20)));
        // Nothing partial is left.
        let left: Vec<_> = std::fs::read_dir(p.artifact_dir(&root))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(PARTIAL_SUFFIX))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn an_ova_alone_needs_no_vmdk_export() {
        let tmp = tempfile::tempdir().unwrap();
        let d = disk(tmp.path());
        let root = tmp.path().join("a");
        let work = tmp.path().join("w");
        std::fs::create_dir_all(&work).unwrap();
        let p = plan(vec![Format::Ova]);
        let arts = export_all(&p, &d, "qcow2", &root, &work, 0).await.unwrap();
        assert_eq!(arts.len(), 1);
        assert!(!p.artifact_path(&root, Format::Vmdk).exists());
    }

    #[test]
    fn what_a_killed_export_left_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let p = plan(vec![Format::Qcow2, Format::Raw]);
        let dir = p.artifact_dir(root);
        std::fs::create_dir_all(&dir).unwrap();
        let done = p.artifact_path(root, Format::Qcow2);
        std::fs::write(&done, b"q").unwrap();
        std::fs::write(sha_path(&done), b"x").unwrap();
        let renamed_without_sum = p.artifact_path(root, Format::Raw);
        std::fs::write(&renamed_without_sum, b"r").unwrap();
        let half = partial(&p.artifact_path(root, Format::Ova));
        std::fs::write(&half, b"half").unwrap();
        let mut removed = remove_partials(&p, root).unwrap();
        removed.sort();
        let mut expected = vec![half, renamed_without_sum];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(done.exists());
        assert!(remove_partials(&p, &root.join("none")).unwrap().is_empty());
    }
}
