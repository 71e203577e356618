//! A release that fails after distribution keeps its copies.
//!
//! Once every encrypted copy exists (the journal's `distributed` note), the hours spent
//! building and copying are not thrown away by one later error (a launch permission or a
//! deprecation time the API refuses, a throttled tag). The failure path then deletes
//! everything but the final copies and their snapshots (the builder, its key pair and
//! security group, the unencrypted intermediate), records `copies_kept`, and marks the
//! build `failed`. The copies are never marked released. The next build of the same
//! recipe, version and commit (the job's next attempt, a re-run of the tag) resumes that
//! build: it checks that every kept copy still exists and that the plan still asks for
//! the same copies, then only publishes and releases them. A kept build that no longer
//! fits (its copies were deleted, the targets changed) is cleaned up and built anew.
//!
//! Touches only the resources in the build's journal or tagged with its build id.

use std::collections::BTreeSet;

use serde_json::json;

use super::{BuildRunner, State};
use crate::aws::resource::{self, ResourceKind};
use crate::aws::{self, preflight, Target};
use crate::build::journal::{Journal, Owner, Replay};
use crate::build::runner::BuildOutcome;
use crate::database::{BuildFilter, BuildRecord, BuildState};
use crate::plan::model::BuildPlan;

/// The journal note of a build whose copies were kept after a failure.
pub const COPIES_KEPT: &str = "copies_kept";

/// A release failed after every copy existed; its copies are kept for the next attempt.
#[derive(Debug, thiserror::Error)]
#[error(
    "build {build_id} failed after its {copies} encrypted copies existed: they are kept, \
     not released; the next attempt of this tag resumes the build and finishes them"
)]
pub struct CopiesKept {
    pub build_id: String,
    pub copies: usize,
}

