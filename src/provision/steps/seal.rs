//! The seal step, last: scrubs what must not end up in the image. Each part can be
//! switched off in the recipe (`SealPlan`). The builder's [`SealRule`] says how the image
//! gets new host keys on first boot: cloud-init on EC2; a first-boot unit bakery installs
//! for disk images run anywhere.

use super::Session;
use crate::plan::model::SealPlan;
use crate::provision::quote::sh_quote;
use crate::provision::upload::run_script;
use crate::provision::SealRule;

pub const STEP: &str = "seal";

/// The root shell script that seals the builder.
///
/// `user` is the SSH user, `build_key` the base64 body of the build key as it appears in
/// `authorized_keys`, `staging` bakery's upload directory.
pub fn seal_script(
    plan: &SealPlan,
    rule: SealRule,
    user: &str,
    build_key: &str,
    staging: &str,
) -> String {
    let mut s = String::from("set -e\n");
    let home = format!("home=$(getent passwd {} | cut -d: -f6)\n", sh_quote(user));
    s.push_str(&home);
    if plan.provisioning_files {
        s.push_str(&format!(
            "rm -rf {} \"$home/.ansible/tmp\" /root/.ansible/tmp\necho 'removed provisioning files'\n",
            sh_quote(staging)
        ));
    }
    if plan.shell_history {
        s.push_str(
            "for f in /root/.*_history \"$home\"/.*_history; do [ -f \"$f\" ] && rm -f \"$f\"; done\n\
             echo 'removed shell history'\n",
        );
    }
    if plan.cloud_init {
        s.push_str(
            "if command -v cloud-init >/dev/null 2>&1; then cloud-init clean --logs; echo 'ran cloud-init clean'; \
             else echo 'cloud-init not installed; nothing to clean'; fi\n",
        );
    }
    if plan.machine_id {
        s.push_str(
            "if [ -f /etc/machine-id ]; then : > /etc/machine-id; fi\n\
             if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then rm -f /var/lib/dbus/machine-id; fi\n\
             echo 'truncated /etc/machine-id'\n",
        );
    }
    if plan.host_keys {
        s.push_str("rm -f /etc/ssh/ssh_host_*\necho 'removed SSH host keys'\n");
        if rule == SealRule::FirstBootHostKeys {
            s.push_str(FIRST_BOOT_HOST_KEYS);
        }
    }
    if plan.build_key {
        // The current session stays up: sshd checked the key when it logged in.
        s.push_str(&format!(
            "for f in \"$home/.ssh/authorized_keys\" /root/.ssh/authorized_keys; do\n  \
             [ -f \"$f\" ] || continue\n  \
             grep -vF -- {key} \"$f\" > \"$f.bakery-seal\" || true\n  \
             cat \"$f.bakery-seal\" > \"$f\"\n  \
             rm -f \"$f.bakery-seal\"\n\
             done\necho 'removed the build key from authorized_keys'\n",
            key = sh_quote(build_key)
        ));
    }
    s.push_str("sync\n");
    s
}

/// Installs (systemd only) a unit that makes the missing host keys on the first boot,
/// before sshd starts, once: its condition is that no host key exists.
const FIRST_BOOT_HOST_KEYS: &str = "if [ -d /etc/systemd/system ]; then\n\
cat > /etc/systemd/system/bakery-host-keys.service <<'BAKERY_UNIT'\n\
[Unit]\n\
Description=Make the SSH host keys a sealed image lacks\n\
Before=ssh.service sshd.service\n\
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key\n\
\n\
[Service]\n\
Type=oneshot\n\
ExecStart=/usr/bin/ssh-keygen -A\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n\
BAKERY_UNIT\n\
mkdir -p /etc/systemd/system/multi-user.target.wants\n\
ln -sf /etc/systemd/system/bakery-host-keys.service /etc/systemd/system/multi-user.target.wants/bakery-host-keys.service\n\
echo 'installed bakery-host-keys.service: new host keys on first boot'\n\
else echo 'no systemd: the image makes its host keys itself'; fi\n";

pub async fn run(s: &mut Session, plan: &SealPlan, rule: SealRule) -> anyhow::Result<()> {
    if !plan.enabled {
        s.log.info(STEP, "sealing is switched off for this recipe");
        return Ok(());
    }
    let public = s
        .comm
        .target()
        .key
        .public_key()
        .to_openssh()
        .map_err(|e| anyhow::anyhow!("cannot encode the build key: {e}"))?;
    let body = public
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("build key has no base64 body"))?
        .to_string();
    let user = s.comm.target().user.clone();
    let script = seal_script(plan, rule, &user, &body, &s.staging);
    let sudo = !s.sudo().is_empty();
    let out = run_script(
        &s.comm,
        STEP,
        "sealing the builder",
        sudo,
        script,
        &s.log,
        &s.cancel,
    )
    .await?;
    for line in out.lines() {
        s.log.info(STEP, line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_follow_the_plan() {
        let all = seal_script(
            &SealPlan::default(),
            SealRule::Cloud,
            "builder",
            "AAAAkey",
            "/var/tmp/bakery-1",
        );
        for part in [
            "ssh_host_",
            "machine-id",
            "AAAAkey",
            "cloud-init clean",
            "/var/tmp/bakery-1",
            "_history",
        ] {
            assert!(all.contains(part), "{part} missing:\n{all}");
        }
        let none = seal_script(
            &SealPlan {
                enabled: true,
                host_keys: false,
                machine_id: false,
                build_key: false,
                cloud_init: false,
                provisioning_files: false,
                shell_history: false,
            },
            SealRule::FirstBootHostKeys,
            "builder",
            "AAAAkey",
            "/var/tmp/bakery-1",
        );
        for part in [
            "ssh_host_",
            "machine-id",
            "AAAAkey",
            "cloud-init",
            "/var/tmp/bakery-1",
            "_history",
        ] {
            assert!(!none.contains(part), "{part} present:\n{none}");
        }
        assert!(!all.contains("bakery-host-keys"), "{all}");
    }

    #[test]
    fn a_disk_image_makes_its_host_keys_on_first_boot() {
        let s = seal_script(
            &SealPlan::default(),
            SealRule::FirstBootHostKeys,
            "debian",
            "AAAAkey",
            "/var/tmp/bakery-1",
        );
        let removed = s
            .find("rm -f /etc/ssh/ssh_host_*")
            .expect("host keys removed");
        let unit = s.find("bakery-host-keys.service").expect("first-boot unit");
        assert!(removed < unit, "{s}");
        assert!(s.contains("ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key"));
        assert!(s.contains("Before=ssh.service"));
        assert!(s.contains("ExecStart=/usr/bin/ssh-keygen -A"));
        assert!(s.contains("multi-user.target.wants/bakery-host-keys.service"));
        // No host keys to remove, nothing to regenerate.
        let keep = seal_script(
            &SealPlan {
                host_keys: false,
                ..SealPlan::default()
            },
            SealRule::FirstBootHostKeys,
            "debian",
            "AAAAkey",
            "/var/tmp/bakery-1",
        );
        assert!(!keep.contains("bakery-host-keys"), "{keep}");
    }
}
