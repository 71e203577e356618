//! Where the registry looks: every account and region the operator's policy names, and
//! every one a build in the store used. Target accounts are reached through the roles the
//! policy gives them (never a role a repository names). A role that cannot be assumed
//! leaves its targets in scope; the lookup then reports them as skipped.

use std::collections::BTreeSet;

use crate::aws::janitor::scope_from_store;
use crate::aws::{AwsSession, Target};
use crate::database::Store;
use crate::plan::model::AccountTarget;
use crate::policy::PolicyConfig;

/// Every (account, region) to search, sorted.
pub async fn targets(
    session: &AwsSession,
    store: &dyn Store,
    policy: &PolicyConfig,
) -> anyhow::Result<Vec<Target>> {
    let mut accounts: BTreeSet<String> = BTreeSet::from([session.home_account().to_string()]);
    let mut regions: BTreeSet<String> = BTreeSet::new();
    for repo in std::iter::once(&policy.default).chain(policy.repos.values()) {
        regions.extend(repo.regions.iter().cloned());
        for (id, account) in &repo.accounts {
            let target = AccountTarget {
                account_id: id.clone(),
                role_arn: account.role_arn.clone(),
                external_id: account.external_id.clone(),
            };
            if let Err(e) = session.assume_role(&target, "bakery-registry").await {
                tracing::warn!(account = %id, "registry: cannot assume {}: {e:#}", account.role_arn);
            }
            accounts.insert(id.clone());
        }
    }
    let mut targets: BTreeSet<Target> = scope_from_store(session, store, &[])
        .await?
        .into_iter()
        .collect();
    for account in &accounts {
        for region in &regions {
            targets.insert(Target {
                account: account.clone(),
                region: region.clone(),
            });
        }
    }
    Ok(targets.into_iter().collect())
}
