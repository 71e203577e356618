//! Cleanup: deletes what a build created, newest first: the journal's live resources (an
//! image with its snapshots), the images whose create answer was lost (found by name and
//! this build's id), then a sweep of everything still tagged with this build's id in every
//! account and region the plan touches. Also the `cleanup` step's own work (the builder,
//! its security group and key pair).
//!
//! Touches only resources in this build's journal or tagged with its `bakery:build-id`,
//! and the journal (each deletion recorded).

use super::{BuildRunner, Step};
use crate::aws::resource::{self, Deleted, ResourceKind, ResourceRef};
use crate::aws::{self, Target};
use crate::build::journal::Journal;
use crate::plan::model::BuildPlan;

impl BuildRunner {
    /// Terminates the builder as soon as the intermediate image holds what it built,
    /// without waiting for it to go: the copies take minutes, by the end of which it is
    /// gone and [`Self::delete_builder`] deletes its security group at once (the delete
    /// still retries while the group is in use). Journals it deleted: TerminateInstances
    /// is not undone, and a repeated one finds it gone.
    pub(super) async fn terminate_builder(&self, journal: &Journal) -> anyhow::Result<()> {
        use crate::aws::ResourceJournal;
        let ledger = journal.ledger();
        for l in ledger
            .live
            .iter()
            .filter(|l| l.resource.kind == ResourceKind::Instance)
        {
            let target = l.resource.target();
            let ec2 = self.session.ec2(&target)?;
            aws::instance::terminate(&ec2, &target, &l.resource.id).await?;
            journal.deleted(&l.resource).await?;
            self.log.info(
                Step::Image.as_str(),
                format!(
                    "builder {} terminated: the intermediate image holds what it built",
                    l.resource.id
                ),
            );
        }
        Ok(())
    }

    /// Deletes the builder instance, security group and key pair, newest first.
    pub(super) async fn delete_builder(&self, journal: &Journal) -> anyhow::Result<()> {
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
            if p.kind == ResourceKind::KmsGrant {
                // A grant whose CreateGrant answer was lost: found by the build's grant name.
                match aws::grants::revoke_pending(&self.session, &p.target(), &p.lookup).await {
                    Ok(revoked) => {
                        for res in revoked {
                            let _ = journal.deleted(&res).await;
                            self.log
                                .info("cleanup", format!("revoked {res} (found by name)"));
                        }
                    }
                    Err(e) => errors.push(format!("{e:#}")),
                }
                continue;
            }
            if p.kind == ResourceKind::Parameter {
                if let Err(e) = self.delete_lost_parameter(journal, p, build_id).await {
                    errors.push(format!("{e:#}"));
                }
                continue;
            }
            if p.kind != ResourceKind::Image {
                continue;
            }
            let target = p.target();
            let found = aws::owned::find_pending_image(
                &self.session,
                &target,
                &p.lookup,
                &plan.image.name,
                build_id,
            )
            .await;
            match found {
                Ok(Some(found)) => {
                    let res = ResourceRef::new(ResourceKind::Image, &found.id, &target);
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
