//! The janitor's KMS grants: revokes the grants of builds that no longer run.
//!
//! KMS grants carry no tags, so the janitor finds them through the store: every build
//! that is finished, or still `running` with a stale heartbeat, has each grant its
//! journal holds revoked (by key and grant id), and each grant whose CreateGrant answer
//! was lost (a pending `kms_grant` entry) looked up on its key by the build's grant name
//! and revoked. A grant gives another account use of a home key, so it goes at once,
//! whatever the TTL: nothing of a build that no longer runs needs it.
//!
//! May touch: KMS ListGrants and RevokeGrant on the keys the store's journals name,
//! and those journals (`deleted`, `created`, `not_created` entries).

use super::grants;
use super::janitor::{Finding, JanitorOptions, Verdict};
use super::resource::{Deleted, ResourceKind, ResourceRef};
use super::session::AwsSession;
use crate::build::journal::Replay;
use crate::database::{BuildFilter, BuildState, JournalEntry, Store};

/// Revokes (unless a dry run) the grants of every build that no longer runs. Errors on
/// one grant are reported in its finding; the others go on.
pub async fn run(
    session: &AwsSession,
    store: &dyn Store,
    opts: &JanitorOptions,
) -> anyhow::Result<Vec<Finding>> {
    let mut findings = vec![];
    for build in store.list_builds(&BuildFilter::default()).await? {
        if build.state == BuildState::Running && !super::janitor::stopped(store, &build).await? {
            continue;
        }
        let replay = Replay::from_entries(&store.journal(&build.build_id).await?);
        let why = match build.state {
            BuildState::Running => "its build stopped: its heartbeat is stale".to_string(),
            s => format!("its build {}: no copy needs it", s.as_str()),
        };
        for live in replay
            .ledger
            .live
            .iter()
            .filter(|l| l.resource.kind == ResourceKind::KmsGrant)
        {
            let res = &live.resource;
            let mut finding = Finding {
                kind: res.kind,
                id: res.id.clone(),
                target: res.target(),
                build_id: build.build_id.clone(),
                verdict: Verdict::Delete(why.clone()),
                deleted: None,
                error: None,
            };
            if !opts.dry_run {
                match grants::revoke(session, res).await {
                    Ok(d) => {
                        finding.deleted = Some(matches!(d, Deleted::Now { .. }));
                        record(store, &build.build_id, "deleted", res).await?;
                    }
                    Err(e) => {
                        tracing::warn!("janitor: cannot revoke {res}: {e:#}");
                        finding.deleted = Some(false);
                        finding.error = Some(format!("{e:#}"));
                    }
                }
            }
            findings.push(finding);
        }
        for pending in replay
            .ledger
            .pending
            .iter()
            .filter(|p| p.kind == ResourceKind::KmsGrant)
        {
            let target = pending.target();
            if opts.dry_run {
                findings.push(Finding {
                    kind: ResourceKind::KmsGrant,
                    id: format!(
                        "{} (lost answer)",
                        pending
                            .lookup
                            .get("name")
                            .and_then(|n| n.as_str())
                            .unwrap_or("?")
                    ),
                    target,
                    build_id: build.build_id.clone(),
                    verdict: Verdict::Delete(why.clone()),
                    deleted: None,
                    error: None,
                });
                continue;
            }
            match grants::revoke_pending(session, &target, &pending.lookup).await {
                Ok(revoked) => {
                    // The pending entry is settled: by what was found, or as never created.
                    if revoked.is_empty() {
                        let data = serde_json::json!({
                            "type": ResourceKind::KmsGrant,
                            "region": pending.region,
                            "account": pending.account,
                            "by": "janitor",
                        });
                        store
                            .append_journal(
                                &build.build_id,
                                &JournalEntry {
                                    kind: "not_created".into(),
                                    data,
                                },
                            )
                            .await?;
                    }
                    for res in revoked {
                        record(store, &build.build_id, "created", &res).await?;
                        record(store, &build.build_id, "deleted", &res).await?;
                        findings.push(Finding {
                            kind: res.kind,
                            id: res.id.clone(),
                            target: res.target(),
                            build_id: build.build_id.clone(),
                            verdict: Verdict::Delete(why.clone()),
                            deleted: Some(true),
                            error: None,
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "janitor: cannot look up the lost grants of {}: {e:#}",
                        build.build_id
                    );
                    findings.push(Finding {
                        kind: ResourceKind::KmsGrant,
                        id: "(lost answer)".into(),
                        target,
                        build_id: build.build_id.clone(),
                        verdict: Verdict::Delete(why.clone()),
                        deleted: Some(false),
                        error: Some(format!("{e:#}")),
                    });
                }
            }
        }
    }
    Ok(findings)
}

async fn record(
    store: &dyn Store,
    build_id: &str,
    kind: &str,
    res: &ResourceRef,
) -> anyhow::Result<()> {
    store
        .append_journal(
            build_id,
            &JournalEntry {
                kind: kind.into(),
                data: serde_json::json!({
                    "type": res.kind,
                    "id": res.id,
                    "region": res.region,
                    "account": res.account,
                    "by": "janitor",
                }),
            },
        )
        .await?;
    Ok(())
}
