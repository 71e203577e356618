//! Paths inside a checkout, resolved without ever leaving it. Every symlink on the way is
//! read (never followed by the operating system) and resolved by hand; a link that leads
//! out of the checkout is refused before anything outside it is opened or even looked at.
//! A repository therefore cannot make bakery read a host file, nor learn whether one
//! exists: the answer depends only on the checkout's own content.
//!
//! May touch: `lstat` and `readlink` of paths inside the checkout, nothing else.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Links followed in one resolution before giving up, as the kernel's ELOOP limit.
const MAX_LINKS: usize = 40;

/// Why a path in the checkout cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Uncontained {
    /// The path, or a symlink on its way, leads out of the checkout.
    #[error("`{path}` leaves the checkout{}", via_link(.link, .target))]
    Leaves {
        path: String,
        /// The symlink that leads out and its target as written, when a link did.
        link: Option<String>,
        target: Option<String>,
    },
    #[error("`{path}` does not exist")]
    Missing { path: String },
    #[error("`{path}` has more than {MAX_LINKS} symlinks on its way")]
    TooManyLinks { path: String },
    #[error("cannot read `{path}`: {message}")]
    Io { path: String, message: String },
}

fn via_link(link: &Option<String>, target: &Option<String>) -> String {
    match (link, target) {
        (Some(l), Some(t)) => format!(" (`{l}` is a symlink to `{t}`)"),
        _ => String::new(),
    }
}

impl Uncontained {
    /// What to do about it, for a diagnostic's hint.
    pub fn hint(&self) -> &'static str {
        match self {
            Uncontained::Leaves { .. } => {
                "bakery reads only the repository's own files: copy the file in, or link to a path inside the repository"
            }
            Uncontained::Missing { .. } => {
                "create it, or fix the path (it is relative to the recipe's folder)"
            }
            Uncontained::TooManyLinks { .. } => "remove the symlink loop",
            Uncontained::Io { .. } => "check the file's permissions",
        }
    }
}

fn display(parts: &[OsString]) -> String {
    let p: PathBuf = parts.iter().collect();
    p.display().to_string()
}

