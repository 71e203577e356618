//! `bakery doctor`: checks, against the operator's real AWS and GitHub, everything a
//! build will need, and changes nothing. Every check is a read or a `DryRun=true` probe;
//! each one says pass or fail and, when it fails, the fix (the IAM action or the
//! key-policy statement that is missing).
//!
//! One file per area: [`identity`] (credentials, target-account roles), [`probes`]
//! (EC2 DryRun probes of every call a build makes), [`kms`] (the keys copies are
//! encrypted with), [`network`] (default EBS encryption, subnet and VPC), [`github`]
//! (the App's installation on the recipe repository). This file holds the report.

pub mod github;
pub mod identity;
pub mod kms;
pub mod network;
pub mod probes;

use serde::Serialize;

use crate::aws::error::aws_error;

/// One area of checks, in the order the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    Identity,
    Roles,
    Permissions,
    Kms,
    Encryption,
    Network,
    #[serde(rename = "github")]
    GitHub,
}

impl Area {
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Identity => "identity",
            Area::Roles => "roles",
            Area::Permissions => "permissions",
            Area::Kms => "kms",
            Area::Encryption => "encryption",
            Area::Network => "network",
            Area::GitHub => "github",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// Not checked, with the reason (nothing to check it on); does not fail the run.
    Skip,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub area: Area,
    /// What was checked (`ec2:RunInstances`, `role bakery-ami-copy`...).
    pub name: String,
    /// Where: `us-east-1 for account 123456789012`, a key, a repository.
    pub target: String,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// For a failure: what to change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(
        area: Area,
        name: impl Into<String>,
        target: impl Into<String>,
        detail: impl Into<String>,
    ) -> Check {
        Check {
            area,
            name: name.into(),
            target: target.into(),
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn fail(
        area: Area,
        name: impl Into<String>,
        target: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            area,
            name: name.into(),
            target: target.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn skip(
        area: Area,
        name: impl Into<String>,
        target: impl Into<String>,
        why: impl Into<String>,
    ) -> Check {
        Check {
            area,
            name: name.into(),
            target: target.into(),
            status: Status::Skip,
            detail: why.into(),
            fix: None,
        }
    }
}

/// Every check of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    pub fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        self.checks.extend(checks);
    }

    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }

    pub fn ok(&self) -> bool {
        self.failed().next().is_none()
    }

    /// The checks as a table: one line per check, the fix on the line below a failure.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let width = |f: fn(&Check) -> usize| self.checks.iter().map(f).max().unwrap_or(0);
        let name_w = width(|c| c.name.len());
        let target_w = width(|c| c.target.len());
        for c in &self.checks {
            let status = match c.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            out.push_str(&format!(
                "{status:<4}  {:<11}  {:<name_w$}  {:<target_w$}  {}\n",
                c.area.as_str(),
                c.name,
                c.target,
                c.detail
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("      fix: {fix}\n"));
            }
        }
        let failed = self.failed().count();
        out.push_str(&format!(
            "{} check(s): {} passed, {failed} failed, {} skipped\n",
            self.checks.len(),
            self.checks
                .iter()
                .filter(|c| c.status == Status::Pass)
                .count(),
            self.checks
                .iter()
                .filter(|c| c.status == Status::Skip)
                .count(),
        ));
        out
    }
}

/// How AWS answered a `DryRun=true` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryRun {
    /// `DryRunOperation`: the call would have succeeded.
    Allowed,
    /// `UnauthorizedOperation` / `AccessDenied*`: IAM or a key policy refuses it.
    Denied(String),
    /// Any other answer (a missing resource, a bad parameter, no answer at all).
    Error(String),
}

impl DryRun {
    /// Reads a DryRun call's result: it always fails, with the code saying how.
    pub fn of<T>(result: anyhow::Result<T>) -> DryRun {
        match result {
            Ok(_) => {
                DryRun::Error("the call was carried out: the endpoint ignored DryRun".to_string())
            }
            Err(e) => match aws_error(&e).and_then(|a| a.code.as_deref()) {
                Some("DryRunOperation") | Some("DryRunOperationException") => DryRun::Allowed,
                Some("UnauthorizedOperation")
                | Some("AccessDenied")
                | Some("AccessDeniedException")
                | Some("AuthFailure") => DryRun::Denied(format!("{e:#}")),
                _ => DryRun::Error(format!("{e:#}")),
            },
        }
    }
}

