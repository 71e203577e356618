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
//! | `image`       | stops the builder, creates the intermediate image            | **resumed** once CreateImage was recorded (or the image is found by its name); otherwise cleaned up, built anew |
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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use russh::keys::PrivateKey;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::hooks::PauseAt;
use super::journal::{Journal, Owner, Replay};
use super::liveness::{Heartbeat, Liveness};
use super::manifest::Manifest;
use super::BuildLog;
use crate::aws::distribute::{self, CopyOutcome, Intermediate, KmsGrant};
use crate::aws::preflight::{self, Preflight};
use crate::aws::release::{self, ReleaseState, ReleasedImage};
use crate::aws::resource::{self, Deleted, ResourceKind, ResourceRef};
use crate::aws::{self, access, image, instance, AwsSession, Budgets, EngineCtx, Target};
use crate::database::{BuildFilter, BuildRecord, BuildState, DynStore, JobId};
use crate::plan::model::{BuildFacts, BuildPlan, ConnectVia};
use crate::provision::{ProvisionContext, ProvisionPlan, Provisioner, SshTarget};

mod kept;
pub use kept::CopiesKept;

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

    /// Waits until a `running` build of the same plan has stopped: its heartbeat is stale,
    /// its owner handed it over, or its process on this host is gone. Returns it then to
    /// be recovered, or `None` when it finished meanwhile. A build that keeps its
    /// heartbeat for longer than the staleness window is running elsewhere: an error.
    async fn wait_until_stopped(&self, record: BuildRecord) -> anyhow::Result<Option<BuildRecord>> {
        let liveness = self.options.liveness;
        let build_id = record.build_id.clone();
        let deadline = tokio::time::Instant::now() + liveness.stale_after + liveness.every;
        let mut told = false;
        loop {
            let Some(current) = self.store.get_build(&build_id).await? else {
                return Ok(None);
            };
            if current.state != BuildState::Running {
                return Ok(None);
            }
            let replay = Replay::from_entries(&self.store.journal(&build_id).await?);
            let age = self.store.build_heartbeat_age(&build_id).await?;
            let stale = age.is_none_or(|a| a >= liveness.stale_after);
            if stale || replay.handed_over || replay.owner.as_ref().is_some_and(Owner::is_gone) {
                return Ok(Some(current));
            }
            let owner = replay
                .owner
                .as_ref()
                .map(|o| format!("pid {} on {}", o.pid, o.host))
                .unwrap_or_else(|| "an unknown process".into());
            let age = age.unwrap_or_default();
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "build {build_id} of {} {} is already running ({owner}, heartbeat {}s ago): \
                 wait for it to finish",
                record.recipe,
                record.version,
                age.as_secs()
            );
            if !told {
                told = true;
                self.log.info(
                    "recover",
                    format!(
                        "build {build_id} is marked running ({owner}, heartbeat {}s ago): \
                         waiting up to {}s for it to finish or stop",
                        age.as_secs(),
                        (liveness.stale_after + liveness.every).as_secs()
                    ),
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(liveness.every) => {}
                _ = self.options.cancel.cancelled() => return Err(anyhow::Error::new(Cancelled)),
            }
        }
    }

    /// Resumes a crashed build, or cleans it up, by the rule of the step it reached.
    pub async fn recover(&self, record: BuildRecord) -> anyhow::Result<Recovery> {
        let build_id = record.build_id.clone();
        crate::metrics::metrics().takeover("build");
        let plan: BuildPlan = serde_json::from_value(record.plan.clone())
            .with_context(|| format!("build {build_id} has no readable plan in the store"))?;
        let _heartbeat = self.heartbeat(&build_id);
        let replay = Replay::from_entries(&self.store.journal(&build_id).await?);
        let journal = Journal::restore(self.store.clone(), &build_id, replay.ledger.clone());
        journal
            .append("owner", serde_json::to_value(Owner::this_process())?)
            .await?;
        let last = replay
            .started_steps
            .last()
            .cloned()
            .unwrap_or_else(|| "none".into());
        self.log.info(
            "recover",
            format!("build {build_id} stopped during step {last}: taking it over"),
        );
        // Roles are needed both to resume and to clean up.
        if let Err(e) = preflight::assume_roles(&self.session, &plan, &build_id).await {
            self.log.info("recover", format!("{e:#}"));
        }
        match self.resume_state(&plan, &replay, &journal).await {
            Ok(Some(state)) => {
                self.log.info(
                    "recover",
                    format!("resuming build {build_id}: its image exists"),
                );
                let outcome = self.execute(&plan, record, &journal, state).await?;
                Ok(Recovery::Resumed(outcome))
            }
            Ok(None) => {
                self.log.info(
                    "recover",
                    format!("cleaning up build {build_id}: it stopped before its image was taken"),
                );
                let facts_id = build_id.clone();
                self.cleanup(&plan, &facts_id, &journal)
                    .await
                    .with_context(|| format!("cannot clean up crashed build {build_id}"))?;
                self.finish_record(
                    record,
                    BuildState::CleanedUp,
                    None,
                    Some("the build's process died; its resources were cleaned up".into()),
                )
                .await?;
                Ok(Recovery::CleanedUp)
            }
            Err(e) => Err(e),
        }
    }

    /// The state to resume from, or `None` when the build must be cleaned up instead.
    async fn resume_state(
        &self,
        plan: &BuildPlan,
        replay: &Replay,
        journal: &Journal,
    ) -> anyhow::Result<Option<State>> {
        let Some(pre) = replay.note::<Preflight>("preflight") else {
            return Ok(None);
        };
        let Some(facts) = replay.note::<BuildFacts>("facts") else {
            return Ok(None);
        };
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
        let role_of = |d: &serde_json::Value| {
            d.get("role")
                .and_then(|r| r.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let mut state = State {
            resumed: true,
            ..State::default()
        };
        let ledger = journal.ledger();
        for l in &ledger.live {
            if l.resource.kind == ResourceKind::Image {
                match role_of(&l.detail).as_str() {
                    aws::tags::role::INTERMEDIATE => {
                        state.intermediate_id = Some(l.resource.id.clone())
                    }
                    aws::tags::role::FINAL => {
                        state
                            .adopted
                            .insert(l.resource.target(), l.resource.id.clone());
                    }
                    _ => {}
                }
            }
        }
        // Create calls whose answers were lost: find their images by name and build id.
        for p in &ledger.pending {
            if p.kind != ResourceKind::Image {
                continue;
            }
            let target = p.target();
            let found = if role_of(&p.lookup) == aws::tags::role::FINAL {
                distribute::find_copy_by_name(ctx, &target).await?
            } else {
                aws::owned::find_build_image(
                    &self.session,
                    &target,
                    &image::intermediate_name(&plan.image.name, &build_id),
                    &build_id,
                )
                .await?
            };
            if let Some(id) = found {
                let role = role_of(&p.lookup);
                let role = if role.is_empty() {
                    aws::tags::role::INTERMEDIATE.to_string()
                } else {
                    role
                };
                use crate::aws::ResourceJournal;
                journal
                    .created(
                        &ResourceRef::new(ResourceKind::Image, &id, &target),
                        json!({ "role": role, "found_by": "name" }),
                    )
                    .await?;
                if role == aws::tags::role::FINAL {
                    state.adopted.insert(target, id);
                } else {
                    state.intermediate_id = Some(id);
                }
            }
        }
        if replay.notes.contains_key("intermediate_removed") {
            state.intermediate_removed = true;
            // A copy finished twice (a resume before the intermediate was removed) counts once.
            let mut by_target: Vec<CopyOutcome> = vec![];
            for c in &replay.copied {
                if let Ok(o) = serde_json::from_value::<CopyOutcome>(c.clone()) {
                    match by_target.iter_mut().find(|k| k.target == o.target) {
                        Some(k) => *k = o,
                        None => by_target.push(o),
                    }
                }
            }
            state.outcomes = by_target;
            state.distributed = replay.notes.contains_key("distributed");
        } else if state.intermediate_id.is_none() {
            return Ok(None);
        }
        if let Some(inter) = replay.note::<Intermediate>("intermediate") {
            if Some(&inter.image_id) == state.intermediate_id.as_ref() {
                state.intermediate = Some(inter);
            }
        }
        for l in &ledger.live {
            if l.resource.kind == ResourceKind::Instance {
                state.instance = Some(l.resource.id.clone());
            }
        }
        state.preflight = Some(pre);
        state.facts = Some(facts);
        Ok(Some(state))
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
            r = work => r.context(super::StepFailed { step: step.as_str() }),
            _ = self.options.cancel.cancelled() => Err(self.stopped()),
        }
    }

    async fn steps(
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
                    if let ReleaseState::Released(images) =
                        release::check(&self.session, plan, &targets).await?
                    {
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
                    let pre = preflight::run(ctx).await?;
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
                        let instance_id = st.instance.clone().expect("instance step ran");
                        instance::stop(ctx, &builder_target, &instance_id).await?;
                        self.log.info(
                            Step::Image.as_str(),
                            format!("builder {instance_id} stopped"),
                        );
                        let id =
                            image::create_intermediate(ctx, &builder_target, &instance_id, &facts)
                                .await?;
                        st.intermediate_id = Some(id.clone());
                        id
                    }
                };
                let snapshots =
                    image::wait_available(ctx, &builder_target, &id, budgets.image_available)
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
                distribute::retire_grants(ctx, &inter, &st.grants).await?;
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

    /// Deletes the builder instance, security group and key pair, newest first.
    async fn delete_builder(&self, journal: &Journal) -> anyhow::Result<()> {
        use crate::aws::ResourceJournal;
        let ledger = journal.ledger();
        for l in ledger.live.iter().rev() {
            if matches!(
                l.resource.kind,
                ResourceKind::Instance | ResourceKind::SecurityGroup | ResourceKind::KeyPair
            ) {
                resource::delete(&self.session, &l.resource).await?;
                journal.deleted(&l.resource).await?;
                self.log
                    .info(Step::Cleanup.as_str(), format!("deleted {}", l.resource));
            }
        }
        Ok(())
    }

    /// Deletes `res`, then journals it and the snapshots EC2 deleted with it as deleted.
    /// The outer error is the delete's; the inner one is the journal's, which each caller
    /// weighs itself.
    pub(super) async fn delete_journaled(
        &self,
        journal: &Journal,
        res: &ResourceRef,
    ) -> anyhow::Result<anyhow::Result<()>> {
        use crate::aws::ResourceJournal;
        let d = resource::delete(&self.session, res).await?;
        let recorded = journal.deleted(res).await;
        if let Deleted::Now { snapshots } = d {
            for s in snapshots {
                let _ = journal
                    .deleted(&ResourceRef::new(ResourceKind::Snapshot, s, &res.target()))
                    .await;
            }
        }
        self.log.info("cleanup", format!("deleted {res}"));
        Ok(recorded)
    }

    /// Deletes everything a build created: the journal's resources newest first (an
    /// image with its snapshots), then images whose create answer was lost (found by
    /// name and this build's id), then anything still tagged with the build id in every account and region
    /// the plan touches. Every deletion is attempted; the errors are reported together.
    pub async fn cleanup(
        &self,
        plan: &BuildPlan,
        build_id: &str,
        journal: &Journal,
    ) -> anyhow::Result<()> {
        use crate::aws::ResourceJournal;
        let mut errors: Vec<String> = vec![];
        let ledger = journal.ledger();
        let live_images: Vec<String> = ledger
            .live
            .iter()
            .filter(|l| l.resource.kind == ResourceKind::Image)
            .map(|l| l.resource.id.clone())
            .collect();
        for l in ledger.live.iter().rev() {
            let res = &l.resource;
            let parent = l.detail.get("image").and_then(|v| v.as_str());
            if res.kind == ResourceKind::Snapshot
                && parent.is_some_and(|p| live_images.iter().any(|i| i == p))
            {
                continue;
            }
            match self.delete_journaled(journal, res).await {
                Ok(Err(e)) => errors.push(format!("{e:#}")),
                Ok(Ok(())) => {}
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        for p in &ledger.pending {
            if p.kind != ResourceKind::Image {
                continue;
            }
            let target = p.target();
            let name = match p.lookup.get("name").and_then(|n| n.as_str()) {
                Some(n) => n.to_string(),
                None => continue,
            };
            match aws::owned::find_build_image(&self.session, &target, &name, build_id).await {
                Ok(Some(id)) => {
                    let res = ResourceRef::new(ResourceKind::Image, &id, &target);
                    match resource::delete(&self.session, &res).await {
                        Ok(_) => {
                            let _ = journal.deleted(&res).await;
                            self.log
                                .info("cleanup", format!("deleted {res} (found by name)"));
                        }
                        Err(e) => errors.push(format!("{e:#}")),
                    }
                }
                Ok(None) => {}
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        let mut targets: Vec<Target> = vec![Target {
            account: self.session.home_account().to_string(),
            region: plan.builder.region.clone(),
        }];
        for c in &plan.distribute.copies {
            if let Some(a) = &c.account {
                // Nothing can exist in an account whose role cannot be assumed.
                if self
                    .session
                    .assume_role(a, &format!("bakery-{build_id}"))
                    .await
                    .is_err()
                {
                    continue;
                }
            }
            targets.push(Target {
                account: self.session.account_of(c.account.as_ref()),
                region: c.region.clone(),
            });
        }
        targets.sort();
        targets.dedup();
        for t in &targets {
            match resource::sweep_build(&self.session, t, build_id).await {
                Ok(deleted) => {
                    for res in deleted {
                        let _ = journal.deleted(&res).await;
                        self.log
                            .info("cleanup", format!("deleted {res} (found by tag)"));
                    }
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        if errors.is_empty() {
            self.log
                .info("cleanup", format!("build {build_id}: nothing is left"));
            Ok(())
        } else {
            anyhow::bail!("{}", errors.join("\n"))
        }
    }
}

enum StepsDone {
    Built(Manifest),
    AlreadyReleased(Vec<ReleasedImage>),
}
