//! Uploads over exec + stream: the bytes go to `cat` on the builder's standard input, in
//! large writes, and the sha256 of the written file on the builder (`openssl dgst`, else
//! `sha256sum`) must equal the digest computed here while sending. This beats SFTP-based
//! `scp` on the same sshd (see `bench/ssh-upload`): no per-request round trips, and AES-GCM.
//!
//! Everything lands in a staging directory owned by the SSH user; placing files at their
//! destination (with sudo for root-owned places) is the file step's job.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::communicator::{tail_suffix, Communicator, RemoteCommand};
use super::quote::sh_quote;
use crate::build::BuildLog;

/// Size of each read from the local file and write into the channel.
const CHUNK: usize = 1024 * 1024;
/// Files of a directory tree sent at once, each on its own channel.
const PARALLEL_FILES: usize = 4;

/// A generous limit for moving `bytes` over SSH: a minute, plus a second per 256 KiB.
pub fn upload_timeout(bytes: u64) -> Duration {
    Duration::from_secs(60 + bytes / (256 * 1024))
}

/// What to send.
#[derive(Debug, Clone)]
pub enum Source {
    Bytes(Bytes),
    File(PathBuf),
}

/// Uploads one file to `remote_path` (its parent is created) with `mode`, and checks the
/// builder's sha256 of the written file against the one computed while sending.
/// Returns the hex digest.
pub async fn upload(
    comm: &Communicator,
    step: &str,
    source: Source,
    remote_path: &str,
    mode: u32,
    log: &BuildLog,
    cancel: &CancellationToken,
) -> anyhow::Result<String> {
    let (size, label) = match &source {
        Source::Bytes(b) => (b.len() as u64, format!("{} bytes", b.len())),
        Source::File(p) => (
            tokio::fs::metadata(p)
                .await
                .with_context(|| format!("cannot read {}", p.display()))?
                .len(),
            p.display().to_string(),
        ),
    };
    let parent = remote_parent(remote_path);
    let q = sh_quote(remote_path);
    // OpenSSL's sha256 runs on the CPU's SHA instructions, several times faster than
    // coreutils' on a 100 MB file; `sha256sum` is the fallback where openssl is missing.
    let remote = format!(
        "set -e; umask 077; mkdir -p {parent}; cat > {q}; chmod {mode:04o} {q}; \
         if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r {q}; else sha256sum {q}; fi",
        parent = sh_quote(parent),
    );
    let cmd = RemoteCommand::internal(
        format!("upload {label} to {remote_path}"),
        remote,
        upload_timeout(size),
    );
    let digest: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let slot = digest.clone();
    let out = comm
        .exec_with_input(step, &cmd, log, cancel, move |w| {
            Box::pin(async move {
                let mut hasher = Sha256::new();
                match source {
                    Source::Bytes(b) => {
                        hasher.update(&b);
                        w.data_bytes(b).await?;
                    }
                    Source::File(path) => {
                        let mut file = tokio::fs::File::open(&path)
                            .await
                            .with_context(|| format!("cannot open {}", path.display()))?;
                        loop {
                            let mut buf = BytesMut::zeroed(CHUNK);
                            let n = read_full(&mut file, &mut buf)
                                .await
                                .with_context(|| format!("cannot read {}", path.display()))?;
                            if n == 0 {
                                break;
                            }
                            buf.truncate(n);
                            let chunk = buf.freeze();
                            hasher.update(&chunk);
                            w.data_bytes(chunk).await?;
                        }
                    }
                }
                *slot.lock().expect("poisoned") = Some(hex::encode(hasher.finalize()));
                w.eof().await?;
                Ok(())
            })
        })
        .await
        .with_context(|| format!("uploading {label} to {remote_path}"))?;
    if !out.success() {
        anyhow::bail!(
            "uploading {label} to {remote_path} failed on the builder (exit status {}){}",
            out.exit_status,
            tail_suffix(&out.stderr_tail)
        );
    }
    let sent =
        digest.lock().expect("poisoned").clone().with_context(|| {
            format!("uploading {label} to {remote_path}: input was not sent whole")
        })?;
    let remote_digest = out.stdout.split_whitespace().next().unwrap_or_default();
    if remote_digest != sent {
        anyhow::bail!(
            "integrity check failed for {remote_path}: sent sha256 {sent}, the builder has {remote_digest:?}"
        );
    }
    Ok(sent)
}

