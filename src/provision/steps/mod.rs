//! The steps that run on a builder, in the order the provisioner runs them: the recipe's
//! provision steps (`shell`, `file`, `ansible`), then `stamp`, `verify`, `inventory` and
//! `seal`; `power_off` last, for a builder whose disk is exported once it is off.

pub(crate) mod ansible;
pub(crate) mod ansible_core;
pub mod file;
pub(crate) mod inventory;
pub(crate) mod power_off;
pub(crate) mod seal;
pub(crate) mod shell;
pub(crate) mod stamp;
pub(crate) mod verify;

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::communicator::Communicator;
use crate::build::BuildLog;

/// Settings of the provisioner that are not part of a recipe.
#[derive(Debug, Clone)]
pub struct ProvisionerOptions {
    pub connect: super::communicator::ConnectOptions,
    /// After a step that expects a disconnect finished without one, how long to wait for
    /// the connection to drop (a reboot in progress) before going on with the same one.
    pub disconnect_grace: Duration,
}

impl Default for ProvisionerOptions {
    fn default() -> Self {
        ProvisionerOptions {
            connect: Default::default(),
            disconnect_grace: Duration::from_secs(30),
        }
    }
}

/// One provisioning run on one builder: the connection and what the steps share.
pub struct Session {
    pub comm: Communicator,
    pub log: BuildLog,
    pub cancel: CancellationToken,
    pub options: ProvisionerOptions,
    /// Directory on the builder, owned by the SSH user, where uploads are staged. Removed
    /// by sealing.
    pub staging: String,
    pub repo_root: PathBuf,
    uploads: u32,
}

impl Session {
    pub fn new(
        comm: Communicator,
        log: BuildLog,
        cancel: CancellationToken,
        options: ProvisionerOptions,
        staging: String,
        repo_root: PathBuf,
    ) -> Self {
        Session {
            comm,
            log,
            cancel,
            options,
            staging,
            repo_root,
            uploads: 0,
        }
    }

    /// A fresh path in the staging directory, ending in `name`.
    pub fn stage_path(&mut self, name: &str) -> String {
        self.uploads += 1;
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}/{:03}-{}", self.staging, self.uploads, clean)
    }

    /// `sudo -n ` unless the SSH user is root already.
    pub fn sudo(&self) -> &'static str {
        if self.comm.target().user == "root" {
            ""
        } else {
            "sudo -n "
        }
    }

    /// After a step that may have dropped the connection: waits (up to the grace period)
    /// for the drop if it has not happened, and reconnects when it did.
    pub async fn settle_after_disconnect(&mut self, step: &str) -> anyhow::Result<()> {
        let grace = self.options.disconnect_grace;
        if self.comm.wait_closed(grace).await {
            self.log
                .info(step, "connection dropped as expected; reconnecting");
            self.comm.reconnect(&self.log, step, &self.cancel).await?;
            self.log.info(
                step,
                format!(
                    "reconnected; host key {} unchanged",
                    self.comm.host_key_fingerprint()
                ),
            );
        } else {
            self.log.info(
                step,
                format!("no disconnect within {grace:?}; going on with the same connection"),
            );
        }
        Ok(())
    }
}

/// A build id turned into a safe path component.
pub fn path_component(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if clean.is_empty() {
        "build".into()
    } else {
        clean
    }
}
