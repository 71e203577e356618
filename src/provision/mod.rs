//! Everything that happens inside the builder instance, over SSH: provisioning steps,
//! the release stamp, verify checks and sealing.
//!
//! The AWS engine hands over through the [`Provisioner`] trait, so each side can be
//! tested on its own.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::build::BuildLog;

/// Where and how to reach a builder over SSH.
#[derive(Clone)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The per-build ed25519 key registered with the cloud.
    pub key: Arc<russh::keys::PrivateKey>,
    /// SHA256 host key fingerprints (`SHA256:...`) read from the instance's console
    /// output. Empty: trust on first use.
    pub host_key_pins: Vec<String>,
    /// A host key accepted earlier in this build (from the journal), refused if it changes.
    pub known_host_key: Option<String>,
}

impl std::fmt::Debug for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("key", &"<redacted>")
            .field("host_key_pins", &self.host_key_pins)
            .field("known_host_key", &self.known_host_key)
            .finish()
    }
}

/// What the provisioner needs besides the target.
#[derive(Clone, Debug)]
pub struct ProvisionContext {
    /// Builder-neutral: the same for an EC2 instance and a local VM.
    pub plan: Arc<ProvisionPlan>,
    /// The checked-out repository; every file a step uses lies inside it.
    pub repo_root: PathBuf,
    pub log: BuildLog,
    pub cancel: CancellationToken,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionReport {
    /// The release file exactly as written.
    pub release_file: String,
    /// The host key the builder presented (`SHA256:...`), for the journal.
    pub host_key_fingerprint: String,
    /// The image's package inventory, read before sealing (`None`: not collected).
    pub inventory: Option<crate::inventory::Collected>,
}

/// Called when the provisioner accepts a host key on first use, so the engine can record it.
pub type HostKeyCallback = Arc<dyn Fn(&str) + Send + Sync>;

#[async_trait]
pub trait Provisioner: Send + Sync {
    /// Runs provision steps, stamp, verify, inventory and seal, in that order, on the
    /// builder.
    async fn provision(
        &self,
        target: &SshTarget,
        ctx: &ProvisionContext,
    ) -> anyhow::Result<ProvisionReport>;
}

pub mod communicator;
pub mod host_key;
pub(crate) mod lines;
pub(crate) mod plan;
pub mod quote;
pub(crate) mod repo_path;
pub mod ssh;
pub mod steps;
pub(crate) mod upload;

pub use plan::{Finish, ProvisionPlan, SealRule};
pub use ssh::SshProvisioner;

/// A provisioning step failed (the context of its error). Reports name the step from this
/// type, never from the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provision step `{name}` ({kind}) failed")]
pub struct ProvisionStepFailed {
    pub name: String,
    pub kind: &'static str,
}
pub use steps::ProvisionerOptions;
