//! Uploads over exec + stream: the bytes go to the builder's standard input, in large
//! writes, and the builder hashes them while they arrive instead of reading the file again:
//! one Python process writes and hashes a large file, else `tee` writes the file and feeds
//! the same bytes to the builder's hasher (`openssl dgst`, Python's hashlib, `sha256sum`). The builder's digest must equal the one computed here while sending, and
//! `tee` must have written every byte (its exit status is checked). This beats SFTP-based
//! `scp` on the same sshd (see `bench/ssh-upload`): no per-request round trips, and AES-GCM.
//! Touches only the builder, through the [`Communicator`].
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
    let remote = upload_script(remote_path, mode, size);
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
                        let mut left = size;
                        loop {
                            // A small file gets a buffer of its size, not a whole chunk:
                            // many builds upload at once in one server.
                            let want =
                                usize::try_from(left).map_or(CHUNK, |l| l.clamp(4096, CHUNK));
                            let mut buf = BytesMut::zeroed(want);
                            let n = read_full(&mut file, &mut buf)
                                .await
                                .with_context(|| format!("cannot read {}", path.display()))?;
                            if n == 0 {
                                break;
                            }
                            buf.truncate(n);
                            left = left.saturating_sub(n as u64);
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
    check_digest(remote_path, &sent, &out.stdout)?;
    Ok(sent)
}

/// An upload whose bytes on the builder are not the bytes sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("integrity check failed for {path}: sent sha256 {sent}, the builder has {builder:?}")]
pub struct DigestMismatch {
    pub path: String,
    pub sent: String,
    pub builder: String,
}

/// Compares the digest computed while sending with the first word of the builder's hasher
/// output (`openssl dgst -r` prints `HEX *stdin`, `sha256sum` prints `HEX  -`).
fn check_digest(path: &str, sent: &str, stdout: &str) -> Result<(), DigestMismatch> {
    let builder = stdout.split_whitespace().next().unwrap_or_default();
    if builder == sent {
        Ok(())
    } else {
        Err(DigestMismatch {
            path: path.to_string(),
            sent: sent.to_string(),
            builder: builder.to_string(),
        })
    }
}

/// sha256 of standard input with Python's hashlib, printed as `sha256sum` prints it.
const PY_SHA256: &str = "import hashlib,sys;h=hashlib.sha256();\
    [h.update(b) for b in iter(lambda:sys.stdin.buffer.read(1<<20),b\"\")];\
    print(h.hexdigest()+\"  -\")";