async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

fn remote_parent(path: &str) -> &str {
    match path.trim_end_matches('/').rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => ".",
    }
}

/// One entry of a local directory tree, relative to its root.
#[derive(Debug, Clone, PartialEq)]
pub enum TreeEntry {
    Dir {
        rel: String,
        mode: u32,
    },
    File {
        rel: String,
        mode: u32,
        path: PathBuf,
    },
    Symlink {
        rel: String,
        target: String,
    },
}

/// Lists a directory tree (not following symlinks), parents before children.
pub fn walk_tree(root: &Path) -> anyhow::Result<Vec<TreeEntry>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot list {}", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let rel_path = rel.join(entry.file_name());
            let rel_str = rel_path
                .to_str()
                .with_context(|| {
                    format!("{} is not valid UTF-8; rename it", entry.path().display())
                })?
                .to_string();
            let meta = std::fs::symlink_metadata(entry.path())
                .with_context(|| format!("cannot stat {}", entry.path().display()))?;
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(entry.path())?;
                let target = target
                    .to_str()
                    .with_context(|| {
                        format!("symlink {} is not valid UTF-8", entry.path().display())
                    })?
                    .to_string();
                out.push(TreeEntry::Symlink {
                    rel: rel_str,
                    target,
                });
            } else if meta.is_dir() {
                out.push(TreeEntry::Dir { rel: rel_str, mode });
                stack.push(rel_path);
            } else if meta.is_file() {
                out.push(TreeEntry::File {
                    rel: rel_str,
                    mode,
                    path: entry.path(),
                });
            } else {
                anyhow::bail!(
                    "{} is neither a file, a directory nor a symlink; remove it from the upload",
                    entry.path().display()
                );
            }
        }
    }
    Ok(out)
}

/// Runs a shell script fed through standard input (no command-line length limit), as the
/// SSH user, or as root when `sudo` is set. Returns its stdout.
#[allow(clippy::too_many_arguments)]
pub async fn run_script(
    comm: &Communicator,
    step: &str,
    display: &str,
    sudo: bool,
    script: String,
    log: &BuildLog,
    cancel: &CancellationToken,
) -> anyhow::Result<String> {
    let shell = if sudo {
        "sudo -n /bin/sh -s"
    } else {
        "/bin/sh -s"
    };
    let cmd = RemoteCommand::internal(display, shell, Duration::from_secs(300));
    let out = comm
        .exec_with_input(step, &cmd, log, cancel, move |w| {
            Box::pin(async move {
                w.data_bytes(Bytes::from(script)).await?;
                w.eof().await?;
                Ok(())
            })
        })
        .await
        .with_context(|| display.to_string())?;
    if !out.success() {
        anyhow::bail!(
            "{display} failed on the builder (exit status {}){}",
            out.exit_status,
            tail_suffix(&out.stderr_tail)
        );
    }
    Ok(out.stdout)
}

/// Uploads the tree under `local_root` to `remote_root` (replaced if present), preserving
/// modes and symlinks, each file checked by sha256. Returns the number of files.
pub async fn upload_tree(
    comm: &Communicator,
    step: &str,
    local_root: &Path,
    remote_root: &str,
    log: &BuildLog,
    cancel: &CancellationToken,
) -> anyhow::Result<usize> {
    let entries = walk_tree(local_root)?;
    upload_entries(comm, step, local_root, &entries, remote_root, log, cancel).await
}

