//! The verify step: the recipe's checks, run after stamping. Each failure names the check
//! and shows the expected and the actual value.

use std::time::Duration;

use super::Session;
use crate::plan::model::VerifyCheck;
use crate::provision::communicator::{tail_suffix, RemoteCommand};
use crate::provision::quote::sh_quote;
use crate::provision::steps::shell::wrap_command;

pub const STEP: &str = "verify";
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn run(s: &mut Session, checks: &[VerifyCheck]) -> anyhow::Result<()> {
    for check in checks {
        run_check(s, check).await?;
    }
    Ok(())
}

async fn run_check(s: &mut Session, check: &VerifyCheck) -> anyhow::Result<()> {
    let redact = |t: &str| s.log.redactor().redact(t);
    match check {
        VerifyCheck::Command {
            name,
            command,
            sudo,
            expect_exit,
            expect_stdout,
        } => {
            let sudo = if *sudo { s.sudo() } else { "" };
            let cmd = RemoteCommand::new(
                command.clone(),
                wrap_command(command, "", sudo, CHECK_TIMEOUT),
                CHECK_TIMEOUT + Duration::from_secs(30),
            )
            .capturing();
            let out = s.comm.exec(STEP, &cmd, &s.log, &s.cancel).await?;
            let shown = redact(command);
            if out.exit_status as i64 != *expect_exit as i64 {
                anyhow::bail!(
                    "check `{name}` failed: `{shown}` expected exit status {expect_exit}, got {}{}",
                    out.exit_status,
                    tail_suffix(&out.stderr_tail)
                );
            }
            if let Some(expected) = expect_stdout {
                let actual = out.stdout.trim();
                if actual != expected.trim() {
                    anyhow::bail!(
                        "check `{name}` failed: `{shown}` expected output {:?}, got {:?}",
                        redact(expected.trim()),
                        redact(actual)
                    );
                }
            }
        }
        VerifyCheck::File {
            name,
            path,
            expect_content,
        } => {
            let q = sh_quote(path);
            // Readable files are read as the SSH user; root-only ones through sudo.
            let remote = format!(
                "if [ ! -e {q} ]; then exit 3; fi; cat {q} 2>/dev/null || {}cat {q}",
                s.sudo()
            );
            let cmd = RemoteCommand::internal(format!("cat {path}"), remote, CHECK_TIMEOUT);
            let out = s.comm.exec(STEP, &cmd, &s.log, &s.cancel).await?;
            match out.exit_status {
                0 => {}
                3 => anyhow::bail!(
                    "check `{name}` failed: expected file {path} to exist, it does not"
                ),
                status => anyhow::bail!(
                    "check `{name}` failed: could not read {path} (exit status {status}){}",
                    tail_suffix(&out.stderr_tail)
                ),
            }
            if let Some(expected) = expect_content {
                let actual = out.stdout.strip_suffix('\n').unwrap_or(&out.stdout);
                let expected = expected.strip_suffix('\n').unwrap_or(expected);
                if actual != expected {
                    anyhow::bail!(
                        "check `{name}` failed: {path} expected content {:?}, got {:?}",
                        redact(expected),
                        redact(actual)
                    );
                }
            }
        }
    }
    let name = match check {
        VerifyCheck::Command { name, .. } | VerifyCheck::File { name, .. } => name,
    };
    s.log.info(STEP, format!("check `{name}` passed"));
    Ok(())
}
