//! Small value checks, shared by recipes and `bakery.toml`: a region, a region list, a tag
//! key, a value that must be literal (no `{{ ... }}`), a file path that must stay in
//! the repository, and the order of the `[lifecycle]` durations. They depend on nothing
//! but the reader and the AWS name rules, so `repo_config.rs` and `spec.rs` use them without depending on the whole-recipe checks
//! (`check.rs`). Pure: touches no file system and nothing outside the diagnostics.

use std::collections::BTreeSet;

use super::aws_names::{self, Invalid};
use super::reader::{Cx, Loc};

/// Keys bakery itself writes into every release file.
pub const STAMP_KEYS: [&str; 5] = ["RECIPE", "GIT_SHA", "BUILD_ID", "BUILD_TIME", "SOURCE_AMI"];

/// Tag keys bakery sets itself on every image.
fn reserved_tag(key: &str) -> bool {
    key == crate::plan::model::tag_keys::NAME
        || key == crate::plan::model::tag_keys::IMAGE_VERSION
        || key.starts_with("bakery:")
}

/// Values such as regions, keys and accounts are checked before any build, so they can't
/// depend on variables.
pub fn literal(cx: &Cx, v: &Loc<String>, what: &str) -> bool {
    if v.value.contains("{{") {
        cx.error(
            v.span.clone(),
            format!("{what} cannot use `{{{{ ... }}}}`"),
            "write the value itself: regions, KMS keys, account ids and file paths are checked before any build",
        );
        return false;
    }
    true
}

pub fn check_region(cx: &Cx, r: &Loc<String>) {
    if !literal(cx, r, "a region") {
        return;
    }
    match aws_names::region(&r.value) {
        Ok(None) => {}
        Ok(Some(w)) => cx.warning(r.span.clone(), w.message, w.hint),
        Err(e) => cx.error(r.span.clone(), e.message, e.hint),
    }
}

/// Each region valid, none listed twice.
pub fn check_region_list(cx: &Cx, list: &Loc<Vec<Loc<String>>>, table: &str) {
    let mut seen = BTreeSet::new();
    for r in &list.value {
        check_region(cx, r);
        if !seen.insert(r.value.as_str()) {
            cx.error(
                r.span.clone(),
                format!("region `{}` is listed twice in {table}", r.value),
                format!("remove the second `{}`", r.value),
            );
        }
    }
}

/// A tag key and, when it is a template with references, its value.
pub fn check_tag(cx: &Cx, key: &Loc<String>, literal_value: Option<&Loc<String>>) {
    let k = key.value.as_str();
    if reserved_tag(k) {
        cx.error(
            key.span.clone(),
            format!("tag `{k}` is set by bakery on every image"),
            "remove it; bakery sets Name, ImageVersion and the bakery:* tags itself",
        );
    } else if k.to_ascii_lowercase().starts_with("aws:") {
        cx.error(
            key.span.clone(),
            format!("tag `{k}` uses the reserved aws: prefix"),
            "pick a key that does not start with aws:",
        );
    } else if k.is_empty() || k.chars().count() > 128 {
        cx.error(
            key.span.clone(),
            "a tag key is 1 to 128 characters long",
            "shorten the key",
        );
    }
    if let Some(v) = literal_value {
        literal(cx, v, "a default tag");
    }
}

/// `[lifecycle]`: a release is deregistered after it is deprecated, never before.
pub fn check_retire_order(
    cx: &Cx,
    deprecate_after: Option<&Loc<u64>>,
    deregister_after: Option<&Loc<u64>>,
) {
    let (Some(deprecate), Some(deregister)) = (deprecate_after, deregister_after) else {
        return;
    };
    if deregister.value <= deprecate.value {
        let show = |s: u64| humantime::format_duration(std::time::Duration::from_secs(s));
        cx.error(
            deregister.span.clone(),
            format!(
                "`deregister_after` ({}) must be longer than `deprecate_after` ({})",
                show(deregister.value),
                show(deprecate.value)
            ),
            "a release is deprecated first, then deregistered: lengthen deregister_after or drop deprecate_after",
        );
    }
}

/// `raw` (relative to the recipe folder `dir`) as a path relative to the repository root,
/// or why it is refused. Symlinks are checked against the file system in `load`.
pub fn resolve_path(dir: &str, raw: &str) -> Result<String, Invalid> {
    let refuse = |message: String, hint: &str| Invalid {
        message,
        hint: hint.to_string(),
    };
    if raw.is_empty() {
        return Err(refuse(
            "the file path is empty".into(),
            "name a file beside the recipe, e.g. \"setup.sh\"",
        ));
    }
    if raw.contains("{{") {
        return Err(refuse(
            format!("file path `{raw}` cannot use `{{{{ ... }}}}`"),
            "write the path itself: files are checked before any build",
        ));
    }
    let bytes = raw.as_bytes();
    if raw.starts_with('/') || raw.starts_with('\\') || (bytes.len() > 1 && bytes[1] == b':') {
        return Err(refuse(
            format!("file path `{raw}` is absolute"),
            "paths are relative to the recipe's folder; keep the file in the repository, e.g. \"scripts/setup.sh\"",
        ));
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in raw.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(refuse(
                        format!("file path `{raw}` escapes the repository"),
                        "keep every file a recipe uses inside the repository",
                    ));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(refuse(
            format!("file path `{raw}` names the repository itself"),
            "name a file or folder inside the repository",
        ));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_the_repository() {
        assert_eq!(
            resolve_path("recipes/a", "setup.sh").unwrap(),
            "recipes/a/setup.sh"
        );
        assert_eq!(
            resolve_path("recipes/a", "./x/../y.yml").unwrap(),
            "recipes/a/y.yml"
        );
        assert_eq!(
            resolve_path("recipes/a", "../common/s.sh").unwrap(),
            "recipes/common/s.sh"
        );
        assert_eq!(
            resolve_path("recipes/a", "../../scripts/s.sh").unwrap(),
            "scripts/s.sh"
        );
        let e = resolve_path("recipes/a", "../../../etc/passwd").unwrap_err();
        assert_eq!(
            e.message,
            "file path `../../../etc/passwd` escapes the repository"
        );
        let e = resolve_path("recipes/a", "/etc/passwd").unwrap_err();
        assert_eq!(e.message, "file path `/etc/passwd` is absolute");
        assert!(resolve_path("recipes/a", "../..").is_err());
        assert!(resolve_path("recipes/a", "").is_err());
        assert!(resolve_path("recipes/a", "{{ var.x }}.sh").is_err());
    }
}
