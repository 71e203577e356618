//! The real `bakery` binary, started as a user would start it, and a minimal HTTP/1.1
//! client to talk to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn bakery_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bakery"))
}

/// A free port on 127.0.0.1 (released for the caller to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `bakery serve`, killed on drop.
pub struct BakeryServer {
    pub addr: SocketAddr,
    pub child: Child,
    pub log: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// How many processes this server has been (1 until it is restarted).
    generation: u32,
}

impl BakeryServer {
    /// Starts `bakery serve` in `dir` with `env`, and waits until `/healthz` answers.
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> BakeryServer {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_generation(dir, env, 1).await
    }

    /// The same server started again (same folder, store and settings; a new port and
    /// log file), as after a deploy. Call it once this one has stopped.
    pub async fn restarted(&self) -> BakeryServer {
        Self::start_generation(&self.dir, self.env.clone(), self.generation + 1).await
    }

    /// Another replica of this server: the same settings with `overrides`, in `dir`, on a
    /// host of its own (a UTS namespace named `hostname`, as a pod or machine would be).
    pub async fn replica(
        &self,
        dir: &Path,
        hostname: &str,
        overrides: &[(&str, &str)],
    ) -> BakeryServer {
        let mut env: Vec<(String, String)> = self
            .env
            .iter()
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .cloned()
            .collect();
        env.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        env.push(("BAKERY_TEST_HOSTNAME".into(), hostname.into()));
        Self::start_generation(dir, env, 1).await
    }

    async fn start_generation(
        dir: &Path,
        env: Vec<(String, String)>,
        generation: u32,
    ) -> BakeryServer {
        // A test that must know the address before the start (a callback URL) sets it.
        let addr: SocketAddr = env
            .iter()
            .find(|(k, _)| k == "BAKERY_LISTEN")
            .map(|(_, v)| v.parse().expect("BAKERY_LISTEN is an address"))
            .unwrap_or_else(|| format!("127.0.0.1:{}", free_port()).parse().unwrap());
        let (log, out) = match generation {
            1 => (dir.join("serve.log"), dir.join("serve.out")),
            n => (
                dir.join(format!("serve-{n}.log")),
                dir.join(format!("serve-{n}.out")),
            ),
        };
        let hostname = env
            .iter()
            .find(|(k, _)| k == "BAKERY_TEST_HOSTNAME")
            .map(|(_, v)| v.clone());
        let mut cmd = match &hostname {
            // `unshare` and `sh` exec into bakery: the child's PID is bakery's.
            Some(host) => {
                let mut c = Command::new("unshare");
                c.args([
                    "--uts",
                    "sh",
                    "-c",
                    "hostname \"$0\" && exec \"$1\" serve",
                    host,
                ])
                .arg(bakery_bin());
                c
            }
            None => {
                let mut c = Command::new(bakery_bin());
                c.arg("serve");
                c
            }
        };
        cmd.current_dir(dir)
            .env("BAKERY_LISTEN", addr.to_string())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env.iter().filter(|(k, _)| k != "BAKERY_TEST_HOSTNAME") {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start bakery serve");
        let server = BakeryServer {
            addr,
            child,
            log,
            dir: dir.to_path_buf(),
            env,
            generation,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http(addr, "GET", "/healthz", &[], b"").await {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "bakery serve did not answer /healthz within 60 s; log:\n{}",
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process's peak resident set size (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        status_kib(self.child.id(), "VmHWM:") * 1024
    }

    /// The process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident set size now (`VmRSS`), in bytes.
    pub fn rss(&self) -> u64 {
        status_kib(self.child.id(), "VmRSS:") * 1024
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: the process dies at once, in the middle of whatever it does.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "bakery serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for BakeryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
