//! Reporting calls whose failure must not end a job but must never go unseen: the error,
//! with GitHub's status and message, goes to the job log and to the server log.
//!
//! Touches only the job's log (through [`JobContext::log`]) and `tracing`.

use crate::worker::JobContext;

/// `result` of the reporting call `what` (e.g. `comment on commit 3f2a9c1`): its value,
/// or `None` after logging the error in the job log and the server log.
pub async fn noted<T>(ctx: &JobContext, what: &str, result: anyhow::Result<T>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let message = format!("cannot {what}: {e:#}");
            tracing::warn!(job = ctx.job.id, "{message}");
            ctx.log("report", &message).await;
            None
        }
    }
}
