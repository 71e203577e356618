//! [`SshProvisioner`]: the [`Provisioner`] that does the work over SSH.

use anyhow::Context;
use async_trait::async_trait;

use super::communicator::Communicator;
use super::host_key::HostKeyPolicy;
use super::steps::{self, path_component, ProvisionerOptions, Session};
use super::{HostKeyCallback, ProvisionContext, ProvisionReport, Provisioner, SshTarget};
use crate::plan::model::ProvisionStep;

pub const CONNECT_STEP: &str = "connect";

#[derive(Clone, Default)]
pub struct SshProvisioner {
    options: ProvisionerOptions,
    on_host_key: Option<HostKeyCallback>,
}

impl std::fmt::Debug for SshProvisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshProvisioner")
            .field("options", &self.options)
            .field("on_host_key", &self.on_host_key.is_some())
            .finish()
    }
}

impl SshProvisioner {
    pub fn new(options: ProvisionerOptions) -> Self {
        SshProvisioner {
            options,
            on_host_key: None,
        }
    }

    /// Called with the fingerprint when a host key is accepted on first use, so the engine
    /// can record it in the build journal.
    pub fn on_host_key(mut self, callback: HostKeyCallback) -> Self {
        self.on_host_key = Some(callback);
        self
    }

    pub fn options(&self) -> &ProvisionerOptions {
        &self.options
    }

    /// Connects to the builder and checks its host key as the build's rules say.
    pub async fn connect(
        &self,
        target: &SshTarget,
        ctx: &ProvisionContext,
    ) -> anyhow::Result<Communicator> {
        let log = &ctx.log;
        log.info(
            CONNECT_STEP,
            format!(
                "connecting to {}@{}:{}",
                target.user, target.host, target.port
            ),
        );
        let policy = HostKeyPolicy::new(&target.host_key_pins, target.known_host_key.as_deref());
        let comm = Communicator::connect(
            target,
            &policy,
            &self.options.connect,
            log,
            CONNECT_STEP,
            &ctx.cancel,
        )
        .await?;
        let fp = comm.host_key_fingerprint().to_string();
        if comm.accepted_on_first_use() {
            log.info(
                CONNECT_STEP,
                format!("accepted host key {fp} on first use; any other key will be refused for this build"),
            );
            if let Some(cb) = &self.on_host_key {
                cb(&fp);
            }
        } else if target.known_host_key.is_some() {
            log.info(
                CONNECT_STEP,
                format!("host key {fp} matches the one recorded for this build"),
            );
        } else {
            log.info(
                CONNECT_STEP,
                format!("host key {fp} matches the console output"),
            );
        }
        Ok(comm)
    }
}

fn kind(step: &ProvisionStep) -> &'static str {
    match step {
        ProvisionStep::Shell(_) => "shell",
        ProvisionStep::File(_) => "file",
        ProvisionStep::Ansible(_) => "ansible",
    }
}

#[async_trait]
impl Provisioner for SshProvisioner {
    async fn provision(
        &self,
        target: &SshTarget,
        ctx: &ProvisionContext,
    ) -> anyhow::Result<ProvisionReport> {
        let plan = &ctx.plan;
        let comm = self
            .connect(target, ctx)
            .await
            .context("connecting to the builder over SSH")?;
        let host_key_fingerprint = comm.host_key_fingerprint().to_string();
        let staging = format!("/var/tmp/bakery-{}", path_component(&plan.build_id));
        let mut s = Session::new(
            comm,
            ctx.log.clone(),
            ctx.cancel.clone(),
            self.options.clone(),
            staging,
            ctx.repo_root.clone(),
        );

        for step in &plan.provision {
            let name = step.name();
            if ctx.cancel.is_cancelled() {
                anyhow::bail!("cancelled before provision step `{name}`");
            }
            s.log
                .info(name, format!("{} step `{name}` starting", kind(step)));
            let result = match step {
                ProvisionStep::Shell(st) => steps::shell::run(&mut s, st).await,
                ProvisionStep::File(st) => steps::file::run(&mut s, st).await,
                ProvisionStep::Ansible(st) => steps::ansible::run(&mut s, st, plan).await,
            };
            result.context(super::ProvisionStepFailed {
                name: name.to_string(),
                kind: kind(step),
            })?;
            s.log.info(name, format!("step `{name}` done"));
        }

        let release_file = steps::stamp::run(&mut s, plan)
            .await
            .with_context(|| format!("stamping {} failed", plan.stamp_path))?;
        steps::verify::run(&mut s, &plan.verify)
            .await
            .context("verify failed")?;
        let inventory = steps::inventory::run(&mut s)
            .await
            .context("collecting the package inventory failed")?;
        steps::seal::run(&mut s, &plan.seal, plan.seal_rule)
            .await
            .context("sealing the builder failed")?;
        if plan.finish == super::Finish::PowerOff {
            steps::power_off::run(&mut s).await?;
        }
        s.comm.close().await;

        Ok(ProvisionReport {
            release_file,
            host_key_fingerprint,
            inventory: Some(inventory),
        })
    }
}