/// Uploads `entries` (from [`walk_tree`] of `local_root`, possibly filtered) to
/// `remote_root` (replaced if present), as [`upload_tree`] does. Returns the number of files.
pub async fn upload_entries(
    comm: &Communicator,
    step: &str,
    local_root: &Path,
    entries: &[TreeEntry],
    remote_root: &str,
    log: &BuildLog,
    cancel: &CancellationToken,
) -> anyhow::Result<usize> {
    use std::os::unix::fs::PermissionsExt;
    let root_mode = std::fs::metadata(local_root)
        .with_context(|| format!("cannot stat {}", local_root.display()))?
        .permissions()
        .mode()
        & 0o7777;
    let r = sh_quote(remote_root);

    // Directories first, writable by us until the files are in.
    let mut setup = format!("set -e\numask 077\nrm -rf {r}\nmkdir -p {r}\ncd {r}\n");
    for e in entries {
        match e {
            TreeEntry::Dir { rel, .. } => {
                setup.push_str(&format!("mkdir -m 0700 {}\n", sh_quote(rel)))
            }
            TreeEntry::Symlink { rel, target } => {
                setup.push_str(&format!("ln -s {} {}\n", sh_quote(target), sh_quote(rel)))
            }
            TreeEntry::File { .. } => {}
        }
    }
    run_script(
        comm,
        step,
        &format!("preparing {remote_root}"),
        false,
        setup,
        log,
        cancel,
    )
    .await?;

    let files: Vec<_> = entries
        .iter()
        .filter_map(|e| match e {
            TreeEntry::File { rel, mode, path } => Some((rel.clone(), *mode, path.clone())),
            _ => None,
        })
        .collect();
    let count = files.len();
    futures::stream::iter(files)
        .map(|(rel, mode, path)| async move {
            let remote = format!("{}/{}", remote_root.trim_end_matches('/'), rel);
            upload(comm, step, Source::File(path), &remote, mode, log, cancel).await
        })
        .buffer_unordered(PARALLEL_FILES)
        .try_collect::<Vec<_>>()
        .await?;

    // Final directory modes, deepest first so a read-only parent cannot block a child.
    let mut finish = format!("set -e\ncd {r}\n");
    for e in entries.iter().rev() {
        if let TreeEntry::Dir { rel, mode } = e {
            finish.push_str(&format!("chmod {mode:04o} {}\n", sh_quote(rel)));
        }
    }
    finish.push_str(&format!("chmod {root_mode:04o} {r}\n"));
    run_script(
        comm,
        step,
        &format!("setting modes under {remote_root}"),
        false,
        finish,
        log,
        cancel,
    )
    .await?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parent_of_remote_paths() {
        assert_eq!(remote_parent("/etc/release"), "/etc");
        assert_eq!(remote_parent("/release"), "/");
        assert_eq!(remote_parent("release"), ".");
        assert_eq!(remote_parent("/a/b/c/"), "/a/b");
    }

    #[test]
    fn walks_parents_before_children_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("bin/sub")).unwrap();
        std::fs::write(root.join("bin/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            root.join("bin/run.sh"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
        let entries = walk_tree(root).unwrap();
        let pos = |name: &str| {
            entries
                .iter()
                .position(|e| match e {
                    TreeEntry::Dir { rel, .. }
                    | TreeEntry::File { rel, .. }
                    | TreeEntry::Symlink { rel, .. } => rel == name,
                })
                .unwrap_or_else(|| panic!("{name} missing from {entries:?}"))
        };
        assert!(pos("bin") < pos("bin/sub"));
        assert!(pos("bin") < pos("bin/run.sh"));
        assert!(entries.contains(&TreeEntry::Symlink {
            rel: "link".into(),
            target: "a.txt".into()
        }));
        assert!(entries.iter().any(|e| matches!(e,
            TreeEntry::File { rel, mode, .. } if rel == "bin/run.sh" && *mode == 0o750)));
    }
}
