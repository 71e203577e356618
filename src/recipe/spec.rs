//! A recipe as read from `recipe.toml`: every value with its position, every optional
//! value still optional. The planner (`plan`) applies the defaults.

use std::sync::Arc;

use crate::plan::model::SealPlan;

use super::diagnostic::SourceFile;
use super::reader::Loc;
use super::repo_config::RepoConfig;
use super::template::Text;
use super::variables::VariableSpec;

#[derive(Debug, Clone)]
pub struct RecipeSpec {
    /// The folder name under `recipes/`.
    pub name: String,
    pub file: Arc<SourceFile>,
    /// The recipe's folder relative to the repository root, e.g. `recipes/base-ubuntu`.
    pub dir: String,
    pub description: Option<Text>,
    /// `None` when missing or malformed (already reported).
    pub source: Option<Loc<SourceSpec>>,
    pub builder: BuilderSpec,
    pub variables: Vec<VariableSpec>,
    pub provision: Vec<StepSpec>,
    pub stamp: StampSpec,
    pub verify: Vec<VerifySpec>,
    pub seal: SealPlan,
    pub image: ImageSpec,
    pub distribute: DistributeSpec,
    /// `[lifecycle]`: when its releases are retired (`bakery.toml`'s `[lifecycle]` fills
    /// in what it leaves out).
    pub lifecycle: super::lifecycle::LifecycleSpec,
    /// The local QEMU builder (`[qemu]`), if the recipe has one that could be read.
    pub qemu: Option<super::qemu::QemuSpec>,
    /// Whether the recipe has a `[qemu]` table at all (read or not).
    pub qemu_section: bool,
}

#[derive(Debug, Clone)]
pub enum SourceSpec {
    Ami(Loc<String>),
    Filter {
        owners: Vec<Loc<String>>,
        name: Text,
        architecture: Option<Loc<String>>,
        most_recent: bool,
    },
    Recipe {
        recipe: Loc<String>,
        version: Text,
    },
}

#[derive(Debug, Clone, Default)]
pub struct BuilderSpec {
    pub span: std::ops::Range<usize>,
    pub region: Option<Loc<String>>,
    pub instance_type: Option<Text>,
    pub subnet_id: Option<Loc<String>>,
    pub volume_size_gb: Option<Loc<u32>>,
    pub volume_type: Option<Loc<String>>,
    pub ssh_user: Option<Text>,
    pub connect: Option<Loc<crate::plan::model::ConnectVia>>,
    pub ssh_cidr: Option<Loc<String>>,
    pub imdsv2_required: Option<bool>,
    /// The KMS key the builder's root volume, and so the intermediate image, is
    /// encrypted under.
    pub kms_key: Option<Loc<String>>,
}

/// A path as written in a recipe: relative to the recipe's folder.
pub type PathRef = Loc<String>;

#[derive(Debug, Clone)]
pub enum StepSpec {
    Shell {
        span: std::ops::Range<usize>,
        name: Option<Text>,
        run: ShellRunSpec,
        env: Vec<(Loc<String>, Text)>,
        sudo: bool,
        expect_disconnect: bool,
        timeout_secs: Option<u64>,
    },
    File {
        span: std::ops::Range<usize>,
        name: Option<Text>,
        source: PathRef,
        destination: Text,
        mode: Option<u32>,
        owner: Option<Text>,
    },
    Ansible {
        span: std::ops::Range<usize>,
        name: Option<Text>,
        playbook: PathRef,
        extra_vars: Vec<(Loc<String>, Text)>,
        extra_args: Vec<Text>,
        become_root: bool,
        timeout_secs: Option<u64>,
    },
}

impl StepSpec {
    /// Every file the step reads from the repository.
    pub fn paths(&self) -> Vec<&PathRef> {
        match self {
            StepSpec::Shell {
                run: ShellRunSpec::Script(p),
                ..
            } => vec![p],
            StepSpec::Shell { .. } => vec![],
            StepSpec::File { source, .. } => vec![source],
            StepSpec::Ansible { playbook, .. } => vec![playbook],
        }
    }
}

#[derive(Debug, Clone)]
pub enum ShellRunSpec {
    Inline(Vec<Text>),
    Script(PathRef),
}

#[derive(Debug, Clone, Default)]
pub struct StampSpec {
    pub path: Option<Loc<String>>,
    pub extra: Vec<(Loc<String>, Text)>,
}

