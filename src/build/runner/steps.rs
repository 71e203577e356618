//! The step sequence: the happy path of a build, from credentials to the manifest, each
//! step journaled when it starts and finishes and guarded by cancel and hand-over. A step
//! already done (a resumed build's state) is skipped.
//!
//! Touches, through the AWS engine (`aws/`), only what this build creates (tagged with its
//! build id at creation and journaled), the provisioner (the builder over SSH), and the
//! store (journal, inventory). On an error it stops; the failure path is `runner.rs`'s.

use std::sync::Arc;

use anyhow::Context;
use serde_json::json;

use super::{BuildRunner, Cancelled, HandedOver, State, Step};
use super::{PAUSE_DISTRIBUTE_COPIED, PAUSE_DISTRIBUTE_PUBLISHED};
use crate::aws::distribute::{self, Intermediate};
use crate::aws::preflight;
use crate::aws::release::{self, ReleaseState, ReleasedImage};
use crate::aws::{access, image, instance, EngineCtx, Target};
use crate::build::journal::Journal;
use crate::build::Manifest;
use crate::plan::model::{BuildFacts, BuildPlan, ConnectVia};
use crate::provision::{ProvisionContext, ProvisionPlan, SshTarget};
use crate::registry::parameter_names;

/// How the steps ended.
pub(super) enum StepsDone {
    Built(Manifest),
    AlreadyReleased(Vec<ReleasedImage>),
}

impl BuildRunner {
    async fn begin(&self, journal: &Journal, step: Step) -> anyhow::Result<()> {
        if let Some(p) = &self.options.pause {
            tokio::select! {
                _ = p.maybe_pause(step.as_str(), journal.build_id()) => {}
                _ = self.options.cancel.cancelled() => {}
            }
        }
        if self.options.cancel.is_cancelled() {
            return Err(self.stopped());
        }
        journal.step_started(step.as_str()).await
    }

    /// Why the build stops: handed over (shutdown, lost lease or heartbeat) or cancelled.
    fn stopped(&self) -> anyhow::Error {
        if self.options.hand_over.is_cancelled() {
            anyhow::Error::new(HandedOver)
        } else {
            anyhow::Error::new(Cancelled)
        }
    }

    /// Runs a step's work, stopping at cancel.
    async fn guarded<T>(
        &self,
        step: Step,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::select! {
            r = work => r.context(crate::build::StepFailed { step: step.as_str() }),
            _ = self.options.cancel.cancelled() => Err(self.stopped()),
        }
    }

