//! Chooses how QEMU runs the guest: KVM when `/dev/kvm` opens, answers the KVM API
//! version call, and a paused QEMU with KVM starts and quits cleanly; TCG (software
//! emulation) otherwise. A device node alone proves nothing: it can exist where the kernel
//! cannot virtualise (nested, containers), and even answer the API while QEMU's vCPU setup
//! aborts (`failed to set MSR`). Reads the device and runs one paused QEMU without disks
//! or network.

use std::path::Path;

use super::args::Accel;

/// `KVM_GET_API_VERSION`, `_IO(KVMIO, 0x00)`; the stable API answers 12.
const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_API_VERSION: libc::c_int = 12;

/// The accelerator to use and, for TCG, why KVM was not.
pub fn probe(dev: &Path) -> (Accel, Option<String>) {
    use std::os::fd::AsRawFd;
    let file = match std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        Ok(f) => f,
        Err(e) => {
            return (
                Accel::Tcg,
                Some(format!("cannot open {}: {e}", dev.display())),
            )
        }
    };
    // SAFETY: an ioctl without arguments on a file descriptor this function owns.
    let v = unsafe { libc::ioctl(file.as_raw_fd(), KVM_GET_API_VERSION as _) };
    if v == KVM_API_VERSION {
        (Accel::Kvm, None)
    } else {
        (
            Accel::Tcg,
            Some(format!(
                "{} does not answer the KVM API ({})",
                dev.display(),
                std::io::Error::last_os_error()
            )),
        )
    }
}

/// The accelerator to use: [`probe`], then a paused QEMU with KVM (`-S`, no disk, no
/// network) told to `quit` on its monitor; anything but a clean exit means TCG, with what
/// QEMU said.
pub async fn choose(dev: &Path) -> (Accel, Option<String>) {
    let (accel, why) = probe(dev);
    if accel == Accel::Tcg {
        return (accel, why);
    }
    match qemu_starts(Accel::Kvm).await {
        Ok(()) => (Accel::Kvm, None),
        Err(said) => (
            Accel::Tcg,
            Some(format!("QEMU cannot start with KVM: {said}")),
        ),
    }
}

/// Starts a paused, diskless QEMU with `accel` and quits it through its monitor.
pub async fn qemu_starts(accel: Accel) -> Result<(), String> {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(super::vm::QEMU_SYSTEM)
        .args([
            "-nodefaults",
            "-no-user-config",
            "-machine",
            &format!("q35,accel={}", accel.name()),
            "-cpu",
            match accel {
                Accel::Kvm => "host",
                Accel::Tcg => "max",
            },
            "-m",
            "64",
            "-display",
            "none",
            "-S",
            "-monitor",
            "stdio",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", super::vm::QEMU_SYSTEM))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"quit\n").await;
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .map_err(|_| "no answer within 30s".to_string())?
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        let said = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "{} ({})",
            said.lines().next().unwrap_or_default().trim(),
            out.status
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine has a `/dev/kvm` that answers the API while QEMU's vCPU setup aborts:
    /// whatever is chosen must run QEMU.
    #[tokio::test]
    async fn the_chosen_accelerator_runs_qemu() {
        let (accel, why) = choose(Path::new("/dev/kvm")).await;
        if let Err(said) = qemu_starts(accel).await {
            panic!("chose {accel:?} ({why:?}), but QEMU does not start with it: {said}");
        }
    }

    #[test]
    fn a_missing_or_foreign_device_means_tcg() {
        let (a, why) = probe(Path::new("/nonexistent/kvm"));
        assert_eq!(a, Accel::Tcg);
        assert!(why.unwrap().contains("cannot open"));
        // /dev/null opens but is not KVM.
        let (a, why) = probe(Path::new("/dev/null"));
        assert_eq!(a, Accel::Tcg);
        assert!(why.unwrap().contains("does not answer"));
    }
}
