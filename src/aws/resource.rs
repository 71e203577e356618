//! The resources bakery creates, as journal entries name them, and how each is deleted
//! or found again by its `bakery:build-id` tag (EC2 resources; a version parameter is
//! found by its name, see [`super::parameter`]).

use anyhow::Context;
use aws_sdk_ec2::types::{Filter, InstanceStateName, SnapshotReturnCodes};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{is_not_found, SdkResultExt};
use super::session::{AwsSession, Target};
use super::wait::{self, Poll};
use super::{policy, tags};
use crate::plan::model::tag_keys;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Instance,
    KeyPair,
    SecurityGroup,
    Image,
    Snapshot,
    /// A KMS grant on a key of the builder's account ([`super::grants`]): id
    /// `<key ARN>#<grant id>`.
    KmsGrant,
    /// A release's version parameter in Parameter Store, named by its full name.
    Parameter,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Instance => "instance",
            ResourceKind::KeyPair => "key pair",
            ResourceKind::SecurityGroup => "security group",
            ResourceKind::Image => "image",
            ResourceKind::Snapshot => "snapshot",
            ResourceKind::KmsGrant => "KMS grant",
            ResourceKind::Parameter => "parameter",
        }
    }
}

/// A resource in one account and region. Key pairs are named by their key name (the
/// name is what every EC2 call accepts).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceRef {
    #[serde(rename = "type")]
    pub kind: ResourceKind,
    pub id: String,
    pub region: String,
    pub account: String,
}

impl ResourceRef {
    pub fn new(kind: ResourceKind, id: impl Into<String>, target: &Target) -> Self {
        ResourceRef {
            kind,
            id: id.into(),
            region: target.region.clone(),
            account: target.account.clone(),
        }
    }

    pub fn target(&self) -> Target {
        Target {
            account: self.account.clone(),
            region: self.region.clone(),
        }
    }
}

impl std::fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} in {} for account {}",
            self.kind.as_str(),
            self.id,
            self.region,
            self.account
        )
    }
}

/// What deleting found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// Deleted now. For an image, the snapshots deleted with it.
    Now { snapshots: Vec<String> },
    /// It was already gone.
    AlreadyGone,
}

/// How long deleting an instance waits for it to be terminated (security groups can only
/// go once it is).
pub const TERMINATE_BUDGET: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Deletes one resource. Deleting what is already gone is not an error. An image goes
/// with its snapshots.
pub async fn delete(session: &AwsSession, res: &ResourceRef) -> anyhow::Result<Deleted> {
    if res.kind == ResourceKind::KmsGrant {
        return super::grants::revoke(session, res).await.map_err(|e| {
            e.context(format!(
                "cannot revoke {res}: revoke it by hand (aws kms revoke-grant) or run `bakery janitor` once the cause is fixed"
            ))
        });
    }
    let target = res.target();
    let ec2 = session.ec2(&target)?;
    let what = format!("delete {res}");
    let result: anyhow::Result<Deleted> = async {
        match res.kind {
            ResourceKind::Instance => {
                if super::instance::terminate(&ec2, &target, &res.id).await?
                    == super::instance::Terminated::AlreadyGone
                {
                    return Ok(Deleted::AlreadyGone);
                }
                wait_terminated(session, &ec2, &res.id).await?;
                Ok(Deleted::Now { snapshots: vec![] })
            }
            ResourceKind::KeyPair => {
                policy::call(&what, || async {
                    ec2.delete_key_pair().key_name(&res.id).send().await.aws()
                })
                .await?;
                Ok(Deleted::Now { snapshots: vec![] })
            }
            ResourceKind::SecurityGroup => {
                policy::call_dependent(&what, || async {
                    ec2.delete_security_group()
                        .group_id(&res.id)
                        .send()
                        .await
                        .aws()
                })
                .await?;
                Ok(Deleted::Now { snapshots: vec![] })
            }
            ResourceKind::Snapshot => {
                policy::call_dependent(&what, || async {
                    ec2.delete_snapshot()
                        .snapshot_id(&res.id)
                        .send()
                        .await
                        .aws()
                })
                .await?;
                Ok(Deleted::Now { snapshots: vec![] })
            }
            ResourceKind::KmsGrant => unreachable!("revoked above"),
            ResourceKind::Parameter => {
                match super::parameter::delete(session, &target, &res.id).await {
                    Err(e) if super::parameter::is_missing(&e) => Ok(Deleted::AlreadyGone),
                    Err(e) => Err(e),
                    Ok(()) => Ok(Deleted::Now { snapshots: vec![] }),
                }
            }
            ResourceKind::Image => {
                let snapshots = image_snapshots(&ec2, &res.id).await?;
                deregister_image(&ec2, res, snapshots).await
            }
        }
    }
    .await;
    match result {
        Err(e) if is_not_found(&e) => Ok(Deleted::AlreadyGone),
        Err(e) => Err(e.context(format!(
            "cannot delete {res}: delete it by hand or run `bakery janitor` once the cause is fixed"
        ))),
        ok => ok,
    }
}

