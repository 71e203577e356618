//! Who bakery is in AWS: the home account's credentials (STS GetCallerIdentity) and the
//! role it assumes, with its external ID, in every target account of the server's
//! `[policy]`. Reads only; the roles' sessions are named `bakery-doctor`.

use std::collections::BTreeMap;

use super::{Area, Check};
use crate::aws::{AwsSession, AwsSettings};
use crate::plan::model::AccountTarget;
use crate::policy::AccountPolicy;

/// Connects to the home account. `None` when the credentials do not work: no other AWS
/// check can run then.
pub async fn home(settings: AwsSettings, region: &str) -> (Check, Option<AwsSession>) {
    match AwsSession::connect(settings, region).await {
        Ok(session) => {
            let account = session.home_account().to_string();
            (
                Check::pass(
                    Area::Identity,
                    "sts:GetCallerIdentity",
                    format!("account {account}"),
                    "the home account's credentials work",
                ),
                Some(session),
            )
        }
        Err(e) => (
            Check::fail(
                Area::Identity,
                "sts:GetCallerIdentity",
                "home account",
                format!("{e:#}"),
                "configure the home account's credentials (AWS_PROFILE, \
                 AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or an instance role)",
            ),
            None,
        ),
    }
}

/// Assumes every configured target account's role. Returns the checks and the accounts
/// that could be reached.
pub async fn roles(
    session: &AwsSession,
    accounts: &BTreeMap<String, AccountPolicy>,
) -> (Vec<Check>, Vec<AccountTarget>) {
    let mut checks = vec![];
    let mut reached = vec![];
    for (id, account) in accounts {
        let target = AccountTarget {
            account_id: id.clone(),
            role_arn: account.role_arn.clone(),
            external_id: account.external_id.clone(),
        };
        let name = format!("sts:AssumeRole {}", account.role_arn);
        let external = if account.external_id.is_some() {
            "with the configured external ID"
        } else {
            "without an external ID"
        };
        match session.assume_role(&target, "bakery-doctor").await {
            Ok(()) => {
                checks.push(Check::pass(
                    Area::Roles,
                    name,
                    format!("account {id}"),
                    format!("assumed {external}"),
                ));
                reached.push(target);
            }
            Err(e) => {
                let external_fix = if account.external_id.is_some() {
                    format!("the external ID in policy.accounts.\"{id}\".external_id")
                } else {
                    format!(
                        "no external ID (set policy.accounts.\"{id}\".external_id if the trust \
                         policy asks for one)"
                    )
                };
                checks.push(Check::fail(
                    Area::Roles,
                    name,
                    format!("account {id}"),
                    format!("cannot assume the role {external}: {e:#}"),
                    format!(
                        "the role's trust policy (deploy/aws/target-account-role-trust.json) must \
                         trust account {home} with {external_fix}, and the home identity needs \
                         sts:AssumeRole on {role} (builder-policy.json, AssumeTargetAccountRoles)",
                        home = session.home_account(),
                        role = account.role_arn,
                    ),
                ));
            }
        }
    }
    (checks, reached)
}
