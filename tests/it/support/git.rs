//! Repositories built with the real git CLI, at fixed dates and identity.

use std::path::Path;
use std::process::Command;

/// Runs git in `dir` with a fixed identity and date, ignoring the machine's git config.
/// Panics with git's stderr on failure; returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let date = "2025-01-01T00:00:00Z";
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Ada Baker")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Baker")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date)
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

/// A bare repository with one commit on `main` holding `files`, plus the work tree that
/// pushed it. Returns (work dir, bare dir, commit SHA).
pub fn bare_with(files: &[(&str, &str)]) -> (tempfile::TempDir, tempfile::TempDir, String) {
    let work = tempfile::tempdir().unwrap();
    let bare = tempfile::tempdir().unwrap();
    git(work.path(), &["init", "-q", "-b", "main"]);
    for (path, content) in files {
        let p = work.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    git(work.path(), &["add", "-A"]);
    git(work.path(), &["commit", "-q", "-m", "initial recipes"]);
    git(bare.path(), &["init", "-q", "--bare", "-b", "main"]);
    git(
        work.path(),
        &["remote", "add", "origin", bare.path().to_str().unwrap()],
    );
    git(work.path(), &["push", "-q", "origin", "main"]);
    let sha = git(work.path(), &["rev-parse", "HEAD"]);
    (work, bare, sha)
}