    pub(super) async fn steps(
        &self,
        plan: &BuildPlan,
        journal: &Journal,
        st: &mut State,
    ) -> anyhow::Result<StepsDone> {
        let build_id = journal.build_id().to_string();
        let budgets = self.options.budgets;
        let ctx = EngineCtx {
            session: &self.session,
            journal,
            plan,
            build_id: &build_id,
            log: &self.log,
            budgets: &budgets,
        };
        let builder_target = ctx.builder_target();
        // A release's version parameter: its name is checked before anything exists.
        let parameter = (!plan.image.ephemeral)
            .then(|| {
                parameter_names::version_parameter(
                    &self.options.ssm_prefix,
                    plan.repo.as_deref(),
                    &plan.recipe,
                    &plan.version,
                )
            })
            .transpose()?;

        self.begin(journal, Step::Credentials).await?;
        self.guarded(Step::Credentials, async {
            preflight::assume_roles(&self.session, plan, &build_id).await?;
            self.log.info(
                Step::Credentials.as_str(),
                format!(
                    "home account {}, {} target account(s) reachable",
                    self.session.home_account(),
                    preflight::target_accounts(plan).len()
                ),
            );
            Ok(())
        })
        .await?;
        journal.step_finished(Step::Credentials.as_str()).await?;

        if st.preflight.is_none() {
            self.begin(journal, Step::Preflight).await?;
            let done = self
                .guarded(Step::Preflight, async {
                    let targets: Vec<Target> = preflight::copy_targets(&self.session, plan)
                        .into_iter()
                        .map(|(t, _)| t)
                        .collect();
                    let lookup = release::lookup(&self.session, plan, &targets).await?;
                    if let ReleaseState::Released(images) = lookup.state {
                        self.log.info(
                            Step::Preflight.as_str(),
                            format!(
                                "{} {} is already released from this commit: {}; nothing to build",
                                plan.recipe,
                                plan.version,
                                images
                                    .iter()
                                    .map(|i| format!("{}:{}", i.target.region, i.image_id))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                        return Ok(Some(images));
                    }
                    let pre = preflight::run(ctx, &lookup).await?;
                    self.log.info(
                        Step::Preflight.as_str(),
                        format!(
                            "source image {}; name {:?} free in {} target(s); KMS keys usable",
                            pre.source.id,
                            plan.image.name,
                            pre.copies.len()
                        ),
                    );
                    journal
                        .append("preflight", serde_json::to_value(&pre)?)
                        .await?;
                    let facts = BuildFacts {
                        build_id: build_id.clone(),
                        source_ami: pre.source.id.clone(),
                    };
                    journal
                        .append("facts", serde_json::to_value(&facts)?)
                        .await?;
                    st.facts = Some(facts);
                    st.preflight = Some(pre);
                    Ok(None)
                })
                .await?;
            if let Some(images) = done {
                journal.step_finished(Step::Preflight.as_str()).await?;
                return Ok(StepsDone::AlreadyReleased(images));
            }
            journal.step_finished(Step::Preflight.as_str()).await?;
        }
        let pre = st.preflight.clone().expect("set by preflight");
        let facts = st.facts.clone().expect("set by preflight");

        let need_builder = st.intermediate_id.is_none() && !st.intermediate_removed;
        if need_builder {
            self.begin(journal, Step::Access).await?;
            self.guarded(Step::Access, async {
                st.key = Some(access::create_key_pair(ctx, &builder_target).await?);
                st.security_group =
                    Some(access::create_security_group(ctx, &builder_target).await?);
                Ok(())
            })
            .await?;
            journal.step_finished(Step::Access.as_str()).await?;

            self.begin(journal, Step::Instance).await?;
            self.guarded(Step::Instance, async {
                let (key_name, _) = st.key.as_ref().expect("access step ran");
                let id = instance::launch(
                    ctx,
                    &builder_target,
                    &pre.source,
                    &pre.subnets,
                    pre.builder_kms_key_arn.as_deref(),
                    key_name,
                    st.security_group.as_ref().expect("access step ran"),
                )
                .await?;
                st.instance = Some(id.clone());
                let b = instance::wait_running(ctx, &builder_target, &id).await?;
                self.log.info(
                    Step::Instance.as_str(),
                    format!(
                        "builder {id} running (public {}, private {})",
                        b.public_ip.as_deref().unwrap_or("none"),
                        b.private_ip.as_deref().unwrap_or("none")
                    ),
                );
                st.builder = Some(b);
                Ok(())
            })
            .await?;
            journal.step_finished(Step::Instance.as_str()).await?;

            self.begin(journal, Step::Provision).await?;
            self.guarded(Step::Provision, async {
                let b = st.builder.as_ref().expect("instance step ran");
                let (host, port) = match &plan.builder.connect {
                    ConnectVia::PublicIp => (
                        b.public_ip.clone().context("the builder has no public address: use connect = private_ip or a subnet that assigns public addresses")?,
                        22,
                    ),
                    ConnectVia::PrivateIp => (
                        b.private_ip.clone().context("the builder has no private address")?,
                        22,
                    ),
                    ConnectVia::Explicit { host, port } => (host.clone(), *port),
                };
                // cloud-init prints the host keys' fingerprints to the console: pin to
                // them where they are; otherwise the provisioner trusts on first use.
                let pins =
                    instance::console_host_key_fingerprints(ctx, &builder_target, &b.id).await;
                self.log.info(
                    Step::Provision.as_str(),
                    if pins.is_empty() {
                        "no host key fingerprints on the console: the first host key is trusted and recorded".to_string()
                    } else {
                        format!("pinning the host key to the console's fingerprints: {}", pins.join(", "))
                    },
                );
                let target = SshTarget {
                    host,
                    port,
                    user: plan.builder.ssh_user.clone(),
                    key: st.key.as_ref().expect("access step ran").1.clone(),
                    host_key_pins: pins,
                    known_host_key: None,
                };
                let pctx = ProvisionContext {
                    plan: Arc::new(ProvisionPlan::for_ec2(plan, &facts)),
                    repo_root: self.options.repo_root.clone(),
                    log: self.log.clone(),
                    cancel: self.options.cancel.child_token(),
                };
                let report = self.provisioner.provision(&target, &pctx).await?;
                journal
                    .append(
                        "host_key",
                        json!({ "fingerprint": report.host_key_fingerprint }),
                    )
                    .await?;
                if let Some(collected) = &report.inventory {
                    self.store.put_inventory(journal.build_id(), collected).await?;
                }
                Ok(())
            })
            .await?;
            journal.step_finished(Step::Provision.as_str()).await?;
        }

        if !st.intermediate_removed && st.intermediate.is_none() {
            self.begin(journal, Step::Image).await?;
            self.guarded(Step::Image, async {
                let id = match st.intermediate_id.clone() {
                    Some(id) => id,
                    None => {
                        // CreateImage shuts the builder down cleanly before it takes the
                        // snapshots, as StopInstances would: one call, and no wait of its own.
                        let instance_id = st.instance.clone().expect("instance step ran");
                        let id =
                            image::create_intermediate(ctx, &builder_target, &instance_id, &facts)
                                .await?;
                        st.intermediate_id = Some(id.clone());
                        id
                    }
                };
                let snapshots = image::wait_available(
                    ctx,
                    &builder_target,
                    &id,
                    image::intermediate_budget(&budgets),
                )
                .await?;
                image::record_snapshots(ctx, &builder_target, &id, &snapshots).await?;
                let inter = Intermediate {
                    target: builder_target.clone(),
                    image_id: id.clone(),
                    snapshot_ids: snapshots,
                };
                journal
                    .append("intermediate", serde_json::to_value(&inter)?)
                    .await?;
                self.log.info(
                    Step::Image.as_str(),
                    format!("intermediate image {id} available; snapshots tagged"),
                );
                st.intermediate = Some(inter);
                self.terminate_builder(journal).await?;
                Ok(())
            })
            .await?;
            journal.step_finished(Step::Image.as_str()).await?;
        }

        self.begin(journal, Step::Distribute).await?;
        self.guarded(Step::Distribute, async {
            if !st.intermediate_removed {
                let inter = st.intermediate.clone().expect("image step ran");
                st.grants = distribute::share(ctx, &inter, &pre.copies).await?;
                let outcomes = distribute::copy_all(
                    ctx,
                    &inter,
                    &pre.copies,
                    &st.adopted,
                    &facts,
                    self.options.per_region_concurrency,
                )
                .await?;
                for o in &outcomes {
                    journal.append("copied", serde_json::to_value(o)?).await?;
                }
                journal.append("distributed", json!({})).await?;
                st.outcomes = outcomes;
                st.distributed = true;
                // With the grants an earlier attempt of this build journaled (a resumed build).
                let grants = crate::aws::grants::with_journaled(&st.grants, &journal.ledger());
                distribute::retire_grants(ctx, &inter, &grants).await?;
                if let Some(p) = &self.options.pause {
                    p.maybe_pause(PAUSE_DISTRIBUTE_COPIED, &build_id).await;
                }
                distribute::remove_intermediate(ctx, &inter).await?;
                journal
                    .append(
                        "intermediate_removed",
                        json!({ "image_id": inter.image_id }),
                    )
                    .await?;
                st.intermediate_removed = true;
            }
            distribute::publish_all(ctx, &st.outcomes).await?;
            if let Some(name) = &parameter {
                crate::aws::parameter::put_versions(ctx, name, &st.outcomes).await?;
            }
            distribute::mark_released(ctx, &st.outcomes).await?;
            if let Some(p) = &self.options.pause {
                p.maybe_pause(PAUSE_DISTRIBUTE_PUBLISHED, &build_id).await;
            }
            if plan.image.ephemeral {
                distribute::discard(ctx, &st.outcomes).await?;
            }
            Ok(())
        })
        .await?;
        journal.step_finished(Step::Distribute.as_str()).await?;

        self.begin(journal, Step::Cleanup).await?;
        self.guarded(Step::Cleanup, async {
            self.delete_builder(journal).await?;
            Ok(())
        })
        .await?;
        journal.step_finished(Step::Cleanup.as_str()).await?;

        self.begin(journal, Step::Manifest).await?;
        let manifest = Manifest::from_build(plan, &facts, &st.outcomes);
        journal.step_finished(Step::Manifest.as_str()).await?;
        Ok(StepsDone::Built(manifest))
    }
}
