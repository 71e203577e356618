//! Reading TOML with positions. The document is parsed once into `toml::de::DeTable`
//! (which keeps the span of every key and value); the readers here pull typed values out
//! of it and record a positioned diagnostic for every problem instead of stopping at the
//! first one, the way serde would.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diagnostic::{did_you_mean, Diagnostic, Diagnostics, SourceFile};

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Loc<T> {
    pub value: T,
    pub span: Range<usize>,
}

impl<T> Loc<T> {
    pub fn new(value: T, span: Range<usize>) -> Self {
        Loc { value, span }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Loc<U> {
        Loc {
            value: f(self.value),
            span: self.span,
        }
    }
}

impl<T> std::ops::Deref for Loc<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// One file being read: where its diagnostics go.
#[derive(Debug)]
pub struct Cx {
    pub file: Arc<SourceFile>,
    diags: RefCell<Diagnostics>,
}

impl Cx {
    pub fn new(file: Arc<SourceFile>) -> Self {
        Cx {
            file,
            diags: RefCell::new(Diagnostics::new()),
        }
    }

    pub fn error(&self, span: Range<usize>, message: impl Into<String>, hint: impl Into<String>) {
        let hint = hint.into();
        let mut d = Diagnostic::error(&self.file, span, message);
        if !hint.is_empty() {
            d = d.with_hint(hint);
        }
        self.diags.borrow_mut().push(d);
    }

    pub fn warning(&self, span: Range<usize>, message: impl Into<String>, hint: impl Into<String>) {
        let hint = hint.into();
        let mut d = Diagnostic::warning(&self.file, span, message);
        if !hint.is_empty() {
            d = d.with_hint(hint);
        }
        self.diags.borrow_mut().push(d);
    }

    pub fn error_count(&self) -> usize {
        self.diags.borrow().error_count()
    }

    pub fn into_diagnostics(self) -> Diagnostics {
        self.diags.into_inner()
    }

    /// Parses the file as a TOML document. Syntax errors are recorded; `None` when there
    /// were any, since the rest of the document can't be trusted then.
    pub fn parse_document(&self) -> Option<Spanned<DeTable<'_>>> {
        let (table, errors) = DeTable::parse_recoverable(&self.file.text);
        if errors.is_empty() {
            return Some(table);
        }
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            let message = first_line(e.message());
            self.error(
                span,
                format!("TOML syntax error: {message}"),
                "fix the syntax: strings need quotes, tables are written [name], arrays [a, b]",
            );
        }
        None
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

/// "a string", "an integer"... as messages name TOML types.
pub fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Converts a TOML integer, if it fits an `i64`.
pub fn integer_value(v: &DeValue<'_>) -> Option<i64> {
    let i = v.as_integer()?;
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}

/// A table being read. Every key asked for is remembered as known; [`Table::finish`]
/// reports the rest as unknown, with a "did you mean" hint.
pub struct Table<'c, 'a, 'i> {
    pub cx: &'c Cx,
    pub map: &'a DeTable<'i>,
    pub span: Range<usize>,
    /// How messages name this table, e.g. `[builder]` or `[[provision]] #2`.
    pub name: String,
    known: BTreeSet<&'static str>,
}

impl<'c, 'a, 'i> Table<'c, 'a, 'i> {
    pub fn new(
        cx: &'c Cx,
        map: &'a DeTable<'i>,
        span: Range<usize>,
        name: impl Into<String>,
    ) -> Self {
        Table {
            cx,
            map,
            span,
            name: name.into(),
            known: BTreeSet::new(),
        }
    }

    /// Reads `value` as a table, or reports its type.
    pub fn from_value(
        cx: &'c Cx,
        value: &'a Spanned<DeValue<'i>>,
        name: impl Into<String>,
        key: &str,
    ) -> Option<Self> {
        let name = name.into();
        match value.get_ref() {
            DeValue::Table(t) => Some(Table::new(cx, t, value.span(), name)),
            other => {
                cx.error(
                    value.span(),
                    format!("`{key}` must be a table, found {}", type_name(other)),
                    format!(
                        "write it as [{}] with keys below it, or inline as {key} = {{ ... }}",
                        name.trim_matches(['[', ']'])
                    ),
                );
                None
            }
        }
    }

