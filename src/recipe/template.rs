//! String interpolation: `{{ var.name }}` and the built-ins `{{ version }}`,
//! `{{ recipe }}`, `{{ git_sha }}` and `{{ build_time }}`.
//!
//! Templates are parsed when a recipe is read, so an unknown reference is a validation
//! error with its position, never a surprise during a build.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::diagnostic::did_you_mean;
use super::reader::{Cx, Loc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Builtin {
    Version,
    Recipe,
    GitSha,
    BuildTime,
}

impl Builtin {
    pub const ALL: [Builtin; 4] = [
        Builtin::Version,
        Builtin::Recipe,
        Builtin::GitSha,
        Builtin::BuildTime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Version => "version",
            Builtin::Recipe => "recipe",
            Builtin::GitSha => "git_sha",
            Builtin::BuildTime => "build_time",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        Builtin::ALL.into_iter().find(|b| b.name() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Var(String),
    Builtin(Builtin),
    /// A quoted string written as is: `{{ "{{" }}` is `{{`.
    Escaped(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// A reference and its span in the file.
    Ref(Reference, Range<usize>),
}

/// A parsed string value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pub segments: Vec<Segment>,
}

/// A template and where it was written.
pub type Text = Loc<Template>;

/// The values references resolve to.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub builtins: BTreeMap<Builtin, String>,
    pub vars: BTreeMap<String, String>,
}

impl Template {
    /// A template with no references.
    pub fn literal(s: impl Into<String>) -> Self {
        Template {
            segments: vec![Segment::Literal(s.into())],
        }
    }

    pub fn references(&self) -> impl Iterator<Item = (&Reference, &Range<usize>)> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Ref(r, span) => Some((r, span)),
            Segment::Literal(_) => None,
        })
    }

    pub fn uses_builtin(&self, b: Builtin) -> bool {
        self.references().any(|(r, _)| *r == Reference::Builtin(b))
    }

    pub fn is_literal(&self) -> bool {
        self.references().next().is_none()
    }

    /// The text with every reference replaced. References are checked when parsed, so a
    /// missing value here is a variable that has no default and was not given.
    pub fn render(&self, scope: &Scope) -> Result<String, String> {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::Ref(Reference::Builtin(b), _) => match scope.builtins.get(b) {
                    Some(v) => out.push_str(v),
                    None => return Err(format!("`{{{{ {} }}}}` has no value here", b.name())),
                },
                Segment::Ref(Reference::Var(name), _) => match scope.vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => return Err(format!("variable `{name}` has no value")),
                },
                Segment::Ref(Reference::Escaped(s), _) => out.push_str(s),
            }
        }
        Ok(out)
    }

    /// How the template reads in the recipe (references written the canonical way).
    pub fn source_text(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::Ref(Reference::Builtin(b), _) => {
                    out.push_str(&format!("{{{{ {} }}}}", b.name()))
                }
                Segment::Ref(Reference::Var(n), _) => out.push_str(&format!("{{{{ var.{n} }}}}")),
                Segment::Ref(Reference::Escaped(s), _) => {
                    out.push_str(&format!("{{{{ \"{s}\" }}}}"))
                }
            }
        }
        out
    }
}

/// Parses `value` (written at `span` in the file) and checks every reference against the
/// declared variable names. Problems are recorded in `cx`; the result is always usable.
pub fn parse(cx: &Cx, value: &Loc<String>, vars: &BTreeSet<String>) -> Text {
    let s = value.value.as_str();
    let raw = cx.file.text.get(value.span.clone()).unwrap_or("");
    let mut segments = Vec::new();
    let mut rest = 0;
    let mut literal = String::new();
    while let Some(open) = s[rest..].find("{{").map(|i| rest + i) {
        literal.push_str(&s[rest..open]);
        let Some(close) = s[open + 2..].find("}}").map(|i| open + 2 + i) else {
            let span = locate(raw, s, open, s.len() - open, &value.span);
            cx.error(
                span,
                "`{{` is never closed",
                "close the reference with `}}`, e.g. {{ version }}",
            );
            literal.push_str(&s[open..]);
            rest = s.len();
            break;
        };
        let end = close + 2;
        let span = locate(raw, s, open, end - open, &value.span);
        let inner = s[open + 2..close].trim();
        if !literal.is_empty() {
            segments.push(Segment::Literal(std::mem::take(&mut literal)));
        }
        if let Some(r) = reference(cx, inner, &span, vars) {
            segments.push(Segment::Ref(r, span));
        }
        rest = end;
    }
    literal.push_str(&s[rest..]);
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    Loc::new(Template { segments }, value.span.clone())
}

