//! The build orchestrator: runs a plan's steps in order, journals every resource, and on
//! failure or cancel deletes everything created so far, in reverse order, copies in other
//! regions and accounts included.
//!
//! # Steps, and what happens after a crash in each
//!
//! A running build writes a heartbeat to the store. A build whose process died (`kill -9`,
//! a lost machine, a panic) is found by the next build of the same recipe, version and
//! commit: its heartbeat is stale (whatever host or PID its journal names), its owner
//! handed it over, or its process on this host is gone. A build still heartbeating is
//! waited for, up to the staleness window. A stopped build is then resumed or cleaned up,
//! by the furthest step its journal reached:
//!
//! | step          | does                                                         | after a crash here                                   |
//! |---------------|--------------------------------------------------------------|------------------------------------------------------|
//! | `credentials` | assumes each target account's role                           | nothing was created: cleaned up, built anew          |
//! | `preflight`   | release check, source image, names, KMS keys                 | nothing was created: cleaned up, built anew          |
//! | `access`      | key pair and security group                                  | cleaned up, built anew                               |
//! | `instance`    | launches the builder, waits until it runs                    | cleaned up, built anew                               |
//! | `provision`   | hands the builder to the provisioner                         | cleaned up, built anew (provisioning is not resumable) |
//! | `image`       | creates the intermediate image (EC2 shuts the builder down first) | **resumed** once CreateImage was recorded (or the image is found by its name); otherwise cleaned up, built anew |
//! | `distribute`  | shares, copies, tags, publishes, removes the intermediate    | **resumed**: copies already made are adopted, the rest are made |
//! | `cleanup`     | deletes the builder, security group and key pair             | **resumed**                                          |
//! | `manifest`    | writes the result, marks the build succeeded                 | **resumed**                                          |
//!
//! A build handed over (server shutdown, lost lease or heartbeat) past the image step is
//! left exactly as it is for the next owner to resume; before it, it is cleaned up.
//!
//! "Cleaned up" deletes every resource in the journal in reverse order, finds the ones
//! whose create call's answer was lost (by `bakery:build-id` tag, or by name for image
//! copies, which are tagged right after CopyImage), and marks the build `cleaned_up`.
//!
//! A failure once every copy exists is the exception: the copies are kept, the rest is
//! deleted, and the next build of the same plan resumes them (see `runner/kept.rs`). A
//! pull request's copies are discarded at the end of `distribute`, before `cleanup`.
//!
//! # Files
//!
//! This file holds the runner's types, `run` (recover what an earlier build left, then
//! build anew) and `execute` (the steps, then success, hand-over, kept copies or cleanup).
//! It touches only the store (build records, journal) and calls the files below:
//!
//! - `runner/steps.rs`: the step sequence, the happy path;
//! - `runner/recovery.rs`: waiting for a running build to stop, resume or adopt;
//! - `runner/cleanup.rs`: deleting what a build created (journal, lookup by name, sweep
//!   by build id);
//! - `runner/kept.rs`: a failure after distribution keeps the copies.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use russh::keys::PrivateKey;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::hooks::PauseAt;
use super::journal::{Journal, Owner};
use super::liveness::{Heartbeat, Liveness};
use super::manifest::Manifest;
use super::BuildLog;
use crate::aws::distribute::{self, CopyOutcome, Intermediate, KmsGrant};
use crate::aws::preflight::Preflight;
use crate::aws::release::ReleasedImage;
use crate::aws::{instance, AwsSession, Budgets, Target};
use crate::database::{BuildFilter, BuildRecord, BuildState, DynStore, JobId};
use crate::plan::model::{BuildFacts, BuildPlan};
use crate::provision::Provisioner;
use crate::registry::parameter_names::ParameterPrefix;

mod cleanup;
mod kept;
mod parameters;
mod recovery;
mod steps;
pub use kept::CopiesKept;
use steps::StepsDone;

/// The steps of a build, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Credentials,
    Preflight,
    Access,
    Instance,
    Provision,
    Image,
    Distribute,
    Cleanup,
    Manifest,
}

impl Step {
    pub const ALL: [Step; 9] = [
        Step::Credentials,
        Step::Preflight,
        Step::Access,
        Step::Instance,
        Step::Provision,
        Step::Image,
        Step::Distribute,
        Step::Cleanup,
        Step::Manifest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Credentials => "credentials",
            Step::Preflight => "preflight",
            Step::Access => "access",
            Step::Instance => "instance",
            Step::Provision => "provision",
            Step::Image => "image",
            Step::Distribute => "distribute",
            Step::Cleanup => "cleanup",
            Step::Manifest => "manifest",
        }
    }
}

