//! Recipe variables: typed defaults in `[variables]`, overridden by var files and then by
//! `--var name=value`.
//!
//! ```toml
//! [variables]
//! tools = ["curl", "jq"]                          # type taken from the default
//! swap_gb = { type = "number", default = 2, description = "Swap file size" }
//! team = { type = "string" }                      # no default: must be given
//! ```

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Context};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::reader::{integer_value, type_name, Cx, Loc, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarType {
    String,
    Number,
    Bool,
    List,
}

impl VarType {
    pub const NAMES: [&'static str; 4] = ["string", "number", "bool", "list"];

    pub fn name(self) -> &'static str {
        match self {
            VarType::String => "string",
            VarType::Number => "number",
            VarType::Bool => "bool",
            VarType::List => "list",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        match s {
            "string" => Some(VarType::String),
            "number" => Some(VarType::Number),
            "bool" => Some(VarType::Bool),
            "list" => Some(VarType::List),
            _ => None,
        }
    }
}

/// A variable's value. Numbers keep the text they were written with.
#[derive(Debug, Clone, PartialEq)]
pub enum VarValue {
    String(String),
    Number(String),
    Bool(bool),
    List(Vec<String>),
}

impl VarValue {
    pub fn var_type(&self) -> VarType {
        match self {
            VarValue::String(_) => VarType::String,
            VarValue::Number(_) => VarType::Number,
            VarValue::Bool(_) => VarType::Bool,
            VarValue::List(_) => VarType::List,
        }
    }

    /// From a TOML value; `Err` names the type found.
    pub fn from_toml(v: &DeValue<'_>) -> Result<Self, String> {
        match v {
            DeValue::String(s) => Ok(VarValue::String(s.to_string())),
            DeValue::Integer(_) => match integer_value(v) {
                Some(i) => Ok(VarValue::Number(i.to_string())),
                None => Err("an integer too large for 64 bits".into()),
            },
            DeValue::Float(f) => Ok(VarValue::Number(f.as_str().to_string())),
            DeValue::Boolean(b) => Ok(VarValue::Bool(*b)),
            DeValue::Array(a) => {
                let mut out = Vec::new();
                for item in a.iter() {
                    match item.get_ref().as_str() {
                        Some(s) => out.push(s.to_string()),
                        None => {
                            return Err(format!(
                                "a list holding {}; list items must be strings",
                                type_name(item.get_ref())
                            ))
                        }
                    }
                }
                Ok(VarValue::List(out))
            }
            other => Err(type_name(other).to_string()),
        }
    }

    /// From a `--var` string, read as the declared type.
    pub fn parse_as(ty: VarType, s: &str) -> Result<Self, String> {
        match ty {
            VarType::String => Ok(VarValue::String(s.to_string())),
            VarType::Number => {
                if s.parse::<i64>().is_ok() || s.parse::<f64>().is_ok_and(f64::is_finite) {
                    Ok(VarValue::Number(s.to_string()))
                } else {
                    Err(format!("`{s}` is not a number"))
                }
            }
            VarType::Bool => match s {
                "true" => Ok(VarValue::Bool(true)),
                "false" => Ok(VarValue::Bool(false)),
                _ => Err(format!("`{s}` is not a bool; write true or false")),
            },
            VarType::List => Ok(VarValue::List(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            )),
        }
    }
}

/// How a value reads inside a string: lists are joined with spaces, so
/// `apt-get install -y {{ var.tools }}` works.
impl fmt::Display for VarValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VarValue::String(s) | VarValue::Number(s) => f.write_str(s),
            VarValue::Bool(b) => write!(f, "{b}"),
            VarValue::List(items) => f.write_str(&items.join(" ")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VariableSpec {
    pub name: Loc<String>,
    pub ty: VarType,
    pub default: Option<VarValue>,
    pub description: Option<String>,
}

/// Reads the `[variables]` table.
pub fn parse_variables(mut vars: Table<'_, '_, '_>) -> Vec<VariableSpec> {
    let cx = vars.cx;
    let mut out = Vec::new();
    for (k, v) in vars.map.iter() {
        let name = Loc::new(k.get_ref().to_string(), k.span());
        if !is_identifier(&name) {
            cx.error(
                k.span(),
                format!("variable name `{}` is not a plain identifier", name.value),
                "use letters, digits and underscores, starting with a letter, e.g. docker_version",
            );
            continue;
        }
        if let Some(spec) = variable(cx, name, v) {
            out.push(spec);
        }
    }
    // Every key was handled above.
    vars.know(&[]);
    out
}

fn variable(cx: &Cx, name: Loc<String>, v: &Spanned<DeValue<'_>>) -> Option<VariableSpec> {
    let DeValue::Table(t) = v.get_ref() else {
        return match VarValue::from_toml(v.get_ref()) {
            Ok(default) => Some(VariableSpec {
                name,
                ty: default.var_type(),
                default: Some(default),
                description: None,
            }),
            Err(found) => {
                cx.error(
                    v.span(),
                    format!("variable `{}` has a default of {found}", name.value),
                    "a default is a string, number, bool or list of strings",
                );
                None
            }
        };
    };
    let mut t = Table::new(cx, t, v.span(), format!("variable `{}`", name.value));
    let ty = t.string("type");
    let default = t.value("default");
    let description = t.string("description").map(|d| d.value);
    t.finish();
    let default = match default {
        Some(d) => match VarValue::from_toml(d.get_ref()) {
            Ok(val) => Some(Loc::new(val, d.span())),
            Err(found) => {
                cx.error(
                    d.span(),
                    format!("variable `{}` has a default of {found}", name.value),
                    "a default is a string, number, bool or list of strings",
                );
                return None;
            }
        },
        None => None,
    };
    let ty = match (ty, &default) {
        (Some(ty), _) => match VarType::from_name(&ty) {
            Some(t) => t,
            None => {
                cx.error(
                    ty.span.clone(),
                    format!("unknown variable type `{}`", ty.value),
                    format!("use one of: {}", VarType::NAMES.join(", ")),
                );
                return None;
            }
        },
        (None, Some(d)) => d.value.var_type(),
        (None, None) => {
            cx.error(
                v.span(),
                format!("variable `{}` has neither a type nor a default", name.value),
                "add type = \"string\" (or number, bool, list), or a default",
            );
            return None;
        }
    };
    if let Some(d) = &default {
        if d.value.var_type() != ty {
            cx.error(
                d.span.clone(),
                format!(
                    "variable `{}` is declared {} but its default is a {}",
                    name.value,
                    ty.name(),
                    d.value.var_type().name()
                ),
                format!("make the default a {} or change the type", ty.name()),
            );
            return None;
        }
    }
    Some(VariableSpec {
        name,
        ty,
        default: default.map(|d| d.value),
        description,
    })
}

pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Values given for a build, in the order they apply (later wins).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VarOverrides {
    pub entries: Vec<VarOverride>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VarOverride {
    pub name: String,
    pub value: OverrideValue,
    /// Where it came from, for messages: `--var` or the var file's path.
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OverrideValue {
    /// From `--var`: read as the declared type.
    Text(String),
    /// From a var file: must already have the declared type.
    Typed(VarValue),
}

impl VarOverrides {
    /// Adds `--var name=value` arguments.
    pub fn push_cli(&mut self, args: &[String]) -> anyhow::Result<()> {
        for arg in args {
            let Some((name, value)) = arg.split_once('=') else {
                bail!("--var {arg}: expected NAME=VALUE, e.g. --var docker_version=27.3");
            };
            self.entries.push(VarOverride {
                name: name.trim().to_string(),
                value: OverrideValue::Text(value.to_string()),
                origin: "--var".into(),
            });
        }
        Ok(())
    }

    /// Adds the values of a var file: a TOML document of `name = value` lines.
    pub fn push_file(&mut self, path: &str, text: &str) -> anyhow::Result<()> {
        let table = DeTable::parse(text)
            .map_err(|e| anyhow::anyhow!("{}", e.message().lines().next().unwrap_or("")))
            .with_context(|| {
                format!("var file {path} is not valid TOML; write one `name = value` per line")
            })?;
        for (k, v) in table.get_ref().iter() {
            let value = VarValue::from_toml(v.get_ref()).map_err(|found| {
                anyhow::anyhow!(
                    "var file {path}: `{}` is {found}; a value is a string, number, bool or list of strings",
                    k.get_ref()
                )
            })?;
            self.entries.push(VarOverride {
                name: k.get_ref().to_string(),
                value: OverrideValue::Typed(value),
                origin: path.to_string(),
            });
        }
        Ok(())
    }
}

/// The value of every declared variable for one build: defaults, then overrides.
/// A variable without default that was not given is left out; rendering a string that
/// uses it fails with a message naming it.
pub fn resolve(
    recipe: &str,
    declared: &[VariableSpec],
    overrides: &VarOverrides,
) -> anyhow::Result<BTreeMap<String, VarValue>> {
    let mut values: BTreeMap<String, VarValue> = declared
        .iter()
        .filter_map(|v| Some((v.name.value.clone(), v.default.clone()?)))
        .collect();
    for o in &overrides.entries {
        let Some(spec) = declared.iter().find(|v| v.name.value == o.name) else {
            let names: Vec<&str> = declared.iter().map(|v| v.name.value.as_str()).collect();
            let hint = match super::diagnostic::did_you_mean(&o.name, names.iter().copied()) {
                Some(m) => format!("did you mean `{m}`?"),
                None if names.is_empty() => format!("recipe {recipe} declares no variables"),
                None => format!("recipe {recipe} declares: {}", names.join(", ")),
            };
            bail!(
                "{}: recipe {recipe} has no variable `{}`; {hint}",
                o.origin,
                o.name
            );
        };
        let value = match &o.value {
            OverrideValue::Text(s) => VarValue::parse_as(spec.ty, s).map_err(|e| {
                anyhow::anyhow!(
                    "{}: variable `{}` is a {}: {e}",
                    o.origin,
                    o.name,
                    spec.ty.name()
                )
            })?,
            OverrideValue::Typed(v) if v.var_type() == spec.ty => v.clone(),
            OverrideValue::Typed(v) => bail!(
                "{}: variable `{}` is a {} but the value given is a {}; give a {}",
                o.origin,
                o.name,
                spec.ty.name(),
                v.var_type().name(),
                spec.ty.name()
            ),
        };
        values.insert(o.name.clone(), value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, ty: VarType, default: Option<VarValue>) -> VariableSpec {
        VariableSpec {
            name: Loc::new(name.into(), 0..0),
            ty,
            default,
            description: None,
        }
    }

    #[test]
    fn overrides_apply_in_order_and_are_typed() {
        let declared = vec![
            spec(
                "tools",
                VarType::List,
                Some(VarValue::List(vec!["curl".into()])),
            ),
            spec("swap", VarType::Number, Some(VarValue::Number("2".into()))),
            spec("debug", VarType::Bool, None),
        ];
        let mut o = VarOverrides::default();
        o.push_file("vars.toml", "swap = 4\ntools = [\"jq\", \"htop\"]\n")
            .unwrap();
        o.push_cli(&["swap=8".into(), "debug=true".into()]).unwrap();
        let v = resolve("r", &declared, &o).unwrap();
        assert_eq!(v["tools"].to_string(), "jq htop");
        assert_eq!(v["swap"], VarValue::Number("8".into()));
        assert_eq!(v["debug"], VarValue::Bool(true));
    }

    #[test]
    fn wrong_override_types_and_names_are_refused() {
        let declared = vec![spec("swap", VarType::Number, None)];
        let mut o = VarOverrides::default();
        o.push_cli(&["swap=lots".into()]).unwrap();
        let e = resolve("r", &declared, &o).unwrap_err().to_string();
        assert_eq!(
            e,
            "--var: variable `swap` is a number: `lots` is not a number"
        );

        let mut o = VarOverrides::default();
        o.push_cli(&["swp=1".into()]).unwrap();
        let e = resolve("r", &declared, &o).unwrap_err().to_string();
        assert_eq!(
            e,
            "--var: recipe r has no variable `swp`; did you mean `swap`?"
        );

        let mut o = VarOverrides::default();
        o.push_file("v.toml", "swap = \"1\"").unwrap();
        let e = resolve("r", &declared, &o).unwrap_err().to_string();
        assert!(
            e.starts_with("v.toml: variable `swap` is a number but the value given is a string"),
            "{e}"
        );

        assert!(VarOverrides::default()
            .push_cli(&["novalue".into()])
            .is_err());
    }
}