#[derive(Debug, Clone)]
pub enum VerifySpec {
    Command {
        name: Option<Text>,
        command: Text,
        sudo: bool,
        expect_exit: i32,
        expect_stdout: Option<Text>,
    },
    File {
        name: Option<Text>,
        path: Text,
        expect_content: Option<Text>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    pub span: std::ops::Range<usize>,
    pub name: Option<Text>,
    pub description: Option<Text>,
    pub tags: Vec<(Loc<String>, Text)>,
    pub snapshot_tags: Vec<(Loc<String>, Text)>,
}

/// Regions and their KMS keys, as written for the home account or one target account.
#[derive(Debug, Clone, Default)]
pub struct RegionsSpec {
    pub regions: Option<Loc<Vec<Loc<String>>>>,
    /// The key for every region without its own entry in `kms_keys`.
    pub kms_key: Option<Loc<String>>,
    /// Region → key.
    pub kms_keys: Vec<(Loc<String>, Loc<String>)>,
}

#[derive(Debug, Clone)]
pub struct AccountSpec {
    pub span: std::ops::Range<usize>,
    pub account_id: Option<Loc<String>>,
    pub role_arn: Option<Loc<String>>,
    pub external_id: Option<Loc<String>>,
    pub targets: RegionsSpec,
}

#[derive(Debug, Clone, Default)]
pub struct LaunchPermissionsSpec {
    pub account_ids: Vec<Loc<String>>,
    pub organization_arns: Vec<Loc<String>>,
    pub organizational_unit_arns: Vec<Loc<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct DistributeSpec {
    pub span: std::ops::Range<usize>,
    pub encrypted: Option<Loc<bool>>,
    pub home: RegionsSpec,
    pub accounts: Vec<AccountSpec>,
    pub launch_permissions: LaunchPermissionsSpec,
    pub deprecate_after_secs: Option<Loc<u64>>,
}

impl RecipeSpec {
    /// Whether the recipe builds on EC2: it has a `[source]`, or no other builder.
    pub fn has_ec2_builder(&self) -> bool {
        self.source.is_some() || !self.qemu_section
    }

    /// The recipe this one starts from, if its source is another recipe's image.
    pub fn source_recipe(&self) -> Option<&str> {
        match &self.source {
            Some(Loc {
                value: SourceSpec::Recipe { recipe, .. },
                ..
            }) => Some(&recipe.value),
            _ => None,
        }
    }

    /// The builder region: the recipe's, else `bakery.toml`'s default.
    pub fn builder_region(&self, config: &RepoConfig) -> Option<String> {
        self.builder
            .region
            .as_ref()
            .map(|r| r.value.clone())
            .or_else(|| config.defaults.region.clone())
    }

    /// The lifecycle rules of this recipe's releases: its own `[lifecycle]`, each key it
    /// leaves out from `bakery.toml`'s.
    pub fn lifecycle_rules(&self, config: &RepoConfig) -> super::lifecycle::LifecycleRules {
        super::lifecycle::LifecycleRules::from_spec(&self.lifecycle).or(config.lifecycle)
    }

    /// The home account's target regions: the recipe's, else `bakery.toml`'s default,
    /// else the builder region alone.
    pub fn home_regions(&self, config: &RepoConfig) -> Vec<String> {
        if let Some(list) = &self.distribute.home.regions {
            return list.value.iter().map(|r| r.value.clone()).collect();
        }
        if let Some(list) = &config.defaults.regions {
            return list.clone();
        }
        self.builder_region(config).into_iter().collect()
    }

    /// A target account's regions: its own, else the home account's.
    pub fn account_regions(&self, account: &AccountSpec, config: &RepoConfig) -> Vec<String> {
        match &account.targets.regions {
            Some(list) => list.value.iter().map(|r| r.value.clone()).collect(),
            None => self.home_regions(config),
        }
    }

    /// Every file the recipe reads, relative to the repository root (paths that don't
    /// resolve are left out; they are reported by validation).
    pub fn files(&self) -> Vec<String> {
        let mut out = vec![self.file.path.clone()];
        for step in &self.provision {
            for p in step.paths() {
                if let Ok(p) = super::values::resolve_path(&self.dir, &p.value) {
                    out.push(p);
                }
            }
        }
        out
    }
}

impl RegionsSpec {
    /// The KMS key for `region`: this target's per-region key, its `kms_key`, then the
    /// same two from `bakery.toml`'s defaults. `None`: the account's default EBS key.
    pub fn kms_key_for(&self, region: &str, config: &RepoConfig) -> Option<String> {
        self.kms_keys
            .iter()
            .find(|(r, _)| r.value == region)
            .map(|(_, k)| k.value.clone())
            .or_else(|| self.kms_key.as_ref().map(|k| k.value.clone()))
            .or_else(|| config.defaults.kms_keys.get(region).cloned())
            .or_else(|| config.defaults.kms_key.clone())
    }
}
