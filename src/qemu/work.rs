//! A qemu build's work folder, `<work root>/<build id>/`, and its journal: everything the
//! build creates besides its artifacts lives there (overlay, seed disk, UEFI variables,
//! console, QEMU's pidfile), and `journal.jsonl` records, before the fact, the bakery
//! process that owns the folder, every QEMU process and file it makes, and the artifact
//! folder its export writes into.
//!
//! The folder is removed when the build ends, whatever the outcome. After a crash (a
//! `kill -9` of bakery), [`sweep`] on the next build removes every folder whose owner is
//! gone, first killing a QEMU its journal names if that process still runs with the folder
//! on its command line, and clearing the unfinished artifacts of the artifact folder it
//! names. Touches only folders under the work root, processes its journals name, and the
//! `.partial` files and checksum-less artifacts of the artifact folders they name.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const JOURNAL: &str = "journal.jsonl";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// The bakery process running the build.
    Owner { pid: u32 },
    /// A file about to be created.
    File { path: PathBuf },
    /// A QEMU process, right after its start.
    Qemu { pid: u32 },
    /// The artifact folder an export is about to write into: what it leaves unfinished
    /// there (`.partial` files, an artifact without its `.sha256`) is removed by [`sweep`].
    Artifacts { dir: PathBuf },
}

/// The build's work folder, removed when dropped.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates `<root>/<build_id>/` and journals this process as its owner.
    pub fn create(root: &Path, build_id: &str) -> std::io::Result<WorkDir> {
        let path = root.join(build_id);
        std::fs::create_dir_all(&path)?;
        let w = WorkDir { path };
        w.record(&Entry::Owner {
            pid: std::process::id(),
        })?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry and syncs it, before the thing it names exists.
    pub fn record(&self, e: &Entry) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path.join(JOURNAL))?;
        let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_data()
    }

    /// A path in the folder, journalled as a file to be created.
    pub fn file(&self, name: &str) -> std::io::Result<PathBuf> {
        let path = self.path.join(name);
        self.record(&Entry::File { path: path.clone() })?;
        Ok(path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn read_journal(dir: &Path) -> Vec<Entry> {
    std::fs::read_to_string(dir.join(JOURNAL))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `pid` runs with `needle` on its command line (a QEMU of that folder).
fn runs_with(pid: u32, needle: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = needle.as_os_str().as_encoded_bytes();
    cmdline.windows(needle.len()).any(|w| w == needle)
}

/// What [`sweep`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub folders: Vec<PathBuf>,
    pub killed: Vec<u32>,
    /// Unfinished artifacts the dead builds' exports left.
    pub partial_artifacts: Vec<PathBuf>,
}

/// Removes the work folders under `root` whose owning process is gone, killing the QEMU
/// each journal names if it still runs that folder. A folder without a journal is left
/// alone: it is not bakery's, or its owner is just starting.
pub fn sweep(root: &Path) -> std::io::Result<Swept> {
    let mut out = Swept::default();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries {
        let dir = e?.path();
        if !dir.is_dir() {
            continue;
        }
        let journal = read_journal(&dir);
        let Some(owner) = journal.iter().find_map(|e| match e {
            Entry::Owner { pid } => Some(*pid),
            _ => None,
        }) else {
            continue;
        };
        if owner == std::process::id() || alive(owner) {
            continue;
        }
        for e in &journal {
            if let Entry::Qemu { pid } = e {
                if runs_with(*pid, &dir) {
                    // SAFETY: a signal to a process whose command line names this folder.
                    unsafe {
                        libc::kill(*pid as libc::pid_t, libc::SIGKILL);
                    }
                    out.killed.push(*pid);
                }
            }
        }
        for e in &journal {
            if let Entry::Artifacts { dir } = e {
                out.partial_artifacts
                    .extend(super::export::remove_incomplete(dir)?);
            }
        }
        std::fs::remove_dir_all(&dir)?;
        out.folders.push(dir);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_owners_folder_goes_and_its_process_is_killed_a_live_one_stays() {
        let root = tempfile::tempdir().unwrap();
        // A live build: this process.
        let live = WorkDir::create(root.path(), "live").unwrap();
        // A crashed build: its owner is a process that has exited; its "QEMU" a sleep
        // whose command line names the folder.
        let dead_dir = root.path().join("dead");
        std::fs::create_dir_all(&dead_dir).unwrap();
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        let mut orphan = std::process::Command::new("sh")
            .arg("-c")
            .arg("sleep 60; true")
            .arg(&dead_dir)
            .spawn()
            .unwrap();
        // An unrelated process the journal names but that does not run the folder.
        let mut other = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let w = WorkDir {
            path: dead_dir.clone(),
        };
        w.record(&Entry::Owner { pid: gone_pid }).unwrap();
        w.record(&Entry::Qemu { pid: orphan.id() }).unwrap();
        w.record(&Entry::Qemu { pid: other.id() }).unwrap();
        // Its export was writing: a finished artifact, one renamed without its checksum
        // yet, and one still `.partial`.
        let arts = root.path().join("artifacts/deb/deb-1.0");
        std::fs::create_dir_all(&arts).unwrap();
        w.record(&Entry::Artifacts { dir: arts.clone() }).unwrap();
        for f in [
            "deb-1.0.qcow2",
            "deb-1.0.qcow2.sha256",
            "deb-1.0.raw",
            "deb-1.0.ova.partial",
            "notes.txt",
        ] {
            std::fs::write(arts.join(f), b"x").unwrap();
        }
        std::fs::write(w.file("overlay.qcow2").unwrap(), b"x").unwrap();
        std::mem::forget(w);
        // Not bakery's: no journal.
        std::fs::create_dir_all(root.path().join("foreign")).unwrap();

        let swept = sweep(root.path()).unwrap();
        assert_eq!(swept.folders, vec![dead_dir.clone()]);
        assert_eq!(swept.killed, vec![orphan.id()]);
        let mut partial = swept.partial_artifacts.clone();
        partial.sort();
        assert_eq!(
            partial,
            vec![arts.join("deb-1.0.ova.partial"), arts.join("deb-1.0.raw")]
        );
        let mut left: Vec<String> = std::fs::read_dir(&arts)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["deb-1.0.qcow2", "deb-1.0.qcow2.sha256", "notes.txt"]);
        assert!(!dead_dir.exists());
        assert!(live.path().exists());
        assert!(root.path().join("foreign").exists());
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(orphan.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(
            other.try_wait().unwrap().is_none(),
            "an unrelated process was killed"
        );
        other.kill().unwrap();
        other.wait().unwrap();
        let p = live.path().to_path_buf();
        drop(live);
        assert!(!p.exists());
    }
}
