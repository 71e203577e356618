//! Files a recipe names must lie inside the checked-out repository: they are resolved
//! with [`resolve_inside`], which never looks outside the checkout, symlinks included.
//! May touch: `lstat`/`readlink` inside the checkout.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::recipe::contain::resolve_inside;

/// Resolves `rel` under `repo_root`, refusing absolute paths, `..` and symlinks that lead
/// outside the repository.
pub fn resolve_in_repo(repo_root: &Path, rel: &Path) -> anyhow::Result<PathBuf> {
    let root = repo_root
        .canonicalize()
        .with_context(|| format!("repository root {} not found", repo_root.display()))?;
    resolve_inside(&root, rel).map_err(|why| anyhow::anyhow!("{why}; {}", why.hint()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_inside_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("files")).unwrap();
        std::fs::write(repo.join("files/a.conf"), "a").unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), repo.join("files/leak")).unwrap();

        let ok = resolve_in_repo(&repo, Path::new("files/a.conf")).unwrap();
        assert!(ok.ends_with("files/a.conf"));
        for bad in ["/etc/passwd", "../secret", "files/leak", "files/missing"] {
            assert!(
                resolve_in_repo(&repo, Path::new(bad)).is_err(),
                "{bad} was accepted"
            );
        }
    }
}