impl BuildRunner {
    /// The failure path once every copy exists: deletes everything else the build
    /// created, keeps the copies, and marks the build failed with `copies_kept`.
    pub(super) async fn keep_copies(
        &self,
        mut record: BuildRecord,
        journal: &Journal,
        st: &State,
        err: anyhow::Error,
    ) -> anyhow::Result<BuildOutcome> {
        use crate::aws::ResourceJournal;
        let build_id = journal.build_id().to_string();
        let ledger = journal.ledger();
        let mut keep: BTreeSet<String> = BTreeSet::new();
        for o in &st.outcomes {
            keep.insert(o.image_id.clone());
            keep.extend(o.snapshot_ids.iter().cloned());
        }
        for l in &ledger.live {
            let role = l.detail.get("role").and_then(|r| r.as_str());
            if l.resource.kind == ResourceKind::Image && role == Some(aws::tags::role::FINAL) {
                keep.insert(l.resource.id.clone());
            }
        }
        for l in &ledger.live {
            let parent = l.detail.get("image").and_then(|v| v.as_str());
            if l.resource.kind == ResourceKind::Snapshot && parent.is_some_and(|p| keep.contains(p))
            {
                keep.insert(l.resource.id.clone());
            }
        }
        self.log.info(
            "cleanup",
            format!(
                "build failed after every copy existed: {err:#}; keeping the {} copies, \
                 deleting the builder and the intermediate",
                st.outcomes.len()
            ),
        );
        let mut errors: Vec<String> = vec![];
        let live_images: Vec<String> = ledger
            .live
            .iter()
            .filter(|l| l.resource.kind == ResourceKind::Image && !keep.contains(&l.resource.id))
            .map(|l| l.resource.id.clone())
            .collect();
        for l in ledger.live.iter().rev() {
            let res = &l.resource;
            let parent = l.detail.get("image").and_then(|v| v.as_str());
            if keep.contains(&res.id)
                || (res.kind == ResourceKind::Snapshot
                    && parent.is_some_and(|p| live_images.iter().any(|i| i == p)))
            {
                continue;
            }
            if let Err(e) = self.delete_journaled(journal, res).await {
                errors.push(format!("{e:#}"));
            }
        }
        for p in ledger
            .pending
            .iter()
            .filter(|p| p.kind == ResourceKind::Parameter)
        {
            if let Err(e) = self.delete_lost_parameter(journal, p, &build_id).await {
                errors.push(format!("{e:#}"));
            }
        }
        // What the journal missed (an answer lost), found by this build's tag: all but
        // the final copies.
        let builder = Target {
            account: self.session.home_account().to_string(),
            region: serde_json::from_value::<BuildPlan>(record.plan.clone())
                .map(|p| p.builder.region)
                .unwrap_or_default(),
        };
        match resource::find_tagged(&self.session, &builder, Some(&build_id)).await {
            Ok(mut found) => {
                found.retain(|r| {
                    r.role.as_deref() != Some(aws::tags::role::FINAL)
                        && !keep.contains(&r.resource.id)
                });
                found.sort_by_key(|r| resource::delete_order(r.resource.kind));
                for r in found {
                    match resource::delete(&self.session, &r.resource).await {
                        Ok(_) => {
                            let _ = journal.deleted(&r.resource).await;
                            self.log
                                .info("cleanup", format!("deleted {} (found by tag)", r.resource));
                        }
                        Err(e) => errors.push(format!("{e:#}")),
                    }
                }
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
        let intermediate_left = journal
            .ledger()
            .live
            .iter()
            .any(|l| l.resource.kind == ResourceKind::Image && !keep.contains(&l.resource.id));
        if !st.intermediate_removed && !intermediate_left {
            journal
                .append("intermediate_removed", json!({ "on": "failure" }))
                .await?;
        }
        let images: Vec<&str> = st.outcomes.iter().map(|o| o.image_id.as_str()).collect();
        journal
            .append(COPIES_KEPT, json!({ "images": images }))
            .await?;
        let kept = CopiesKept {
            build_id: build_id.clone(),
            copies: st.outcomes.len(),
        };
        let mut message = format!("{err:#}\n{kept}");
        if !errors.is_empty() {
            message.push_str(&format!(
                "\ncleanup was incomplete: {}\nrun `bakery janitor` to delete what is left",
                errors.join("\n")
            ));
        }
        record.state = BuildState::Failed;
        record.manifest = None;
        record.error = Some(self.log.redactor().redact(&message));
        record.updated_at = chrono::Utc::now();
        self.store.upsert_build(&record).await?;
        Err(err.context(kept))
    }

    /// Resumes a build of `plan`'s recipe, version and commit whose copies were kept after
    /// a failure. `None`: there is none, or it no longer fits and was cleaned up; build
    /// anew.
    pub(super) async fn resume_kept(
        &self,
        plan: &BuildPlan,
    ) -> anyhow::Result<Option<BuildOutcome>> {
        let failed = self
            .store
            .list_builds(&BuildFilter {
                recipe: Some(plan.recipe.clone()),
                version: Some(plan.version.clone()),
                state: Some(BuildState::Failed),
            })
            .await?;
        for mut record in failed.into_iter().filter(|b| b.git_sha == plan.git_sha) {
            let build_id = record.build_id.clone();
            let replay = Replay::from_entries(&self.store.journal(&build_id).await?);
            if !replay.notes.contains_key(COPIES_KEPT) {
                continue;
            }
            let Ok(kept_plan) = serde_json::from_value::<BuildPlan>(record.plan.clone()) else {
                continue;
            };
            record.state = BuildState::Running;
            record.updated_at = chrono::Utc::now();
            self.store.upsert_build(&record).await?;
            let _heartbeat = self.heartbeat(&build_id);
            let journal = Journal::restore(self.store.clone(), &build_id, replay.ledger.clone());
            journal
                .append("owner", serde_json::to_value(Owner::this_process())?)
                .await?;
            if let Err(e) = preflight::assume_roles(&self.session, plan, &build_id).await {
                self.log.info("recover", format!("{e:#}"));
            }
            let state = self.resume_state(plan, &replay, &journal).await?;
            let why_not = match &state {
                None => Some("its journal has no copies to resume".to_string()),
                Some(_) if !same_copies(&kept_plan, plan) => Some(
                    "the plan no longer asks for the copies it kept (name, regions, accounts or keys changed)"
                        .to_string(),
                ),
                Some(st) => self.missing_copy(plan, &build_id, st).await?,
            };
            match (state, why_not) {
                (Some(state), None) => {
                    self.log.info(
                        "recover",
                        format!(
                            "resuming build {build_id}: its {} copies were kept after a failure; \
                             finishing and releasing them",
                            state.outcomes.len().max(state.adopted.len())
                        ),
                    );
                    record.plan = serde_json::to_value(plan)?;
                    record.error = None;
                    let outcome = self.execute(plan, record, &journal, state).await?;
                    return Ok(Some(outcome));
                }
                (_, why_not) => {
                    let why = why_not.unwrap_or_default();
                    self.log.info(
                        "recover",
                        format!("build {build_id} kept copies, but {why}: deleting them and building anew"),
                    );
                    self.cleanup(&kept_plan, &build_id, &journal).await?;
                    self.finish_record(
                        record,
                        BuildState::CleanedUp,
                        None,
                        Some(format!("its kept copies were deleted: {why}")),
                    )
                    .await?;
                }
            }
        }
        Ok(None)
    }

    /// Why a kept build cannot be resumed because one of its copies is gone, if so.
    async fn missing_copy(
        &self,
        plan: &BuildPlan,
        build_id: &str,
        st: &State,
    ) -> anyhow::Result<Option<String>> {
        let copies: Vec<(Target, String)> = if st.intermediate_removed {
            st.outcomes
                .iter()
                .map(|o| (o.target.clone(), o.image_id.clone()))
                .collect()
        } else {
            st.adopted
                .iter()
                .map(|(t, i)| (t.clone(), i.clone()))
                .collect()
        };
        if copies.is_empty() {
            return Ok(Some("it has no copies".into()));
        }
        for (target, id) in copies {
            let found =
                aws::owned::find_build_image(&self.session, &target, &plan.image.name, build_id)
                    .await?;
            if found.as_deref() != Some(id.as_str()) {
                return Ok(Some(format!("its copy {id} in {target} is gone")));
            }
        }
        Ok(None)
    }
}

/// Whether a new plan asks for exactly the copies a kept build made.
fn same_copies(kept: &BuildPlan, plan: &BuildPlan) -> bool {
    kept.image.name == plan.image.name
        && kept.builder.region == plan.builder.region
        && kept.distribute.encrypted == plan.distribute.encrypted
        && kept.distribute.copies == plan.distribute.copies
        && kept.repo == plan.repo
}
