//! Reading a repository's recipes from disk, and the checks that need the disk: every file
//! a recipe uses exists and stays inside the checkout. Nothing is read, or even looked at,
//! outside the checkout: `bakery.toml`, `recipes/`, each `recipe.toml` and every file a step
//! names are resolved with [`resolve_inside`] first, symlinks included.
//!
//! May touch: files inside the checkout, read only.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::contain::{resolve_inside, Uncontained};
use super::diagnostic::{Diagnostic, SourceFile};
use super::reader::Cx;
use super::repo_config::FILE_NAME;
use super::spec::StepSpec;
use super::{check_sources, Checked, RecipeSource, RECIPES_DIR, RECIPE_FILE};

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

/// A diagnostic for a file bakery refused to read.
fn refused(path: &str, why: &Uncontained) -> Diagnostic {
    Diagnostic::error(&SourceFile::new(path, ""), 0..0, why.to_string()).with_hint(why.hint())
}

fn read_text(path: &Path, shown: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {shown} as UTF-8 text; check the file"))
}

/// Reads `bakery.toml` and every `recipes/*/recipe.toml` under `root`, and checks them all.
/// Each path is resolved inside the checkout first ([`resolve_inside`]): a file or folder
/// that is, or passes through, a symlink leading out of it is reported and never read.
pub fn load_repo(root: &Path) -> anyhow::Result<Checked> {
    let canonical_root = root
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", root.display()))?;
    let mut refusals = super::Diagnostics::new();

    let config = match resolve_inside(&canonical_root, Path::new(FILE_NAME)) {
        Ok(path) if path.is_file() => Some(read_text(&path, FILE_NAME)?),
        Ok(_) | Err(Uncontained::Missing { .. }) => None,
        Err(why) => {
            refusals.push(refused(FILE_NAME, &why));
            None
        }
    };

    let mut sources = Vec::new();
    match resolve_inside(&canonical_root, Path::new(RECIPES_DIR)) {
        Ok(dir) if dir.is_dir() => {
            let entries = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot list {RECIPES_DIR}/; check its permissions"))?;
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                let rel = format!("{RECIPES_DIR}/{name}/{RECIPE_FILE}");
                match resolve_inside(&canonical_root, Path::new(&rel)) {
                    Ok(file) if file.is_file() => {
                        sources.push(RecipeSource::new(&name, read_text(&file, &rel)?));
                    }
                    // Not a recipe folder.
                    Ok(_) | Err(Uncontained::Missing { .. }) => {}
                    Err(why) => refusals.push(refused(&rel, &why)),
                }
            }
        }
        Ok(_) | Err(Uncontained::Missing { .. }) => {}
        Err(why) => refusals.push(refused(RECIPES_DIR, &why)),
    }
    if sources.is_empty() && config.is_none() && refusals.is_empty() {
        bail!(
            "no recipes under {}; a recipe is a folder recipes/<name>/ holding {RECIPE_FILE}",
            root.join(RECIPES_DIR).display()
        );
    }

    let mut checked = check_sources(config.as_deref(), &sources);
    let mut extra = refusals;
    for spec in checked.set.recipes.values() {
        let cx = Cx::new(spec.file.clone());
        for step in &spec.provision {
            let kind = match step {
                StepSpec::File { .. } => FileKind::FileOrDir,
                _ => FileKind::File,
            };
            for p in step.paths() {
                if let Ok(rel) = super::values::resolve_path(&spec.dir, &p.value) {
                    check_inside(&cx, &canonical_root, &rel, p.span.clone(), kind);
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

/// `rel` exists in the checkout and, symlinks resolved inside it, never leaves it.
fn check_inside(
    cx: &Cx,
    canonical_root: &Path,
    rel: &str,
    span: std::ops::Range<usize>,
    kind: FileKind,
) {
    match resolve_inside(canonical_root, Path::new(rel)) {
        Ok(real) => {
            if matches!(kind, FileKind::File) && !real.is_file() {
                cx.error(
                    span,
                    format!("`{rel}` is not a file"),
                    "point at a file, not a folder",
                );
            }
        }
        Err(why) => cx.error(span, why.to_string(), why.hint()),
    }
}
