//! Recipes: how one golden image is made, as code in the repository.
//!
//! One recipe per folder, `recipes/<name>/recipe.toml`, with its scripts and playbooks
//! beside it; `bakery.toml` at the repository root holds the tag rules, the pull request
//! mode and the AWS defaults. The format is documented for users in `docs/RECIPES.md`.
//!
//! Reading is split in two: [`check_sources`] parses and checks recipes held in memory
//! (no file system, no clock), and [`load::load_repo`] reads a repository from disk, runs
//! the same checks and adds those that need the disk (files exist, no symlink leaves the
//! repository). Every problem is a positioned [`Diagnostic`]; nothing stops at the first.

pub mod ansible_args;
pub mod aws_names;
pub mod check;
pub mod contain;
pub mod diagnostic;
pub mod lifecycle;
pub mod load;
pub mod parse;
pub mod qemu;
pub mod reader;
pub mod repo_config;
pub mod spec;
pub mod template;
pub mod values;
pub mod variables;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub use diagnostic::{Diagnostic, Diagnostics, Severity, SourceFile};
pub use load::{find_repo_root, load_repo};
pub use repo_config::{PullRequestMode, RepoConfig, TagRecipes, TagRule};
pub use spec::RecipeSpec;

use reader::Cx;

/// The folder holding the recipes, relative to the repository root.
pub const RECIPES_DIR: &str = "recipes";
/// A recipe's file inside its folder.
pub const RECIPE_FILE: &str = "recipe.toml";

/// A repository's recipes and config, as far as they could be read.
#[derive(Debug, Clone)]
pub struct RecipeSet {
    pub config: RepoConfig,
    /// `None` when the repository has no `bakery.toml` (the built-in defaults apply).
    pub config_file: Option<Arc<SourceFile>>,
    /// Recipes whose file parsed as TOML, by name.
    pub recipes: BTreeMap<String, RecipeSpec>,
    /// Every recipe found, including those with syntax errors.
    pub names: BTreeSet<String>,
}

/// A checked repository: the recipes and every problem found.
#[derive(Debug, Clone)]
pub struct Checked {
    pub set: RecipeSet,
    pub diagnostics: Diagnostics,
}

impl Checked {
    pub fn is_ok(&self) -> bool {
        !self.diagnostics.has_errors()
    }
}

/// A recipe file in memory.
#[derive(Debug, Clone)]
pub struct RecipeSource {
    pub name: String,
    /// The file's path relative to the repository root, e.g. `recipes/base-ubuntu/recipe.toml`.
    pub path: String,
    pub text: String,
}

impl RecipeSource {
    pub fn new(name: &str, text: impl Into<String>) -> Self {
        RecipeSource {
            name: name.to_string(),
            path: format!("{RECIPES_DIR}/{name}/{RECIPE_FILE}"),
            text: text.into(),
        }
    }
}

