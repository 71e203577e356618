//! The build VM's QEMU process: started with the argument vector from `args.rs`, killed
//! when dropped and when bakery itself dies (`PR_SET_PDEATHSIG`, so a `kill -9` of bakery
//! leaves no QEMU behind; [`dies_with_bakery`] does the same for `qemu-img`), waited for
//! after the guest powers off. Touches: the
//! `qemu-system-x86_64` process it starts and its files in the build's work folder.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

use super::args::{self, VmArgs};

pub const QEMU_SYSTEM: &str = "qemu-system-x86_64";

#[derive(Debug)]
pub struct Vm {
    child: Child,
    console: PathBuf,
    stderr: PathBuf,
}

/// A free port on 127.0.0.1 for the SSH forward (bound, read and released).
pub fn free_local_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// The process `cmd` starts is killed (`SIGKILL`) when bakery dies, `kill -9` included:
/// `PR_SET_PDEATHSIG`, set between fork and exec. QEMU and `qemu-img` are started so.
pub fn dies_with_bakery(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl Vm {
    /// Starts QEMU. Its stderr goes to `qemu.stderr` in the work folder.
    pub fn start(v: &VmArgs, work: &Path) -> anyhow::Result<Vm> {
        let stderr = work.join("qemu.stderr");
        let err_file = std::fs::File::create(&stderr)?;
        let mut cmd = Command::new(QEMU_SYSTEM);
        cmd.args(args::qemu_system(v))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_file)
            .kill_on_drop(true);
        dies_with_bakery(&mut cmd);
        let child = cmd.spawn().with_context(|| {
            format!("cannot start {QEMU_SYSTEM}; install QEMU (scripts/qemu/setup.sh)")
        })?;
        Ok(Vm {
            child,
            console: v.console.clone(),
            stderr,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits for QEMU to exit (the guest powered off); `None` if it is still running
    /// after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> anyhow::Result<Option<ExitStatus>> {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => Ok(Some(status?)),
            Err(_) => Ok(None),
        }
    }

    /// Resolves when QEMU exits, with what it said.
    pub async fn exited(&mut self) -> String {
        let status = self.child.wait().await;
        format!(
            "QEMU exited ({}){}",
            status
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string()),
            self.last_words()
        )
    }

    /// Kills QEMU and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// QEMU's stderr and the end of the guest console, for an error message.
    pub fn last_words(&self) -> String {
        let mut out = String::new();
        if let Ok(e) = std::fs::read_to_string(&self.stderr) {
            let e = e.trim();
            if !e.is_empty() {
                out.push_str(&format!("; QEMU said: {e}"));
            }
        }
        if let Ok(c) = std::fs::read(&self.console) {
            let c = String::from_utf8_lossy(&c);
            let tail: Vec<&str> = c.lines().rev().take(8).collect();
            if !tail.is_empty() {
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                out.push_str(&format!("; the console ended with:\n{}", tail.join("\n")));
            }
        }
        out
    }
}
