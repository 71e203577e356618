//! The inventory step, after verify and before seal: reads the builder's installed
//! packages (`dpkg-query`, `rpm -qa` or apk's database), `/etc/os-release` and the kernel
//! (`uname -r`), as the SSH user (nothing here needs root), and parses them with
//! `inventory::parse`. A builder with none of those package managers gives a note and no
//! inventory; the build goes on.

use std::time::Duration;

use super::Session;
use crate::inventory::parse::{parse_collection, DPKG_FORMAT, RPM_FORMAT};
use crate::inventory::Collected;
use crate::provision::communicator::{tail_suffix, RemoteCommand};
use crate::provision::quote::sh_quote;

pub const STEP: &str = "inventory";
const TIMEOUT: Duration = Duration::from_secs(300);

/// The script whose output `inventory::parse::parse_collection` reads.
pub fn collection_script() -> String {
    format!(
        "set -e\n\
         echo '@@os-release'\n\
         cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null || true\n\
         echo '@@kernel'\n\
         uname -r\n\
         if command -v dpkg-query >/dev/null 2>&1; then\n  \
           echo '@@dpkg'\n  \
           dpkg-query -W -f={dpkg}\n\
         elif command -v rpm >/dev/null 2>&1; then\n  \
           echo '@@rpm'\n  \
           rpm -qa --qf {rpm}\n\
         elif command -v apk >/dev/null 2>&1 && [ -r /lib/apk/db/installed ]; then\n  \
           echo '@@apk'\n  \
           cat /lib/apk/db/installed\n\
         fi\n\
         echo '@@end'\n",
        dpkg = sh_quote(DPKG_FORMAT),
        rpm = sh_quote(RPM_FORMAT),
    )
}

/// Collects the builder's inventory.
pub async fn run(s: &mut Session) -> anyhow::Result<Collected> {
    let cmd = RemoteCommand::internal(
        "collecting the package inventory",
        format!("/bin/sh -c {}", sh_quote(&collection_script())),
        TIMEOUT,
    );
    let out = s.comm.exec(STEP, &cmd, &s.log, &s.cancel).await?;
    if !out.success() {
        anyhow::bail!(
            "collecting the package inventory failed (exit status {}){}",
            out.exit_status,
            tail_suffix(&out.stderr_tail)
        );
    }
    let collected = parse_collection(&out.stdout)?;
    match &collected {
        Collected::Inventory(inv) => s.log.info(
            STEP,
            format!(
                "{} packages ({}){}{}",
                inv.packages.len(),
                inv.manager.as_str(),
                inv.os
                    .as_ref()
                    .map(|o| format!(", {}", o.pretty_name))
                    .unwrap_or_default(),
                inv.kernel
                    .as_ref()
                    .map(|k| format!(", kernel {k}"))
                    .unwrap_or_default(),
            ),
        ),
        Collected::NoPackageManager { .. } => s.log.info(
            STEP,
            "no known package manager (dpkg, rpm, apk) on the builder: this image has no package inventory",
        ),
    }
    Ok(collected)
}