/// The pause point inside `distribute`: every copy exists, the intermediate is not yet
/// removed.
pub const PAUSE_DISTRIBUTE_COPIED: &str = "distribute:copied";

/// The pause point at the end of `distribute`: every copy is published (a pull
/// request's not yet discarded).
pub const PAUSE_DISTRIBUTE_PUBLISHED: &str = "distribute:published";

/// A build was cancelled (SIGINT/SIGTERM, or its job was cancelled).
#[derive(Debug, thiserror::Error)]
#[error("the build was cancelled")]
pub struct Cancelled;

/// A build stopped to be handed over (the server shuts down, or this process lost its
/// job's lease or the build's heartbeat). Past the image step it is left as it is, for the
/// next owner to resume; before, it was cleaned up like a cancelled one.
#[derive(Debug, thiserror::Error)]
#[error("the build was handed over to the next owner")]
pub struct HandedOver;

#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The checked-out repository, for the provisioner's files.
    pub repo_root: PathBuf,
    pub job_id: Option<JobId>,
    pub budgets: Budgets,
    pub per_region_concurrency: usize,
    pub cancel: CancellationToken,
    /// Cancelled together with `cancel` when the build must stop but not be thrown away
    /// (shutdown, a lost lease): a build past the image step is left to be resumed.
    pub hand_over: CancellationToken,
    /// The build's heartbeat.
    pub liveness: Liveness,
    /// Test hook; see [`PauseAt`].
    pub pause: Option<PauseAt>,
    /// Where the release's version parameters go in Parameter Store.
    pub ssm_prefix: ParameterPrefix,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            repo_root: PathBuf::from("."),
            job_id: None,
            budgets: Budgets::default(),
            per_region_concurrency: distribute::DEFAULT_PER_REGION_CONCURRENCY,
            cancel: CancellationToken::new(),
            hand_over: CancellationToken::new(),
            liveness: Liveness::default(),
            pause: None,
            ssm_prefix: ParameterPrefix::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum BuildOutcome {
    /// Images were built (or a crashed build of them was resumed).
    Built {
        build_id: String,
        manifest: Manifest,
        resumed: bool,
    },
    /// This version was released before from this commit: nothing was built.
    AlreadyReleased {
        manifest: Manifest,
        images: Vec<ReleasedImage>,
    },
}

impl BuildOutcome {
    pub fn manifest(&self) -> &Manifest {
        match self {
            BuildOutcome::Built { manifest, .. }
            | BuildOutcome::AlreadyReleased { manifest, .. } => manifest,
        }
    }
}

/// What recovering a crashed build did.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovery {
    Resumed(BuildOutcome),
    CleanedUp,
}

/// What a build holds while it runs; filled from the journal when it resumes.
#[derive(Default)]
struct State {
    resumed: bool,
    preflight: Option<Preflight>,
    facts: Option<BuildFacts>,
    key: Option<(String, Arc<PrivateKey>)>,
    security_group: Option<String>,
    instance: Option<String>,
    builder: Option<instance::Builder>,
    intermediate_id: Option<String>,
    intermediate: Option<Intermediate>,
    intermediate_removed: bool,
    /// Every copy exists: a failure from here on keeps them (see [`BuildRunner::keep_copies`]).
    distributed: bool,
    adopted: BTreeMap<Target, String>,
    outcomes: Vec<CopyOutcome>,
    grants: Vec<KmsGrant>,
}

/// Runs builds. One runner can run many builds.
pub struct BuildRunner {
    session: Arc<AwsSession>,
    store: DynStore,
    provisioner: Arc<dyn Provisioner>,
    log: BuildLog,
    options: BuildOptions,
}

impl BuildRunner {
    pub fn new(
        session: Arc<AwsSession>,
        store: DynStore,
        provisioner: Arc<dyn Provisioner>,
        log: BuildLog,
        options: BuildOptions,
    ) -> Self {
        BuildRunner {
            session,
            store,
            provisioner,
            log,
            options,
        }
    }

