//! The qemu builder's build, in order: check the source disk, make a copy-on-write overlay
//! of it and a seed disk with the build key, boot QEMU (KVM or TCG, logged) with SSH
//! forwarded from 127.0.0.1 only, provision, stamp, verify and seal over SSH like an EC2
//! builder, power the guest off, and export the overlay into every requested format.
//!
//! Touches: the source disk (read only), the build's work folder (`work.rs`, removed at
//! the end whatever the outcome), the QEMU process it starts (killed on failure and
//! cancel), and the recipe's folder in the artifact directory (`export.rs`: only complete
//! files under their final names).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::accel;
use super::args::{self, Accel, VmArgs, VmBoot};
use super::export::{self, Artifact};
use super::kvm_watch;
use super::plan::{BootPlan, QemuPlan, SourceDisk};
use super::seed;
use super::vm::{self, Vm};
use super::work::{self, Entry, WorkDir};
use crate::build::manifest::{Manifest, ManifestBuild};
use crate::build::BuildLog;
use crate::plan::StepsPlan;
use crate::provision::communicator::ConnectOptions;
use crate::provision::repo_path::resolve_in_repo;
use crate::provision::{
    Finish, ProvisionContext, ProvisionPlan, Provisioner, ProvisionerOptions, SealRule,
    SshProvisioner, SshTarget,
};

/// The build log's step names.
pub const STEP_SOURCE: &str = "qemu-source";
pub const STEP_BOOT: &str = "qemu-boot";
pub const STEP_SHUTDOWN: &str = "qemu-shutdown";
pub const STEP_EXPORT: &str = "qemu-export";

/// The work folders' parent, inside the artifact directory.
pub const WORK_DIR: &str = ".work";
/// Downloaded source disks, by sha256, inside the artifact directory.
pub const CACHE_DIR: &str = ".cache";

/// UEFI firmware (Debian's `ovmf`): the code, read-only, and the variable store copied
/// into the work folder for each build.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

#[derive(Debug, Clone)]
pub struct QemuBuildOptions {
    /// The checked-out repository: the source disk and kernel paths are inside it.
    pub repo_root: PathBuf,
    /// Where the artifacts go: `<dir>/<recipe>/<recipe>-<version>/`.
    pub artifact_root: PathBuf,
    pub log: BuildLog,
    pub cancel: CancellationToken,
    /// From QEMU's start to a working SSH login (software emulation on a busy machine is
    /// slow).
    pub boot_budget: Duration,
    /// From the power-off request to QEMU's exit.
    pub shutdown_budget: Duration,
    /// The KVM device probed for hardware virtualisation.
    pub kvm_device: PathBuf,
    /// `false`: software emulation whatever the KVM device says.
    pub kvm: bool,
}