/// What one run checks.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub aws: crate::aws::AwsSettings,
    pub github: crate::config::GitHubConfig,
    /// The recipe repository on GitHub (`owner/name`).
    pub repository: Option<String>,
    /// The server's `[policy]` accounts for the repository: every one is assumed.
    pub accounts: std::collections::BTreeMap<String, crate::policy::AccountPolicy>,
    /// One plan per recipe checked, inside the server's policy (external IDs filled in).
    pub plans: Vec<crate::plan::model::BuildPlan>,
    /// The home region to identify in when there is no plan.
    pub home_region: String,
}

/// Runs every check; changes nothing.
pub async fn run(inputs: &Inputs) -> Report {
    let mut report = Report::default();
    let region = inputs
        .plans
        .first()
        .map(|p| p.builder.region.clone())
        .unwrap_or_else(|| inputs.home_region.clone());
    let (check, session) = identity::home(inputs.aws.clone(), &region).await;
    report.push(check);
    if let Some(session) = session {
        let (checks, reached) = identity::roles(&session, &inputs.accounts).await;
        report.extend(checks);
        for plan in &inputs.plans {
            report.extend(plan_checks(&session, plan, &reached).await);
        }
    }
    report.extend(github::check(&inputs.github, inputs.repository.as_deref()).await);
    dedup(&mut report.checks);
    report
}

/// Recipes that share a region share checks: each is listed once.
fn dedup(checks: &mut Vec<Check>) {
    let mut seen = std::collections::HashSet::new();
    checks.retain(|c| seen.insert((c.area, c.name.clone(), c.target.clone(), c.detail.clone())));
}

