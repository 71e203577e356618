//! A sandboxed OpenSSH sshd on 127.0.0.1, for tests that provision a "builder".
//!
//! [`Sandbox::start`] runs `scripts/sandbox/start.sh`: Debian's sshd, chrooted into a fresh
//! overlay of the cached Debian rootfs (built once by `scripts/sandbox/build-rootfs.sh`),
//! inside user, mount, pid and uts namespaces. Whatever a test does over SSH, as `builder`
//! or through sudo as root, lands in the overlay; the host's files are never touched.
//! Each sandbox has its own host keys and a free port. Dropping the [`Sandbox`] stops it and
//! removes its files.
//!
//! ```ignore
//! let key = sandbox::generate_key();
//! let sb = Sandbox::start(SandboxOptions::with_key(&key))?;
//! let target = sb.ssh_target(key.clone());
//! // ... provision ...
//! assert!(sb.read("/etc/release")?.starts_with("release-0.1.0\n"));
//! ```
//!
//! Needs root and the packages `scripts/sandbox/setup.sh` installs.

#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bakery::provision::SshTarget;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey, PublicKey};

/// The unprivileged user with passwordless sudo inside the sandbox, like `ubuntu` on EC2.
pub const USER: &str = "builder";
/// How long starting may take (the first start on a machine also builds the rootfs).
const START_TIMEOUT: Duration = Duration::from_secs(120);
const ROOTFS_TIMEOUT: Duration = Duration::from_secs(1800);

#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// OpenSSH public key lines authorized for [`USER`].
    pub authorized_keys: Vec<String>,
}

impl SandboxOptions {
    pub fn with_key(key: &PrivateKey) -> Self {
        SandboxOptions {
            authorized_keys: vec![public_line(key)],
        }
    }
}

/// A running sandboxed sshd.
pub struct Sandbox {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The ED25519 host key's `SHA256:...` fingerprint (the key russh negotiates).
    pub host_key_fingerprint: String,
    /// Fingerprints of every host key the sandbox has, as cloud-init would print them.
    pub host_key_fingerprints: Vec<String>,
    /// The sandbox's directory: `upper/` holds everything written inside it.
    pub dir: PathBuf,
    init_pid: u32,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("port", &self.port)
            .field("init_pid", &self.init_pid)
            .field("dir", &self.dir)
            .finish()
    }
}

/// A fresh ed25519 key, like the per-build key the AWS engine registers.
pub fn generate_key() -> Arc<PrivateKey> {
    let seed: [u8; 32] = rand::random();
    Arc::new(PrivateKey::from(Ed25519Keypair::from_seed(&seed)))
}

/// `ssh-ed25519 AAAA... comment` for a key.
pub fn public_line(key: &PrivateKey) -> String {
    key.public_key().to_openssh().expect("encode public key")
}

/// The repository root (where `scripts/` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scripts() -> PathBuf {
    repo_root().join("scripts/sandbox")
}

/// Builds the cached rootfs if needed (once per machine; concurrent callers wait).
pub fn ensure_rootfs() -> anyhow::Result<PathBuf> {
    let out = run_with_timeout(
        Command::new("bash").arg(scripts().join("build-rootfs.sh")),
        ROOTFS_TIMEOUT,
    )
    .context("building the sandbox rootfs (scripts/sandbox/build-rootfs.sh)")?;
    Ok(PathBuf::from(out.trim().lines().last().unwrap_or_default()))
}

