//! `recipe.toml` → [`RecipeSpec`], recording every problem with its position.
//! In memory only: the file system checks live in `load`.

use std::collections::BTreeSet;
use std::sync::Arc;

use toml::de::DeValue;

use crate::plan::model::{ConnectVia, SealPlan};

use super::diagnostic::{did_you_mean, Diagnostics, SourceFile};
use super::reader::{type_name, Cx, Loc, Table};
use super::spec::*;
use super::template::{self, Template, Text};
use super::variables::{parse_variables, VariableSpec};

/// Reads one recipe. Returns the recipe as far as it could be read (`None` only on a
/// TOML syntax error) and every problem found.
pub fn parse_recipe(name: &str, file: Arc<SourceFile>) -> (Option<RecipeSpec>, Diagnostics) {
    let cx = Cx::new(file.clone());
    let spec = cx.parse_document().map(|doc| {
        let mut root = Table::new(&cx, doc.get_ref(), 0..0, "the recipe");
        let spec = read_recipe(name, &file, &mut root);
        root.finish();
        spec
    });
    (spec, cx.into_diagnostics())
}

fn read_recipe(name: &str, file: &Arc<SourceFile>, root: &mut Table<'_, '_, '_>) -> RecipeSpec {
    let cx = root.cx;
    let dir = file
        .path
        .rsplit_once('/')
        .map(|(d, _)| d.to_string())
        .unwrap_or_default();

    // Variables first: every other string is checked against them.
    let variables: Vec<VariableSpec> = root
        .table("variables", "[variables]")
        .map(parse_variables)
        .unwrap_or_default();
    let var_names: BTreeSet<String> = variables.iter().map(|v| v.name.value.clone()).collect();
    let r = Reader {
        cx,
        vars: &var_names,
    };

    let description = root.string("description").map(|s| r.text(&s));
    let qemu_section = root.has("qemu");
    let qemu = root
        .table("qemu", "[qemu]")
        .and_then(|t| super::qemu::read_qemu(&dir, t));
    let source = match root.value("source") {
        Some(v) => r.source(v),
        None if qemu_section => None,
        None => {
            cx.error(
                0..0,
                "missing required table [source]",
                "say where the image starts from: [source] with ami = \"ami-...\", a filter (owners, name), or recipe = \"...\"",
            );
            None
        }
    };
    let builder = root
        .table("builder", "[builder]")
        .map(|t| r.builder(t))
        .unwrap_or_default();
    let provision = root
        .table_array("provision")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| r.step(t))
        .collect();
    let stamp = root
        .table("stamp", "[stamp]")
        .map(|t| r.stamp(t))
        .unwrap_or_default();
    let verify = root
        .table_array("verify")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| r.verify(t))
        .collect();
    let seal = root
        .table("seal", "[seal]")
        .map(|t| r.seal(t))
        .unwrap_or_default();
    let image = root
        .table("image", "[image]")
        .map(|t| r.image(t))
        .unwrap_or_default();
    let distribute = root
        .table("distribute", "[distribute]")
        .map(|t| r.distribute(t))
        .unwrap_or_default();
    let lifecycle = root
        .table("lifecycle", "[lifecycle]")
        .map(|t| super::lifecycle::read_lifecycle(cx, t))
        .unwrap_or_default();

    RecipeSpec {
        name: name.to_string(),
        file: file.clone(),
        dir,
        description,
        source,
        builder,
        variables,
        provision,
        stamp,
        verify,
        seal,
        image,
        distribute,
        lifecycle,
        qemu,
        qemu_section,
    }
}

struct Reader<'c> {
    cx: &'c Cx,
    vars: &'c BTreeSet<String>,
}