    /// Marks keys as known without reading them (e.g. a discriminator read elsewhere).
    pub fn know(&mut self, keys: &[&'static str]) {
        self.known.extend(keys.iter().copied());
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some()
    }

    /// The raw value of `key`, marking it known.
    pub fn value(&mut self, key: &'static str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.known.insert(key);
        self.map.get(key)
    }

    /// The span of `key` itself (the key text), for errors about the key.
    pub fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.map.get_key_value(key).map(|(k, _)| k.span())
    }

    fn wrong_type(&self, key: &str, value: &Spanned<DeValue<'_>>, expected: &str, example: &str) {
        self.cx.error(
            value.span(),
            format!(
                "`{key}` in {} must be {expected}, found {}",
                self.name,
                type_name(value.get_ref())
            ),
            format!("write it as {key} = {example}"),
        );
    }

    pub fn missing(&self, key: &str, example: &str) {
        self.cx.error(
            self.span.clone(),
            format!("missing required key `{key}` in {}", self.name),
            format!("add {key} = {example}"),
        );
    }

    pub fn string(&mut self, key: &'static str) -> Option<Loc<String>> {
        let v = self.value(key)?;
        match v.get_ref().as_str() {
            Some(s) => Some(Loc::new(s.to_string(), v.span())),
            None => {
                self.wrong_type(key, v, "a string", "\"...\"");
                None
            }
        }
    }

    pub fn required_string(&mut self, key: &'static str, example: &str) -> Option<Loc<String>> {
        if !self.has(key) {
            self.known.insert(key);
            self.missing(key, example);
            return None;
        }
        self.string(key)
    }

