//! KMS grants that let another account copy an encrypted intermediate image.
//!
//! A grant is a resource of the build like an instance or an image: it is journaled
//! before and after CreateGrant (kind `kms_grant`, id `<key ARN>#<grant id>`), named
//! `bakery-<build id>`, and revoked once the copies exist, on failure, on cancel, by the
//! crash cleanup and by the janitor. It gives only the operations AWS documents for
//! sharing an encrypted snapshot ([`OPERATIONS`]). KMS grants are eventually consistent:
//! after CreateGrant bakery waits, within [`PROPAGATION_BUDGET`], until the key's grant
//! list shows the new grant before any copy uses it.
//!
//! May touch: KMS CreateGrant, ListGrants and RevokeGrant on the keys of the
//! intermediate's snapshots (the builder's account and region), and the build's journal.

use anyhow::Context;
use aws_sdk_kms::types::GrantOperation;
use serde_json::json;

use super::error::{is_not_found, SdkResultExt};
use super::resource::{Deleted, ResourceKind, ResourceRef};
use super::session::{AwsSession, Target};
use super::wait::{self, Poll};
use super::{policy, EngineCtx};

/// The operations a grant gives the target account: AWS's documented set for copying a
/// shared encrypted snapshot (DescribeKey, CreateGrant, GenerateDataKey, ReEncrypt*,
/// Decrypt), nothing else.
pub const OPERATIONS: [GrantOperation; 6] = [
    GrantOperation::Decrypt,
    GrantOperation::DescribeKey,
    GrantOperation::CreateGrant,
    GrantOperation::GenerateDataKey,
    GrantOperation::ReEncryptFrom,
    GrantOperation::ReEncryptTo,
];

/// How long a new grant may take to show in the key's grant list ("usually less than
/// five minutes", AWS says).
pub const PROPAGATION_BUDGET: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// The name of every grant a build makes.
pub fn name(build_id: &str) -> String {
    format!("bakery-{build_id}")
}

/// One grant on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The key's ARN.
    pub key: String,
    pub grant_id: String,
}

impl Grant {
    /// The journal's id for the grant: `<key ARN>#<grant id>`.
    pub fn resource_id(&self) -> String {
        format!("{}#{}", self.key, self.grant_id)
    }

    /// Reads a journal id back; `None` for anything else.
    pub fn parse(id: &str) -> Option<Grant> {
        let (key, grant_id) = id.rsplit_once('#')?;
        (!key.is_empty() && !grant_id.is_empty()).then(|| Grant {
            key: key.to_string(),
            grant_id: grant_id.to_string(),
        })
    }

    pub fn resource(&self, target: &Target) -> ResourceRef {
        ResourceRef::new(ResourceKind::KmsGrant, self.resource_id(), target)
    }
}

/// Grants `account` use of `key` (in `target`, the key's account and region) for this
/// build, journaled, and waits until the grant is listed.
pub async fn create(
    ctx: EngineCtx<'_>,
    target: &Target,
    key: &str,
    account: &str,
) -> anyhow::Result<Grant> {
    let kms = ctx.session.kms(target)?;
    let grantee = format!("arn:aws:iam::{account}:root");
    let grant_name = name(ctx.build_id);
    ctx.journal
        .creating(
            ResourceKind::KmsGrant,
            target,
            json!({ "key": key, "name": grant_name, "grantee": grantee }),
        )
        .await?;
    let out = policy::call(&format!("grant {account} use of KMS key {key}"), || async {
        kms.create_grant()
            .key_id(key)
            .grantee_principal(&grantee)
            .name(&grant_name)
            .set_operations(Some(OPERATIONS.to_vec()))
            .send()
            .await
            .aws()
    })
    .await;
    if let Err(e) = &out {
        super::owned::settle_refused(ctx.journal, ResourceKind::KmsGrant, target, e).await?;
    }
    let out = out.with_context(|| {
        format!(
            "cannot grant account {account} use of KMS key {key} in {target}: the key policy must let this account create grants"
        )
    })?;
    let grant = Grant {
        key: key.to_string(),
        grant_id: out
            .grant_id()
            .context("CreateGrant returned no grant id")?
            .to_string(),
    };
    ctx.journal
        .created(
            &grant.resource(target),
            json!({ "grantee": grantee, "name": grant_name }),
        )
        .await?;
    wait_listed(ctx.session, target, &grant, ctx.session.settings().poll).await?;
    Ok(grant)
}

/// Waits until the key's grant list shows `grant`.
async fn wait_listed(
    session: &AwsSession,
    target: &Target,
    grant: &Grant,
    poll: wait::PollSettings,
) -> anyhow::Result<()> {
    let kms = session.kms(target)?;
    wait::until(
        &format!("KMS grant {} on {} to propagate", grant.grant_id, grant.key),
        PROPAGATION_BUDGET,
        poll,
        || async {
            let out = policy::call(&format!("list grants of {}", grant.key), || async {
                kms.list_grants()
                    .key_id(&grant.key)
                    .grant_id(&grant.grant_id)
                    .send()
                    .await
                    .aws()
            })
            .await?;
            Ok(
                if out
                    .grants()
                    .iter()
                    .any(|g| g.grant_id() == Some(grant.grant_id.as_str()))
                {
                    Poll::Ready(())
                } else {
                    Poll::Pending("not listed yet".to_string())
                },
            )
        },
    )
    .await
}

