//! Pure planning: recipe + repository config + version + git SHA → [`model::BuildPlan`].
//! Nothing here calls a cloud; the clock and the file system come in through the request.
//!
//! [`plan_build`] is the pure core: checked recipes in, plan out. [`plan_from_repo`] is the
//! thin layer around it that reads the repository and the var files from disk.

pub mod model;
pub mod render;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};

use crate::recipe::aws_names;
use crate::recipe::diagnostic::did_you_mean;
use crate::recipe::reader::Loc;
use crate::recipe::spec::{
    RecipeSpec, RegionsSpec, ShellRunSpec, SourceSpec, StepSpec, VerifySpec,
};
use crate::recipe::template::{Builtin, Scope, Template, Text};
use crate::recipe::variables::{self, VarOverrides};
use crate::recipe::RecipeSet;
use model::*;

/// Builder defaults, documented in `docs/RECIPES.md`.
pub mod defaults {
    pub const INSTANCE_TYPE: &str = "t3.small";
    pub const VOLUME_SIZE_GB: u32 = 16;
    pub const VOLUME_TYPE: &str = "gp3";
    /// Packer's default too: the builder lives for minutes, accepts only its per-build key,
    /// and bakery's own address is rarely known in advance. Narrow it with `ssh_cidr`.
    pub const SSH_CIDR: &str = "0.0.0.0/0";
    pub const STEP_TIMEOUT_SECS: u64 = 30 * 60;
    pub const RELEASE_FILE: &str = "/etc/release";
    pub const IMAGE_NAME: &str = "{{ recipe }}-{{ version }}";
}

/// Everything the planner needs to plan one recipe's build.
#[derive(Debug, Clone)]
pub struct PlanRequest<'a> {
    /// The repository root: holds `bakery.toml` and `recipes/`.
    pub repo_root: &'a Path,
    pub recipe: &'a str,
    pub version: &'a str,
    pub git_sha: &'a str,
    pub build_time: chrono::DateTime<chrono::Utc>,
    /// `--var name=value` overrides.
    pub vars: BTreeMap<String, String>,
    /// `--var-file` files, applied before `vars`.
    pub var_files: Vec<PathBuf>,
    /// A throwaway image for a pull-request validation build.
    pub ephemeral: bool,
}

/// The pure planner's input besides the recipes.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub recipe: &'a str,
    pub version: &'a str,
    pub git_sha: &'a str,
    pub build_time: chrono::DateTime<chrono::Utc>,
    pub vars: &'a VarOverrides,
    pub ephemeral: bool,
}

/// Loads the repository's recipes, validates them and plans `req.recipe`.
/// Validation errors are returned in the same `file:line:col: message` form as
/// `bakery validate` prints them.
pub fn plan_from_repo(req: &PlanRequest<'_>) -> anyhow::Result<BuildPlan> {
    let (set, vars) = load_for_request(req)?;
    plan_build(&set, &req.input(&vars))
}

/// The builder-neutral part of a recipe's plan (steps, stamp, verify, seal), read from the
/// repository like [`plan_from_repo`]: what a builder without EC2 settings runs.
pub fn steps_from_repo(req: &PlanRequest<'_>) -> anyhow::Result<StepsPlan> {
    let (set, vars) = load_for_request(req)?;
    plan_steps(&set, &req.input(&vars))
}

impl PlanRequest<'_> {
    fn input<'a>(&'a self, vars: &'a VarOverrides) -> PlanInput<'a> {
        PlanInput {
            recipe: self.recipe,
            version: self.version,
            git_sha: self.git_sha,
            build_time: self.build_time,
            vars,
            ephemeral: self.ephemeral,
        }
    }
}

fn load_for_request(req: &PlanRequest<'_>) -> anyhow::Result<(RecipeSet, VarOverrides)> {
    let checked = crate::recipe::load_repo(req.repo_root)?;
    if !checked.is_ok() {
        let errors: Vec<String> = checked
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        bail!(
            "the recipes have {} error(s); fix them (bakery validate lists them too):\n{}",
            errors.len(),
            errors.join("\n")
        );
    }
    let mut vars = VarOverrides::default();
    for f in &req.var_files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read var file {}; check the path", f.display()))?;
        vars.push_file(&f.display().to_string(), &text)?;
    }
    for (name, value) in &req.vars {
        vars.push_cli(&[format!("{name}={value}")])?;
    }
    Ok((checked.set, vars))
}