impl QemuBuildOptions {
    pub fn new(repo_root: PathBuf, artifact_root: PathBuf, log: BuildLog) -> Self {
        QemuBuildOptions {
            repo_root,
            artifact_root,
            log,
            cancel: CancellationToken::new(),
            boot_budget: Duration::from_secs(600),
            shutdown_budget: Duration::from_secs(180),
            kvm_device: PathBuf::from("/dev/kvm"),
            kvm: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QemuOutcome {
    pub build_id: String,
    pub accel: Accel,
    /// The release file as written into the image.
    pub release_file: String,
    pub artifacts: Vec<Artifact>,
    /// RFC 3339, UTC.
    pub build_time: String,
}

#[derive(Debug, thiserror::Error)]
pub enum QemuBuildError {
    #[error("the source disk {path} has sha256 {actual}, but the recipe names {expected}")]
    SourceChecksum {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    VmExited(String),
    #[error("the guest did not power off within {0:?}{1}")]
    NoPowerOff(Duration, String),
    #[error("UEFI firmware {0} not found; install ovmf (scripts/qemu/setup.sh)")]
    NoOvmf(PathBuf),
    #[error("the build was cancelled")]
    Cancelled,
}

/// The release file of a qemu build: the version alone on the first line, then
/// `KEY=VALUE` lines, as on EC2, with the source disk's digest for the source AMI.
pub fn release_file(steps: &StepsPlan, build_id: &str, source_sha256: &str) -> String {
    let mut out = format!("{}\n", steps.version);
    for (k, v) in [
        ("RECIPE", steps.recipe.as_str()),
        ("GIT_SHA", steps.git_sha.as_str()),
        ("BUILD_ID", build_id),
        ("BUILD_TIME", steps.build_time.as_str()),
        ("SOURCE_SHA256", source_sha256),
    ] {
        out.push_str(&format!("{k}={v}\n"));
    }
    for (k, v) in &steps.stamp.extra {
        out.push_str(&format!("{k}={v}\n"));
    }
    out
}

/// What the provisioner runs on the VM: the recipe's steps, sealed for a disk image that
/// makes its own host keys on first boot, then powered off.
pub fn provision_plan(steps: &StepsPlan, build_id: &str, source_sha256: &str) -> ProvisionPlan {
    ProvisionPlan {
        recipe: steps.recipe.clone(),
        version: steps.version.clone(),
        git_sha: steps.git_sha.clone(),
        build_id: build_id.to_string(),
        provision: steps.provision.clone(),
        stamp_path: steps.stamp.path.clone(),
        release_file: release_file(steps, build_id, source_sha256),
        verify: steps.verify.clone(),
        seal: steps.seal.clone(),
        seal_rule: SealRule::FirstBootHostKeys,
        finish: Finish::PowerOff,
    }
}

/// The `--manifest` file of a qemu build (Packer's shape): one build whose files are the
/// artifacts, with each one's size and sha256 in `custom_data`.
pub fn manifest(plan: &QemuPlan, outcome: &QemuOutcome) -> Manifest {
    let mut custom = std::collections::BTreeMap::new();
    custom.insert("version".to_string(), plan.version.clone());
    custom.insert("accelerator".to_string(), outcome.accel.name().to_string());
    for a in &outcome.artifacts {
        let f = a.format.extension();
        custom.insert(format!("{f}_sha256"), a.sha256.clone());
        custom.insert(format!("{f}_size"), a.size.to_string());
    }
    let files: Vec<String> = outcome
        .artifacts
        .iter()
        .map(|a| a.path.display().to_string())
        .collect();
    Manifest {
        builds: vec![ManifestBuild {
            name: plan.recipe.clone(),
            builder_type: "qemu".into(),
            build_time: chrono::DateTime::parse_from_rfc3339(&outcome.build_time)
                .map(|t| t.timestamp())
                .unwrap_or_default(),
            files: Some(files.clone()),
            artifact_id: files.join(","),
            packer_run_uuid: outcome.build_id.clone(),
            custom_data: custom,
            copies: Vec::new(),
        }],
        last_run_uuid: outcome.build_id.clone(),
    }
}

/// Builds the plan's artifacts. On any failure or cancel the VM is killed, the work folder
/// removed and no partial artifact left.
pub async fn build(
    plan: &QemuPlan,
    steps: &StepsPlan,
    o: &QemuBuildOptions,
) -> anyhow::Result<QemuOutcome> {
    let log = &o.log;
    let build_id = uuid::Uuid::now_v7().to_string();
    let work_root = o.artifact_root.join(WORK_DIR);
    let swept = work::sweep(&work_root).context("clearing what earlier builds left")?;
    for f in &swept.folders {
        log.info(
            STEP_SOURCE,
            format!(
                "removed the work folder of a build that died: {}",
                f.display()
            ),
        );
    }
    for pid in &swept.killed {
        log.info(STEP_SOURCE, format!("killed its QEMU (pid {pid})"));
    }
    for p in &swept.partial_artifacts {
        log.info(
            STEP_SOURCE,
            format!("removed its unfinished artifact: {}", p.display()),
        );
    }
    for p in export::remove_partials(plan, &o.artifact_root)? {
        log.info(
            STEP_SOURCE,
            format!("removed a partial artifact: {}", p.display()),
        );
    }
    let work = WorkDir::create(&work_root, &build_id)
        .with_context(|| format!("cannot create a work folder under {}", work_root.display()))?;
    log.info(
        STEP_SOURCE,
        format!("qemu build {build_id} of {} {}", plan.recipe, plan.version),
    );
    let result = run(plan, steps, o, &work, &build_id).await;
    if result.is_err() {
        // A cancelled or failed export leaves `.partial` files.
        let _ = export::remove_partials(plan, &o.artifact_root);
    }
    drop(work);
    result
}

async fn run(
    plan: &QemuPlan,
    steps: &StepsPlan,
    o: &QemuBuildOptions,
    work: &WorkDir,
    build_id: &str,
) -> anyhow::Result<QemuOutcome> {
    let log = &o.log;
    let source = match &plan.source {
        SourceDisk::Repo { path } => resolve_in_repo(&o.repo_root, Path::new(path))?,
        SourceDisk::Url { url } => {
            let cache = o.artifact_root.join(CACHE_DIR);
            if !super::download::cached_path(&cache, &plan.sha256).is_file() {
                log.info(STEP_SOURCE, format!("downloading {url}"));
            }
            super::download::fetch(url, &plan.sha256, &cache, &work.file("source.partial")?).await?
        }
    };
    log.info(STEP_SOURCE, format!("checking {}", source.display()));
    let actual = {
        let p = source.clone();
        tokio::task::spawn_blocking(move || super::ova::sha256_file(&p)).await??
    };
    if actual != plan.sha256 {
        return Err(QemuBuildError::SourceChecksum {
            path: source.display().to_string(),
            expected: plan.sha256.clone(),
            actual,
        }
        .into());
    }
    let source_format = export::detected_format(&source).await?;
    log.info(
        STEP_SOURCE,
        format!("source is {source_format}, sha256 {actual} as the recipe says"),
    );

    let overlay = work.file("disk.qcow2")?;
    export::run_qemu_img(
        "create",
        args::create_overlay(&source, &source_format, &overlay, plan.disk_size_gb),
    )
    .await?;
    log.info(
        STEP_SOURCE,
        "made a copy-on-write overlay; the source is never written",
    );

    let key = crate::aws::access::generate_key()?;
    let public = key
        .public_key()
        .to_openssh()
        .context("cannot encode the build key")?;
    for f in ["user-data", "meta-data", "seed.img"] {
        work.file(f)?;
    }
    let seed = seed::write(work.path(), &plan.ssh_user, &public, build_id).await?;

    let (accel, why) = if o.kvm {
        accel::choose(&o.kvm_device).await
    } else {
        (
            Accel::Tcg,
            Some("KVM is turned off in the configuration".to_string()),
        )
    };
    match &why {
        None => log.info(STEP_BOOT, "accelerator: KVM"),
        Some(why) => log.info(
            STEP_BOOT,
            format!("accelerator: TCG (software emulation; {why})"),
        ),
    }
    let boot = vm_boot(&plan.boot, &o.repo_root, work)?;
    let port = vm::free_local_port()?;
    let vm_args = VmArgs {
        accel,
        cpus: plan.cpus,
        memory_mb: plan.memory_mb,
        disk: overlay.clone(),
        seed: Some(seed),
        ssh_port: port,
        boot,
        console: work.file("console.log")?,
        pidfile: work.file("qemu.pid")?,
    };
    let mut vm = Vm::start(&vm_args, work.path())?;
    if let Some(pid) = vm.pid() {
        work.record(&Entry::Qemu { pid })?;
    }
    log.info(
        STEP_BOOT,
        format!(
            "booting under {} with {} CPUs and {} MiB; SSH forwarded from 127.0.0.1:{port}",
            accel.name(),
            plan.cpus,
            plan.memory_mb
        ),
    );
    let (mut accel, mut port) = (accel, port);
    if accel == Accel::Kvm {
        let seen = tokio::select! {
            p = kvm_watch::watch(port, &vm_args.console, kvm_watch::STALL) => Some(p),
            _ = vm.exited() => None,
            _ = o.cancel.cancelled() => {
                vm.kill().await;
                return Err(QemuBuildError::Cancelled.into());
            }
        };
        if let Some(kvm_watch::Progress::Stalled { console_bytes }) = seen {
            // Nothing of the first boot is kept: a fresh overlay of the source.
            vm.kill().await;
            export::run_qemu_img(
                "create",
                args::create_overlay(&source, &source_format, &overlay, plan.disk_size_gb),
            )
            .await?;
            accel = Accel::Tcg;
            port = vm::free_local_port()?;
            let tcg = VmArgs {
                accel,
                ssh_port: port,
                ..vm_args.clone()
            };
            vm = Vm::start(&tcg, work.path())?;
            if let Some(pid) = vm.pid() {
                work.record(&Entry::Qemu { pid })?;
            }
            log.info(
                STEP_BOOT,
                format!(
                    "the guest made no progress under KVM for {}s (console stopped at {console_bytes} bytes, no SSH): \
                     restarted under TCG (software emulation; `artifacts.kvm = false` skips KVM on this host). \
                     SSH forwarded from 127.0.0.1:{port}",
                    kvm_watch::STALL.as_secs()
                ),
            );
        }
    }

    let result = provision_and_export(
        plan, steps, o, work, build_id, &actual, port, key, &mut vm, &overlay,
    )
    .await;
    if result.is_err() {
        vm.kill().await;
    }
    result.map(|(release_file, artifacts)| QemuOutcome {
        build_id: build_id.to_string(),
        accel,
        release_file,
        artifacts,
        build_time: steps.build_time.clone(),
    })
}

#[allow(clippy::too_many_arguments)]
async fn provision_and_export(
    plan: &QemuPlan,
    steps: &StepsPlan,
    o: &QemuBuildOptions,
    work: &WorkDir,
    build_id: &str,
    source_sha256: &str,
    port: u16,
    key: russh::keys::PrivateKey,
    vm: &mut Vm,
    overlay: &Path,
) -> anyhow::Result<(String, Vec<Artifact>)> {
    let log = &o.log;
    let target = SshTarget {
        host: "127.0.0.1".into(),
        port,
        user: plan.ssh_user.clone(),
        key: Arc::new(key),
        host_key_pins: Vec::new(),
        known_host_key: None,
    };
    let ctx = ProvisionContext {
        plan: Arc::new(provision_plan(steps, build_id, source_sha256)),
        repo_root: o.repo_root.clone(),
        log: log.clone(),
        cancel: o.cancel.child_token(),
    };
    let provisioner = SshProvisioner::new(ProvisionerOptions {
        connect: ConnectOptions {
            budget: o.boot_budget,
            ..ConnectOptions::default()
        },
        ..ProvisionerOptions::default()
    });
    let report = tokio::select! {
        r = provisioner.provision(&target, &ctx) => r?,
        why = vm.exited() => return Err(QemuBuildError::VmExited(why).into()),
    };

    log.info(STEP_SHUTDOWN, "waiting for the guest to power off");
    let stopped = tokio::select! {
        s = vm.wait_exit(o.shutdown_budget) => s?,
        _ = o.cancel.cancelled() => return Err(QemuBuildError::Cancelled.into()),
    };
    match stopped {
        Some(status) => log.info(STEP_SHUTDOWN, format!("the guest powered off ({status})")),
        None => return Err(QemuBuildError::NoPowerOff(o.shutdown_budget, vm.last_words()).into()),
    }

    let mtime = chrono::DateTime::parse_from_rfc3339(&steps.build_time)
        .map(|t| t.timestamp().max(0) as u64)
        .unwrap_or_default();
    log.info(
        STEP_EXPORT,
        format!(
            "exporting {} into {}",
            plan.outputs
                .iter()
                .map(|f| f.extension())
                .collect::<Vec<_>>()
                .join(", "),
            plan.artifact_dir(&o.artifact_root).display()
        ),
    );
    work.record(&Entry::Artifacts {
        dir: plan.artifact_dir(&o.artifact_root),
    })?;
    let artifacts = tokio::select! {
        a = export::export_all(plan, overlay, "qcow2", &o.artifact_root, work.path(), mtime) => a?,
        _ = o.cancel.cancelled() => return Err(QemuBuildError::Cancelled.into()),
    };
    for a in &artifacts {
        log.info(
            STEP_EXPORT,
            format!("{} {} bytes sha256 {}", a.path.display(), a.size, a.sha256),
        );
    }
    Ok((report.release_file, artifacts))
}

/// The boot mode's host files: kernel and initrd resolved inside the repository, OVMF's
/// variable store copied into the work folder.
fn vm_boot(boot: &BootPlan, repo_root: &Path, work: &WorkDir) -> anyhow::Result<VmBoot> {
    Ok(match boot {
        BootPlan::Bios => VmBoot::Bios,
        BootPlan::Uefi => {
            let code = PathBuf::from(OVMF_CODE);
            let vars_src = PathBuf::from(OVMF_VARS);
            for p in [&code, &vars_src] {
                if !p.exists() {
                    return Err(QemuBuildError::NoOvmf(p.clone()).into());
                }
            }
            let vars = work.file("OVMF_VARS.fd")?;
            std::fs::copy(&vars_src, &vars)?;
            VmBoot::Uefi { code, vars }
        }
        BootPlan::DirectKernel {
            kernel,
            initrd,
            append,
        } => VmBoot::DirectKernel {
            kernel: resolve_in_repo(repo_root, Path::new(kernel))?,
            initrd: initrd
                .as_ref()
                .map(|i| resolve_in_repo(repo_root, Path::new(i)))
                .transpose()?,
            append: append.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::{SealPlan, StampPlan};

    fn steps() -> StepsPlan {
        StepsPlan {
            recipe: "deb".into(),
            version: "release-1.0".into(),
            git_sha: "abc".into(),
            build_time: "2026-01-01T00:00:00Z".into(),
            provision: Vec::new(),
            stamp: StampPlan {
                path: "/etc/release".into(),
                extra: [("TEAM".to_string(), "infra".to_string())].into(),
            },
            verify: Vec::new(),
            seal: SealPlan::default(),
        }
    }

    #[test]
    fn the_release_file_names_the_version_first_and_the_source_digest() {
        let r = release_file(&steps(), "b-1", "ff00");
        assert_eq!(
            r,
            "release-1.0\nRECIPE=deb\nGIT_SHA=abc\nBUILD_ID=b-1\nBUILD_TIME=2026-01-01T00:00:00Z\n\
             SOURCE_SHA256=ff00\nTEAM=infra\n"
        );
    }

    #[test]
    fn a_vm_is_sealed_for_first_boot_and_powered_off() {
        let p = provision_plan(&steps(), "b-1", "ff00");
        assert_eq!(p.seal_rule, SealRule::FirstBootHostKeys);
        assert_eq!(p.finish, Finish::PowerOff);
        assert_eq!(p.build_id, "b-1");
        assert_eq!(p.stamp_path, "/etc/release");
        assert!(p.release_file.starts_with("release-1.0\n"));
    }
}
