//! Files a recipe names must lie inside the checked-out repository.

use std::path::{Component, Path, PathBuf};

use anyhow::Context;

/// Resolves `rel` under `repo_root`, refusing absolute paths, `..` and symlinks that lead
/// outside the repository.
pub fn resolve_in_repo(repo_root: &Path, rel: &Path) -> anyhow::Result<PathBuf> {
    if rel.is_absolute() {
        anyhow::bail!(
            "{} is an absolute path; give a path relative to the repository root",
            rel.display()
        );
    }
    if rel.components().any(|c| matches!(c, Component::ParentDir)) {
        anyhow::bail!(
            "{} contains `..`; files must lie inside the repository",
            rel.display()
        );
    }
    let root = repo_root
        .canonicalize()
        .with_context(|| format!("repository root {} not found", repo_root.display()))?;
    let full = root.join(rel);
    let resolved = full.canonicalize().with_context(|| {
        format!(
            "{} not found in the repository (looked at {})",
            rel.display(),
            full.display()
        )
    })?;
    if !resolved.starts_with(&root) {
        anyhow::bail!(
            "{} resolves to {}, outside the repository; files must lie inside it",
            rel.display(),
            resolved.display()
        );
    }
    Ok(resolved)
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
