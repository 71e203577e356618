//! The plan: everything a build will do, as plain data.
//!
//! A `BuildPlan` is produced by the pure planner (`plan::plan_build`) from a recipe, the
//! repository config, a version and a git SHA. The AWS engine (`aws`) and the SSH
//! provisioner (`provision`) take it as their only description of the work; neither
//! re-reads recipes. Values only known while building (the build id, the resolved source
//! AMI) are filled in by the engine through [`BuildFacts`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Tag keys bakery puts on every image and snapshot it creates.
pub mod tag_keys {
    pub const IMAGE_VERSION: &str = "ImageVersion";
    pub const RECIPE: &str = "bakery:recipe";
    pub const GIT_SHA: &str = "bakery:git-sha";
    pub const SOURCE_AMI: &str = "bakery:source-ami";
    pub const BUILD_ID: &str = "bakery:build-id";
    /// The repository (`owner/name`) whose recipe built the image: part of its identity.
    pub const REPO: &str = "bakery:repo";
    /// Present on throwaway images from pull-request validation builds.
    pub const EPHEMERAL: &str = "bakery:ephemeral";
    pub const NAME: &str = "Name";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildPlan {
    /// The repository (`owner/name`) the recipe comes from. Set by the bot's jobs; a
    /// `bakery build` from the command line has it only with `--repository`. Images carry
    /// it as `bakery:repo`, and release checks and `latest` look only at its images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    pub recipe: String,
    /// The version string, e.g. `release-0.1.0`. Becomes the first line of the release file.
    pub version: String,
    pub git_sha: String,
    /// RFC 3339, UTC.
    pub build_time: String,
    pub source: SourcePlan,
    pub builder: BuilderPlan,
    pub provision: Vec<ProvisionStep>,
    pub stamp: StampPlan,
    pub verify: Vec<VerifyCheck>,
    pub seal: SealPlan,
    pub image: ImagePlan,
    pub distribute: DistributePlan,
}

/// Where the builder's root volume comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourcePlan {
    AmiId {
        id: String,
    },
    Filter {
        owners: Vec<String>,
        /// A name glob as EC2's `name` filter takes it, e.g. `ubuntu/images/*-24.04-amd64-server-*`.
        name: String,
        architecture: Option<String>,
        /// Pick the newest matching image (by creation date). When false, exactly one must match.
        most_recent: bool,
    },
    /// Another recipe's released image, found by its `bakery:recipe` and `ImageVersion` tags
    /// in the builder region. `version = "latest"` takes the newest one.
    Recipe {
        recipe: String,
        version: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuilderPlan {
    pub region: String,
    pub instance_type: String,
    pub subnet_id: Option<String>,
    pub volume_size_gb: u32,
    pub volume_type: String,
    pub ssh_user: String,
    pub connect: ConnectVia,
    /// CIDR allowed to reach the builder on port 22.
    pub ssh_cidr: String,
    pub imdsv2_required: bool,
    /// The KMS key the builder's root volume (and so the intermediate image) is encrypted
    /// under; `None` leaves it to the source image and the region's EBS defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
}

/// How bakery reaches the builder instance over SSH.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum ConnectVia {
    PublicIp,
    PrivateIp,
    /// A fixed address, e.g. a bastion port-forward.
    Explicit {
        host: String,
        port: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProvisionStep {
    Shell(ShellStep),
    File(FileStep),
    Ansible(AnsibleStep),
}

impl ProvisionStep {
    pub fn name(&self) -> &str {
        match self {
            ProvisionStep::Shell(s) => &s.name,
            ProvisionStep::File(s) => &s.name,
            ProvisionStep::Ansible(s) => &s.name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShellStep {
    pub name: String,
    pub run: ShellRun,
    pub env: BTreeMap<String, String>,
    pub sudo: bool,
    /// The step may drop the connection (a reboot); reconnect and go on.
    pub expect_disconnect: bool,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ShellRun {
    /// Commands run one after another; the first non-zero exit fails the step.
    Inline { commands: Vec<String> },
    /// A script inside the repository (path relative to the repository root), uploaded and run.
    Script { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileStep {
    pub name: String,
    /// Relative to the repository root; a file or a directory.
    pub source: PathBuf,
    /// Absolute path on the builder.
    pub destination: String,
    /// Octal mode for the destination (files), e.g. `0644`. `None` keeps the source mode.
    pub mode: Option<u32>,
    pub owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnsibleStep {
    pub name: String,
    /// Relative to the repository root.
    pub playbook: PathBuf,
    /// Recipe-provided extra vars. The engine adds `bakery_version`, `bakery_recipe`, `bakery_git_sha`.
    pub extra_vars: BTreeMap<String, String>,
    /// Passed through to `ansible-playbook`, e.g. `["--tags", "docker"]`.
    pub extra_args: Vec<String>,
    pub become_root: bool,
    pub timeout_secs: u64,
}

/// The release file written into the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StampPlan {
    /// Default `/etc/release`.
    pub path: String,
    /// Extra `KEY=VALUE` lines from the recipe, already interpolated.
    pub extra: BTreeMap<String, String>,
}

/// Values only known while a build runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildFacts {
    pub build_id: String,
    pub source_ami: String,
}

impl BuildPlan {
    /// The release file's content: the version alone on the first line, then `KEY=VALUE` lines.
    pub fn release_file(&self, facts: &BuildFacts) -> String {
        let mut out = format!("{}\n", self.version);
        let fixed = [
            ("RECIPE", self.recipe.as_str()),
            ("GIT_SHA", self.git_sha.as_str()),
            ("BUILD_ID", facts.build_id.as_str()),
            ("BUILD_TIME", self.build_time.as_str()),
            ("SOURCE_AMI", facts.source_ami.as_str()),
        ];
        for (k, v) in fixed {
            out.push_str(&format!("{k}={v}\n"));
        }
        for (k, v) in &self.stamp.extra {
            out.push_str(&format!("{k}={v}\n"));
        }
        out
    }

    /// Tags for the AMI (and, with `snapshot_tags`, its snapshots), including bakery's own.
    pub fn image_tags(&self, facts: &BuildFacts) -> BTreeMap<String, String> {
        let mut tags = self.image.tags.clone();
        tags.insert(tag_keys::NAME.into(), self.image.name.clone());
        tags.insert(tag_keys::IMAGE_VERSION.into(), self.version.clone());
        tags.insert(tag_keys::RECIPE.into(), self.recipe.clone());
        tags.insert(tag_keys::GIT_SHA.into(), self.git_sha.clone());
        tags.insert(tag_keys::SOURCE_AMI.into(), facts.source_ami.clone());
        tags.insert(tag_keys::BUILD_ID.into(), facts.build_id.clone());
        if let Some(repo) = &self.repo {
            tags.insert(tag_keys::REPO.into(), repo.clone());
        }
        if self.image.ephemeral {
            tags.insert(tag_keys::EPHEMERAL.into(), "true".into());
        }
        tags
    }

    pub fn snapshot_tags(&self, facts: &BuildFacts) -> BTreeMap<String, String> {
        let mut tags = self.image_tags(facts);
        tags.extend(self.image.snapshot_tags.clone());
        tags
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VerifyCheck {
    Command {
        name: String,
        command: String,
        sudo: bool,
        expect_exit: i32,
        /// When set, trimmed stdout must equal this.
        expect_stdout: Option<String>,
    },
    File {
        name: String,
        path: String,
        /// When set, the file's content must equal this (trailing newline ignored).
        expect_content: Option<String>,
    },
}

/// What sealing scrubs from the builder before the image is taken. Everything on by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealPlan {
    pub enabled: bool,
    pub host_keys: bool,
    pub machine_id: bool,
    pub build_key: bool,
    pub cloud_init: bool,
    pub provisioning_files: bool,
    pub shell_history: bool,
}

impl Default for SealPlan {
    fn default() -> Self {
        SealPlan {
            enabled: true,
            host_keys: true,
            machine_id: true,
            build_key: true,
            cloud_init: true,
            provisioning_files: true,
            shell_history: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePlan {
    /// Fully interpolated; unique per version.
    pub name: String,
    pub description: String,
    /// The recipe's own tags (interpolated). bakery's tags are added by [`BuildPlan::image_tags`].
    pub tags: BTreeMap<String, String>,
    pub snapshot_tags: BTreeMap<String, String>,
    /// A throwaway image from a pull-request validation build.
    pub ephemeral: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributePlan {
    pub encrypted: bool,
    /// Every final copy. The builder region of the home account is listed here too when it
    /// is a target: the unencrypted intermediate is always replaced by an encrypted copy.
    pub copies: Vec<CopyPlan>,
    pub launch_permissions: LaunchPermissions,
    /// Seconds after the build until the copies are deprecated.
    pub deprecate_after_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyPlan {
    /// `None` is the home account (the one whose credentials run the builder).
    pub account: Option<AccountTarget>,
    pub region: String,
    /// Key id, key ARN or alias (`alias/ami`). `None` uses the account's default EBS key.
    pub kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountTarget {
    pub account_id: String,
    pub role_arn: String,
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LaunchPermissions {
    pub account_ids: Vec<String>,
    pub organization_arns: Vec<String>,
    pub organizational_unit_arns: Vec<String>,
}