fn run_with_timeout(cmd: &mut Command, limit: Duration) -> anyhow::Result<String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning")?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let until = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        anyhow::bail!("{status}: {err}");
    }
    Ok(out)
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Sandbox {
    /// Starts a sandbox and waits until its sshd accepts connections.
    pub fn start(opts: SandboxOptions) -> anyhow::Result<Sandbox> {
        ensure_rootfs()?;
        // A port taken between picking it and sshd binding it: try another.
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(&opts) {
                Ok(sb) => return Ok(sb),
                Err(e) if format!("{e:#}").contains("Address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn start_once(opts: &SandboxOptions) -> anyhow::Result<Sandbox> {
        let tmp = tempfile::Builder::new()
            .prefix("bakery-sandbox-")
            .tempdir()
            .context("creating the sandbox directory")?;
        let dir = tmp.path().join("sb");
        std::fs::create_dir(&dir)?;
        let keys = tmp.path().join("authorized_keys");
        std::fs::write(&keys, opts.authorized_keys.join("\n") + "\n")?;
        let log_path = tmp.path().join("sandbox.log");
        let log = std::fs::File::create(&log_path)?;
        let port = free_port()?;

        let child = Command::new("bash")
            .arg(scripts().join("start.sh"))
            .arg("--dir")
            .arg(&dir)
            .arg("--port")
            .arg(port.to_string())
            .arg("--authorized-keys")
            .arg(&keys)
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("running scripts/sandbox/start.sh")?;

        let mut sb = Sandbox {
            host: "127.0.0.1".into(),
            port,
            user: USER.into(),
            host_key_fingerprint: String::new(),
            host_key_fingerprints: Vec::new(),
            dir: dir.clone(),
            init_pid: 0,
            child: Some(child),
            _tmp: tmp,
        };
        let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let until = Instant::now() + START_TIMEOUT;
        let listening = format!("Server listening on 127.0.0.1 port {port}");
        loop {
            let log = read_log();
            if log.contains("Address already in use") {
                anyhow::bail!("sandbox sshd could not bind port {port}: Address already in use");
            }
            if log.contains(&listening) {
                break;
            }
            if let Some(status) = sb.child.as_mut().expect("child").try_wait()? {
                anyhow::bail!(
                    "scripts/sandbox/start.sh exited ({status}) before sshd listened:\n{log}"
                );
            }
            if Instant::now() > until {
                anyhow::bail!("sandbox sshd did not listen within {START_TIMEOUT:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let pid = std::fs::read_to_string(dir.join("init.pid"))
            .context("reading the sandbox's init.pid")?;
        sb.init_pid = pid.trim().parse().context("parsing init.pid")?;
        // The banner proves the port answers; it is ours since our sshd logged the bind.
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut banner = [0u8; 8];
        stream.read_exact(&mut banner)?;
        anyhow::ensure!(&banner == b"SSH-2.0-", "unexpected banner {banner:?}");

        for entry in std::fs::read_dir(sb.path("/etc/ssh"))? {
            let path = entry?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if name.starts_with("ssh_host_") && name.ends_with(".pub") {
                let text = std::fs::read_to_string(&path)?;
                let key = PublicKey::from_openssh(text.trim())
                    .with_context(|| format!("parsing {}", path.display()))?;
                let fp = key.fingerprint(HashAlg::Sha256).to_string();
                if name.contains("ed25519") {
                    sb.host_key_fingerprint = fp.clone();
                }
                sb.host_key_fingerprints.push(fp);
            }
        }
        anyhow::ensure!(
            !sb.host_key_fingerprint.is_empty(),
            "the sandbox has no ed25519 host key"
        );
        Ok(sb)
    }

    /// The sandbox's file system as the host sees it (valid while it runs).
    pub fn root_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.init_pid))
    }

    /// A path inside the sandbox, as the host sees it.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.root_path().join(inside.trim_start_matches('/'))
    }

    pub fn read(&self, inside: &str) -> anyhow::Result<String> {
        std::fs::read_to_string(self.path(inside))
            .with_context(|| format!("reading {inside} in the sandbox"))
    }

    pub fn exists(&self, inside: &str) -> bool {
        std::fs::symlink_metadata(self.path(inside)).is_ok()
    }

    /// The overlay's upper layer: every change made inside the sandbox.
    pub fn upper_dir(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// The host pid of the sandbox's init (pid 1 inside).
    pub fn init_pid(&self) -> u32 {
        self.init_pid
    }

    /// Host pids and command names of the processes inside the sandbox.
    pub fn processes(&self) -> Vec<(u32, u32, String)> {
        let Ok(ns) = std::fs::read_link(format!("/proc/{}/ns/pid", self.init_pid)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return out;
        };
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .ok()
                .as_ref()
                != Some(&ns)
            {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = stat[open + 1..close].to_string();
            let ppid = stat[close + 1..]
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            out.push((pid, ppid, comm));
        }
        out
    }

    /// Kills every SSH session's sshd processes (not the listener), as a network failure
    /// or a crashed builder would end them. Returns how many were killed.
    pub fn kill_ssh_sessions(&self) -> usize {
        let mut n = 0;
        for (pid, ppid, comm) in self.processes() {
            if comm == "sshd" && ppid != self.init_pid {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
                n += 1;
            }
        }
        n
    }

    /// Freezes (SIGSTOP) every SSH session's sshd processes: the builder stops answering
    /// without closing its connections, as a vanished host would. Returns how many.
    pub fn freeze_ssh_sessions(&self) -> usize {
        let mut n = 0;
        for (pid, ppid, comm) in self.processes() {
            if comm == "sshd" && ppid != self.init_pid {
                let _ = Command::new("kill")
                    .arg("-STOP")
                    .arg(pid.to_string())
                    .status();
                n += 1;
            }
        }
        n
    }

    /// An SSH target for this sandbox: trust on first use.
    pub fn ssh_target(&self, key: Arc<PrivateKey>) -> SshTarget {
        SshTarget {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            key,
            host_key_pins: Vec::new(),
            known_host_key: None,
        }
    }

    /// Stops the sandbox now (also done on drop).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
                _ => break,
            }
        }
        // start.sh did not stop in time: kill the sandbox's pid 1 (which ends everything in
        // its namespace; its pid cannot have been reused while start.sh's unshare, its
        // parent, lives), then start.sh itself.
        if self.init_pid != 0 {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(self.init_pid.to_string())
                .status();
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}
