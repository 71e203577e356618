//! Distribution: encrypted copies of the intermediate image in every target account and
//! region, tagged and published; then the unencrypted intermediate goes.
//!
//! Copies into other accounts run *from* that account (its assumed role), after the
//! intermediate image and its snapshots were shared with it, so that account owns an
//! encrypted copy under its own key. Copies run in parallel, at most
//! `per_region_concurrency` at a time into one region. A copy EC2 fails for a reason
//! another copy may not meet (a KMS grant not yet usable) is issued again, a bounded
//! number of times ([`super::copy_retry`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Context;
use aws_sdk_ec2::types::{
    LaunchPermission, LaunchPermissionModifications, OperationType, SnapshotAttributeName,
};
use futures::future::try_join_all;
use serde::Serialize;
use serde_json::json;
use sha2::Digest;
use tokio::sync::Semaphore;

use super::error::SdkResultExt;
use super::image;
use super::preflight::ResolvedCopy;
use super::resource::{self, Deleted, ResourceKind, ResourceRef};
use super::session::Target;
use super::{policy, tags, EngineCtx};
use crate::plan::model::BuildFacts;

/// Copies running at once into one region. EC2 allows a handful of concurrent copies per
/// destination region; more would only queue there.
pub const DEFAULT_PER_REGION_CONCURRENCY: usize = 4;

/// The unencrypted image taken from the builder.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Intermediate {
    pub target: Target,
    pub image_id: String,
    pub snapshot_ids: Vec<String>,
}

/// One finished copy.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CopyOutcome {
    pub target: Target,
    pub image_id: String,
    pub encrypted: bool,
    /// The KMS key ARN the copy was encrypted with; `None`: the account's default EBS key.
    pub kms_key_id: Option<String>,
    pub snapshot_ids: Vec<String>,
}

/// CopyImage's idempotency token for one target of one build.
pub fn copy_client_token(build_id: &str, target: &Target) -> String {
    let digest = sha2::Sha256::digest(format!("{build_id}/{}/{}", target.account, target.region));
    format!("bakery-{}", &hex::encode(digest)[..40])
}

/// Tags for a final image.
pub fn final_image_tags(ctx: &EngineCtx<'_>, facts: &BuildFacts) -> BTreeMap<String, String> {
    let mut t = ctx.plan.image_tags(facts);
    t.insert(tags::ROLE.into(), tags::role::FINAL.into());
    t.insert(tags::CREATED_AT.into(), ctx.now());
    t.insert(tags::INSTALLATION.into(), ctx.installation().into());
    t
}

/// Tags for a final image's snapshots.
pub fn final_snapshot_tags(ctx: &EngineCtx<'_>, facts: &BuildFacts) -> BTreeMap<String, String> {
    let mut t = ctx.plan.snapshot_tags(facts);
    t.insert(tags::ROLE.into(), tags::role::FINAL.into());
    t.insert(tags::CREATED_AT.into(), ctx.now());
    t.insert(tags::INSTALLATION.into(), ctx.installation().into());
    t
}

