//! Job handlers: what a worker does with a leased job, by kind.

mod log_sink;

pub use log_sink::JobLogSink;

use async_trait::async_trait;

use crate::database::JobKind;
use crate::worker::{JobContext, JobHandler};

/// Routes each job to the handler for its kind.
pub struct Dispatcher {}

impl Dispatcher {
    pub fn new() -> Self {
        Dispatcher {}
    }
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl JobHandler for Dispatcher {
    async fn run(&self, ctx: &JobContext) -> anyhow::Result<Option<serde_json::Value>> {
        let kind = ctx.job.kind;
        match kind {
            JobKind::Release | JobKind::Validation | JobKind::Command => {
                ctx.log(
                    "job",
                    &format!("{} jobs have no handler in this build", kind.as_str()),
                )
                .await;
                anyhow::bail!("{} jobs have no handler in this build", kind.as_str())
            }
        }
    }
}