/// `current` and every grant still live in the build's journal (one an earlier attempt
/// made before it crashed), each once.
pub fn with_journaled(current: &[Grant], ledger: &crate::build::journal::Ledger) -> Vec<Grant> {
    let mut all = current.to_vec();
    for live in &ledger.live {
        if live.resource.kind != ResourceKind::KmsGrant {
            continue;
        }
        if let Some(g) = Grant::parse(&live.resource.id) {
            if !all.contains(&g) {
                all.push(g);
            }
        }
    }
    all
}

/// Revokes the grant a `kms_grant` resource names. A grant already gone is not an error.
pub async fn revoke(session: &AwsSession, res: &ResourceRef) -> anyhow::Result<Deleted> {
    let grant =
        Grant::parse(&res.id).with_context(|| format!("{:?} does not name a KMS grant", res.id))?;
    let kms = session.kms(&res.target())?;
    let out = policy::call(
        &format!("revoke KMS grant {} on {}", grant.grant_id, grant.key),
        || async {
            kms.revoke_grant()
                .key_id(&grant.key)
                .grant_id(&grant.grant_id)
                .send()
                .await
                .aws()
        },
    )
    .await;
    match out {
        Ok(_) => Ok(Deleted::Now { snapshots: vec![] }),
        Err(e) if is_not_found(&e) => Ok(Deleted::AlreadyGone),
        Err(e) => Err(e),
    }
}

/// The grants named `name` on `key`: a build's grants whose CreateGrant answer was lost.
pub async fn find_named(
    session: &AwsSession,
    target: &Target,
    key: &str,
    grant_name: &str,
) -> anyhow::Result<Vec<Grant>> {
    let kms = session.kms(target)?;
    let pages = policy::call(&format!("list grants of {key}"), || async {
        kms.list_grants()
            .key_id(key)
            .into_paginator()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .aws()
    })
    .await;
    let pages = match pages {
        Ok(p) => p,
        Err(e) if is_not_found(&e) => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    Ok(pages
        .iter()
        .flat_map(|p| p.grants())
        .filter(|g| g.name() == Some(grant_name))
        .filter_map(|g| {
            Some(Grant {
                key: key.to_string(),
                grant_id: g.grant_id()?.to_string(),
            })
        })
        .collect())
}

/// Revokes the grants of a `kms_grant` create call whose answer was lost, found by the
/// build's grant name on the key the pending entry names. Returns what was revoked.
pub async fn revoke_pending(
    session: &AwsSession,
    target: &Target,
    lookup: &serde_json::Value,
) -> anyhow::Result<Vec<ResourceRef>> {
    let (Some(key), Some(grant_name)) = (
        lookup.get("key").and_then(|v| v.as_str()),
        lookup.get("name").and_then(|v| v.as_str()),
    ) else {
        return Ok(vec![]);
    };
    let mut revoked = vec![];
    for g in find_named(session, target, key, grant_name).await? {
        let res = g.resource(target);
        if let Deleted::Now { .. } = revoke(session, &res).await? {
            revoked.push(res);
        }
    }
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_id_reads_back() {
        let g = Grant {
            key: "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                .into(),
            grant_id: "0c237476b39f8bc44e45212e08498fbe3151305030726c0590dd8d3e9f3d6a60".into(),
        };
        assert_eq!(Grant::parse(&g.resource_id()), Some(g));
        assert_eq!(Grant::parse("i-0123"), None);
        assert_eq!(Grant::parse("#abc"), None);
    }

    /// A resumed build revokes, with its own grant, the one its crashed attempt made.
    #[test]
    fn the_grants_of_an_earlier_attempt_are_retired_too() {
        use crate::build::journal::{Ledger, LiveResource};
        let target = Target {
            account: "123456789012".into(),
            region: "us-east-1".into(),
        };
        let grant = |id: &str| Grant {
            key: "arn:aws:kms:us-east-1:123456789012:key/k".into(),
            grant_id: id.into(),
        };
        let ledger = Ledger {
            live: vec![
                LiveResource {
                    resource: grant("old").resource(&target),
                    detail: serde_json::Value::Null,
                },
                LiveResource {
                    resource: grant("new").resource(&target),
                    detail: serde_json::Value::Null,
                },
                LiveResource {
                    resource: ResourceRef::new(ResourceKind::Image, "ami-1", &target),
                    detail: serde_json::Value::Null,
                },
            ],
            pending: vec![],
        };
        assert_eq!(
            with_journaled(&[grant("new")], &ledger),
            vec![grant("new"), grant("old")]
        );
    }

    #[test]
    fn only_the_documented_operations() {
        let ops: Vec<&str> = OPERATIONS.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            ops,
            [
                "Decrypt",
                "DescribeKey",
                "CreateGrant",
                "GenerateDataKey",
                "ReEncryptFrom",
                "ReEncryptTo"
            ]
        );
    }
}