/// What every builder of a recipe runs, whatever it builds on.
#[derive(Debug, Clone, PartialEq)]
pub struct StepsPlan {
    pub recipe: String,
    pub version: String,
    pub git_sha: String,
    /// RFC 3339, UTC.
    pub build_time: String,
    pub provision: Vec<ProvisionStep>,
    pub stamp: StampPlan,
    pub verify: Vec<VerifyCheck>,
    pub seal: SealPlan,
}

/// Plans the builder-neutral part of one recipe's build. Pure, like [`plan_build`].
pub fn plan_steps(set: &RecipeSet, input: &PlanInput<'_>) -> anyhow::Result<StepsPlan> {
    let (p, build_time) = planner(set, input)?;
    Ok(StepsPlan {
        recipe: p.recipe.name.clone(),
        version: input.version.to_string(),
        git_sha: input.git_sha.to_string(),
        build_time,
        provision: p.provision()?,
        stamp: p.stamp()?,
        verify: p.verify()?,
        seal: p.recipe.seal.clone(),
    })
}

/// Plans one recipe's build. Pure: everything comes in through the arguments. The set
/// must have passed validation; the errors left here are about the input (unknown recipe,
/// bad version, variables) and the rendered values.
pub fn plan_build(set: &RecipeSet, input: &PlanInput<'_>) -> anyhow::Result<BuildPlan> {
    let (p, build_time) = planner(set, input)?;
    let recipe = p.recipe;
    let config = &set.config;
    let plan = BuildPlan {
        repo: None,
        recipe: recipe.name.clone(),
        version: input.version.to_string(),
        git_sha: input.git_sha.to_string(),
        build_time,
        source: p.source()?,
        builder: p.builder(config)?,
        provision: p.provision()?,
        stamp: p.stamp()?,
        verify: p.verify()?,
        seal: recipe.seal.clone(),
        image: p.image(config, input.ephemeral)?,
        distribute: p.distribute(config, input.ephemeral)?,
    };
    Ok(plan)
}

fn planner<'a>(set: &'a RecipeSet, input: &PlanInput<'_>) -> anyhow::Result<(Planner<'a>, String)> {
    let Some(recipe) = set.recipes.get(input.recipe) else {
        let names: Vec<&str> = set.names.iter().map(String::as_str).collect();
        let hint = match did_you_mean(input.recipe, names.iter().copied()) {
            Some(m) => format!("did you mean `{m}`?"),
            None => format!("the recipes are: {}", names.join(", ")),
        };
        bail!("no recipe named `{}`; {hint}", input.recipe);
    };
    check_version(input.version)?;
    let values = variables::resolve(&recipe.name, &recipe.variables, input.vars)?;
    let build_time = input
        .build_time
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut scope = Scope::default();
    scope
        .builtins
        .insert(Builtin::Version, input.version.to_string());
    scope.builtins.insert(Builtin::Recipe, recipe.name.clone());
    scope
        .builtins
        .insert(Builtin::GitSha, input.git_sha.to_string());
    scope
        .builtins
        .insert(Builtin::BuildTime, build_time.clone());
    scope.vars = values
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    Ok((Planner { recipe, scope }, build_time))
}

/// A version becomes the release file's first line, a tag value and part of the image name.
fn check_version(v: &str) -> anyhow::Result<()> {
    if v.is_empty() {
        bail!("the version is empty; pass the release tag, e.g. --version release-0.1.0");
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/@()[]'".contains(*c)))
    {
        bail!(
            "version `{v}` holds `{}`, which EC2 image names do not allow; use letters, digits and . _ - / @",
            c.escape_default()
        );
    }
    if v.len() > 100 {
        bail!("version `{v}` is longer than 100 characters; use a shorter tag");
    }
    Ok(())
}

struct Planner<'a> {
    recipe: &'a RecipeSpec,
    scope: Scope,
}

