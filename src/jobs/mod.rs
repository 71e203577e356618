//! Job handlers: what a worker does with a leased job, by kind.

mod channels_review;
pub mod command;
mod deps;
mod lifecycle;
mod log_sink;
mod noted;
mod periodic;
mod progress;
mod reconcile;
mod registry_view;
pub(crate) mod release;
mod release_qemu;
pub(crate) mod spec;
mod tracked;
pub(crate) mod validation;

pub use deps::JobDeps;
pub use lifecycle::run_lifecycle;
pub use log_sink::JobLogSink;
pub use noted::noted;
pub use periodic::{run_janitor, spawn as spawn_periodic, sync_seen_repos};
pub use progress::StepTracker;

use std::sync::Arc;

use async_trait::async_trait;

use crate::database::JobKind;
use crate::worker::{JobContext, JobHandler};

/// Routes each job to the handler for its kind.
pub struct Dispatcher {
    deps: Arc<JobDeps>,
}

impl Dispatcher {
    pub fn new(deps: Arc<JobDeps>) -> Self {
        Dispatcher { deps }
    }
}

#[async_trait]
impl JobHandler for Dispatcher {
    async fn run(&self, ctx: &JobContext) -> anyhow::Result<Option<serde_json::Value>> {
        match ctx.job.kind {
            JobKind::Release => release::run(&self.deps, ctx).await,
            JobKind::Validation => validation::run(&self.deps, ctx).await,
            JobKind::Command => command::run(&self.deps, ctx).await,
            JobKind::Reconcile => reconcile::run(&self.deps, ctx).await,
        }
    }
}