impl Reader<'_> {
    fn text(&self, s: &Loc<String>) -> Text {
        template::parse(self.cx, s, self.vars)
    }

    fn text_opt(&self, s: Option<Loc<String>>) -> Option<Text> {
        s.map(|s| self.text(&s))
    }

    fn text_map(&self, m: Option<Vec<(Loc<String>, Loc<String>)>>) -> Vec<(Loc<String>, Text)> {
        m.unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let t = self.text(&v);
                (k, t)
            })
            .collect()
    }

    fn source(&self, v: &toml::Spanned<DeValue<'_>>) -> Option<Loc<SourceSpec>> {
        let mut t = Table::from_value(self.cx, v, "[source]", "source")?;
        let ami = t.string("ami");
        let recipe = t.string("recipe");
        let version = t.string("version");
        let owners = t.one_or_many_strings("owners");
        let name = t.string("name");
        let architecture = t.string("architecture");
        let most_recent = t.bool("most_recent");
        let forms: Vec<&str> = [
            t.has("ami").then_some("ami"),
            t.has("recipe").then_some("recipe"),
            (t.has("owners") || t.has("name")).then_some("owners/name"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let span = t.span.clone();
        t.finish();
        if forms.len() > 1 {
            self.cx.error(
                span,
                format!("[source] mixes {}", forms.join(" and ")),
                "use exactly one form: ami = \"ami-...\"; or owners + name (a filter); or recipe = \"...\"",
            );
            return None;
        }
        let not_here = |key: &str, v: &Option<Loc<String>>, form: &str| {
            if let Some(v) = v {
                self.cx.error(
                    v.span.clone(),
                    format!("`{key}` does not apply to a source {form}"),
                    format!("remove `{key}`"),
                );
            }
        };
        let source = match forms.first().copied() {
            Some("ami") => {
                not_here("version", &version, "AMI id");
                not_here("architecture", &architecture, "AMI id");
                SourceSpec::Ami(ami?)
            }
            Some("recipe") => {
                not_here("architecture", &architecture, "recipe");
                let version = version
                    .map(|v| self.text(&v))
                    .unwrap_or_else(|| Loc::new(Template::literal("latest"), span.clone()));
                SourceSpec::Recipe {
                    recipe: recipe?,
                    version,
                }
            }
            Some(_) => {
                not_here("version", &version, "filter");
                let Some(owners) = owners else {
                    self.cx.error(
                        span,
                        "missing required key `owners` in [source]",
                        "add owners = [\"099720109477\"] (the account that publishes the image; 099720109477 is Canonical)",
                    );
                    return None;
                };
                let Some(name) = name else {
                    self.cx.error(
                        span,
                        "missing required key `name` in [source]",
                        "add name = \"ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*\" (a glob on the image name)",
                    );
                    return None;
                };
                if owners.value.is_empty() {
                    self.cx.error(
                        owners.span.clone(),
                        "`owners` in [source] is empty",
                        "name at least one owner: an account id, amazon, aws-marketplace or self",
                    );
                }
                SourceSpec::Filter {
                    owners: owners.value,
                    name: self.text(&name),
                    architecture,
                    most_recent: most_recent.map(|b| b.value).unwrap_or(true),
                }
            }
            None => {
                self.cx.error(
                    span,
                    "[source] says nothing about the source image",
                    "add ami = \"ami-...\"; or owners + name (a filter); or recipe = \"...\"",
                );
                return None;
            }
        };
        Some(Loc::new(source, v.span()))
    }

    fn builder(&self, mut t: Table<'_, '_, '_>) -> BuilderSpec {
        let region = t.string("region");
        let instance_type = t.string("instance_type").map(|s| self.text(&s));
        let subnet_id = t.string("subnet_id");
        let volume_size_gb = t
            .integer("volume_size_gb", 1, 16384)
            .map(|l| l.map(|v| v as u32));
        let volume_type = t.string("volume_type");
        let ssh_user = t
            .required_string("ssh_user", "\"ubuntu\"")
            .map(|s| self.text(&s));
        let connect = t.value("connect").and_then(|v| self.connect(v));
        let ssh_cidr = t.string("ssh_cidr");
        let imdsv2_required = t.bool("imdsv2_required").map(|b| b.value);
        let kms_key = t.string("kms_key");
        let span = t.span.clone();
        t.finish();
        BuilderSpec {
            span,
            region,
            instance_type,
            subnet_id,
            volume_size_gb,
            volume_type,
            ssh_user,
            connect,
            ssh_cidr,
            imdsv2_required,
            kms_key,
        }
    }

    fn connect(&self, v: &toml::Spanned<DeValue<'_>>) -> Option<Loc<ConnectVia>> {
        const WAYS: [&str; 2] = ["public_ip", "private_ip"];
        let via = match v.get_ref() {
            DeValue::String(s) => match s.as_ref() {
                "public_ip" => ConnectVia::PublicIp,
                "private_ip" => ConnectVia::PrivateIp,
                other => {
                    let hint = match did_you_mean(other, WAYS) {
                        Some(m) => format!("did you mean \"{m}\"?"),
                        None => {
                            "use \"public_ip\", \"private_ip\" or { host = \"...\", port = 22 }"
                                .into()
                        }
                    };
                    self.cx
                        .error(v.span(), format!("unknown connect mode `{other}`"), hint);
                    return None;
                }
            },
            DeValue::Table(_) => {
                let mut t = Table::from_value(self.cx, v, "[builder.connect]", "connect")?;
                let host = t.required_string("host", "\"127.0.0.1\"");
                let port = t.integer("port", 1, 65535);
                t.finish();
                ConnectVia::Explicit {
                    host: host?.value,
                    port: port.map(|p| p.value as u16).unwrap_or(22),
                }
            }
            other => {
                self.cx.error(
                    v.span(),
                    format!(
                        "`connect` in [builder] must be a string or a table, found {}",
                        type_name(other)
                    ),
                    "use \"public_ip\", \"private_ip\" or { host = \"...\", port = 22 }",
                );
                return None;
            }
        };
        Some(Loc::new(via, v.span()))
    }

    fn step_type(
        &self,
        t: &mut Table<'_, '_, '_>,
        kinds: &[&str],
        example: &str,
    ) -> Option<String> {
        let ty = t.required_string("type", example)?;
        if kinds.contains(&ty.value.as_str()) {
            return Some(ty.value);
        }
        let hint = match did_you_mean(&ty.value, kinds.iter().copied()) {
            Some(m) => format!("did you mean \"{m}\"?"),
            None => format!("use one of: {}", kinds.join(", ")),
        };
        self.cx.error(
            ty.span.clone(),
            format!(
                "unknown {} type `{}`",
                t.name
                    .trim_start_matches("[[")
                    .split(']')
                    .next()
                    .unwrap_or(""),
                ty.value
            ),
            hint,
        );
        None
    }

    fn step(&self, mut t: Table<'_, '_, '_>) -> Option<StepSpec> {
        let kind = self.step_type(&mut t, &["shell", "file", "ansible"], "\"shell\"");
        let name = t.string("name").map(|s| self.text(&s));
        let span = t.span.clone();
        let step = match kind.as_deref() {
            Some("shell") => {
                let inline = t.one_or_many_strings("inline");
                let script = t.string("script");
                let env = t.string_map("env");
                if let Some(env) = &env {
                    for (k, _) in env {
                        if !is_env_name(&k.value) {
                            self.cx.error(
                                k.span.clone(),
                                format!("`{}` is not an environment variable name", k.value),
                                "use letters, digits and underscores, not starting with a digit",
                            );
                        }
                    }
                }
                let env = self.text_map(env);
                let sudo = t.bool("sudo").is_some_and(|b| b.value);
                let expect_disconnect = t.bool("expect_disconnect").is_some_and(|b| b.value);
                let timeout_secs = t.duration("timeout").map(|d| d.value);
                let run = match (inline, script) {
                    (Some(_), Some(s)) => {
                        self.cx.error(
                            s.span.clone(),
                            format!("{} has both `inline` and `script`", t.name),
                            "keep one: inline commands, or a script file beside the recipe",
                        );
                        None
                    }
                    (Some(lines), None) => {
                        if lines.value.is_empty() {
                            self.cx.error(
                                lines.span.clone(),
                                format!("`inline` in {} has no commands", t.name),
                                "add at least one command, or remove the step",
                            );
                        }
                        Some(ShellRunSpec::Inline(
                            lines.value.iter().map(|l| self.text(l)).collect(),
                        ))
                    }
                    (None, Some(s)) => Some(ShellRunSpec::Script(s)),
                    (None, None) => {
                        self.cx.error(
                            span.clone(),
                            format!("{} has neither `inline` nor `script`", t.name),
                            "add inline = [\"command\", ...] or script = \"file.sh\" (relative to the recipe folder)",
                        );
                        None
                    }
                };
                run.map(|run| StepSpec::Shell {
                    span: span.clone(),
                    name,
                    run,
                    env,
                    sudo,
                    expect_disconnect,
                    timeout_secs,
                })
            }
            Some("file") => {
                let source = t.required_string("source", "\"files/motd\"");
                let destination = t
                    .required_string("destination", "\"/etc/motd\"")
                    .map(|s| self.text(&s));
                let mode = t.string("mode").and_then(|m| self.mode(&m));
                let owner = t.string("owner").map(|s| self.text(&s));
                if let Some(d) = &destination {
                    self.absolute(d, "destination");
                }
                Some(StepSpec::File {
                    span: span.clone(),
                    name,
                    source: source?,
                    destination: destination?,
                    mode,
                    owner,
                })
            }
            Some("ansible") => {
                let playbook = t.required_string("playbook", "\"playbook.yml\"");
                let extra_vars = t.string_map("extra_vars");
                let extra_vars = self.text_map(extra_vars);
                let extra_args = t.string_list("extra_args");
                // Templated arguments are checked once rendered, when planning.
                if let Some(list) = extra_args
                    .as_ref()
                    .filter(|l| !l.value.iter().any(|a| a.value.contains("{{")))
                {
                    let raw: Vec<&str> = list.value.iter().map(|a| a.value.as_str()).collect();
                    if let Err((at, why)) = super::ansible_args::check_extra_args(&raw) {
                        self.cx.error(
                            list.value[at].span.clone(),
                            format!("extra_args: {why}"),
                            why.hint(),
                        );
                    }
                }
                let extra_args = extra_args
                    .map(|l| l.value.iter().map(|a| self.text(a)).collect())
                    .unwrap_or_default();
                let become_root = t.bool("become").is_some_and(|b| b.value);
                let timeout_secs = t.duration("timeout").map(|d| d.value);
                Some(StepSpec::Ansible {
                    span: span.clone(),
                    name,
                    playbook: playbook?,
                    extra_vars,
                    extra_args,
                    become_root,
                    timeout_secs,
                })
            }
            _ => {
                // Unknown type: accept every key any step type knows, so the only error
                // is the type itself.
                t.know(&[
                    "inline",
                    "script",
                    "env",
                    "sudo",
                    "expect_disconnect",
                    "timeout",
                    "source",
                    "destination",
                    "mode",
                    "owner",
                    "playbook",
                    "extra_vars",
                    "extra_args",
                    "become",
                ]);
                None
            }
        };
        t.finish();
        step
    }

    fn mode(&self, m: &Loc<String>) -> Option<u32> {
        let digits = m.value.strip_prefix("0o").unwrap_or(&m.value);
        let ok =
            (3..=4).contains(&digits.len()) && digits.chars().all(|c| ('0'..='7').contains(&c));
        if !ok {
            self.cx.error(
                m.span.clone(),
                format!("`{}` is not an octal file mode", m.value),
                "write it as a string of octal digits, e.g. mode = \"0644\"",
            );
            return None;
        }
        u32::from_str_radix(digits, 8).ok()
    }

    /// Reports a path on the builder that is not absolute.
    fn absolute(&self, t: &Text, key: &str) {
        let starts_absolute = match t.value.segments.first() {
            Some(template::Segment::Literal(l)) => l.starts_with('/'),
            // A reference first: its value decides; checked when planning.
            Some(template::Segment::Ref(..)) => true,
            None => false,
        };
        if !starts_absolute {
            self.cx.error(
                t.span.clone(),
                format!("`{key}` must be an absolute path on the builder"),
                "start it with /, e.g. /etc/motd",
            );
        }
    }

    fn verify(&self, mut t: Table<'_, '_, '_>) -> Option<VerifySpec> {
        let kind = self.step_type(&mut t, &["command", "file"], "\"command\"");
        let name = t.string("name").map(|s| self.text(&s));
        let check = match kind.as_deref() {
            Some("command") => {
                let command = t.required_string("command", "\"systemctl is-active docker\"");
                let sudo = t.bool("sudo").is_some_and(|b| b.value);
                let expect_exit = t
                    .integer("expect_exit", 0, 255)
                    .map(|e| e.value as i32)
                    .unwrap_or(0);
                let expect_stdout = self.text_opt(t.string("expect_stdout"));
                command.map(|c| VerifySpec::Command {
                    name,
                    command: self.text(&c),
                    sudo,
                    expect_exit,
                    expect_stdout,
                })
            }
            Some("file") => {
                let path = t
                    .required_string("path", "\"/etc/release\"")
                    .map(|p| self.text(&p));
                let expect_content = self.text_opt(t.string("expect_content"));
                if let Some(p) = &path {
                    self.absolute(p, "path");
                }
                path.map(|path| VerifySpec::File {
                    name,
                    path,
                    expect_content,
                })
            }
            _ => {
                t.know(&[
                    "command",
                    "sudo",
                    "expect_exit",
                    "expect_stdout",
                    "path",
                    "expect_content",
                ]);
                None
            }
        };
        t.finish();
        check
    }

    fn stamp(&self, mut t: Table<'_, '_, '_>) -> StampSpec {
        let path = t.string("path");
        let extra = t.string_map("extra");
        t.finish();
        if let Some(p) = &path {
            if !p.value.starts_with('/') {
                self.cx.error(
                    p.span.clone(),
                    "`path` in [stamp] must be an absolute path on the builder",
                    "leave it out for /etc/release, or write an absolute path",
                );
            }
        }
        let extra = self.text_map(extra);
        for (k, v) in &extra {
            if crate::recipe::values::STAMP_KEYS.contains(&k.value.as_str()) {
                self.cx.error(
                    k.span.clone(),
                    format!("`{}` is written by bakery into every release file", k.value),
                    "pick another key; bakery writes RECIPE, GIT_SHA, BUILD_ID, BUILD_TIME and SOURCE_AMI itself",
                );
            } else if !is_env_name(&k.value) {
                self.cx.error(
                    k.span.clone(),
                    format!("`{}` is not a KEY for a KEY=VALUE line", k.value),
                    "use letters, digits and underscores, e.g. TEAM",
                );
            }
            if v.value.source_text().contains('\n') {
                self.cx.error(
                    v.span.clone(),
                    format!("the value of `{}` spans several lines", k.value),
                    "release file values are one line each",
                );
            }
        }
        StampSpec { path, extra }
    }

    fn seal(&self, mut t: Table<'_, '_, '_>) -> SealPlan {
        let d = SealPlan::default();
        let mut get =
            |k: &'static str, default: bool| t.bool(k).map(|b| b.value).unwrap_or(default);
        let seal = SealPlan {
            enabled: get("enabled", d.enabled),
            host_keys: get("host_keys", d.host_keys),
            machine_id: get("machine_id", d.machine_id),
            build_key: get("build_key", d.build_key),
            cloud_init: get("cloud_init", d.cloud_init),
            provisioning_files: get("provisioning_files", d.provisioning_files),
            shell_history: get("shell_history", d.shell_history),
        };
        t.finish();
        seal
    }

    fn image(&self, mut t: Table<'_, '_, '_>) -> ImageSpec {
        let name = self.text_opt(t.string("name"));
        let description = self.text_opt(t.string("description"));
        let tags = t.string_map("tags");
        let snapshot_tags = t.string_map("snapshot_tags");
        let span = t.span.clone();
        t.finish();
        ImageSpec {
            span,
            name,
            description,
            tags: self.text_map(tags),
            snapshot_tags: self.text_map(snapshot_tags),
        }
    }

    fn regions(&self, t: &mut Table<'_, '_, '_>) -> RegionsSpec {
        RegionsSpec {
            regions: t.string_list("regions"),
            kms_key: t.string("kms_key"),
            kms_keys: t.string_map("kms_keys").unwrap_or_default(),
        }
    }

    fn distribute(&self, mut t: Table<'_, '_, '_>) -> DistributeSpec {
        let encrypted = t.bool("encrypted");
        let home = self.regions(&mut t);
        let accounts = t
            .table_array("accounts")
            .unwrap_or_default()
            .into_iter()
            .map(|mut a| {
                let account = AccountSpec {
                    span: a.span.clone(),
                    account_id: a.required_string("account_id", "\"111111111111\""),
                    role_arn: a.string("role_arn"),
                    external_id: a.string("external_id"),
                    targets: self.regions(&mut a),
                };
                a.finish();
                account
            })
            .collect();
        let launch_permissions = t
            .table("launch_permissions", "[distribute.launch_permissions]")
            .map(|mut l| {
                let mut list = |k| l.string_list(k).map(|v| v.value).unwrap_or_default();
                let spec = LaunchPermissionsSpec {
                    account_ids: list("account_ids"),
                    organization_arns: list("organization_arns"),
                    organizational_unit_arns: list("organizational_unit_arns"),
                };
                l.finish();
                spec
            })
            .unwrap_or_default();
        let deprecate_after_secs = t.duration("deprecate_after");
        let span = t.span.clone();
        t.finish();
        DistributeSpec {
            span,
            encrypted,
            home,
            accounts,
            launch_permissions,
            deprecate_after_secs,
        }
    }
}

pub fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
