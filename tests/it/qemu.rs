//! The qemu builder's stories: `bakery build` of a recipe with a `[qemu]` section boots a
//! real VM (the cached Debian guest `scripts/qemu/build-guest.sh` makes), provisions,
//! stamps and seals it over SSH, and exports every format. The exports are then read by
//! other tools than bakery: `qemu-img`, `vmdkinfo`, `debugfs`, `tar` and `sha256sum`, and
//! the disk inside the exported OVA is booted (a direct kernel boot under TCG whose init
//! prints `/etc/release` on the serial console). One build VM boots here: the kill story
//! stops its build before its VM starts SSH.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::support::bakery_process::bakery_bin;

const VERSION: &str = "release-2.4.0";
const GIT_SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// The cached test guest's folder (built once per machine by the setup script).
pub(crate) fn guest() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/qemu/build-guest.sh");
    let out = Command::new(&script).output().expect("build-guest.sh runs");
    assert!(
        out.status.success(),
        "scripts/qemu/build-guest.sh failed (run scripts/qemu/setup.sh as root once): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A repository (no git needed: the build gets `--git-sha`) with one qemu recipe whose
/// disk, kernel and initrd are the test guest's, hard-linked (copied across devices).
fn repo(dir: &Path, guest: &Path, outputs: &str) -> PathBuf {
    let repo = dir.join("repo");
    let r = repo.join("recipes/deb");
    std::fs::create_dir_all(r.join("guest")).unwrap();
    std::fs::create_dir_all(r.join("files")).unwrap();
    for f in ["disk.qcow2", "vmlinuz", "initrd.img"] {
        let dest = r.join("guest").join(f);
        if std::fs::hard_link(guest.join(f), &dest).is_err() {
            std::fs::copy(guest.join(f), &dest).unwrap();
        }
    }
    let sha = std::fs::read_to_string(guest.join("disk.sha256")).unwrap();
    std::fs::write(r.join("files/motd"), "Baked by bakery\n").unwrap();
    std::fs::write(
        r.join("recipe.toml"),
        format!(
            r#"description = "A Debian guest for every hypervisor"

[qemu]
source = "guest/disk.qcow2"
sha256 = "{sha}"
memory_mb = 768
cpus = 2
ssh_user = "debian"
boot = {{ kernel = "guest/vmlinuz", initrd = "guest/initrd.img", append = "root=/dev/vda rw console=ttyS0" }}
outputs = {outputs}

[[provision]]
type = "shell"
name = "mark the image"
inline = ["echo '{{{{ recipe }}}} {{{{ version }}}}' > /etc/baked-by"]
sudo = true

[[provision]]
type = "file"
source = "files/motd"
destination = "/etc/motd"
mode = "0644"

[[verify]]
type = "command"
name = "the release file names this version"
command = "head -n 1 /etc/release"
expect_stdout = "{{{{ version }}}}"
"#,
            sha = sha.trim()
        ),
    )
    .unwrap();
    repo
}

fn build_cmd(repo: &Path, artifacts: &Path) -> Command {
    let mut c = Command::new(bakery_bin());
    c.args([
        "build",
        "deb",
        "--version",
        VERSION,
        "--git-sha",
        GIT_SHA,
        "--repo",
    ])
    .arg(repo)
    .arg("--artifact-dir")
    .arg(artifacts)
    .env("BAKERY_DATABASE_URL", "sqlite::memory:")
    .env_remove("BAKERY_AWS__ENDPOINT_URL");
    c
}

fn run(c: &mut Command) -> Output {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(c: &mut Command) -> String {
    String::from_utf8(run(c).stdout).unwrap()
}

/// A file of the image's root filesystem (ext4, no partition table), read with debugfs.
pub(crate) fn read_in_image(raw: &Path, path: &str) -> String {
    stdout(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat {path}"))
            .arg(raw)
            .stderr(Stdio::null()),
    )
}

fn ls_in_image(raw: &Path, dir: &str) -> String {
    stdout(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("ls -l {dir}"))
            .arg(raw)
            .stderr(Stdio::null()),
    )
}

/// Boots `disk` (read-only: QEMU's `snapshot=on` keeps every write in a temporary file)
/// with the test guest's kernel and initrd, the disk as root, and `cat <file>` as init,
/// under TCG; returns the serial console once the guest has stopped (init exits, the
/// kernel panics, `panic=-1` reboots and `-no-reboot` ends QEMU).
pub(crate) fn boot_and_print(guest: &Path, disk: &Path, format: &str, file: &str) -> String {
    let console = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-nodefaults",
            "-no-user-config",
            "-machine",
            "q35,accel=tcg",
        ])
        .args(["-cpu", "max", "-smp", "1", "-m", "512"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.path().display()))
        .arg("-drive")
        .arg(format!(
            "file={},format={format},if=virtio,snapshot=on",
            disk.display()
        ))
        .arg("-kernel")
        .arg(guest.join("vmlinuz"))
        .arg("-initrd")
        .arg(guest.join("initrd.img"))
        .arg("-append")
        .arg(format!(
            "root=/dev/vda ro console=ttyS0 panic=-1 quiet init=/bin/cat -- {file}"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 starts");
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(s) = qemu.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = qemu.kill();
            let _ = qemu.wait();
            panic!(
                "the guest did not stop within 5 minutes; console:\n{}",
                std::fs::read_to_string(console.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = String::from_utf8_lossy(&std::fs::read(console.path()).unwrap()).into_owned();
    assert!(status.success(), "QEMU failed ({status}); console:\n{text}");
    text
}

pub(crate) fn sha256(path: &Path) -> String {
    let s = stdout(Command::new("sha256sum").arg(path));
    s.split_whitespace().next().unwrap().to_string()
}

pub(crate) fn qemu_processes_naming(dir: &Path) -> Vec<u32> {
    processes_naming(b"qemu-system", dir)
}

/// The live processes (zombies aside) whose program starts with `program` and whose
/// command line names `needle`.
pub(crate) fn processes_naming(program: &[u8], needle: &Path) -> Vec<u32> {
    let needle = needle.as_os_str().as_encoded_bytes().to_vec();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true);
            !zombie
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| c.starts_with(program) && c.windows(needle.len()).any(|w| w == needle))
                    .unwrap_or(false)
        })
        .collect()
}