/// Shares the intermediate image and its snapshots with every other account that gets a
/// copy, and grants those accounts use of the snapshots' KMS key when they are encrypted.
pub async fn share(
    ctx: EngineCtx<'_>,
    inter: &Intermediate,
    copies: &[ResolvedCopy],
) -> anyhow::Result<Vec<KmsGrant>> {
    let mut accounts: Vec<String> = copies
        .iter()
        .map(|c| c.target.account.clone())
        .filter(|a| a != &inter.target.account)
        .collect();
    accounts.sort();
    accounts.dedup();
    if accounts.is_empty() {
        return Ok(vec![]);
    }
    let ec2 = ctx.session.ec2(&inter.target)?;
    let mut perms = LaunchPermissionModifications::builder();
    for a in &accounts {
        perms = perms.add(LaunchPermission::builder().user_id(a).build());
    }
    let perms = perms.build();
    policy::call_fresh(
        &format!("share image {} with {}", inter.image_id, accounts.join(", ")),
        || async {
            ec2.modify_image_attribute()
                .image_id(&inter.image_id)
                .launch_permission(perms.clone())
                .send()
                .await
                .aws()
        },
    )
    .await
    .with_context(|| {
        format!(
            "cannot share image {} in {} with the target accounts: the role needs ec2:ModifyImageAttribute",
            inter.image_id, inter.target
        )
    })?;
    for snap in &inter.snapshot_ids {
        policy::call_fresh(
            &format!("share snapshot {snap} with {}", accounts.join(", ")),
            || async {
                ec2.modify_snapshot_attribute()
                    .snapshot_id(snap)
                    .attribute(SnapshotAttributeName::CreateVolumePermission)
                    .operation_type(OperationType::Add)
                    .set_user_ids(Some(accounts.clone()))
                    .send()
                    .await
                    .aws()
            },
        )
        .await
        .with_context(|| {
            format!(
                "cannot share snapshot {snap} in {} with the target accounts: the role needs ec2:ModifySnapshotAttribute",
                inter.target
            )
        })?;
    }
    let grants = grant_snapshot_keys(ctx, inter, &accounts).await?;
    ctx.log.info(
        "distribute",
        format!(
            "image {} and its snapshots shared with {}",
            inter.image_id,
            accounts.join(", ")
        ),
    );
    Ok(grants)
}

/// A KMS grant that lets another account copy an encrypted intermediate.
pub type KmsGrant = super::grants::Grant;

/// An encrypted intermediate (from an encrypted source image) can only be copied by
/// another account that may use its key: grant it ([`super::grants::create`]:
/// journaled, waited on until listed), revoked once the copies exist.
async fn grant_snapshot_keys(
    ctx: EngineCtx<'_>,
    inter: &Intermediate,
    accounts: &[String],
) -> anyhow::Result<Vec<KmsGrant>> {
    let mut grants = vec![];
    let ec2 = ctx.session.ec2(&inter.target)?;
    let out = policy::call_fresh(
        &format!("describe snapshots of {}", inter.image_id),
        || async {
            ec2.describe_snapshots()
                .set_snapshot_ids(Some(inter.snapshot_ids.clone()))
                .send()
                .await
                .aws()
        },
    )
    .await?;
    let mut keys: Vec<String> = out
        .snapshots()
        .iter()
        .filter(|s| s.encrypted() == Some(true))
        .filter_map(|s| s.kms_key_id().map(str::to_string))
        .collect();
    keys.sort();
    keys.dedup();
    for key in &keys {
        for account in accounts {
            grants.push(super::grants::create(ctx, &inter.target, key, account).await?);
        }
    }
    if !grants.is_empty() {
        ctx.log.info(
            "distribute",
            format!(
                "{} KMS grant(s) on {} for {}, listed by KMS",
                grants.len(),
                keys.join(", "),
                accounts.join(", ")
            ),
        );
    }
    Ok(grants)
}

/// Revokes the KMS grants [`share`] created, once the copies no longer need them, and
/// journals each as deleted.
pub async fn retire_grants(
    ctx: EngineCtx<'_>,
    inter: &Intermediate,
    grants: &[KmsGrant],
) -> anyhow::Result<()> {
    for g in grants {
        let res = g.resource(&inter.target);
        resource::delete(ctx.session, &res).await?;
        ctx.journal.deleted(&res).await?;
    }
    if !grants.is_empty() {
        ctx.log.info(
            "distribute",
            format!("{} KMS grant(s) revoked: the copies exist", grants.len()),
        );
    }
    Ok(())
}

