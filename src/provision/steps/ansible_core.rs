//! Makes sure the builder can run `ansible-playbook`: when it is missing, ansible-core is
//! installed with the builder's package manager (apt-get, dnf, yum or apk, through sudo),
//! its output streamed into the build log. May touch: the builder, over the session's SSH
//! connection. The package stays in the image, like anything else a step installs.

use std::time::Duration;

use super::shell::wrap_command;
use super::Session;
use crate::provision::communicator::{tail_suffix, RemoteCommand};
use crate::provision::upload::run_script;

/// How long installing ansible-core may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// A package manager bakery knows how to install ansible-core with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageManager {
    AptGet,
    Dnf,
    Yum,
    Apk,
}

impl PackageManager {
    /// In the order they are looked for.
    pub const ALL: [PackageManager; 4] = [
        PackageManager::AptGet,
        PackageManager::Dnf,
        PackageManager::Yum,
        PackageManager::Apk,
    ];

    pub fn program(self) -> &'static str {
        match self {
            PackageManager::AptGet => "apt-get",
            PackageManager::Dnf => "dnf",
            PackageManager::Yum => "yum",
            PackageManager::Apk => "apk",
        }
    }

    /// The shell command that installs ansible-core, run as root.
    pub fn install_command(self) -> &'static str {
        match self {
            PackageManager::AptGet => {
                "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && \
                 apt-get install -y -q --no-install-recommends ansible-core"
            }
            PackageManager::Dnf => "dnf install -y ansible-core",
            PackageManager::Yum => "yum install -y ansible-core",
            PackageManager::Apk => "apk add --no-cache ansible-core",
        }
    }
}

/// What the builder has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Ansible,
    Manager(PackageManager),
    Nothing,
}

/// The script that prints `ansible-playbook`, the first package manager found, or `none`.
fn probe_script() -> String {
    let mut s = String::from(
        "if command -v ansible-playbook >/dev/null 2>&1; then echo ansible-playbook; exit 0; fi\n",
    );
    for pm in PackageManager::ALL {
        let p = pm.program();
        s.push_str(&format!(
            "if command -v {p} >/dev/null 2>&1; then echo {p}; exit 0; fi\n"
        ));
    }
    s.push_str("echo none\n");
    s
}

fn parse_probe(out: &str) -> Found {
    let word = out.trim();
    if word == "ansible-playbook" {
        return Found::Ansible;
    }
    PackageManager::ALL
        .into_iter()
        .find(|pm| pm.program() == word)
        .map_or(Found::Nothing, Found::Manager)
}

async fn probe(s: &Session, step: &str) -> anyhow::Result<Found> {
    let out = run_script(
        &s.comm,
        step,
        "looking for ansible-playbook on the builder",
        false,
        probe_script(),
        &s.log,
        &s.cancel,
    )
    .await?;
    Ok(parse_probe(&out))
}

/// Ensures `ansible-playbook` is on the builder's PATH, installing ansible-core if needed.
pub async fn ensure(s: &mut Session, step: &str) -> anyhow::Result<()> {
    let pm = match probe(s, step).await? {
        Found::Ansible => return Ok(()),
        Found::Manager(pm) => pm,
        Found::Nothing => anyhow::bail!(
            "ansible-playbook is not installed on the builder, and the builder has none of \
             apt-get, dnf, yum or apk to install it with; install ansible-core (which provides \
             ansible-playbook) in the source image, or in a shell step before this one"
        ),
    };
    s.log.info(
        step,
        format!(
            "ansible-playbook not found on the builder; installing ansible-core with {}",
            pm.program()
        ),
    );
    let cmd = RemoteCommand::new(
        format!("install ansible-core with {}", pm.program()),
        wrap_command(pm.install_command(), "", s.sudo(), INSTALL_TIMEOUT),
        INSTALL_TIMEOUT + super::shell::CLIENT_GRACE,
    );
    let out = s.comm.exec(step, &cmd, &s.log, &s.cancel).await?;
    if !out.success() {
        anyhow::bail!(
            "ansible-playbook is not installed on the builder, and installing ansible-core with \
             {} failed (exit status {}); install ansible-core in the source image, or in a \
             shell step before this one{}",
            pm.program(),
            out.exit_status,
            tail_suffix(&out.stderr_tail)
        );
    }
    if probe(s, step).await? != Found::Ansible {
        anyhow::bail!(
            "{} installed ansible-core, but ansible-playbook is still not on the builder's \
             PATH; install ansible-core in the source image, or in a shell step before this one",
            pm.program()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_probe(path: &std::path::Path) -> String {
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(probe_script())
            .env("PATH", path)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn the_probe_prefers_ansible_then_the_first_package_manager() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(parse_probe(&run_probe(dir.path())), Found::Nothing);
        for name in ["yum", "apk"] {
            let p = dir.path().join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(
            parse_probe(&run_probe(dir.path())),
            Found::Manager(PackageManager::Yum)
        );
        let p = dir.path().join("ansible-playbook");
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(parse_probe(&run_probe(dir.path())), Found::Ansible);
    }
}
