//! Reading a repository's recipes from disk, and the checks that need the disk: every file
//! a recipe uses exists and, symlinks followed, stays inside the repository.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::reader::Cx;
use super::repo_config::FILE_NAME;
use super::spec::StepSpec;
use super::{check, check_sources, Checked, RecipeSource, RECIPES_DIR, RECIPE_FILE};

/// The repository root for `path` (the repository, `recipes/`, a recipe folder, or a
/// file in one), and the recipe `path` points into, if any.
pub fn find_repo_root(path: &Path) -> anyhow::Result<(PathBuf, Option<String>)> {
    let start = path.canonicalize().with_context(|| {
        format!(
            "{} does not exist; pass the repository or its recipes/ folder",
            path.display()
        )
    })?;
    let start_dir = if start.is_file() {
        start
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or(start.clone())
    } else {
        start.clone()
    };
    let mut root = None;
    for dir in start_dir.ancestors() {
        if dir.join(FILE_NAME).is_file() || dir.join(RECIPES_DIR).is_dir() {
            root = Some(dir.to_path_buf());
            break;
        }
    }
    let Some(root) = root else {
        bail!(
            "no {FILE_NAME} or {RECIPES_DIR}/ folder at or above {}; run bakery from the repository that holds the recipes, or pass its path",
            start_dir.display()
        );
    };
    let scope = start_dir
        .strip_prefix(root.join(RECIPES_DIR))
        .ok()
        .and_then(|rel| rel.components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    Ok((root, scope))
}

/// Reads `bakery.toml` and every `recipes/*/recipe.toml` under `root`, and checks them all.
pub fn load_repo(root: &Path) -> anyhow::Result<Checked> {
    let config_path = root.join(FILE_NAME);
    let config = if config_path.is_file() {
        Some(std::fs::read_to_string(&config_path).with_context(|| {
            format!(
                "cannot read {}; check its permissions",
                config_path.display()
            )
        })?)
    } else {
        None
    };

    let recipes_dir = root.join(RECIPES_DIR);
    let mut sources = Vec::new();
    if recipes_dir.is_dir() {
        let entries = std::fs::read_dir(&recipes_dir).with_context(|| {
            format!(
                "cannot list {}; check its permissions",
                recipes_dir.display()
            )
        })?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join(RECIPE_FILE).is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let file = dir.join(RECIPE_FILE);
            let text = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "cannot read {} as UTF-8 text; check the file",
                    file.display()
                )
            })?;
            sources.push(RecipeSource::new(&name, text));
        }
    }
    if sources.is_empty() && config.is_none() {
        bail!(
            "no recipes under {}; a recipe is a folder recipes/<name>/ holding {RECIPE_FILE}",
            recipes_dir.display()
        );
    }

    let mut checked = check_sources(config.as_deref(), &sources);
    let mut extra = super::Diagnostics::new();
    let canonical_root = root
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", root.display()))?;
    for spec in checked.set.recipes.values() {
        let cx = Cx::new(spec.file.clone());
        // The recipe file itself may be a symlink.
        check_inside(
            &cx,
            &canonical_root,
            root,
            &spec.file.path,
            0..0,
            FileKind::File,
        );
        for step in &spec.provision {
            let kind = match step {
                StepSpec::File { .. } => FileKind::FileOrDir,
                _ => FileKind::File,
            };
            for p in step.paths() {
                if let Ok(rel) = check::resolve_path(&spec.dir, &p.value) {
                    check_inside(&cx, &canonical_root, root, &rel, p.span.clone(), kind);
                }
            }
        }
        extra.extend(cx.into_diagnostics());
    }
    checked.diagnostics.extend(extra);
    checked.diagnostics = std::mem::take(&mut checked.diagnostics).sorted();
    Ok(checked)
}

#[derive(Clone, Copy)]
enum FileKind {
    File,
    FileOrDir,
}

/// `rel` exists under `root` and, with symlinks resolved, is still inside it.
fn check_inside(
    cx: &Cx,
    canonical_root: &Path,
    root: &Path,
    rel: &str,
    span: std::ops::Range<usize>,
    kind: FileKind,
) {
    let path = root.join(rel);
    if std::fs::symlink_metadata(&path).is_err() {
        cx.error(
            span,
            format!("`{rel}` does not exist"),
            format!("create {rel}, or fix the path (it is relative to the recipe's folder)"),
        );
        return;
    }
    let Ok(real) = path.canonicalize() else {
        cx.error(
            span,
            format!("`{rel}` is a broken symlink"),
            "point the link at a file inside the repository, or replace it with the file",
        );
        return;
    };
    if !real.starts_with(canonical_root) {
        cx.error(
            span,
            format!(
                "`{rel}` is a symlink pointing outside the repository ({})",
                real.display()
            ),
            "copy the file into the repository: a build only sees the repository's own files",
        );
        return;
    }
    if matches!(kind, FileKind::File) && !real.is_file() {
        cx.error(
            span,
            format!("`{rel}` is not a file"),
            "point at a file, not a folder",
        );
    }
}