/// Makes every copy. `adopted` holds copies made before a crash (target → image id):
/// those are not copied again, only finished.
pub async fn copy_all(
    ctx: EngineCtx<'_>,
    inter: &Intermediate,
    copies: &[ResolvedCopy],
    adopted: &BTreeMap<Target, String>,
    facts: &BuildFacts,
    per_region_concurrency: usize,
) -> anyhow::Result<Vec<CopyOutcome>> {
    let mut limits: HashMap<String, Arc<Semaphore>> = HashMap::new();
    for c in copies {
        limits
            .entry(c.target.region.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(per_region_concurrency.max(1))));
    }
    let total = copies.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let jobs = copies.iter().map(|c| {
        let limit = limits[&c.target.region].clone();
        let done = &done;
        async move {
            let _permit = limit.acquire_owned().await.context("copy limiter closed")?;
            let outcome = copy_one(ctx, inter, c, adopted.get(&c.target), facts).await?;
            let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            ctx.log.info(
                "distribute",
                format!(
                    "copy {n}/{total} available: {} in {} ({})",
                    outcome.image_id,
                    outcome.target,
                    outcome.kms_key_id.as_deref().unwrap_or("default EBS key")
                ),
            );
            anyhow::Ok(outcome)
        }
    });
    try_join_all(jobs).await
}

async fn copy_one(
    ctx: EngineCtx<'_>,
    inter: &Intermediate,
    copy: &ResolvedCopy,
    adopted: Option<&String>,
    facts: &BuildFacts,
) -> anyhow::Result<CopyOutcome> {
    use super::copy_retry::{self, CopyFailure, CopyKeepsFailing};
    let target = &copy.target;
    let encrypted = ctx.plan.distribute.encrypted;
    let cross_account = target.account != inter.target.account;
    let mut adopted = adopted.cloned();
    let mut attempt = 0;
    let (image_id, snapshot_ids) = loop {
        let image_id = match adopted.take() {
            Some(id) => id,
            None => issue_copy(ctx, inter, copy, facts, attempt).await?,
        };
        attempt += 1;
        match image::wait_available(ctx, target, &image_id, ctx.budgets.copy_available).await {
            Ok(snapshots) => break (image_id, snapshots),
            Err(e) => {
                let class = CopyFailure::of(&e);
                let again = class.is_some_and(|c| c.worth_reissuing(cross_account));
                if !again {
                    return Err(e);
                }
                if attempt >= copy_retry::COPY_ATTEMPTS {
                    return Err(e.context(CopyKeepsFailing {
                        target: target.clone(),
                        account: target.account.clone(),
                        image_id,
                        attempts: attempt,
                    }));
                }
                let pause = copy_retry::pause_before_reissue(attempt, ctx.session.settings().poll);
                ctx.log.info(
                    "distribute",
                    format!(
                        "copy {image_id} into {target} failed ({class:?}: {e:#}); deregistered, \
                         issued again in {}s (attempt {} of {})",
                        pause.as_secs(),
                        attempt + 1,
                        copy_retry::COPY_ATTEMPTS
                    ),
                );
                discard_failed_copy(ctx, target, &image_id).await?;
                tokio::time::sleep(pause).await;
            }
        }
    };
    image::record_snapshots(ctx, target, &image_id, &snapshot_ids).await?;
    Ok(CopyOutcome {
        target: target.clone(),
        image_id,
        encrypted,
        kms_key_id: if encrypted {
            copy.kms_key_arn.clone()
        } else {
            None
        },
        snapshot_ids,
    })
}

