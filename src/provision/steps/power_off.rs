//! The power-off step, after sealing, for a builder whose disk is exported once the guest
//! is off (a local VM): asks systemd for a clean shutdown. The connection dropping while it
//! runs is the expected answer. Touches the builder over the session only.

use std::time::Duration;

use super::Session;
use crate::provision::communicator::{ExecError, RemoteCommand};

pub const STEP: &str = "power-off";

/// `--no-block`: systemctl queues the shutdown and returns, so the command usually
/// finishes before sshd goes away; `poweroff` for a guest without systemd.
pub fn command(sudo: &str) -> String {
    format!("{sudo}systemctl poweroff --no-block || {sudo}poweroff")
}

pub async fn run(s: &mut Session) -> anyhow::Result<()> {
    let cmd = RemoteCommand::internal(
        "power off the guest",
        command(s.sudo()),
        Duration::from_secs(60),
    );
    match s.comm.exec(STEP, &cmd, &s.log, &s.cancel).await {
        Ok(out) if out.success() => {}
        Ok(out) => anyhow::bail!(
            "powering the guest off failed (exit status {}){}",
            out.exit_status,
            crate::provision::communicator::tail_suffix(&out.stderr_tail)
        ),
        Err(ExecError::ConnectionLost { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    s.log.info(STEP, "asked the guest to power off");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_needs_no_sudo() {
        assert_eq!(command(""), "systemctl poweroff --no-block || poweroff");
        assert_eq!(
            command("sudo -n "),
            "sudo -n systemctl poweroff --no-block || sudo -n poweroff"
        );
    }
}
