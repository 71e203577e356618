//! Test hooks of `bakery build`. Only the command line sets them (from environment
//! variables and a hidden option); the server and its webhook never do.

use std::path::PathBuf;

use async_trait::async_trait;

use crate::provision::{ProvisionContext, ProvisionReport, Provisioner, SshTarget};

/// `BAKERY_TEST_PAUSE_AT=<step>`: the build stops just before `<step>` starts (after the
/// journal recorded everything before it), writes its build id to
/// `BAKERY_TEST_PAUSE_FILE`, and waits forever, so a test can kill it at that exact
/// boundary. Steps: see [`super::runner::Step`]; `distribute:copied` pauses after every
/// copy exists, before the intermediate is removed; `distribute:published` after every
/// copy is published (a pull request's not yet discarded).
#[derive(Debug, Clone, PartialEq)]
pub struct PauseAt {
    pub step: String,
    pub marker: PathBuf,
}

impl PauseAt {
    /// Reads the test hook from the environment.
    pub fn from_env() -> Option<Self> {
        let step = std::env::var("BAKERY_TEST_PAUSE_AT").ok()?;
        let marker = std::env::var("BAKERY_TEST_PAUSE_FILE").ok()?;
        Some(PauseAt {
            step,
            marker: PathBuf::from(marker),
        })
    }

    pub async fn maybe_pause(&self, step: &str, build_id: &str) {
        if self.step != step {
            return;
        }
        let tmp = self.marker.with_extension("tmp");
        if std::fs::write(&tmp, build_id).is_ok() {
            let _ = std::fs::rename(&tmp, &self.marker);
        }
        std::future::pending::<()>().await;
    }
}

/// A provisioner that connects to nothing: for exercising the AWS side of `bakery build`
/// against a test endpoint, through `--provisioner none` (hidden). Refuses plans that have
/// provisioning steps or checks, which it could not honour.
pub struct NoProvisioner;

#[async_trait]
impl Provisioner for NoProvisioner {
    async fn provision(
        &self,
        target: &SshTarget,
        ctx: &ProvisionContext,
    ) -> anyhow::Result<ProvisionReport> {
        anyhow::ensure!(
            ctx.plan.provision.is_empty() && ctx.plan.verify.is_empty(),
            "--provisioner none is a test hook for plans without provision steps or verify checks"
        );
        ctx.log.info(
            "provision",
            format!(
                "provisioning skipped (test hook); builder at {}:{}",
                target.host, target.port
            ),
        );
        Ok(ProvisionReport {
            release_file: ctx.plan.release_file.clone(),
            host_key_fingerprint: String::new(),
            inventory: None,
        })
    }
}
