//! GitHub's REST description (`@octokit/openapi`), as the fake GitHub uses it: finding
//! the operation for a request, and validating bodies against the operation's schemas.
//!
//! The validator covers what GitHub's description uses for the endpoints bakery calls:
//! `$ref`, `type` (with OpenAPI 3.0 `nullable`), `enum`, `required`, `properties`,
//! `additionalProperties`, `items`, `minItems`/`maxItems`, `minLength`/`maxLength`,
//! `oneOf`, `anyOf` and `allOf`.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

/// Decoded path parameters, by name.
pub type PathParams = Vec<(String, String)>;

pub struct Spec {
    root: Value,
    operations: Vec<Operation>,
}

pub struct Operation {
    pub method: String,
    pub template: String,
    segments: Vec<Segment>,
    /// JSON pointer of the operation object in the description.
    pointer: String,
    pub operation_id: String,
}

enum Segment {
    Literal(String),
    Param(String),
}

/// Where `scripts/github/setup.sh` installs the description.
pub fn spec_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/node_modules/@octokit/openapi/generated/api.github.com.json")
}

/// The description, loaded once per test binary (13 MB of JSON).
pub fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = spec_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read GitHub's REST description at {}: {e}; run scripts/github/setup.sh",
                path.display()
            )
        });
        let root: Value = serde_json::from_str(&text).expect("the REST description is JSON");
        Spec::new(root)
    })
}