/// Issues CopyImage for one target, journaled before and after. Attempt 0 uses the
/// build's idempotency token for the target; each later attempt a token of its own, so
/// that EC2 makes a new copy instead of answering with the failed one.
async fn issue_copy(
    ctx: EngineCtx<'_>,
    inter: &Intermediate,
    copy: &ResolvedCopy,
    facts: &BuildFacts,
    attempt: u32,
) -> anyhow::Result<String> {
    let target = &copy.target;
    let ec2 = ctx.session.ec2(target)?;
    let plan = ctx.plan;
    let encrypted = plan.distribute.encrypted;
    let image_tags = final_image_tags(&ctx, facts);
    ctx.journal
        .creating(
            ResourceKind::Image,
            target,
            json!({ "name": plan.image.name, "role": tags::role::FINAL }),
        )
        .await?;
    let token = if attempt == 0 {
        copy_client_token(ctx.build_id, target)
    } else {
        copy_client_token(&format!("{}#{attempt}", ctx.build_id), target)
    };
    // The copy and its snapshots carry the build id from the moment they exist.
    let image_spec = tags::spec(aws_sdk_ec2::types::ResourceType::Image, &image_tags);
    let snapshot_spec = tags::spec(
        aws_sdk_ec2::types::ResourceType::Snapshot,
        &final_snapshot_tags(&ctx, facts),
    );
    let out = policy::call_fresh(&format!("copy {} to {target}", inter.image_id), || async {
        ec2.copy_image()
            .source_image_id(&inter.image_id)
            .source_region(&inter.target.region)
            .name(&plan.image.name)
            .description(&plan.image.description)
            .encrypted(encrypted)
            .set_kms_key_id(if encrypted {
                copy.kms_key_arn.clone()
            } else {
                None
            })
            .copy_image_tags(false)
            .tag_specifications(image_spec.clone())
            .tag_specifications(snapshot_spec.clone())
            .client_token(&token)
            .send()
            .await
            .aws()
    })
    .await;
    if let Err(e) = &out {
        super::owned::settle_refused(ctx.journal, ResourceKind::Image, target, e).await?;
    }
    let out = out.with_context(|| {
        format!(
            "cannot copy {} from {} to {target}: the role needs ec2:CopyImage, and kms:CreateGrant/kms:Encrypt on {}",
            inter.image_id,
            inter.target,
            copy.kms_key_requested.as_deref().unwrap_or("the default EBS key")
        )
    })?;
    let id = out
        .image_id()
        .context("CopyImage returned no image id")?
        .to_string();
    ctx.journal
        .created(
            &ResourceRef::new(ResourceKind::Image, &id, target),
            json!({ "role": tags::role::FINAL, "kms_key": copy.kms_key_arn }),
        )
        .await?;
    Ok(id)
}

/// Deregisters a copy EC2 failed, with whatever snapshots it has, before it is issued
/// again (the name it holds would refuse the next copy).
async fn discard_failed_copy(
    ctx: EngineCtx<'_>,
    target: &Target,
    image_id: &str,
) -> anyhow::Result<()> {
    let res = ResourceRef::new(ResourceKind::Image, image_id, target);
    let snapshots = match resource::delete(ctx.session, &res).await? {
        Deleted::Now { snapshots } => snapshots,
        _ => vec![],
    };
    ctx.journal.deleted(&res).await?;
    for snap in snapshots {
        ctx.journal
            .deleted(&ResourceRef::new(ResourceKind::Snapshot, snap, target))
            .await?;
    }
    Ok(())
}

/// Publishes every copy: launch permissions and deprecation. Runs once every copy
/// exists; a failure here keeps the copies for the next attempt (see the runner).
pub async fn publish_all(ctx: EngineCtx<'_>, outcomes: &[CopyOutcome]) -> anyhow::Result<()> {
    try_join_all(
        outcomes
            .iter()
            .map(|o| publish(ctx, &o.target, &o.image_id)),
    )
    .await?;
    Ok(())
}

/// Launch permissions and deprecation for a final image.
async fn publish(ctx: EngineCtx<'_>, target: &Target, image_id: &str) -> anyhow::Result<()> {
    let ec2 = ctx.session.ec2(target)?;
    let lp = &ctx.plan.distribute.launch_permissions;
    let mut adds = vec![];
    adds.extend(
        lp.account_ids
            .iter()
            .filter(|a| *a != &target.account)
            .map(|a| LaunchPermission::builder().user_id(a).build()),
    );
    adds.extend(
        lp.organization_arns
            .iter()
            .map(|a| LaunchPermission::builder().organization_arn(a).build()),
    );
    adds.extend(lp.organizational_unit_arns.iter().map(|a| {
        LaunchPermission::builder()
            .organizational_unit_arn(a)
            .build()
    }));
    if !adds.is_empty() {
        let mods = LaunchPermissionModifications::builder()
            .set_add(Some(adds))
            .build();
        policy::call_fresh(
            &format!("set launch permissions on {image_id} in {target}"),
            || async {
                ec2.modify_image_attribute()
                    .image_id(image_id)
                    .launch_permission(mods.clone())
                    .send()
                    .await
                    .aws()
            },
        )
        .await
        .with_context(|| format!("cannot set launch permissions on {image_id} in {target}"))?;
    }
    if let Some(after) = ctx.plan.distribute.deprecate_after_secs {
        let base = chrono::DateTime::parse_from_rfc3339(&ctx.plan.build_time)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now());
        let at = base + chrono::Duration::seconds(after as i64);
        policy::call_fresh(
            &format!("set deprecation of {image_id} in {target}"),
            || async {
                ec2.enable_image_deprecation()
                    .image_id(image_id)
                    .deprecate_at(aws_sdk_ec2::primitives::DateTime::from_secs(at.timestamp()))
                    .send()
                    .await
                    .aws()
            },
        )
        .await
        .with_context(|| format!("cannot set the deprecation time of {image_id} in {target}"))?;
    }
    Ok(())
}