/// Resolves `rel` (relative to `root`, which must be canonical) to a real path inside
/// `root` with no symlink left in it. Only paths under `root` are ever examined.
pub fn resolve_inside(root: &Path, rel: &Path) -> Result<PathBuf, Uncontained> {
    let asked = rel.display().to_string();
    let leaves = |link: Option<String>, target: Option<String>| Uncontained::Leaves {
        path: asked.clone(),
        link,
        target,
    };
    let mut todo: VecDeque<OsString> = VecDeque::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => todo.push_back(n.to_os_string()),
            Component::ParentDir => todo.push_back("..".into()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(leaves(None, None)),
        }
    }
    let mut done: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            if done.pop().is_none() {
                return Err(leaves(None, None));
            }
            continue;
        }
        let here = root.join(done.iter().collect::<PathBuf>()).join(&part);
        let meta = match std::fs::symlink_metadata(&here) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Uncontained::Missing { path: asked });
            }
            Err(e) if e.raw_os_error() == Some(20) => {
                // ENOTDIR: a file on the way, where a folder should be.
                return Err(Uncontained::Missing { path: asked });
            }
            Err(e) => {
                return Err(Uncontained::Io {
                    path: asked,
                    message: e.to_string(),
                })
            }
        };
        if !meta.file_type().is_symlink() {
            done.push(part);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(Uncontained::TooManyLinks { path: asked });
        }
        let target = std::fs::read_link(&here).map_err(|e| Uncontained::Io {
            path: asked.clone(),
            message: e.to_string(),
        })?;
        let mut link_parts = done.clone();
        link_parts.push(part);
        let link_name = display(&link_parts);
        let target_text = target.display().to_string();
        // The target's parts come before what is left of the path.
        let mut replaced: Vec<OsString> = Vec::new();
        for c in target.components() {
            match c {
                Component::Normal(n) => replaced.push(n.to_os_string()),
                Component::ParentDir => replaced.push("..".into()),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => {
                    return Err(leaves(Some(link_name), Some(target_text)));
                }
            }
        }
        // `..` beyond the link's folder leaves the checkout: report the link.
        let mut depth = done.len();
        for p in &replaced {
            if p == ".." {
                if depth == 0 {
                    return Err(leaves(Some(link_name), Some(target_text)));
                }
                depth -= 1;
            } else {
                depth += 1;
            }
        }
        for p in replaced.into_iter().rev() {
            todo.push_front(p);
        }
    }
    Ok(root.join(done.iter().collect::<PathBuf>()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Tree {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    fn tree() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let root = base.join("repo");
        let outside = base.join("host");
        std::fs::create_dir_all(root.join("recipes/web/files")).unwrap();
        std::fs::create_dir_all(root.join("shared")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("shared/site.yml"), "x").unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        Tree {
            _tmp: tmp,
            root,
            outside,
        }
    }

    #[test]
    fn links_inside_resolve_to_real_paths() {
        let t = tree();
        symlink("../../shared/site.yml", t.root.join("recipes/web/site.yml")).unwrap();
        symlink("shared", t.root.join("common")).unwrap();
        assert_eq!(
            resolve_inside(&t.root, Path::new("recipes/web/site.yml")).unwrap(),
            t.root.join("shared/site.yml")
        );
        assert_eq!(
            resolve_inside(&t.root, Path::new("common/./site.yml")).unwrap(),
            t.root.join("shared/site.yml")
        );
        assert_eq!(
            resolve_inside(&t.root, Path::new("recipes/web/../../shared")).unwrap(),
            t.root.join("shared")
        );
    }

    #[test]
    fn links_out_are_refused_whether_or_not_the_target_exists() {
        let t = tree();
        symlink(t.outside.join("secret"), t.root.join("abs")).unwrap();
        symlink(t.outside.join("nothing"), t.root.join("abs-missing")).unwrap();
        symlink("../host/secret", t.root.join("rel")).unwrap();
        symlink("../host/nothing", t.root.join("rel-missing")).unwrap();
        symlink("../..", t.root.join("recipes/up")).unwrap();
        for (path, link) in [
            ("abs", "abs"),
            ("abs-missing", "abs-missing"),
            ("rel", "rel"),
            ("rel-missing", "rel-missing"),
            ("recipes/up/../host/secret", "recipes/up"),
        ] {
            match resolve_inside(&t.root, Path::new(path)) {
                Err(Uncontained::Leaves { link: Some(l), .. }) => assert_eq!(l, link, "{path}"),
                other => panic!("{path}: {other:?}"),
            }
        }
        assert!(matches!(
            resolve_inside(&t.root, Path::new("../host/secret")),
            Err(Uncontained::Leaves { link: None, .. })
        ));
        assert!(matches!(
            resolve_inside(&t.root, Path::new("/etc/passwd")),
            Err(Uncontained::Leaves { .. })
        ));
        let err = resolve_inside(&t.root, Path::new("rel")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`rel` leaves the checkout (`rel` is a symlink to `../host/secret`)"
        );
    }

    #[test]
    fn missing_paths_and_loops() {
        let t = tree();
        assert_eq!(
            resolve_inside(&t.root, Path::new("recipes/nope.yml")),
            Err(Uncontained::Missing {
                path: "recipes/nope.yml".into()
            })
        );
        assert!(matches!(
            resolve_inside(&t.root, Path::new("shared/site.yml/x")),
            Err(Uncontained::Missing { .. })
        ));
        symlink("loop", t.root.join("loop")).unwrap();
        assert!(matches!(
            resolve_inside(&t.root, Path::new("loop")),
            Err(Uncontained::TooManyLinks { .. })
        ));
    }
}
