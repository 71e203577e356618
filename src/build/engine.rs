//! The seam between a job and the AWS engine: [`ImageEngine`] builds one recipe's plan
//! into images, and [`AwsEngine`] is the real one (an AWS session for the builder's region
//! and a [`BuildRunner`]). Jobs reach it through `JobDeps::engine`, so a conversation can
//! build and report a release against an engine that touches no cloud.
//!
//! Touches nothing itself; `AwsEngine` touches what the runner touches (AWS, the store's
//! build records and journal, the provisioner).

use std::sync::Arc;

use async_trait::async_trait;

use super::{BuildLog, BuildOptions, BuildOutcome, BuildRunner};
use crate::aws::{AwsSession, AwsSettings};
use crate::database::DynStore;
use crate::plan::model::BuildPlan;
use crate::provision::Provisioner;

/// What an engine was asked to build: the plan (with the operator's policy applied), the
/// build's log, and its options (workspace, job, cancel and hand-over tokens, budgets).
pub struct BuildRequest {
    pub plan: BuildPlan,
    pub log: BuildLog,
    pub options: BuildOptions,
}

/// How an engine's build ended.
pub struct EngineRun {
    /// The images built (or found released), or why not. A failing step is named by a
    /// [`crate::build::StepFailed`] context; a cancel or hand-over by
    /// [`crate::build::Cancelled`] or [`crate::build::HandedOver`].
    pub result: anyhow::Result<BuildOutcome>,
    /// The AWS session the build used, to act on its images afterwards (tag them with the
    /// provenance digest, discard a pull request's). `None`: no session was made.
    pub session: Option<Arc<AwsSession>>,
}

/// Builds one recipe's plan into images, journalled and cleaned up as the runner does.
#[async_trait]
pub trait ImageEngine: Send + Sync {
    async fn build(&self, request: BuildRequest) -> EngineRun;
}

/// The AWS engine: connects to the builder's region and runs the plan with a
/// [`BuildRunner`].
pub struct AwsEngine {
    settings: AwsSettings,
    store: DynStore,
    provisioner: Arc<dyn Provisioner>,
}

impl AwsEngine {
    pub fn new(settings: AwsSettings, store: DynStore, provisioner: Arc<dyn Provisioner>) -> Self {
        AwsEngine {
            settings,
            store,
            provisioner,
        }
    }
}

#[async_trait]
impl ImageEngine for AwsEngine {
    async fn build(&self, request: BuildRequest) -> EngineRun {
        let session =
            match AwsSession::connect(self.settings.clone(), &request.plan.builder.region).await {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    return EngineRun {
                        result: Err(e.context("cannot reach AWS")),
                        session: None,
                    }
                }
            };
        let runner = BuildRunner::new(
            session.clone(),
            self.store.clone(),
            self.provisioner.clone(),
            request.log,
            request.options,
        );
        EngineRun {
            result: runner.run(request.plan).await,
            session: Some(session),
        }
    }
}