    /// Builds `plan`. A crashed build of the same recipe, version and commit is resumed
    /// or cleaned up first (see the module docs); a running one is an error.
    pub async fn run(&self, plan: BuildPlan) -> anyhow::Result<BuildOutcome> {
        let earlier = self
            .store
            .list_builds(&BuildFilter {
                recipe: Some(plan.recipe.clone()),
                version: Some(plan.version.clone()),
                state: Some(BuildState::Running),
            })
            .await?;
        for record in earlier.into_iter().filter(|b| b.git_sha == plan.git_sha) {
            let Some(record) = self.wait_until_stopped(record).await? else {
                continue;
            };
            match self.recover(record).await? {
                Recovery::Resumed(outcome) => return Ok(outcome),
                Recovery::CleanedUp => {}
            }
        }
        if let Some(outcome) = self.resume_kept(&plan).await? {
            return Ok(outcome);
        }

        let build_id = uuid::Uuid::now_v7().to_string();
        let record = BuildRecord {
            build_id: build_id.clone(),
            job_id: self.options.job_id,
            recipe: plan.recipe.clone(),
            version: plan.version.clone(),
            git_sha: plan.git_sha.clone(),
            state: BuildState::Running,
            plan: serde_json::to_value(&plan)?,
            manifest: None,
            error: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        };
        self.store.upsert_build(&record).await?;
        let _heartbeat = self.heartbeat(&build_id);
        let journal = Journal::new(self.store.clone(), &build_id);
        journal
            .append("owner", serde_json::to_value(Owner::this_process())?)
            .await?;
        self.log.info(
            "credentials",
            format!(
                "build {build_id}: {} {} at {}",
                plan.recipe, plan.version, plan.git_sha
            ),
        );
        self.execute(&plan, record, &journal, State::default())
            .await
    }

    async fn execute(
        &self,
        plan: &BuildPlan,
        record: BuildRecord,
        journal: &Journal,
        mut state: State,
    ) -> anyhow::Result<BuildOutcome> {
        let result = self.steps(plan, journal, &mut state).await;
        match result {
            Ok(StepsDone::Built(manifest)) => {
                let build_id = journal.build_id().to_string();
                self.finish_record(
                    record,
                    BuildState::Succeeded,
                    Some(serde_json::to_value(&manifest)?),
                    None,
                )
                .await?;
                self.log.info(
                    Step::Manifest.as_str(),
                    format!(
                        "build {build_id} succeeded: {}",
                        manifest.builds[0].artifact_id
                    ),
                );
                Ok(BuildOutcome::Built {
                    build_id,
                    manifest,
                    resumed: state.resumed,
                })
            }
            Ok(StepsDone::AlreadyReleased(images)) => {
                let manifest = Manifest::from_release(plan, &images);
                self.finish_record(
                    record,
                    BuildState::Succeeded,
                    Some(serde_json::to_value(&manifest)?),
                    Some("already released: nothing was built".into()),
                )
                .await?;
                Ok(BuildOutcome::AlreadyReleased { manifest, images })
            }
            Err(err) => {
                let handed_over = err.chain().any(|e| e.is::<HandedOver>());
                if handed_over && (state.intermediate_id.is_some() || state.intermediate_removed) {
                    // Past the image step: the next owner resumes the build; deleting its
                    // image or copies would throw a nearly finished release away.
                    journal
                        .append("handed_over", json!({}))
                        .await
                        .context("cannot record the hand-over")?;
                    self.log.info(
                        "handover",
                        format!(
                            "build {} stops here and is left to the next owner, who resumes it",
                            journal.build_id()
                        ),
                    );
                    return Err(err);
                }
                let cancelled =
                    handed_over || err.chain().any(|e| e.downcast_ref::<Cancelled>().is_some());
                if !cancelled && state.distributed && !plan.image.ephemeral {
                    return self.keep_copies(record, journal, &state, err).await;
                }
                self.log.info(
                    "cleanup",
                    format!("build failed: {err:#}; deleting everything it created"),
                );
                let cleanup = self.cleanup(plan, journal.build_id(), journal).await;
                let state = if cancelled {
                    BuildState::Cancelled
                } else {
                    BuildState::Failed
                };
                let mut message = format!("{err:#}");
                if let Err(c) = &cleanup {
                    message.push_str(&format!(
                        "\ncleanup was incomplete: {c:#}\nrun `bakery janitor` to delete what is left"
                    ));
                }
                self.finish_record(record, state, None, Some(message.clone()))
                    .await?;
                match cleanup {
                    Ok(()) => Err(err),
                    Err(c) => Err(err.context(format!("cleanup was incomplete too: {c:#}"))),
                }
            }
        }
    }

    /// Writes the build's heartbeat while the returned guard lives. A build that cannot
    /// keep its heartbeat stops and hands over, as at shutdown.
    fn heartbeat(&self, build_id: &str) -> Heartbeat {
        Heartbeat::start(
            self.store.clone(),
            build_id,
            self.options.liveness,
            self.options.hand_over.clone(),
            self.options.cancel.clone(),
        )
    }

    async fn finish_record(
        &self,
        mut record: BuildRecord,
        state: BuildState,
        manifest: Option<serde_json::Value>,
        error: Option<String>,
    ) -> anyhow::Result<()> {
        record.state = state;
        crate::metrics::build_finished(&record);
        record.manifest = manifest;
        record.error = error.map(|e| self.log.redactor().redact(&e));
        record.updated_at = chrono::Utc::now();
        self.store.upsert_build(&record).await
    }
}