fn escape_pointer(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

impl Spec {
    fn new(root: Value) -> Self {
        let mut operations = Vec::new();
        let paths = root["paths"].as_object().expect("paths");
        for (template, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                let Some(op_id) = op.get("operationId").and_then(Value::as_str) else {
                    continue;
                };
                let segments = template
                    .trim_start_matches('/')
                    .split('/')
                    .map(|s| {
                        if s.starts_with('{') && s.ends_with('}') {
                            Segment::Param(s[1..s.len() - 1].to_string())
                        } else {
                            Segment::Literal(s.to_string())
                        }
                    })
                    .collect();
                operations.push(Operation {
                    method: method.to_ascii_uppercase(),
                    template: template.clone(),
                    segments,
                    pointer: format!("/paths/{}/{}", escape_pointer(template), method),
                    operation_id: op_id.to_string(),
                });
            }
        }
        Spec { root, operations }
    }

    /// The operation for `method` and the raw request path, with its decoded path
    /// parameters. Among templates that match, the one with the most literal segments wins
    /// (`/releases/tags/{tag}` over `/releases/{release_id}/...`).
    pub fn find(&self, method: &str, path: &str) -> Option<(&Operation, PathParams)> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut best: Option<(usize, &Operation, PathParams)> = None;
        for op in &self.operations {
            if op.method != method || op.segments.len() != parts.len() {
                continue;
            }
            let mut params = Vec::new();
            let mut literals = 0;
            let mut ok = true;
            for (seg, part) in op.segments.iter().zip(&parts) {
                match seg {
                    Segment::Literal(l) if l == part => literals += 1,
                    Segment::Literal(_) => {
                        ok = false;
                        break;
                    }
                    Segment::Param(name) if !part.is_empty() => {
                        params.push((name.clone(), percent_decode(part)))
                    }
                    Segment::Param(_) => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok && best.as_ref().is_none_or(|(n, _, _)| literals > *n) {
                best = Some((literals, op, params));
            }
        }
        best.map(|(_, op, params)| (op, params))
    }

    pub fn operation(&self, op: &Operation) -> &Value {
        self.root.pointer(&op.pointer).expect("operation pointer")
    }

    /// Follows `$ref`s (local ones only, as GitHub's description has).
    pub fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        for _ in 0..32 {
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let pointer = r.strip_prefix('#').expect("local $ref");
                    v = self
                        .root
                        .pointer(pointer)
                        .unwrap_or_else(|| panic!("dangling $ref {r}"));
                }
                None => return v,
            }
        }
        panic!("$ref chain too long")
    }

    /// The JSON request body schema, if the operation takes one.
    pub fn request_schema(&self, op: &Operation) -> Option<(&Value, bool)> {
        let body = self.resolve(self.operation(op).get("requestBody")?);
        let required = body
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let schema = body.pointer("/content/application~1json/schema")?;
        Some((schema, required))
    }

    /// The JSON response schema for `status`, if the description documents one.
    pub fn response_schema(&self, op: &Operation, status: u16) -> Option<&Value> {
        let responses = self.operation(op).get("responses")?;
        let response = self.resolve(responses.get(status.to_string())?);
        response.pointer("/content/application~1json/schema")
    }

    /// The first example of the operation's `status` answer, with `$ref`s resolved.
    pub fn example(&self, op: &Operation, status: u16) -> Option<Value> {
        let responses = self.operation(op).get("responses")?;
        let response = self.resolve(responses.get(status.to_string())?);
        let content = response.pointer("/content/application~1json")?;
        if let Some(examples) = content.get("examples").and_then(Value::as_object) {
            let first = examples.values().next()?;
            return self.resolve(first).get("value").cloned();
        }
        content.get("example").cloned()
    }

    /// Adds the properties `schema` requires that `value` lacks, with the plainest value
    /// the schema allows (`null` where nullable, else the first enum value or an empty
    /// value of the type). Some of the description's examples predate fields their
    /// schemas now require; this brings them up to date without inventing any field.
    pub fn complete(&self, value: &mut Value, schema: &Value) {
        let schema = self.resolve(schema);
        for key in ["allOf", "anyOf", "oneOf"] {
            if let Some(first) = schema
                .get(key)
                .and_then(Value::as_array)
                .and_then(|a| a.first())
            {
                if key == "allOf" {
                    for s in schema[key].as_array().unwrap() {
                        self.complete(value, s);
                    }
                } else if self.validate(value, schema).is_empty() {
                    return;
                } else {
                    self.complete(value, first);
                }
            }
        }
        match value {
            Value::Object(map) => {
                let props = schema.get("properties").and_then(Value::as_object);
                if let Some(required) = schema.get("required").and_then(Value::as_array) {
                    for r in required.iter().filter_map(Value::as_str) {
                        if !map.contains_key(r) {
                            let prop = props.and_then(|p| p.get(r)).map(|s| self.resolve(s));
                            map.insert(
                                r.to_string(),
                                prop.map_or(Value::Null, |s| self.plainest(s)),
                            );
                        }
                    }
                }
                if let Some(props) = props {
                    for (k, v) in map.iter_mut() {
                        if let Some(s) = props.get(k) {
                            self.complete(v, s);
                        }
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for v in items {
                        self.complete(v, item_schema);
                    }
                }
            }
            _ => {}
        }
    }

    fn plainest(&self, schema: &Value) -> Value {
        let schema = self.resolve(schema);
        if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return Value::Null;
        }
        if let Some(first) = schema
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            return first.clone();
        }
        let mut v = match schema.get("type").and_then(Value::as_str) {
            Some("string") => Value::String(String::new()),
            Some("integer") | Some("number") => Value::from(0),
            Some("boolean") => Value::Bool(false),
            Some("array") => Value::Array(vec![]),
            Some("object") => Value::Object(Default::default()),
            _ => Value::Null,
        };
        if v.is_object() {
            self.complete(&mut v, schema);
        }
        v
    }

    /// Validates `value` against `schema`; each error names the JSON path.
    pub fn validate(&self, value: &Value, schema: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(value, schema, "$", &mut errors);
        errors
    }

    fn check(&self, value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if value.is_null() && schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.check(value, s, path, errors);
            }
        }
        if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
            let nullable_ok = value.is_null()
                && any.iter().any(|s| {
                    self.resolve(s).get("nullable").and_then(Value::as_bool) == Some(true)
                });
            if !nullable_ok
                && !any
                    .iter()
                    .any(|s| self.validate_at(value, s, path).is_empty())
            {
                errors.push(format!("{path}: matches none of anyOf"));
            }
        }
        if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
            let matching = one
                .iter()
                .filter(|s| self.validate_at(value, s, path).is_empty())
                .count();
            if matching != 1 {
                errors.push(format!(
                    "{path}: matches {matching} of oneOf's {} schemas, not exactly one",
                    one.len()
                ));
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                errors.push(format!("{path}: {value} is not one of {allowed:?}"));
            }
        }
        if let Some(ty) = schema.get("type").and_then(Value::as_str) {
            let ok = match ty {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "null" => value.is_null(),
                _ => true,
            };
            if !ok {
                errors.push(format!("{path}: expected {ty}, found {}", kind(value)));
                return;
            }
        }
        match value {
            Value::Object(map) => {
                if let Some(required) = schema.get("required").and_then(Value::as_array) {
                    for r in required.iter().filter_map(Value::as_str) {
                        if !map.contains_key(r) {
                            errors.push(format!("{path}: missing required property {r:?}"));
                        }
                    }
                }
                let props = schema.get("properties").and_then(Value::as_object);
                for (k, v) in map {
                    let child = format!("{path}.{k}");
                    match props.and_then(|p| p.get(k)) {
                        Some(s) => self.check(v, s, &child, errors),
                        None => match schema.get("additionalProperties") {
                            Some(Value::Bool(false)) => {
                                errors.push(format!("{path}: property {k:?} is not allowed"))
                            }
                            Some(s @ Value::Object(_)) => self.check(v, s, &child, errors),
                            _ => {}
                        },
                    }
                }
            }
            Value::Array(items) => {
                if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                    if items.len() as u64 > max {
                        errors.push(format!(
                            "{path}: {} items, at most {max} allowed",
                            items.len()
                        ));
                    }
                }
                if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                    if (items.len() as u64) < min {
                        errors.push(format!(
                            "{path}: {} items, at least {min} needed",
                            items.len()
                        ));
                    }
                }
                if let Some(item_schema) = schema.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        self.check(v, item_schema, &format!("{path}[{i}]"), errors);
                    }
                }
            }
            Value::String(s) => {
                let n = s.chars().count() as u64;
                if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                    if n > max {
                        errors.push(format!("{path}: {n} characters, at most {max} allowed"));
                    }
                }
                if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
                    if n < min {
                        errors.push(format!("{path}: {n} characters, at least {min} needed"));
                    }
                }
            }
            _ => {}
        }
    }

    fn validate_at(&self, value: &Value, schema: &Value, path: &str) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(value, schema, path, &mut errors);
        errors
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
