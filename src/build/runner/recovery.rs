//! Crash recovery: waits until a `running` build of the same plan has stopped, then resumes
//! it from its journal (adopting the images whose create answer was lost, found by name and
//! build id) or cleans it up, by the rule of the step it reached (see the table in
//! `runner.rs`).
//!
//! Touches the store (the earlier build's record, journal and heartbeat) and, through the
//! AWS session, only reads: the images of that build (by name and its `bakery:build-id`).
//! Deleting is `cleanup.rs`'s; building on is `steps.rs`'s.

use anyhow::Context;
use serde_json::json;

use super::{BuildRunner, Cancelled, Recovery, State};
use crate::aws::preflight::{self, Preflight};
use crate::aws::resource::{ResourceKind, ResourceRef};
use crate::aws::{self, distribute::CopyOutcome, distribute::Intermediate};
use crate::build::journal::{Journal, Owner, Replay};
use crate::database::{BuildRecord, BuildState};
use crate::plan::model::{BuildFacts, BuildPlan};

impl BuildRunner {
    /// Waits until a `running` build of the same plan has stopped: its heartbeat is stale,
    /// its owner handed it over, or its process on this host is gone. Returns it then to
    /// be recovered, or `None` when it finished meanwhile. A build that keeps its
    /// heartbeat for longer than the staleness window is running elsewhere: an error.
    pub(super) async fn wait_until_stopped(
        &self,
        record: BuildRecord,
    ) -> anyhow::Result<Option<BuildRecord>> {
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
    pub(super) async fn resume_state(
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
            let found = aws::owned::find_pending_image(
                &self.session,
                &target,
                &p.lookup,
                &plan.image.name,
                &build_id,
            )
            .await?;
            if let Some(found) = found {
                use crate::aws::ResourceJournal;
                journal
                    .created(
                        &ResourceRef::new(ResourceKind::Image, &found.id, &target),
                        json!({ "role": found.role, "found_by": "name" }),
                    )
                    .await?;
                if found.role == aws::tags::role::FINAL {
                    state.adopted.insert(target, found.id);
                } else {
                    state.intermediate_id = Some(found.id);
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
}
