use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use super::OutputFormat;
use crate::recipe::{self, Diagnostic, RECIPES_DIR};

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The repository, its recipes/ folder, or one recipe's folder.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// `text` prints `file:line:col: message` lines; `json` prints one JSON document.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// `--format json` output.
#[derive(Debug, Serialize)]
pub struct ValidateReport {
    pub ok: bool,
    pub recipes: Vec<String>,
    /// `bakery.toml`, or `null` when the repository has none (built-in defaults apply).
    pub config: Option<String>,
    pub errors: usize,
    pub warnings: usize,
    pub diagnostics: Vec<Diagnostic>,
}

pub async fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let (root, scope) = recipe::find_repo_root(&args.path)?;
    let checked = recipe::load_repo(&root)?;
    let mut diagnostics = checked.diagnostics.clone();
    let mut recipes: Vec<String> = checked.set.build_order();
    if let Some(only) = &scope {
        let dir = format!("{RECIPES_DIR}/{only}/");
        diagnostics
            .retain(|d| d.file.starts_with(&dir) || d.file == recipe::repo_config::FILE_NAME);
        recipes.retain(|r| r == only);
    }
    let report = ValidateReport {
        ok: !diagnostics.has_errors(),
        recipes,
        config: checked.set.config_file.as_ref().map(|f| f.path.clone()),
        errors: diagnostics.error_count(),
        warnings: diagnostics.warning_count(),
        diagnostics: diagnostics.into_vec(),
    };
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => print!("{}", render_text(&report)),
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Every diagnostic, then a one-line summary such as `2 recipes, bakery.toml: ok`.
pub fn render_text(r: &ValidateReport) -> String {
    let mut out = String::new();
    for d in &r.diagnostics {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    let config = match &r.config {
        Some(c) => c.clone(),
        None => "no bakery.toml (built-in defaults)".into(),
    };
    let what = format!("{}, {config}", plural(r.recipes.len(), "recipe"));
    let warnings = if r.warnings > 0 {
        format!(" ({})", plural(r.warnings, "warning"))
    } else {
        String::new()
    };
    if r.ok {
        out.push_str(&format!("{what}: ok{warnings}\n"));
    } else {
        out.push_str(&format!(
            "{what}: {}{}\n",
            plural(r.errors, "error"),
            if r.warnings > 0 {
                format!(", {}", plural(r.warnings, "warning"))
            } else {
                String::new()
            }
        ));
    }
    out
}