/// Deletes an image whose snapshots an earlier answer already named (the wait that saw
/// it available): [`delete`] without describing the image again. The intermediate and a
/// pull request's copies go this way; deleting what is already gone is not an error.
pub async fn delete_image_with_snapshots(
    session: &AwsSession,
    res: &ResourceRef,
    snapshots: &[String],
) -> anyhow::Result<Deleted> {
    debug_assert_eq!(res.kind, ResourceKind::Image);
    let ec2 = session.ec2(&res.target())?;
    match deregister_image(&ec2, res, snapshots.to_vec()).await {
        Err(e) if is_not_found(&e) => Ok(Deleted::AlreadyGone),
        Err(e) => Err(e.context(format!(
            "cannot delete {res}: delete it by hand or run `bakery janitor` once the cause is fixed"
        ))),
        ok => ok,
    }
}

/// Deregisters an image with its snapshots (`snapshots`: the ones behind it). EC2 deletes
/// the snapshots with the image and reports on each; deleting them on their own right
/// after the deregistration meets InvalidSnapshot.InUse for a while, so the ones EC2 did
/// not report deleted are deleted here, under the dependency policy.
async fn deregister_image(
    ec2: &aws_sdk_ec2::Client,
    res: &ResourceRef,
    snapshots: Vec<String>,
) -> anyhow::Result<Deleted> {
    let target = res.target();
    let out = policy::call(&format!("delete {res}"), || async {
        ec2.deregister_image()
            .image_id(&res.id)
            .delete_associated_snapshots(true)
            .send()
            .await
            .aws()
    })
    .await?;
    let deleted: Vec<&str> = out
        .delete_snapshot_results()
        .iter()
        .filter(|r| r.return_code() == Some(&SnapshotReturnCodes::Success))
        .filter_map(|r| r.snapshot_id())
        .collect();
    for snap in snapshots.iter().filter(|s| !deleted.contains(&s.as_str())) {
        let r = policy::call_dependent(
            &format!("delete snapshot {snap} of image {} in {target}", res.id),
            || async { ec2.delete_snapshot().snapshot_id(snap).send().await.aws() },
        )
        .await;
        match r {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Deleted::Now { snapshots })
}

/// The snapshot ids behind an image's block devices.
pub async fn image_snapshots(
    ec2: &aws_sdk_ec2::Client,
    image_id: &str,
) -> anyhow::Result<Vec<String>> {
    let out = policy::call(&format!("describe image {image_id}"), || async {
        ec2.describe_images().image_ids(image_id).send().await.aws()
    })
    .await?;
    Ok(out
        .images()
        .iter()
        .flat_map(|i| i.block_device_mappings())
        .filter_map(|b| b.ebs().and_then(|e| e.snapshot_id()))
        .map(str::to_string)
        .collect())
}

async fn wait_terminated(
    session: &AwsSession,
    ec2: &aws_sdk_ec2::Client,
    id: &str,
) -> anyhow::Result<()> {
    wait::until(
        &format!("instance {id} to terminate"),
        TERMINATE_BUDGET,
        session.settings().poll,
        || async {
            let out = policy::call(&format!("describe instance {id}"), || async {
                ec2.describe_instances().instance_ids(id).send().await.aws()
            })
            .await?;
            let state = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find_map(|i| i.state().and_then(|s| s.name()).cloned());
            Ok(match state {
                None | Some(InstanceStateName::Terminated) => Poll::Ready(()),
                Some(s) => Poll::Pending(s.as_str().to_string()),
            })
        },
    )
    .await
}

/// A resource found by its `bakery:build-id` tag.
#[derive(Debug, Clone, PartialEq)]
pub struct TaggedResource {
    pub resource: ResourceRef,
    pub build_id: String,
    /// `bakery:role`.
    pub role: Option<String>,
    /// From its `bakery:created-at` tag (bakery's one clock for every kind), else from
    /// the resource itself.
    pub created_at: Option<DateTime<Utc>>,
    pub name: Option<String>,
    pub tags: std::collections::BTreeMap<String, String>,
}

fn build_id_filter(build_id: Option<&str>) -> Filter {
    match build_id {
        Some(id) => super::tags::tagged(tag_keys::BUILD_ID, id),
        None => super::tags::has_tag(tag_keys::BUILD_ID),
    }
}

fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn smithy_time(t: Option<&aws_sdk_ec2::primitives::DateTime>) -> Option<DateTime<Utc>> {
    let t = t?;
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// Only this installation's resources: `bakery:installation` is the session's.
fn installation_filter(installation: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{}", tags::INSTALLATION))
        .values(installation)
        .build()
}

/// Every live resource in `target` tagged with `bakery:build-id` (only `build_id`'s when
/// given) and with this installation's `bakery:installation` marker: instances not yet
/// terminated, key pairs, security groups, owned images and snapshots. A resource of
/// another installation sharing the account is never returned (the marker is checked
/// again on the answer, in case an endpoint ignores the filter).
pub async fn find_tagged(
    session: &AwsSession,
    target: &Target,
    build_id: Option<&str>,
) -> anyhow::Result<Vec<TaggedResource>> {
    let ec2 = session.ec2(target)?;
    let installation = session.installation();
    let mut found = vec![];
    let make = |kind, id: &str, t: &[aws_sdk_ec2::types::Tag], created: Option<DateTime<Utc>>| {
        if tags::value(t, tags::INSTALLATION) != Some(installation) {
            return None;
        }
        let build = tags::value(t, tag_keys::BUILD_ID)?.to_string();
        Some(TaggedResource {
            resource: ResourceRef::new(kind, id, target),
            build_id: build,
            role: tags::value(t, tags::ROLE).map(str::to_string),
            created_at: parse_time(tags::value(t, tags::CREATED_AT)).or(created),
            name: tags::value(t, tag_keys::NAME).map(str::to_string),
            tags: tags::to_map(t),
        })
    };

    let pages = policy::call(&format!("find tagged instances in {target}"), || async {
        ec2.describe_instances()
            .filters(build_id_filter(build_id))
            .filters(installation_filter(installation))
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .values("stopping")
                    .values("stopped")
                    .values("shutting-down")
                    .build(),
            )
            .into_paginator()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .aws()
    })
    .await?;
    for i in pages
        .iter()
        .flat_map(|p| p.reservations())
        .flat_map(|r| r.instances())
    {
        if let Some(r) = make(
            ResourceKind::Instance,
            i.instance_id().unwrap_or_default(),
            i.tags(),
            smithy_time(i.launch_time()),
        ) {
            found.push(r);
        }
    }

    let keys = policy::call(&format!("find tagged key pairs in {target}"), || async {
        ec2.describe_key_pairs()
            .filters(build_id_filter(build_id))
            .filters(installation_filter(installation))
            .send()
            .await
            .aws()
    })
    .await?;
    for k in keys.key_pairs() {
        if let Some(r) = make(
            ResourceKind::KeyPair,
            k.key_name().unwrap_or_default(),
            k.tags(),
            smithy_time(k.create_time()),
        ) {
            found.push(r);
        }
    }

    let groups = policy::call(
        &format!("find tagged security groups in {target}"),
        || async {
            ec2.describe_security_groups()
                .filters(build_id_filter(build_id))
                .filters(installation_filter(installation))
                .into_paginator()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .aws()
        },
    )
    .await?;
    for g in groups.iter().flat_map(|p| p.security_groups()) {
        if let Some(r) = make(
            ResourceKind::SecurityGroup,
            g.group_id().unwrap_or_default(),
            g.tags(),
            None,
        ) {
            found.push(r);
        }
    }

    let images = policy::call(&format!("find tagged images in {target}"), || async {
        ec2.describe_images()
            .owners("self")
            .filters(build_id_filter(build_id))
            .filters(installation_filter(installation))
            .send()
            .await
            .aws()
    })
    .await?;
    for i in images.images() {
        if let Some(r) = make(
            ResourceKind::Image,
            i.image_id().unwrap_or_default(),
            i.tags(),
            parse_time(i.creation_date()),
        ) {
            found.push(r);
        }
    }

    let snaps = policy::call(&format!("find tagged snapshots in {target}"), || async {
        ec2.describe_snapshots()
            .owner_ids("self")
            .filters(build_id_filter(build_id))
            .filters(installation_filter(installation))
            .into_paginator()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .aws()
    })
    .await?;
    for s in snaps.iter().flat_map(|p| p.snapshots()) {
        if let Some(r) = make(
            ResourceKind::Snapshot,
            s.snapshot_id().unwrap_or_default(),
            s.tags(),
            smithy_time(s.start_time()),
        ) {
            found.push(r);
        }
    }
    Ok(found)
}

/// Deletes everything `find_tagged` finds for one build in `target`, instances first
/// and images before snapshots. Returns what was deleted.
pub async fn sweep_build(
    session: &AwsSession,
    target: &Target,
    build_id: &str,
) -> anyhow::Result<Vec<ResourceRef>> {
    let mut left = find_tagged(session, target, Some(build_id))
        .await
        .with_context(|| format!("cannot list what build {build_id} left in {target}"))?;
    left.sort_by_key(|r| delete_order(r.resource.kind));
    let mut deleted = vec![];
    for r in left {
        if let Deleted::Now { .. } = delete(session, &r.resource).await? {
            deleted.push(r.resource);
        }
    }
    Ok(deleted)
}

/// The order that respects dependencies: instances before their security group and key
/// pair, images before their snapshots.
pub fn delete_order(kind: ResourceKind) -> u8 {
    match kind {
        ResourceKind::Instance => 0,
        ResourceKind::Parameter => 1,
        ResourceKind::Image => 1,
        ResourceKind::Snapshot => 2,
        ResourceKind::SecurityGroup => 3,
        ResourceKind::KeyPair => 4,
        ResourceKind::KmsGrant => 5,
    }
}
