//! Test helpers: repositories built with the real git CLI at fixed dates, so commit ids
//! and snapshots are stable.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct GitRepo {
    dir: tempfile::TempDir,
    clock: Cell<u32>,
}

impl GitRepo {
    /// An empty repository on branch `main`.
    pub fn init() -> Self {
        let g = GitRepo {
            dir: tempfile::tempdir().expect("temp dir"),
            clock: Cell::new(0),
        };
        g.git(&["init", "-q", "-b", "main"]);
        g
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs git in the repository and returns its trimmed stdout. Panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        run_git(self.dir.path(), args, self.clock.get())
    }

    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Stages everything and commits with `message`, one minute after the last commit.
    pub fn commit(&self, message: &str) -> String {
        self.clock.set(self.clock.get() + 1);
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

/// Runs git with a fixed identity and dates, ignoring the machine's git configuration.
pub fn run_git(dir: &Path, args: &[&str], minute: u32) -> String {
    let date = format!("2025-01-01T{:02}:{:02}:00Z", minute / 60, minute % 60);
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Ada Baker")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Baker")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
