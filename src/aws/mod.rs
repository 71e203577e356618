//! The AWS side of a build: credentials, pre-flight checks, the builder instance, the
//! image, its encrypted copies in every target account and region, and the janitor.
//!
//! Every function here takes a [`BuildPlan`] (never a recipe) and reports each resource
//! it creates through a [`ResourceJournal`] before and after the call, so that a build
//! that fails, is cancelled or crashes can always find what to delete.

pub(crate) mod access;
pub(crate) mod budgets;
pub(crate) mod channels;
pub(crate) mod copy_retry;
pub(crate) mod distribute;
pub mod endpoints;
pub(crate) mod error;
pub(crate) mod grants;
pub mod image;
pub mod instance;
pub mod janitor;
pub(crate) mod janitor_grants;
pub(crate) mod network;
pub(crate) mod owned;
pub mod parameter;
pub(crate) mod policy;
pub mod preflight;
pub(crate) mod registered;
pub mod release;
pub mod resource;
pub(crate) mod retire;
pub(crate) mod session;
pub(crate) mod source_filter;
pub mod tags;
pub mod wait;

use std::time::Duration;

use async_trait::async_trait;

pub use error::AwsError;
pub use resource::{ResourceKind, ResourceRef};
pub use session::{AwsSession, AwsSettings, Target};

use crate::build::BuildLog;
use crate::plan::model::BuildPlan;

/// Where resource creation is recorded. The build's step journal implements it.
#[async_trait]
pub trait ResourceJournal: Send + Sync {
    /// Before the call that creates a resource. `lookup` says how to find it again if the
    /// call's answer is lost (e.g. `{"name": ...}` for an image copy, which is tagged only
    /// after it exists).
    async fn creating(
        &self,
        kind: ResourceKind,
        target: &Target,
        lookup: serde_json::Value,
    ) -> anyhow::Result<()>;
    /// After the call, with the new resource's id. `detail` carries extra facts (the image
    /// a snapshot belongs to, the copy a KMS key was used for).
    async fn created(&self, res: &ResourceRef, detail: serde_json::Value) -> anyhow::Result<()>;
    /// After a create call that AWS refused with an error answer: nothing was created, so
    /// the pending entry is settled and never looked up again.
    async fn not_created(&self, kind: ResourceKind, target: &Target) -> anyhow::Result<()>;
    async fn deleted(&self, res: &ResourceRef) -> anyhow::Result<()>;
}

/// How long the waits of a build may take (`[aws.budgets]`, see [`budgets`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budgets {
    /// From RunInstances until the builder runs and has an address.
    #[serde(with = "budgets::human")]
    pub instance_running: Duration,
    /// How long the builder may take to shut down. CreateImage shuts it down before it
    /// takes the snapshots, so the intermediate's wait gets this on top of
    /// `image_available`.
    #[serde(with = "budgets::human")]
    pub instance_stopped: Duration,
    /// From CreateImage until the intermediate image is available.
    #[serde(with = "budgets::human")]
    pub image_available: Duration,
    /// From CopyImage until a copy is available.
    #[serde(with = "budgets::human")]
    pub copy_available: Duration,
    /// How long to read the builder's console for cloud-init's host key fingerprints
    /// (printed 30–90 s after `running`) before trusting the first host key.
    #[serde(with = "budgets::human")]
    pub console_fingerprints: Duration,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            instance_running: Duration::from_secs(15 * 60),
            instance_stopped: Duration::from_secs(15 * 60),
            image_available: Duration::from_secs(90 * 60),
            copy_available: Duration::from_secs(3 * 60 * 60),
            console_fingerprints: Duration::from_secs(3 * 60),
        }
    }
}

/// Everything an engine step needs.
#[derive(Clone, Copy)]
pub struct EngineCtx<'a> {
    pub session: &'a AwsSession,
    pub journal: &'a dyn ResourceJournal,
    pub plan: &'a BuildPlan,
    pub build_id: &'a str,
    pub log: &'a BuildLog,
    pub budgets: &'a Budgets,
}

impl EngineCtx<'_> {
    /// The account and region the builder runs in.
    pub fn builder_target(&self) -> Target {
        Target {
            account: self.session.home_account().to_string(),
            region: self.plan.builder.region.clone(),
        }
    }

    /// This installation's `bakery:installation` marker.
    pub fn installation(&self) -> &str {
        self.session.installation()
    }

    /// RFC 3339 timestamp for `bakery:created-at`.
    pub fn now(&self) -> String {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}