/// The AWS checks of one recipe's plan.
async fn plan_checks(
    session: &crate::aws::AwsSession,
    plan: &crate::plan::model::BuildPlan,
    reached: &[crate::plan::model::AccountTarget],
) -> Vec<Check> {
    use crate::aws::Target;
    use crate::plan::model::SourcePlan;

    let mut out = vec![];
    let builder = Target {
        account: session.home_account().to_string(),
        region: plan.builder.region.clone(),
    };
    let (net, vpc) = network::subnet(session, plan, &builder).await;
    out.extend(net);

    let source = crate::aws::preflight::resolve_source(
        session,
        &builder,
        &plan.source,
        plan.repo.as_deref(),
    )
    .await;
    let source = match source {
        Ok(s) => {
            out.push(Check::pass(
                Area::Permissions,
                "source image",
                builder.to_string(),
                format!("recipe {}: {}", plan.recipe, s.id),
            ));
            Some(s)
        }
        Err(e) if matches!(plan.source, SourcePlan::Recipe { .. }) => {
            out.push(Check::skip(
                Area::Permissions,
                "source image",
                builder.to_string(),
                format!(
                    "recipe {}: {e:#}; the probes that launch from or copy it are skipped",
                    plan.recipe
                ),
            ));
            None
        }
        Err(e) => {
            out.push(Check::fail(
                Area::Permissions,
                "source image",
                builder.to_string(),
                format!("recipe {}: {e:#}", plan.recipe),
                "fix the recipe's source, or allow ec2:DescribeImages (deploy/aws/builder-policy.json)",
            ));
            None
        }
    };

    out.extend(probes::home_describes(session, &builder).await);
    if let Some(source) = &source {
        match probes::builder_calls(session, plan, &builder, &source.id, vpc.as_deref()).await {
            Ok(c) => out.extend(c),
            Err(e) => out.push(Check::fail(
                Area::Permissions,
                "builder calls",
                builder.to_string(),
                format!("{e:#}"),
                "fix what the answer names",
            )),
        }
    }
    match probes::instance_calls(session, plan, &builder).await {
        Ok(c) => out.extend(c),
        Err(e) => out.push(Check::fail(
            Area::Permissions,
            "ec2:DescribeInstances",
            builder.to_string(),
            format!("{e:#}"),
            "allow ec2:DescribeInstances on * (deploy/aws/builder-policy.json)",
        )),
    }

    let mut other_accounts: Vec<String> = plan
        .distribute
        .copies
        .iter()
        .filter_map(|c| c.account.as_ref().map(|a| a.account_id.clone()))
        .filter(|a| a != session.home_account())
        .collect();
    other_accounts.sort();
    other_accounts.dedup();
    // builder.kms_key encrypts the builder's volume: neither the region's default key nor
    // the source's decides the intermediate's key then.
    let intermediate = if let Some(key) = &plan.builder.kms_key {
        out.push(Check::pass(
            Area::Encryption,
            "builder.kms_key",
            builder.to_string(),
            format!(
                "the builder's volume, and so the intermediate image, is encrypted under {key}"
            ),
        ));
        Some(key.clone())
    } else {
        let (enc, default) = network::default_encryption(session, &builder, &other_accounts).await;
        out.push(enc);
        match default {
            Some(network::DefaultEncryption::On(key)) => Some(key),
            _ => source
                .as_ref()
                .and_then(|s| s.encrypted_with.first().cloned()),
        }
    };
    if source.is_some() || intermediate.is_some() {
        out.extend(
            kms::intermediate_key(session, &builder, intermediate.as_deref(), &other_accounts)
                .await,
        );
    }

    let mut described = std::collections::BTreeSet::new();
    for copy in &plan.distribute.copies {
        let target = Target {
            account: session.account_of(copy.account.as_ref()),
            region: copy.region.clone(),
        };
        if let Some(account) = &copy.account {
            if !reached.iter().any(|r| r.account_id == account.account_id) {
                out.push(Check::skip(
                    Area::Permissions,
                    "copy",
                    target.to_string(),
                    format!(
                        "account {}'s role is not in the server's policy or could not be assumed",
                        account.account_id
                    ),
                ));
                continue;
            }
            if described.insert(target.clone()) {
                out.extend(probes::target_describes(session, &target).await);
            }
        }
        if let Some(source) = &source {
            match probes::copy_image(
                session,
                plan,
                &builder,
                &target,
                &source.id,
                copy.kms_key_id.as_deref(),
            )
            .await
            {
                Ok(c) => out.push(c),
                Err(e) => out.push(Check::fail(
                    Area::Permissions,
                    "ec2:CopyImage",
                    target.to_string(),
                    format!("{e:#}"),
                    "fix what the answer names",
                )),
            }
        }
        out.extend(kms::copy_key(session, &target, copy.kms_key_id.as_deref()).await);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::AwsError;

    fn answered(code: &str) -> anyhow::Result<()> {
        Err(anyhow::Error::new(AwsError {
            code: Some(code.to_string()),
            message: "m".into(),
            transient: false,
        })
        .context("DryRun RunInstances"))
    }

    #[test]
    fn a_dry_run_is_read_from_the_error_code() {
        assert_eq!(DryRun::of(answered("DryRunOperation")), DryRun::Allowed);
        assert_eq!(
            DryRun::of(answered("DryRunOperationException")),
            DryRun::Allowed
        );
        assert!(matches!(
            DryRun::of(answered("UnauthorizedOperation")),
            DryRun::Denied(_)
        ));
        assert!(matches!(
            DryRun::of(answered("AccessDeniedException")),
            DryRun::Denied(_)
        ));
        assert!(matches!(
            DryRun::of(answered("InvalidAMIID.NotFound")),
            DryRun::Error(_)
        ));
        // An endpoint that carried the call out did not honour DryRun: never a pass.
        assert!(matches!(
            DryRun::of(Ok::<_, anyhow::Error>(())),
            DryRun::Error(_)
        ));
    }

    #[test]
    fn the_table_shows_each_fix_under_its_failure_and_counts() {
        let mut r = Report::default();
        r.push(Check::pass(
            Area::Identity,
            "sts:GetCallerIdentity",
            "account 1",
            "ok",
        ));
        r.push(Check::fail(
            Area::Permissions,
            "ec2:RunInstances",
            "us-east-1",
            "denied",
            "allow ec2:RunInstances",
        ));
        r.push(Check::skip(
            Area::Permissions,
            "ec2:CreateImage",
            "us-east-1",
            "no builder",
        ));
        assert!(!r.ok());
        let t = r.table();
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[1].starts_with("FAIL") && lines[1].contains("ec2:RunInstances"),
            "{t}"
        );
        assert_eq!(lines[2].trim(), "fix: allow ec2:RunInstances");
        assert!(lines[3].starts_with("skip"), "{t}");
        assert_eq!(lines[4], "3 check(s): 1 passed, 1 failed, 1 skipped");
        r.checks.remove(1);
        assert!(r.ok(), "a skipped check does not fail the run");
    }

    #[test]
    fn the_same_check_of_two_recipes_is_listed_once() {
        let c = Check::pass(Area::Kms, "copy key", "us-east-1", "alias/ami");
        let mut checks = vec![
            c.clone(),
            c.clone(),
            Check {
                detail: "other".into(),
                ..c
            },
        ];
        dedup(&mut checks);
        assert_eq!(checks.len(), 2);
    }

    #[test]
    fn the_github_check_asks_for_what_a_job_token_asks_for() {
        let needed = github::needed_permissions();
        assert_eq!(needed.get("checks").map(String::as_str), Some("write"));
        assert_eq!(needed.get("metadata").map(String::as_str), Some("read"));
        assert_eq!(needed.len(), 6, "{needed:?}");
    }
}
