//! The ansible step: the real `ansible-playbook` on the bakery host, against the builder
//! over SSH, with the build key, a generated inventory and a known_hosts file holding the
//! host key this build verified. Its output streams into the build log.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::Session;
use crate::build::{BuildLog, OutputStream};
use crate::plan::model::{AnsibleStep, BuildFacts, BuildPlan};
use crate::provision::lines::{LineBuffer, Tail};
use crate::provision::repo_path::resolve_in_repo;

/// How many output lines a failure quotes.
const TAIL_LINES: usize = 30;

/// The variables every playbook gets; bakery's own names win over the recipe's.
pub fn extra_vars(
    step: &AnsibleStep,
    plan: &BuildPlan,
    facts: &BuildFacts,
) -> BTreeMap<String, String> {
    let mut vars = step.extra_vars.clone();
    vars.insert("bakery_version".into(), plan.version.clone());
    vars.insert("bakery_recipe".into(), plan.recipe.clone());
    vars.insert("bakery_git_sha".into(), plan.git_sha.clone());
    vars.insert("bakery_build_id".into(), facts.build_id.clone());
    vars
}

/// `host` for port 22, `[host]:port` otherwise, as OpenSSH writes known_hosts entries.
pub fn known_hosts_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

pub async fn run(
    s: &mut Session,
    step: &AnsibleStep,
    plan: &BuildPlan,
    facts: &BuildFacts,
) -> anyhow::Result<()> {
    let name = step.name.as_str();
    let playbook = resolve_in_repo(&s.repo_root, &step.playbook)?;
    let target = s.comm.target().clone();

    let dir = tempfile::Builder::new()
        .prefix("bakery-ansible-")
        .tempdir()
        .context("cannot create a temporary directory for the ansible run")?;
    let key_path = dir.path().join("build_key");
    let known_hosts = dir.path().join("known_hosts");
    let inventory = dir.path().join("inventory.json");
    let vars_path = dir.path().join("extra_vars.json");

    let key = target
        .key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("cannot encode the build key for ansible: {e}"))?;
    write_private(&key_path, key.as_bytes())?;
    let host_key = s
        .comm
        .host_key()
        .to_openssh()
        .map_err(|e| anyhow::anyhow!("cannot encode the host key: {e}"))?;
    std::fs::write(
        &known_hosts,
        format!(
            "{} {host_key}\n",
            known_hosts_pattern(&target.host, target.port)
        ),
    )
    .context("cannot write known_hosts for ansible")?;

    let ssh_args = format!(
        "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes \
         -o ServerAliveInterval=10 -o ServerAliveCountMax=3",
        known_hosts.display()
    );
    let inv = serde_json::json!({
        "all": {
            "hosts": {
                "builder": {
                    "ansible_host": target.host,
                    "ansible_port": target.port,
                    "ansible_user": target.user,
                    "ansible_ssh_private_key_file": key_path,
                    "ansible_ssh_common_args": ssh_args,
                    "ansible_python_interpreter": "auto_silent",
                }
            }
        }
    });
    std::fs::write(&inventory, serde_json::to_vec_pretty(&inv)?)
        .context("cannot write the ansible inventory")?;
    std::fs::write(
        &vars_path,
        serde_json::to_vec(&extra_vars(step, plan, facts))?,
    )
    .context("cannot write ansible extra vars")?;

    let mut cmd = tokio::process::Command::new(&s.options.ansible_playbook);
    cmd.arg("-i")
        .arg(&inventory)
        .arg("--extra-vars")
        .arg(format!("@{}", vars_path.display()));
    if step.become_root {
        cmd.arg("--become");
    }
    cmd.args(&step.extra_args)
        .arg(&playbook)
        .current_dir(&s.repo_root)
        .env("ANSIBLE_HOST_KEY_CHECKING", "True")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
        .env("ANSIBLE_LOCAL_TEMP", dir.path().join("local"))
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", dir.path().join("cp"))
        .env("ANSIBLE_REMOTE_TEMP", format!("{}/ansible", s.staging))
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    s.log.info(
        name,
        format!("ansible-playbook {}", step.playbook.display()),
    );
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "cannot run {}; install ansible-core (pip) or ansible (apt) on the bakery host",
            s.options.ansible_playbook.display()
        )
    })?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let tail = std::sync::Mutex::new(Tail::new(TAIL_LINES));
    let limit = Duration::from_secs(step.timeout_secs.max(1));

    let outcome = {
        let pump_out = pump(stdout, &s.log, name, OutputStream::Stdout, &tail);
        let pump_err = pump(stderr, &s.log, name, OutputStream::Stderr, &tail);
        let run = async {
            let (a, b) = tokio::join!(pump_out, pump_err);
            a?;
            b?;
            child.wait().await.context("waiting for ansible-playbook")
        };
        tokio::select! {
            r = tokio::time::timeout(limit, run) => r,
            _ = s.cancel.cancelled() => {
                anyhow::bail!("cancelled while ansible-playbook was running");
            }
        }
    };
    // Dropping the child (kill_on_drop) ends a run that timed out or was cancelled.
    let status = match outcome {
        Ok(status) => status?,
        Err(_) => {
            let _ = child.kill().await;
            anyhow::bail!(
                "ansible-playbook {} did not finish within the step's timeout of {limit:?}",
                step.playbook.display()
            );
        }
    };
    if !status.success() {
        let lines = tail.lock().expect("poisoned").lines();
        anyhow::bail!(
            "ansible-playbook {} failed ({status}); last lines of output:\n  {}",
            step.playbook.display(),
            lines.join("\n  ")
        );
    }
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("cannot write {}", path.display()))
}

async fn pump(
    mut from: impl AsyncRead + Unpin,
    log: &BuildLog,
    step: &str,
    stream: OutputStream,
    tail: &std::sync::Mutex<Tail>,
) -> anyhow::Result<()> {
    let mut lines = LineBuffer::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from
            .read(&mut buf)
            .await
            .context("reading ansible-playbook output")?;
        if n == 0 {
            break;
        }
        for line in lines.push(&buf[..n]) {
            emit(log, step, stream, tail, &line);
        }
    }
    if let Some(line) = lines.finish() {
        emit(log, step, stream, tail, &line);
    }
    Ok(())
}

fn emit(
    log: &BuildLog,
    step: &str,
    stream: OutputStream,
    tail: &std::sync::Mutex<Tail>,
    line: &str,
) {
    log.output(step, stream, line);
    tail.lock()
        .expect("poisoned")
        .push(&log.redactor().redact(line));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_patterns() {
        assert_eq!(known_hosts_pattern("10.0.0.5", 22), "10.0.0.5");
        assert_eq!(known_hosts_pattern("127.0.0.1", 2222), "[127.0.0.1]:2222");
    }
}