/// Marks every final image released: the build's copies all exist. Later builds of the
/// same version find them and build nothing. A pull request's (ephemeral) images are
/// never released: nothing may build on them or take them for a release.
pub async fn mark_released(ctx: EngineCtx<'_>, outcomes: &[CopyOutcome]) -> anyhow::Result<()> {
    if ctx.plan.image.ephemeral {
        return Ok(());
    }
    let now = ctx.now();
    try_join_all(outcomes.iter().map(|o| {
        let now = now.clone();
        async move {
            super::image::tag_image(
                ctx.session,
                &o.target,
                &o.image_id,
                (tags::RELEASED, &now),
                &format!("mark {} released", o.image_id),
            )
            .await
        }
    }))
    .await?;
    Ok(())
}

/// Deregisters a pull request's (ephemeral) copies with their snapshots, as soon as the
/// build has verified them and before its builder is cleaned up, so they exist no longer
/// than needed. What this misses the failure cleanup, then the janitor, delete.
pub async fn discard(ctx: EngineCtx<'_>, outcomes: &[CopyOutcome]) -> anyhow::Result<()> {
    for o in outcomes {
        let res = ResourceRef::new(ResourceKind::Image, &o.image_id, &o.target);
        let snapshots = match delete_image(ctx, &res, &o.snapshot_ids).await? {
            Deleted::Now { snapshots } if !snapshots.is_empty() => snapshots,
            _ => o.snapshot_ids.clone(),
        };
        ctx.journal.deleted(&res).await?;
        for snap in &snapshots {
            ctx.journal
                .deleted(&ResourceRef::new(ResourceKind::Snapshot, snap, &o.target))
                .await?;
        }
        ctx.log.info(
            "distribute",
            format!(
                "throwaway image {} in {} deregistered with snapshot(s) {}",
                o.image_id,
                o.target,
                snapshots.join(", ")
            ),
        );
    }
    Ok(())
}

/// Deregisters the intermediate and deletes its snapshots (which also ends its shares).
pub async fn remove_intermediate(ctx: EngineCtx<'_>, inter: &Intermediate) -> anyhow::Result<()> {
    let res = ResourceRef::new(ResourceKind::Image, &inter.image_id, &inter.target);
    let deleted = delete_image(ctx, &res, &inter.snapshot_ids).await?;
    ctx.journal.deleted(&res).await?;
    let snapshots = match deleted {
        Deleted::Now { snapshots } if !snapshots.is_empty() => snapshots,
        _ => inter.snapshot_ids.clone(),
    };
    for snap in snapshots {
        ctx.journal
            .deleted(&ResourceRef::new(
                ResourceKind::Snapshot,
                snap,
                &inter.target,
            ))
            .await?;
    }
    ctx.log.info(
        "distribute",
        format!(
            "unencrypted intermediate {} and its snapshots deleted",
            inter.image_id
        ),
    );
    Ok(())
}

/// Deletes an image of this build whose snapshots the wait for it already named, without
/// asking EC2 for them again; an image the journal knows no snapshots of is described
/// first (see [`resource::delete`]).
async fn delete_image(
    ctx: EngineCtx<'_>,
    res: &ResourceRef,
    snapshots: &[String],
) -> anyhow::Result<Deleted> {
    if snapshots.is_empty() {
        resource::delete(ctx.session, res).await
    } else {
        resource::delete_image_with_snapshots(ctx.session, res, snapshots).await
    }
}
