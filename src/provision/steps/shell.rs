//! The shell step: inline commands, or a script from the repository uploaded and run.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::Session;
use crate::plan::model::{ShellRun, ShellStep};
use crate::provision::communicator::{tail_suffix, ExecError, RemoteCommand};
use crate::provision::quote::{env_exports, sh_quote};
use crate::provision::repo_path::resolve_in_repo;
use crate::provision::upload::{upload, Source};

/// Exit status of coreutils `timeout` when the limit hit.
pub const TIMEOUT_STATUS: u32 = 124;
/// Extra time the client waits past a step's timeout for `timeout` on the builder to act.
pub const CLIENT_GRACE: Duration = Duration::from_secs(30);

/// The command line that runs `inner` on the builder: its environment exported, under
/// `timeout` (which kills the whole process group), through `sudo` when asked.
pub fn wrap_command(inner: &str, exports: &str, sudo: &str, limit: Duration) -> String {
    let secs = limit.as_secs().max(1);
    format!(
        "{sudo}timeout -k 10 {secs} /bin/sh -c {}",
        sh_quote(&format!("{exports}{inner}"))
    )
}

pub async fn run(s: &mut Session, step: &ShellStep) -> anyhow::Result<()> {
    let name = step.name.as_str();
    let limit = Duration::from_secs(step.timeout_secs.max(1));
    let exports = env_exports(&step.env)?;
    let sudo = if step.sudo { s.sudo() } else { "" };

    let commands: Vec<(String, String)> = match &step.run {
        ShellRun::Inline { commands } => commands.iter().map(|c| (c.clone(), c.clone())).collect(),
        ShellRun::Script { path } => {
            let local = resolve_in_repo(&s.repo_root, path)?;
            let file_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("script");
            let remote = s.stage_path(file_name);
            upload(
                &s.comm,
                name,
                Source::File(local),
                &remote,
                0o755,
                &s.log,
                &s.cancel,
            )
            .await
            .with_context(|| format!("uploading script {}", path.display()))?;
            vec![(format!("script {}", path.display()), sh_quote(&remote))]
        }
    };

    let started = Instant::now();
    let mut reconnected = false;
    for (display, inner) in commands {
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            anyhow::bail!(
                "step did not finish within its timeout of {limit:?}; `{display}` did not start"
            );
        }
        s.log.info(name, format!("$ {display}"));
        // Whole seconds for `timeout`, rounded up so a command never gets less than its share.
        let left = Duration::from_secs(left.as_secs_f64().ceil() as u64);
        let cmd = RemoteCommand::new(
            display.clone(),
            wrap_command(&inner, &exports, sudo, left),
            left + CLIENT_GRACE,
        );
        let shown = s.log.redactor().redact(&display);
        match s.comm.exec(name, &cmd, &s.log, &s.cancel).await {
            Ok(out) if out.success() => {}
            Ok(out) if out.exit_status == TIMEOUT_STATUS && out.elapsed >= left => {
                anyhow::bail!(
                    "`{shown}` did not finish within the step's timeout of {limit:?} and was killed{}",
                    tail_suffix(&out.stderr_tail)
                );
            }
            Ok(out) => {
                anyhow::bail!(
                    "`{shown}` exited with status {}{}",
                    out.exit_status,
                    tail_suffix(&out.stderr_tail)
                );
            }
            Err(ExecError::TimedOut { .. }) => {
                anyhow::bail!("`{shown}` did not finish within the step's timeout of {limit:?}");
            }
            Err(e @ (ExecError::ConnectionLost { .. } | ExecError::Signal { .. }))
                if step.expect_disconnect =>
            {
                s.log.info(name, format!("{e}"));
                s.settle_after_disconnect(name).await?;
                reconnected = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if step.expect_disconnect && !reconnected {
        s.settle_after_disconnect(name).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_with_env_timeout_and_sudo() {
        assert_eq!(
            wrap_command(
                "echo $A",
                "export A=1; ",
                "sudo -n ",
                Duration::from_secs(90)
            ),
            "sudo -n timeout -k 10 90 /bin/sh -c 'export A=1; echo $A'"
        );
        assert_eq!(
            wrap_command("true", "", "", Duration::from_millis(10)),
            "timeout -k 10 1 /bin/sh -c true"
        );
    }
}