/// Parses and checks a repository held in memory: `config` is `bakery.toml`'s text, if
/// the repository has one. Runs every check that needs no file system.
pub fn check_sources(config: Option<&str>, recipes: &[RecipeSource]) -> Checked {
    let mut diagnostics = Diagnostics::new();
    let (config, config_file, recipe_refs) = match config {
        Some(text) => {
            let file = SourceFile::new(repo_config::FILE_NAME, text);
            let cx = Cx::new(file.clone());
            check::check_secrets(&cx);
            diagnostics.extend(cx.into_diagnostics());
            let parsed = repo_config::parse_repo_config(file.clone());
            diagnostics.extend(parsed.diagnostics);
            (parsed.config, Some(file), parsed.recipe_refs)
        }
        None => (RepoConfig::default(), None, Vec::new()),
    };

    let mut specs = BTreeMap::new();
    let mut names = BTreeSet::new();
    for src in recipes {
        names.insert(src.name.clone());
        let file = SourceFile::new(src.path.clone(), src.text.clone());
        if !is_recipe_name(&src.name) {
            diagnostics.push(
                Diagnostic::error(&file, 0..0, format!("`{}` is not a valid recipe name", src.name))
                    .with_hint("rename the folder: lowercase letters, digits, '-', '_' and '.', starting with a letter or digit"),
            );
        }
        let cx = Cx::new(file.clone());
        check::check_secrets(&cx);
        diagnostics.extend(cx.into_diagnostics());
        let (spec, d) = parse::parse_recipe(&src.name, file);
        diagnostics.extend(d);
        if let Some(spec) = spec {
            specs.insert(src.name.clone(), spec);
        }
    }

    let cxs: BTreeMap<String, Cx> = specs
        .iter()
        .map(|(n, s)| (n.clone(), Cx::new(s.file.clone())))
        .collect();
    for (name, spec) in &specs {
        check::check_recipe(&cxs[name], spec, &config);
    }
    check::check_links(&specs, &cxs, &config);
    for (_, cx) in cxs {
        diagnostics.extend(cx.into_diagnostics());
    }

    if let Some(file) = &config_file {
        let cx = Cx::new(file.clone());
        for r in &recipe_refs {
            if !names.contains(&r.value) {
                let hint =
                    match diagnostic::did_you_mean(&r.value, names.iter().map(String::as_str)) {
                        Some(m) => format!("did you mean \"{m}\"?"),
                        None => format!(
                            "recipes are the folders under recipes/: {}",
                            names.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    };
                cx.error(
                    r.span.clone(),
                    format!("tag rule names recipe `{}`, which does not exist", r.value),
                    hint,
                );
            }
        }
        diagnostics.extend(cx.into_diagnostics());
    }

    Checked {
        set: RecipeSet {
            config,
            config_file,
            recipes: specs,
            names,
        },
        diagnostics: diagnostics.sorted(),
    }
}

/// Recipe folder names: they become part of image names and tags.
pub fn is_recipe_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

impl RecipeSet {
    /// Every recipe, each after the recipe it is sourced from, so that a release that
    /// builds both builds the base first. Ties are in name order.
    pub fn build_order(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut placed: BTreeSet<&str> = BTreeSet::new();
        // Depth in the sourcing chain; a cycle (a validation error) stops the walk.
        let depth = |name: &str| {
            let mut d = 0;
            let mut seen = BTreeSet::new();
            let mut cur = name;
            while let Some(next) = self.recipes.get(cur).and_then(|r| r.source_recipe()) {
                if !seen.insert(next) || !self.names.contains(next) {
                    break;
                }
                d += 1;
                cur = next;
            }
            d
        };
        let mut by_depth: Vec<(usize, &str)> =
            self.names.iter().map(|n| (depth(n), n.as_str())).collect();
        by_depth.sort();
        for (_, n) in by_depth {
            if placed.insert(n) {
                out.push(n.to_string());
            }
        }
        out
    }

    /// Drops every parsed recipe but those in `keep` (the ones a job builds). `names`
    /// still lists every recipe, for the hints of a later error.
    pub fn keep_only(&mut self, keep: &[String]) {
        self.recipes.retain(|name, _| keep.contains(name));
    }

    /// The recipes a tag builds, in build order.
    pub fn recipes_for_tag(&self, tag: &str) -> Vec<String> {
        self.config.recipes_for_tag(tag, &self.build_order())
    }

    /// The recipes a change to `paths` (relative to the repository root) touches, in build
    /// order: a change to `bakery.toml` touches all of them; otherwise a recipe is touched
    /// by a change inside its folder or to any file it uses.
    pub fn recipes_touched_by<S: AsRef<str>>(&self, paths: &[S]) -> Vec<String> {
        let order = self.build_order();
        if paths.iter().any(|p| p.as_ref() == repo_config::FILE_NAME) {
            return order;
        }
        order
            .into_iter()
            .filter(|name| {
                let dir = format!("{RECIPES_DIR}/{name}/");
                let files = self
                    .recipes
                    .get(name)
                    .map(|r| r.files())
                    .unwrap_or_default();
                paths.iter().any(|p| {
                    let p = p.as_ref();
                    p.starts_with(&dir)
                        || files
                            .iter()
                            .any(|f| p == f || p.starts_with(&format!("{f}/")))
                })
            })
            .collect()
    }
}

/// Whether a change to `paths` needs the recipes validated: it touches `bakery.toml` or
/// anything under `recipes/`.
pub fn touches_recipes<S: AsRef<str>>(paths: &[S]) -> bool {
    paths.iter().any(|p| {
        let p = p.as_ref();
        p == repo_config::FILE_NAME || p.starts_with(&format!("{RECIPES_DIR}/"))
    })
}

#[cfg(test)]
mod tests;