/// The one VM story: a recipe with a shell and a file step is built into all four formats.
#[test]
fn a_qemu_recipe_is_built_into_every_format_and_each_export_is_the_sealed_disk() {
    let guest = guest();
    let dir = tempfile::Builder::new()
        .prefix("bakery-qemu-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let repo = repo(dir.path(), &guest, r#"["qcow2", "vmdk", "ova", "raw"]"#);
    let artifacts = dir.path().join("artifacts");
    let manifest_path = dir.path().join("manifest.json");
    let started = Instant::now();
    let out = run(build_cmd(&repo, &artifacts)
        .arg("--manifest")
        .arg(&manifest_path)
        .arg("--qemu-boot-timeout")
        .arg("8m"));
    let took = started.elapsed();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("qemu build took {took:?}");
    assert!(
        log.contains("accelerator: TCG") || log.contains("accelerator: KVM"),
        "the log does not say which accelerator ran:\n{log}"
    );
    assert!(log.contains("SSH forwarded from 127.0.0.1:"), "{log}");
    assert!(log.contains("the guest powered off"), "{log}");

    // Named by recipe and version, each with its sha256 file beside it.
    let folder = artifacts.join("deb").join(format!("deb-{VERSION}"));
    let path = |ext: &str| folder.join(format!("deb-{VERSION}.{ext}"));
    for ext in ["qcow2", "vmdk", "ova", "raw"] {
        let p = path(ext);
        assert!(p.is_file(), "{} missing", p.display());
        let line =
            std::fs::read_to_string(folder.join(format!("deb-{VERSION}.{ext}.sha256"))).unwrap();
        assert_eq!(line, format!("{}  deb-{VERSION}.{ext}\n", sha256(&p)));
    }
    let leftovers: Vec<_> = walk(&artifacts)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
    let work = artifacts.join(".work");
    assert_eq!(
        std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(0),
        0,
        "the work folder is not empty"
    );
    assert!(
        qemu_processes_naming(dir.path()).is_empty(),
        "QEMU still runs"
    );

    // Every export holds the same disk.
    for ext in ["qcow2", "vmdk"] {
        run(Command::new("qemu-img")
            .args(["check", "-q"])
            .arg(path(ext)));
    }
    for (ext, fmt) in [("qcow2", "qcow2"), ("vmdk", "vmdk")] {
        run(Command::new("qemu-img")
            .args(["compare", "-q", "-f", "raw", "-F", fmt])
            .arg(path("raw"))
            .arg(path(ext)));
    }
    // A second VMDK reader.
    let info = stdout(Command::new("vmdkinfo").arg(path("vmdk")));
    assert!(
        info.contains("streamOptimized") || info.contains("Stream optimized"),
        "{info}"
    );

    // The OVA: descriptor first, manifest next, and the manifest's digests hold.
    let ova_dir = dir.path().join("ova");
    std::fs::create_dir_all(&ova_dir).unwrap();
    let members: Vec<String> = stdout(Command::new("tar").arg("tf").arg(path("ova")))
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        members,
        [
            format!("deb-{VERSION}.ovf"),
            format!("deb-{VERSION}.mf"),
            format!("deb-{VERSION}.vmdk")
        ]
    );
    run(Command::new("tar")
        .arg("xf")
        .arg(path("ova"))
        .arg("-C")
        .arg(&ova_dir));
    let mf = std::fs::read_to_string(ova_dir.join(format!("deb-{VERSION}.mf"))).unwrap();
    let mut checked = 0;
    for line in mf.lines() {
        let (name, digest) = line
            .strip_prefix("SHA256(")
            .and_then(|l| l.split_once(")= "))
            .unwrap_or_else(|| panic!("not a SHA256 manifest line: {line}"));
        assert_eq!(sha256(&ova_dir.join(name)), digest, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 2, "{mf}");
    run(Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "vmdk"])
        .arg(path("raw"))
        .arg(ova_dir.join(format!("deb-{VERSION}.vmdk"))));
    let ovf = std::fs::read_to_string(ova_dir.join(format!("deb-{VERSION}.ovf"))).unwrap();
    for part in ["DiskSection", "NetworkSection", "VirtualSystem"] {
        assert!(ovf.contains(part), "{part} missing from the OVF");
    }
    // The disk the OVA's descriptor names boots, and its /etc/release names the version.
    let member = ovf
        .split("ovf:href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the OVF names its disk file");
    assert_eq!(member, format!("deb-{VERSION}.vmdk"));
    let booted = boot_and_print(&guest, &ova_dir.join(member), "vmdk", "/etc/release");
    let shown: Vec<&str> = booted.lines().map(str::trim_end).collect();
    assert!(
        shown.contains(&VERSION) && shown.contains(&format!("GIT_SHA={GIT_SHA}").as_str()),
        "the booted OVA disk did not show its /etc/release with the version:\n{booted}"
    );

    // Inside the image: stamped, provisioned, sealed.
    let raw = path("raw");
    let release = read_in_image(&raw, "/etc/release");
    assert_eq!(release.lines().next(), Some(VERSION), "{release}");
    assert!(release.contains(&format!("GIT_SHA={GIT_SHA}")), "{release}");
    assert!(release.contains("RECIPE=deb"), "{release}");
    assert_eq!(
        read_in_image(&raw, "/etc/baked-by"),
        format!("deb {VERSION}\n")
    );
    assert_eq!(read_in_image(&raw, "/etc/motd"), "Baked by bakery\n");
    assert_eq!(read_in_image(&raw, "/etc/machine-id"), "");
    let ssh = ls_in_image(&raw, "/etc/ssh");
    assert!(
        !ssh.contains("ssh_host_"),
        "host keys left in the image:\n{ssh}"
    );
    assert!(
        read_in_image(&raw, "/etc/systemd/system/bakery-host-keys.service")
            .contains("ExecStart=/usr/bin/ssh-keygen -A"),
        "no first-boot host key unit"
    );
    let keys = read_in_image(&raw, "/home/debian/.ssh/authorized_keys");
    assert!(
        !keys.contains("ssh-ed25519"),
        "the build key is left: {keys}"
    );
    assert!(
        !ls_in_image(&raw, "/var/tmp").contains("bakery-"),
        "provisioning files left"
    );

    // The manifest lists every artifact with its digest.
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let b = &m["builds"][0];
    assert_eq!(b["builder_type"], "qemu");
    assert_eq!(b["files"].as_array().unwrap().len(), 4);
    assert_eq!(
        b["custom_data"]["ova_sha256"],
        sha256(&path("ova")).as_str()
    );
    assert_eq!(
        b["custom_data"]["raw_size"],
        std::fs::metadata(path("raw"))
            .unwrap()
            .len()
            .to_string()
            .as_str()
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// kill -9 of bakery while its VM boots: no QEMU survives it, and the next build removes
/// the dead build's work folder (overlay, seed disk) before it does anything else.
#[test]
fn a_build_killed_with_sigkill_leaves_no_qemu_and_the_next_build_clears_its_folder() {
    let guest = guest();
    let dir = tempfile::Builder::new()
        .prefix("bakery-qemu-kill-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let repo = repo(dir.path(), &guest, r#"["qcow2"]"#);
    let artifacts = dir.path().join("artifacts");
    let work = artifacts.join(".work");
    let mut child = build_cmd(&repo, &artifacts)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the QEMU process (its command line names the work folder).
    let deadline = Instant::now() + Duration::from_secs(120);
    let qemu = loop {
        let found = qemu_processes_naming(&work);
        if let Some(pid) = found.first() {
            break *pid;
        }
        assert!(Instant::now() < deadline, "QEMU never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let folders: Vec<PathBuf> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(folders.len(), 1);
    assert!(folders[0].join("disk.qcow2").exists(), "no overlay");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{qemu}")).exists()
        && !std::fs::read_to_string(format!("/proc/{qemu}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "QEMU {qemu} still runs after bakery was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(qemu_processes_naming(&work).is_empty());
    assert!(
        folders[0].exists(),
        "the dead build's folder is there until the next build"
    );

    // The next build (its source checksum wrong, so it stops before booting) clears it.
    let recipe = repo.join("recipes/deb/recipe.toml");
    let text = std::fs::read_to_string(&recipe).unwrap();
    let sha = std::fs::read_to_string(guest.join("disk.sha256")).unwrap();
    std::fs::write(&recipe, text.replace(sha.trim(), &"0".repeat(64))).unwrap();
    let out = build_cmd(&repo, &artifacts).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        log.contains("removed the work folder of a build that died"),
        "{log}"
    );
    assert!(log.contains("has sha256"), "{log}");
    assert!(
        !folders[0].exists(),
        "the dead build's folder is still there"
    );
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
}
