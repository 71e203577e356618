//! A version parameter whose `PutParameter` answer was lost: the journal has it pending,
//! by name. On failure it is deleted only when its `bakery:build-id` is this build's.
//!
//! Touches only Parameter Store, on the pending entry's name, and the build's journal.

use super::BuildRunner;
use crate::aws::{self, ResourceJournal};
use crate::build::journal::{Journal, Pending};

impl BuildRunner {
    /// Deletes the parameter `pending` names if this build wrote it.
    pub(super) async fn delete_lost_parameter(
        &self,
        journal: &Journal,
        pending: &Pending,
        build_id: &str,
    ) -> anyhow::Result<()> {
        let Some(name) = pending.lookup.get("name").and_then(|n| n.as_str()) else {
            return Ok(());
        };
        let target = pending.target();
        if let Some(res) =
            aws::parameter::find_build_parameter(&self.session, &target, name, build_id).await?
        {
            aws::resource::delete(&self.session, &res).await?;
            let _ = journal.deleted(&res).await;
            self.log
                .info("cleanup", format!("deleted {res} (found by name)"));
        }
        Ok(())
    }
}
