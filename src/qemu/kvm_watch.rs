//! Whether a guest booting under KVM makes progress. `/dev/kvm` can open, answer the API
//! and run a paused QEMU, and still leave a Linux guest stopped early in its boot (seen
//! under nested virtualisation: the console stops after the real-mode setup). Only the
//! boot itself shows it, so the build watches it: progress is new output on the guest's
//! serial console or an SSH banner on the forwarded port; a boot with neither for
//! [`STALL`] has stalled, and the build restarts it under TCG (see `build.rs`).
//!
//! Touches: the forwarded port on 127.0.0.1 (connects, reads the banner, closes) and the
//! console file (reads its size).

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// How long a KVM boot may show no progress at all before it counts as stalled. A working
/// KVM guest writes to its console or answers SSH well within it; a guest that writes
/// nothing to its console still reaches SSH within it under KVM.
pub const STALL: Duration = Duration::from_secs(30);

/// What the watch saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The guest's sshd sent its banner.
    SshUp,
    /// Neither console output nor an SSH banner for the stall time.
    Stalled { console_bytes: u64 },
}

/// Watches until the guest's sshd answers or the boot stalls for `stall`.
pub async fn watch(port: u16, console: &Path, stall: Duration) -> Progress {
    let mut last_size = console_size(console);
    let mut last_progress = Instant::now();
    loop {
        if ssh_banner(port).await {
            return Progress::SshUp;
        }
        let size = console_size(console);
        if size != last_size {
            last_size = size;
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= stall {
            return Progress::Stalled {
                console_bytes: size,
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn console_size(console: &Path) -> u64 {
    std::fs::metadata(console).map(|m| m.len()).unwrap_or(0)
}

/// True when something on `127.0.0.1:port` sends an SSH identification string. QEMU's
/// port forward accepts the connection before the guest listens, so a connection alone
/// proves nothing.
async fn ssh_banner(port: u16) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await?;
        std::io::Result::Ok(&buf == b"SSH-")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_boot_whose_console_stops_and_whose_port_never_answers_has_stalled() {
        let dir = tempfile::tempdir().unwrap();
        let console = dir.path().join("console.log");
        std::fs::write(&console, "Probing EDD (edd=off to disable)... ok\n").unwrap();
        // A port forward that accepts and never speaks, as QEMU's does before the guest.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let seen = watch(port, &console, Duration::from_secs(2)).await;
        assert_eq!(seen, Progress::Stalled { console_bytes: 39 });
    }

    #[tokio::test]
    async fn a_growing_console_is_progress_and_a_banner_ends_the_watch() {
        let dir = tempfile::tempdir().unwrap();
        let console = dir.path().join("console.log");
        std::fs::write(&console, "").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let c = console.clone();
        tokio::spawn(async move {
            // The console grows for longer than the stall time, then sshd answers.
            for i in 0..6 {
                tokio::time::sleep(Duration::from_millis(700)).await;
                std::fs::write(&c, "x".repeat(i + 1)).unwrap();
            }
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
            }
        });
        // Until then connections queue unanswered, as at QEMU's forward before the guest.
        let seen = watch(port, &console, Duration::from_secs(2)).await;
        assert_eq!(seen, Progress::SshUp);
    }
}