impl Planner<'_> {
    fn at(&self, span: &std::ops::Range<usize>) -> String {
        let (line, col) = self.recipe.file.position(span.start);
        format!("{}:{line}:{col}", self.recipe.file.path)
    }

    fn render(&self, t: &Text) -> anyhow::Result<String> {
        t.value.render(&self.scope).map_err(|e| {
            let unset = t.value.references().find_map(|(r, span)| match r {
                crate::recipe::template::Reference::Var(n) if !self.scope.vars.contains_key(n) => {
                    Some((n.as_str(), span))
                }
                _ => None,
            });
            match unset {
                Some((n, span)) => anyhow!(
                    "{}: {e}; pass --var {n}=VALUE or give it a default",
                    self.at(span)
                ),
                None => anyhow!("{}: {e}", self.at(&t.span)),
            }
        })
    }

    fn render_opt(&self, t: &Option<Text>) -> anyhow::Result<Option<String>> {
        t.as_ref().map(|t| self.render(t)).transpose()
    }

    fn render_map(&self, m: &[(Loc<String>, Text)]) -> anyhow::Result<BTreeMap<String, String>> {
        m.iter()
            .map(|(k, v)| Ok((k.value.clone(), self.render(v)?)))
            .collect()
    }

    fn invalid(&self) -> anyhow::Error {
        anyhow!(
            "recipe {} has validation errors; run `bakery validate` and fix them",
            self.recipe.name
        )
    }

    fn path(&self, p: &Loc<String>) -> anyhow::Result<PathBuf> {
        crate::recipe::values::resolve_path(&self.recipe.dir, &p.value)
            .map(PathBuf::from)
            .map_err(|e| anyhow!("{}: {}; {}", self.at(&p.span), e.message, e.hint))
    }

    fn source(&self) -> anyhow::Result<SourcePlan> {
        let source = self.recipe.source.as_ref().ok_or_else(|| self.invalid())?;
        Ok(match &source.value {
            SourceSpec::Ami(id) => SourcePlan::AmiId {
                id: id.value.clone(),
            },
            SourceSpec::Filter {
                owners,
                name,
                architecture,
                most_recent,
            } => SourcePlan::Filter {
                owners: owners.iter().map(|o| o.value.clone()).collect(),
                name: self.render(name)?,
                architecture: architecture.as_ref().map(|a| a.value.clone()),
                most_recent: *most_recent,
            },
            SourceSpec::Recipe { recipe, version } => SourcePlan::Recipe {
                recipe: recipe.value.clone(),
                version: self.render(version)?,
            },
        })
    }

    fn builder(&self, config: &crate::recipe::RepoConfig) -> anyhow::Result<BuilderPlan> {
        let b = &self.recipe.builder;
        let region = self
            .recipe
            .builder_region(config)
            .ok_or_else(|| self.invalid())?;
        let instance_type = match &b.instance_type {
            Some(t) => {
                let it = self.render(t)?;
                aws_names::instance_type(&it)
                    .map_err(|e| anyhow!("{}: {}; {}", self.at(&t.span), e.message, e.hint))?;
                it
            }
            None => config
                .defaults
                .instance_type
                .clone()
                .unwrap_or_else(|| defaults::INSTANCE_TYPE.to_string()),
        };
        let ssh_user = b.ssh_user.as_ref().ok_or_else(|| self.invalid())?;
        Ok(BuilderPlan {
            region,
            instance_type,
            subnet_id: b.subnet_id.as_ref().map(|s| s.value.clone()),
            volume_size_gb: b
                .volume_size_gb
                .as_ref()
                .map(|v| v.value)
                .unwrap_or(defaults::VOLUME_SIZE_GB),
            volume_type: b
                .volume_type
                .as_ref()
                .map(|v| v.value.clone())
                .unwrap_or_else(|| defaults::VOLUME_TYPE.to_string()),
            ssh_user: self.render(ssh_user)?,
            connect: b
                .connect
                .as_ref()
                .map(|c| c.value.clone())
                .unwrap_or(ConnectVia::PublicIp),
            ssh_cidr: b
                .ssh_cidr
                .as_ref()
                .map(|c| c.value.clone())
                .or_else(|| config.defaults.ssh_cidr.clone())
                .unwrap_or_else(|| defaults::SSH_CIDR.to_string()),
            imdsv2_required: b.imdsv2_required.unwrap_or(true),
            kms_key: b.kms_key.as_ref().map(|k| k.value.clone()),
        })
    }

    fn step_name(
        &self,
        name: &Option<Text>,
        fallback: impl FnOnce() -> String,
    ) -> anyhow::Result<String> {
        Ok(match self.render_opt(name)? {
            Some(n) => n,
            None => fallback(),
        })
    }

    fn provision(&self) -> anyhow::Result<Vec<ProvisionStep>> {
        let mut out = Vec::new();
        for (i, step) in self.recipe.provision.iter().enumerate() {
            let n = i + 1;
            out.push(match step {
                StepSpec::Shell {
                    name,
                    run,
                    env,
                    sudo,
                    expect_disconnect,
                    timeout_secs,
                    ..
                } => {
                    let run_spec = run;
                    let run = match run {
                        ShellRunSpec::Inline(lines) => ShellRun::Inline {
                            commands: lines.iter().map(|l| self.render(l)).collect::<anyhow::Result<_>>()?,
                        },
                        ShellRunSpec::Script(p) => ShellRun::Script { path: self.path(p)? },
                    };
                    let fallback = || match &run_spec {
                        ShellRunSpec::Script(p) => format!("run {}", p.value),
                        ShellRunSpec::Inline(_) => format!("shell step {n}"),
                    };
                    ProvisionStep::Shell(ShellStep {
                        name: self.step_name(name, fallback)?,
                        env: self.render_map(env)?,
                        sudo: *sudo,
                        expect_disconnect: *expect_disconnect,
                        timeout_secs: timeout_secs.unwrap_or(defaults::STEP_TIMEOUT_SECS),
                        run,
                    })
                }
                StepSpec::File {
                    name,
                    source,
                    destination,
                    mode,
                    owner,
                    ..
                } => {
                    let destination_s = self.render(destination)?;
                    if !destination_s.starts_with('/') {
                        bail!(
                            "{}: destination `{destination_s}` is not an absolute path; start it with /",
                            self.at(&destination.span)
                        );
                    }
                    ProvisionStep::File(FileStep {
                        name: self.step_name(name, || format!("upload {}", source.value))?,
                        source: self.path(source)?,
                        destination: destination_s,
                        mode: *mode,
                        owner: self.render_opt(owner)?,
                    })
                }
                StepSpec::Ansible {
                    name,
                    playbook,
                    extra_vars,
                    extra_args,
                    become_root,
                    timeout_secs,
                    ..
                } => {
                    let rendered: Vec<String> =
                        extra_args.iter().map(|a| self.render(a)).collect::<anyhow::Result<_>>()?;
                    if let Err((at, why)) = crate::recipe::ansible_args::check_extra_args(&rendered) {
                        bail!("{}: extra_args: {why}", self.at(&extra_args[at].span));
                    }
                    ProvisionStep::Ansible(AnsibleStep {
                        name: self.step_name(name, || format!("playbook {}", playbook.value))?,
                        playbook: self.path(playbook)?,
                        extra_vars: self.render_map(extra_vars)?,
                        extra_args: rendered,
                        become_root: *become_root,
                        timeout_secs: timeout_secs.unwrap_or(defaults::STEP_TIMEOUT_SECS),
                    })
                }
            });
        }
        Ok(out)
    }

    fn stamp(&self) -> anyhow::Result<StampPlan> {
        let s = &self.recipe.stamp;
        Ok(StampPlan {
            path: s
                .path
                .as_ref()
                .map(|p| p.value.clone())
                .unwrap_or_else(|| defaults::RELEASE_FILE.to_string()),
            extra: self.render_map(&s.extra)?,
        })
    }

    fn verify(&self) -> anyhow::Result<Vec<VerifyCheck>> {
        self.recipe
            .verify
            .iter()
            .map(|v| {
                Ok(match v {
                    VerifySpec::Command {
                        name,
                        command,
                        sudo,
                        expect_exit,
                        expect_stdout,
                    } => {
                        let command = self.render(command)?;
                        VerifyCheck::Command {
                            name: self.step_name(name, || command.clone())?,
                            command,
                            sudo: *sudo,
                            expect_exit: *expect_exit,
                            expect_stdout: self.render_opt(expect_stdout)?,
                        }
                    }
                    VerifySpec::File {
                        name,
                        path,
                        expect_content,
                    } => {
                        let path = self.render(path)?;
                        VerifyCheck::File {
                            name: self.step_name(name, || format!("file {path}"))?,
                            path,
                            expect_content: self.render_opt(expect_content)?,
                        }
                    }
                })
            })
            .collect()
    }

    fn image(
        &self,
        config: &crate::recipe::RepoConfig,
        ephemeral: bool,
    ) -> anyhow::Result<ImagePlan> {
        let img = &self.recipe.image;
        let default_name;
        let name_t = match &img.name {
            Some(n) => n,
            None => {
                let mut segments = Vec::new();
                for b in [Builtin::Recipe, Builtin::Version] {
                    if !segments.is_empty() {
                        segments.push(crate::recipe::template::Segment::Literal("-".into()));
                    }
                    segments.push(crate::recipe::template::Segment::Ref(
                        crate::recipe::template::Reference::Builtin(b),
                        img.span.clone(),
                    ));
                }
                default_name = Loc::new(Template { segments }, img.span.clone());
                &default_name
            }
        };
        let name = self.render(name_t)?;
        aws_names::ami_name(&name)
            .map_err(|e| anyhow!("{}: {}; {}", self.at(&name_t.span), e.message, e.hint))?;
        let description = match self.render_opt(&img.description)? {
            Some(d) => d,
            None => format!(
                "{} {} built by bakery from {}",
                self.recipe.name,
                self.scope.builtins[&Builtin::Version],
                self.scope.builtins[&Builtin::GitSha]
            ),
        };
        if description.chars().count() > 255 {
            bail!(
                "{}: the image description is {} characters long; EC2 allows 255",
                self.at(&img.span),
                description.chars().count()
            );
        }
        let mut tags = config.defaults.tags.clone();
        tags.extend(self.render_map(&img.tags)?);
        for (k, v) in &tags {
            if v.chars().count() > 256 {
                bail!(
                    "{}: tag `{k}` has a value longer than 256 characters",
                    self.at(&img.span)
                );
            }
        }
        Ok(ImagePlan {
            name,
            description,
            tags,
            snapshot_tags: self.render_map(&img.snapshot_tags)?,
            ephemeral,
        })
    }

    fn copies(
        &self,
        targets: &RegionsSpec,
        regions: &[String],
        account: Option<&AccountTarget>,
        encrypted: bool,
        config: &crate::recipe::RepoConfig,
    ) -> anyhow::Result<Vec<CopyPlan>> {
        regions
            .iter()
            .map(|region| {
                let kms_key_id = if encrypted {
                    targets.kms_key_for(region, config)
                } else {
                    None
                };
                if let Some(k) = &kms_key_id {
                    aws_names::kms_key(k, Some(region)).map_err(|e| {
                        anyhow!(
                            "{}: {}; {}",
                            self.at(&self.recipe.distribute.span),
                            e.message,
                            e.hint
                        )
                    })?;
                }
                Ok(CopyPlan {
                    account: account.cloned(),
                    region: region.clone(),
                    kms_key_id,
                })
            })
            .collect()
    }

    fn distribute(
        &self,
        config: &crate::recipe::RepoConfig,
        ephemeral: bool,
    ) -> anyhow::Result<DistributePlan> {
        let d = &self.recipe.distribute;
        let encrypted = d.encrypted.as_ref().map(|e| e.value).unwrap_or(true);
        let builder_region = self
            .recipe
            .builder_region(config)
            .ok_or_else(|| self.invalid())?;
        if ephemeral {
            // A throwaway image for a pull request: one encrypted copy where it was built,
            // shared with no one.
            return Ok(DistributePlan {
                encrypted,
                copies: self.copies(&d.home, &[builder_region], None, encrypted, config)?,
                launch_permissions: LaunchPermissions::default(),
                deprecate_after_secs: d.deprecate_after_secs.as_ref().map(|s| s.value),
            });
        }
        let mut copies = self.copies(
            &d.home,
            &self.recipe.home_regions(config),
            None,
            encrypted,
            config,
        )?;
        let partition = if builder_region.starts_with("cn-") {
            "aws-cn"
        } else if builder_region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        };
        for a in &d.accounts {
            let id = a.account_id.as_ref().ok_or_else(|| self.invalid())?;
            let role_arn = match (&a.role_arn, &config.defaults.account_role) {
                (Some(r), _) => r.value.clone(),
                (None, Some(role)) => format!("arn:{partition}:iam::{}:role/{role}", id.value),
                (None, None) => return Err(self.invalid()),
            };
            let target = AccountTarget {
                account_id: id.value.clone(),
                role_arn,
                external_id: a.external_id.as_ref().map(|e| e.value.clone()),
            };
            let regions = self.recipe.account_regions(a, config);
            copies.extend(self.copies(&a.targets, &regions, Some(&target), encrypted, config)?);
        }
        let lp = &d.launch_permissions;
        let list = |v: &[Loc<String>]| v.iter().map(|x| x.value.clone()).collect();
        Ok(DistributePlan {
            encrypted,
            copies,
            launch_permissions: LaunchPermissions {
                account_ids: list(&lp.account_ids),
                organization_arns: list(&lp.organization_arns),
                organizational_unit_arns: list(&lp.organizational_unit_arns),
            },
            deprecate_after_secs: d.deprecate_after_secs.as_ref().map(|s| s.value),
        })
    }
}

#[cfg(test)]
mod tests;
