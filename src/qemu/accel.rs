//! Chooses how QEMU runs the guest: KVM when `/dev/kvm` opens and answers the KVM API
//! version call, TCG (software emulation) otherwise. A device node alone proves nothing:
//! it can exist where the kernel cannot virtualise (nested, containers). Reads the
//! device only.

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

#[cfg(test)]
mod tests {
    use super::*;

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