/// The receiver of a large file where the builder has Python: one process reads standard
/// input, writes the file (`argv[1]`) and hashes the same bytes, printing the digest as
/// `sha256sum` does. It first widens its input pipe to 1 MiB, so the sender runs ahead
/// while it writes. Any read or write error exits non-zero naming it.
const PY_RECEIVE: &str = "import hashlib,os,sys
h=hashlib.sha256()
try:
 fd=os.open(sys.argv[1],os.O_WRONLY|os.O_CREAT|os.O_TRUNC,0o600)
 try:
  import fcntl;fcntl.fcntl(0,getattr(fcntl,\"F_SETPIPE_SZ\",1031),1<<20)
 except Exception:
  pass
 while 1:
  b=os.read(0,1<<20)
  if not b:break
  h.update(b)
  m=memoryview(b)
  while m:m=m[os.write(fd,m):]
 os.close(fd)
except OSError as e:
 sys.exit(\"could not write the file whole (%s)\"%e)
print(h.hexdigest()+\"  -\")";

/// From this size on, a builder with Python receives the file in one Python process
/// ([`PY_RECEIVE`]) instead of `tee` and a hasher: its start costs about 8 ms more than
/// `openssl`'s, and it saves about 2 ms per MB (`bench/ssh-upload`).
const ONE_PROCESS_FROM: u64 = 4 * 1024 * 1024;

/// The POSIX shell script that receives one file of `size` bytes on standard input and
/// prints its sha256 as its only output.
///
/// A large file, on a builder with Python, goes to [`PY_RECEIVE`]: the hasher is the
/// pipeline's slowest stage, and one process that writes and hashes beats three (`tee`,
/// the hasher, and the pipe between them). Otherwise `tee` writes the file and passes the
/// same bytes to the hasher. `tee`'s own exit status travels back through file descriptor
/// 3 (a plain pipeline's status is the hasher's), so a file that could not be written
/// whole fails the upload even though the hasher saw every byte.
fn upload_script(remote_path: &str, mode: u32, size: u64) -> String {
    let q = sh_quote(remote_path);
    // OpenSSL's sha256 runs on the CPU's SHA instructions (0.12 s for 100 MB here, against
    // 0.44 s for coreutils' `sha256sum`). Without the openssl command, Python's hashlib
    // (present wherever cloud-init or Ansible runs) uses the same library; `sha256sum` is
    // the last resort.
    let pipeline = format!(
        "if command -v openssl >/dev/null 2>&1; then bakery_hash() {{ openssl dgst -sha256 -r; }}; \
         elif command -v python3 >/dev/null 2>&1; then bakery_hash() {{ python3 -c '{PY_SHA256}'; }}; \
         else bakery_hash() {{ sha256sum; }}; fi; \
         exec 4>&1; \
         rc=$( {{ {{ s=0; tee {q} || s=$?; echo $s >&3; }} | bakery_hash >&4; }} 3>&1 ); \
         if [ \"$rc\" != 0 ]; then echo \"could not write the file whole (tee exit status $rc)\" >&2; exit 1; fi"
    );
    let receive = if size >= ONE_PROCESS_FROM {
        format!(
            "if command -v python3 >/dev/null 2>&1; then python3 -c '{PY_RECEIVE}' {q}; \
             else {pipeline}; fi"
        )
    } else {
        pipeline
    };
    format!(
        "set -e; umask 077; mkdir -p {parent}; {receive}; chmod {mode:04o} {q}",
        parent = sh_quote(remote_parent(remote_path)),
    )
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

    /// Runs [`upload_script`] with local `sh`, `data` on its standard input, and a `PATH`
    /// holding only the named tools (the builder's toolbox). Returns (success, stdout, stderr).
    fn run_script_locally(
        tools: &[&str],
        remote_path: &Path,
        data: &[u8],
    ) -> (bool, String, String) {
        use std::io::Write;
        let bin = tempfile::tempdir().unwrap();
        for tool in tools {
            let found = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{tool} is not installed here"));
            std::os::unix::fs::symlink(found, bin.path().join(tool)).unwrap();
        }
        let script = upload_script(remote_path.to_str().unwrap(), 0o640, data.len() as u64);
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .env_clear()
            .env("PATH", bin.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn sha256_hex(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    const BASE_TOOLS: &[&str] = &["mkdir", "tee", "chmod"];

    #[test]
    fn a_builder_with_only_sha256sum_hashes_while_receiving() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/blob.bin");
        let mut data = vec![0u8; 3 * CHUNK + 17];
        rand::fill(&mut data[..]);
        let tools = [BASE_TOOLS, &["sha256sum"]].concat();
        let (ok, stdout, stderr) = run_script_locally(&tools, &dest, &data);
        assert!(ok, "{stderr}");
        assert!(
            stdout.ends_with("-\n"),
            "sha256sum read its standard input: {stdout:?}"
        );
        check_digest("blob", &sha256_hex(&data), &stdout).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777,
            0o640
        );
    }

    #[test]
    fn a_builder_with_python3_but_no_openssl_hashes_with_hashlib() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("blob.bin");
        let mut data = vec![0u8; 2 * CHUNK + 5];
        rand::fill(&mut data[..]);
        // No sha256sum either: the digest can only come from Python.
        let tools = [BASE_TOOLS, &["python3"]].concat();
        let (ok, stdout, stderr) = run_script_locally(&tools, &dest, &data);
        assert!(ok, "{stderr}");
        assert!(stdout.ends_with("  -\n"), "hashlib's output: {stdout:?}");
        check_digest("blob", &sha256_hex(&data), &stdout).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
    }

    #[test]
    fn a_large_file_on_a_builder_with_python3_is_written_and_hashed_by_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/large.bin");
        let mut data = vec![0u8; ONE_PROCESS_FROM as usize + 3];
        rand::fill(&mut data[..]);
        // Neither tee nor a hasher: only the one Python receiver can write and hash it.
        let tools = ["mkdir", "chmod", "python3"];
        let (ok, stdout, stderr) = run_script_locally(&tools, &dest, &data);
        assert!(ok, "{stderr}");
        assert!(
            stdout.ends_with("  -\n"),
            "the receiver's output: {stdout:?}"
        );
        check_digest("large", &sha256_hex(&data), &stdout).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777,
            0o640
        );
    }

    #[test]
    fn a_large_file_that_cannot_be_written_fails_in_the_one_process_receiver() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("taken");
        std::fs::create_dir(&dest).unwrap();
        let data = vec![7u8; ONE_PROCESS_FROM as usize];
        let tools = ["mkdir", "chmod", "python3"];
        let (ok, stdout, stderr) = run_script_locally(&tools, &dest, &data);
        assert!(!ok, "stdout {stdout:?}");
        assert!(
            stderr.contains("could not write the file whole"),
            "{stderr}"
        );
        assert!(
            stdout.is_empty(),
            "no digest for a file not written: {stdout:?}"
        );
    }

    #[test]
    fn a_large_file_without_python3_goes_through_tee_and_the_hasher() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("large.bin");
        let data = vec![9u8; ONE_PROCESS_FROM as usize + 1];
        let tools = [BASE_TOOLS, &["sha256sum"]].concat();
        let (ok, stdout, stderr) = run_script_locally(&tools, &dest, &data);
        assert!(ok, "{stderr}");
        check_digest("large", &sha256_hex(&data), &stdout).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
    }

    #[test]
    fn a_builder_with_openssl_uses_it() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("blob.bin");
        let data = b"stamp\n".repeat(1000);
        let tools = [BASE_TOOLS, &["sha256sum", "openssl"]].concat();
        let (ok, stdout, stderr) = run_script_locally(&tools, &dest, &data);
        assert!(ok, "{stderr}");
        assert!(stdout.contains("*stdin"), "openssl's -r output: {stdout:?}");
        check_digest("blob", &sha256_hex(&data), &stdout).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
    }

    #[test]
    fn a_file_that_cannot_be_written_fails_although_the_hasher_saw_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        // The destination is a directory: tee cannot open it, but still copies its input on.
        let dest = dir.path().join("taken");
        std::fs::create_dir(&dest).unwrap();
        let tools = [BASE_TOOLS, &["sha256sum"]].concat();
        let (ok, stdout, stderr) = run_script_locally(&tools, &dest, b"payload");
        assert!(!ok, "stdout {stdout:?}");
        assert!(
            stderr.contains("could not write the file whole"),
            "{stderr}"
        );
    }

    #[test]
    fn a_digest_that_differs_is_a_typed_mismatch_naming_both() {
        let sent = sha256_hex(b"what was sent");
        let builder = sha256_hex(b"what arrived");
        let err = check_digest("/opt/app.bin", &sent, &format!("{builder} *stdin\n")).unwrap_err();
        assert_eq!(
            err,
            DigestMismatch {
                path: "/opt/app.bin".into(),
                sent: sent.clone(),
                builder: builder.clone(),
            }
        );
        let shown = err.to_string();
        assert!(shown.contains(&sent) && shown.contains(&builder), "{shown}");
        // No output at all (a hasher that printed nothing) is a mismatch too.
        assert!(check_digest("/opt/app.bin", &sent, "").is_err());
    }

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
