//! The NoCloud seed disk a build VM boots with: a small vfat image labelled `CIDATA` whose
//! `user-data` creates the build user with the build's public key, and whose `meta-data`
//! names the instance after the build. cloud-init reads it (and the test guest's own seed
//! unit). Made with `mkfs.vfat` and `mcopy`, without mounting anything. Writes only into
//! the build's work folder.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::process::Command;

/// Seed disk size, KiB: room for two small files.
const SEED_KIB: &str = "1024";

/// `user-data`: one user, passwordless sudo, the build key (an OpenSSH public key line).
pub fn user_data(user: &str, public_key: &str) -> String {
    format!(
        "#cloud-config\n\
         users:\n  \
         - name: {user}\n    \
         sudo: ALL=(ALL) NOPASSWD:ALL\n    \
         shell: /bin/bash\n    \
         lock_passwd: true\n    \
         ssh_authorized_keys:\n      \
         - {key}\n\
         ssh_pwauth: false\n",
        key = public_key.trim()
    )
}

/// `meta-data`: the instance id (the build id, so cloud-init treats every build as new).
pub fn meta_data(build_id: &str) -> String {
    format!("instance-id: bakery-{build_id}\nlocal-hostname: bakery-build\n")
}

async fn run(program: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| {
            format!("cannot run {program}; install dosfstools and mtools (scripts/qemu/setup.sh)")
        })?;
    anyhow::ensure!(
        out.status.success(),
        "{program} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Writes `seed.img` (and its two files) into `work`; returns the image's path.
pub async fn write(
    work: &Path,
    user: &str,
    public_key: &str,
    build_id: &str,
) -> anyhow::Result<PathBuf> {
    let ud = work.join("user-data");
    let md = work.join("meta-data");
    std::fs::write(&ud, user_data(user, public_key))?;
    std::fs::write(&md, meta_data(build_id))?;
    let img = work.join("seed.img");
    run(
        "mkfs.vfat",
        &[
            "-n".as_ref(),
            "CIDATA".as_ref(),
            "-C".as_ref(),
            img.as_os_str(),
            SEED_KIB.as_ref(),
        ],
    )
    .await?;
    run(
        "mcopy",
        &[
            "-i".as_ref(),
            img.as_os_str(),
            ud.as_os_str(),
            md.as_os_str(),
            "::".as_ref(),
        ],
    )
    .await?;
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_gets_the_key_and_nothing_else() {
        let u = user_data("debian", "ssh-ed25519 AAAAC3Nza bakery\n");
        assert!(u.starts_with("#cloud-config\n"));
        assert!(u.contains("\n  - name: debian\n"), "{u}");
        assert!(
            u.contains("\n      - ssh-ed25519 AAAAC3Nza bakery\n"),
            "{u}"
        );
        assert!(u.contains("lock_passwd: true"));
        assert!(!u.contains("password:"));
        assert_eq!(
            meta_data("b1"),
            "instance-id: bakery-b1\nlocal-hostname: bakery-build\n"
        );
    }
}