    pub fn bool(&mut self, key: &'static str) -> Option<Loc<bool>> {
        let v = self.value(key)?;
        match v.get_ref().as_bool() {
            Some(b) => Some(Loc::new(b, v.span())),
            None => {
                self.wrong_type(key, v, "a boolean", "true or false (no quotes)");
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub fn integer(&mut self, key: &'static str, min: i64, max: i64) -> Option<Loc<i64>> {
        let v = self.value(key)?;
        match integer_value(v.get_ref()) {
            Some(i) if (min..=max).contains(&i) => Some(Loc::new(i, v.span())),
            Some(i) => {
                self.cx.error(
                    v.span(),
                    format!("`{key}` in {} is {i}, outside {min}..={max}", self.name),
                    format!("pick a value between {min} and {max}"),
                );
                None
            }
            None => {
                let example = match v.get_ref().as_str().map(|s| s.trim().parse::<i64>()) {
                    Some(Ok(i)) => i,
                    _ => min,
                };
                self.wrong_type(key, v, "an integer", &format!("{example} (no quotes)"));
                None
            }
        }
    }

    /// A duration written like `"30m"`, `"1h 30m"` or `"90s"`, in seconds.
    pub fn duration(&mut self, key: &'static str) -> Option<Loc<u64>> {
        let v = self.value(key)?;
        let Some(s) = v.get_ref().as_str() else {
            self.wrong_type(key, v, "a duration string", "\"30m\"");
            return None;
        };
        match humantime::parse_duration(s) {
            Ok(d) if d.as_secs() > 0 => Some(Loc::new(d.as_secs(), v.span())),
            Ok(_) => {
                self.cx.error(
                    v.span(),
                    format!("`{key}` in {} must be at least one second", self.name),
                    format!("write it as {key} = \"30m\""),
                );
                None
            }
            Err(e) => {
                self.cx.error(
                    v.span(),
                    format!("`{key}` in {} is not a duration: {e}", self.name),
                    "write a number with a unit, e.g. \"90s\", \"30m\", \"2h\", \"365d\"",
                );
                None
            }
        }
    }

    /// An array of strings. Elements of another type are reported one by one.
    pub fn string_list(&mut self, key: &'static str) -> Option<Loc<Vec<Loc<String>>>> {
        let v = self.value(key)?;
        let Some(arr) = v.get_ref().as_array() else {
            self.wrong_type(key, v, "an array of strings", "[\"...\", \"...\"]");
            return None;
        };
        let mut out = Vec::new();
        for item in arr.iter() {
            match item.get_ref().as_str() {
                Some(s) => out.push(Loc::new(s.to_string(), item.span())),
                None => self.cx.error(
                    item.span(),
                    format!(
                        "every item of `{key}` in {} must be a string, found {}",
                        self.name,
                        type_name(item.get_ref())
                    ),
                    "put the item in double quotes",
                ),
            }
        }
        Some(Loc::new(out, v.span()))
    }

    /// A string, or an array of strings (`owners = "amazon"` or `owners = ["amazon"]`).
    pub fn one_or_many_strings(&mut self, key: &'static str) -> Option<Loc<Vec<Loc<String>>>> {
        let v = self.value(key)?;
        if let Some(s) = v.get_ref().as_str() {
            return Some(Loc::new(vec![Loc::new(s.to_string(), v.span())], v.span()));
        }
        self.string_list(key)
    }

    /// A sub-table, e.g. `[builder]`.
    pub fn table(
        &mut self,
        key: &'static str,
        name: impl Into<String>,
    ) -> Option<Table<'c, 'a, 'i>> {
        let v = self.value(key)?;
        Table::from_value(self.cx, v, name, key)
    }

    /// An array of tables, e.g. `[[provision]]`.
    pub fn table_array(&mut self, key: &'static str) -> Option<Vec<Table<'c, 'a, 'i>>> {
        let v = self.value(key)?;
        let Some(arr) = v.get_ref().as_array() else {
            self.cx.error(
                v.span(),
                format!(
                    "`{key}` must be an array of tables, found {}",
                    type_name(v.get_ref())
                ),
                format!("write each entry as a [[{key}]] section"),
            );
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in arr.iter().enumerate() {
            match item.get_ref() {
                DeValue::Table(t) => out.push(Table::new(
                    self.cx,
                    t,
                    item.span(),
                    format!("[[{key}]] #{}", i + 1),
                )),
                other => self.cx.error(
                    item.span(),
                    format!(
                        "entry #{} of `{key}` must be a table, found {}",
                        i + 1,
                        type_name(other)
                    ),
                    format!("write each entry as a [[{key}]] section"),
                ),
            }
        }
        Some(out)
    }

    /// A table of string values, e.g. `tags = { Team = "platform" }`, in key order.
    pub fn string_map(&mut self, key: &'static str) -> Option<Vec<(Loc<String>, Loc<String>)>> {
        let v = self.value(key)?;
        let Some(t) = v.get_ref().as_table() else {
            self.wrong_type(key, v, "a table of strings", "{ KEY = \"value\" }");
            return None;
        };
        let mut out = Vec::new();
        for (k, item) in t.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push((
                    Loc::new(k.get_ref().to_string(), k.span()),
                    Loc::new(s.to_string(), item.span()),
                )),
                other => self.cx.error(
                    item.span(),
                    format!(
                        "`{key}.{}` in {} must be a string, found {}",
                        k.get_ref(),
                        self.name,
                        type_name(other)
                    ),
                    "put the value in double quotes",
                ),
            }
        }
        Some(out)
    }

    /// Reports every key that no reader asked for.
    pub fn finish(self) {
        for (k, v) in self.map.iter() {
            let key: &str = k.get_ref();
            if self.known.contains(key) {
                continue;
            }
            let hint = match did_you_mean(key, self.known.iter().copied()) {
                Some(m) => format!("did you mean `{m}`?"),
                None => format!(
                    "remove it; the keys allowed here are: {}",
                    self.known.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            };
            let _ = v;
            self.cx.error(
                k.span(),
                format!("unknown key `{key}` in {}", self.name),
                hint,
            );
        }
    }
}