fn reference(
    cx: &Cx,
    inner: &str,
    span: &Range<usize>,
    vars: &BTreeSet<String>,
) -> Option<Reference> {
    // `{{ "{{" }}` writes braces that are not a reference, e.g. for Go or Jinja templates.
    if inner.len() >= 2 && inner.starts_with('"') && inner.ends_with('"') {
        return Some(Reference::Escaped(inner[1..inner.len() - 1].to_string()));
    }
    if let Some(name) = inner.strip_prefix("var.") {
        let name = name.trim();
        if vars.contains(name) {
            return Some(Reference::Var(name.to_string()));
        }
        let hint = match did_you_mean(name, vars.iter().map(String::as_str)) {
            Some(m) => format!("did you mean `{{{{ var.{m} }}}}`?"),
            None if vars.is_empty() => {
                format!("declare it under [variables], e.g. {name} = \"...\"")
            }
            None => format!(
                "declare it under [variables]; declared: {}",
                vars.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        };
        cx.error(span.clone(), format!("unknown variable `{name}`"), hint);
        return None;
    }
    if let Some(b) = Builtin::from_name(inner) {
        return Some(Reference::Builtin(b));
    }
    let builtins = Builtin::ALL.map(Builtin::name);
    let hint = if inner.is_empty() {
        "write a name inside the braces, e.g. {{ version }}".to_string()
    } else if vars.contains(inner) {
        format!("variables are written with `var.`: {{{{ var.{inner} }}}}")
    } else if let Some(m) = did_you_mean(inner, builtins) {
        format!("did you mean `{{{{ {m} }}}}`?")
    } else {
        format!(
            "the built-ins are {}; variables are written {{{{ var.NAME }}}}",
            builtins.join(", ")
        )
    };
    cx.error(
        span.clone(),
        format!("unknown reference `{{{{ {inner} }}}}`"),
        hint,
    );
    None
}

/// Where `value[start..start + len]` sits in the file: found in the string's raw source
/// text (which differs from the value when it has escapes or quotes), else the whole
/// string.
fn locate(raw: &str, value: &str, start: usize, len: usize, span: &Range<usize>) -> Range<usize> {
    let needle = &value[start..start + len];
    let nth = value[..start].matches(needle).count();
    match raw.match_indices(needle).nth(nth) {
        Some((i, _)) => span.start + i..span.start + i + len,
        None => span.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::diagnostic::SourceFile;

    fn parse_in(text: &str, vars: &[&str]) -> (Template, Vec<String>) {
        let file = SourceFile::new("r.toml", format!("x = \"{text}\"\n"));
        let cx = Cx::new(file);
        let value = Loc::new(text.replace("\\\"", "\""), 4..6 + text.len());
        let vars = vars.iter().map(|s| s.to_string()).collect();
        let t = parse(&cx, &value, &vars);
        let errs = cx
            .into_diagnostics()
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect();
        (t.value, errs)
    }

    #[test]
    fn renders_builtins_and_vars() {
        let (t, errs) = parse_in("{{ recipe }}-{{version}}-{{ var.flavour }}", &["flavour"]);
        assert!(errs.is_empty(), "{errs:?}");
        let mut scope = Scope::default();
        scope.builtins.insert(Builtin::Recipe, "base".into());
        scope.builtins.insert(Builtin::Version, "v1".into());
        scope.vars.insert("flavour".into(), "slim".into());
        assert_eq!(t.render(&scope).unwrap(), "base-v1-slim");
        assert!(t.uses_builtin(Builtin::Version));
        assert!(!t.uses_builtin(Builtin::GitSha));
    }

    #[test]
    fn unknown_variable_points_at_the_reference() {
        let (_, errs) = parse_in("a {{ var.flavor }}", &["flavour"]);
        assert_eq!(errs, vec!["1:8: unknown variable `flavor`".to_string()]);
    }

    #[test]
    fn unknown_builtin_and_unclosed_braces_are_errors() {
        let (_, errs) = parse_in("{{ verison }} {{ git_sha", &[]);
        assert_eq!(
            errs,
            vec![
                "1:6: unknown reference `{{ verison }}`".to_string(),
                "1:20: `{{` is never closed".to_string()
            ]
        );
    }

    #[test]
    fn quoted_braces_are_written_as_is() {
        let (t, errs) = parse_in(
            r#"docker info --format '{{ \"{{\" }}.ServerVersion}}'"#,
            &[],
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            t.render(&Scope::default()).unwrap(),
            "docker info --format '{{.ServerVersion}}'"
        );
    }

    #[test]
    fn missing_value_is_reported_on_render() {
        let (t, _) = parse_in("{{ var.x }}", &["x"]);
        assert_eq!(
            t.render(&Scope::default()).unwrap_err(),
            "variable `x` has no value"
        );
    }
}
