//! The operator's policy: where a repository's images may go and what its builds may do.
//! It lives in the bot's configuration (`[policy]`), never in a repository: recipes and
//! `bakery.toml` can only narrow it. A plan outside it is refused before anything is
//! launched, with an error that names the policy key.
//!
//! Pull-request builds run under the pull-request profile on top of it: the home account
//! only, no copies to other accounts, no launch permissions (so no key grants to others).
//!
//! Touches nothing: pure checks of a [`BuildPlan`] against configuration.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::plan::model::{BuildPlan, ConnectVia, ProvisionStep};

/// `[policy]`: the default for every repository, and whole replacements per repository.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    #[serde(default)]
    pub default: RepoPolicy,
    /// `"owner/name"` → that repository's policy (it replaces the default).
    #[serde(default)]
    pub repos: BTreeMap<String, RepoPolicy>,
}

/// What one repository's builds may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoPolicy {
    /// Target accounts besides the home account, by account id: the role bakery assumes
    /// there and the external ID its trust policy requires. No other account is reached.
    #[serde(default)]
    pub accounts: BTreeMap<String, AccountPolicy>,
    /// Regions builders and copies may use; empty allows every region.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Instance types a builder may use; empty allows every type.
    #[serde(default)]
    pub instance_types: Vec<String>,
    /// Accounts, organisation ARNs and OU ARNs that `launch_permissions` may name.
    #[serde(default)]
    pub launch_permissions: Vec<String>,
    /// Whether recipes may set `connect = { host, port }` (bakery then opens SSH to that
    /// address).
    #[serde(default)]
    pub allow_connect: bool,
    /// The longest timeout a provisioning step may ask for.
    #[serde(default = "defaults::max_step_secs")]
    pub max_step_secs: u64,
    /// The longest a whole build may run: past it, it is stopped and cleaned up.
    #[serde(default = "defaults::max_build_secs")]
    pub max_build_secs: u64,
}

impl Default for RepoPolicy {
    fn default() -> Self {
        RepoPolicy {
            accounts: BTreeMap::new(),
            regions: vec![],
            instance_types: vec![],
            launch_permissions: vec![],
            allow_connect: false,
            max_step_secs: defaults::max_step_secs(),
            max_build_secs: defaults::max_build_secs(),
        }
    }
}

mod defaults {
    pub fn max_step_secs() -> u64 {
        2 * 60 * 60
    }
    pub fn max_build_secs() -> u64 {
        6 * 60 * 60
    }
}

/// A target account as the operator configured it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountPolicy {
    pub role_arn: String,
    #[serde(default)]
    pub external_id: Option<String>,
}

/// Why a plan was refused: each breach names the policy key that refuses it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyViolations {
    pub repo: String,
    pub breaches: Vec<Breach>,
}

impl fmt::Display for PolicyViolations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the plan is outside the server's policy for {}:",
            self.repo
        )?;
        for b in &self.breaches {
            write!(f, "\n  - {b}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Breach {
    #[error("account {account} is not in policy.accounts")]
    AccountNotAllowed { account: String },
    #[error(
        "account {account}'s role {asked} is not the one policy.accounts.\"{account}\".role_arn \
         allows ({allowed})"
    )]
    RoleNotAllowed {
        account: String,
        asked: String,
        allowed: String,
    },
    #[error(
        "account {account}'s external_id comes from policy.accounts.\"{account}\".external_id, \
         not from the recipe"
    )]
    ExternalIdFromRecipe { account: String },
    #[error("region {region} is not in policy.regions")]
    RegionNotAllowed { region: String },
    #[error("instance type {instance_type} is not in policy.instance_types")]
    InstanceTypeNotAllowed { instance_type: String },
    #[error("launch permission for {grantee} is not in policy.launch_permissions")]
    LaunchPermissionNotAllowed { grantee: String },
    #[error("`connect = {{ host, port }}` needs policy.allow_connect")]
    ConnectNotAllowed,
    #[error("step `{step}` asks for {secs} s, above policy.max_step_secs ({max} s)")]
    StepTooLong { step: String, secs: u64, max: u64 },
}

/// A build ran past `policy.max_build_secs`: it was stopped and cleaned up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the build ran longer than policy.max_build_secs ({secs} s): it was stopped and cleaned up"
)]
pub struct BuildTimeLimit {
    pub secs: u64,
}

/// What the pull-request profile took out of a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrProfile {
    /// `account:region` copies dropped.
    pub dropped_copies: Vec<String>,
    pub dropped_launch_permissions: bool,
}

impl PolicyConfig {
    /// Where the registry's session starts (`bakery images`, `promote`, `lifecycle`, the
    /// channels jobs, `GET /api/images`): the default policy's first region.
    pub fn registry_region(&self) -> &str {
        self.default
            .regions
            .first()
            .map(String::as_str)
            .unwrap_or("us-east-1")
    }

    /// The policy of `repo` (`owner/name`).
    pub fn for_repo(&self, repo: &str) -> &RepoPolicy {
        self.repos.get(repo).unwrap_or(&self.default)
    }

    /// Checks `plan` against `repo`'s policy and fills in what only the policy decides
    /// (each target account's external ID). An ephemeral (pull-request) plan is first cut
    /// down to the pull-request profile.
    pub fn apply(&self, repo: &str, plan: &mut BuildPlan) -> Result<PrProfile, PolicyViolations> {
        let policy = self.for_repo(repo);
        let profile = if plan.image.ephemeral {
            pr_profile(plan)
        } else {
            PrProfile::default()
        };
        let mut breaches = vec![];
        let allowed_region =
            |r: &str| policy.regions.is_empty() || policy.regions.iter().any(|a| a == r);
        if !allowed_region(&plan.builder.region) {
            breaches.push(Breach::RegionNotAllowed {
                region: plan.builder.region.clone(),
            });
        }
        if !policy.instance_types.is_empty()
            && !policy.instance_types.contains(&plan.builder.instance_type)
        {
            breaches.push(Breach::InstanceTypeNotAllowed {
                instance_type: plan.builder.instance_type.clone(),
            });
        }
        if matches!(plan.builder.connect, ConnectVia::Explicit { .. }) && !policy.allow_connect {
            breaches.push(Breach::ConnectNotAllowed);
        }
        for copy in &mut plan.distribute.copies {
            if !allowed_region(&copy.region)
                && !breaches.contains(&Breach::RegionNotAllowed {
                    region: copy.region.clone(),
                })
            {
                breaches.push(Breach::RegionNotAllowed {
                    region: copy.region.clone(),
                });
            }
            let Some(target) = copy.account.as_mut() else {
                continue;
            };
            let account = target.account_id.clone();
            let Some(allowed) = policy.accounts.get(&account) else {
                let b = Breach::AccountNotAllowed { account };
                if !breaches.contains(&b) {
                    breaches.push(b);
                }
                continue;
            };
            if target.role_arn != allowed.role_arn {
                let b = Breach::RoleNotAllowed {
                    account: account.clone(),
                    asked: target.role_arn.clone(),
                    allowed: allowed.role_arn.clone(),
                };
                if !breaches.contains(&b) {
                    breaches.push(b);
                }
            }
            if target.external_id.is_some() && target.external_id != allowed.external_id {
                let b = Breach::ExternalIdFromRecipe { account };
                if !breaches.contains(&b) {
                    breaches.push(b);
                }
            }
            target.external_id = allowed.external_id.clone();
        }
        let lp = &plan.distribute.launch_permissions;
        for grantee in lp
            .account_ids
            .iter()
            .chain(&lp.organization_arns)
            .chain(&lp.organizational_unit_arns)
        {
            if !policy.launch_permissions.contains(grantee) {
                breaches.push(Breach::LaunchPermissionNotAllowed {
                    grantee: grantee.clone(),
                });
            }
        }
        for step in &plan.provision {
            let secs = match step {
                ProvisionStep::Shell(s) => s.timeout_secs,
                ProvisionStep::Ansible(a) => a.timeout_secs,
                ProvisionStep::File(_) => 0,
            };
            if secs > policy.max_step_secs {
                breaches.push(Breach::StepTooLong {
                    step: step.name().to_string(),
                    secs,
                    max: policy.max_step_secs,
                });
            }
        }
        if breaches.is_empty() {
            Ok(profile)
        } else {
            Err(PolicyViolations {
                repo: repo.to_string(),
                breaches,
            })
        }
    }
}

/// Cuts an ephemeral plan down to the pull-request profile: copies stay in the home
/// account, and nobody else is given launch permissions (nor grants on the home key).
fn pr_profile(plan: &mut BuildPlan) -> PrProfile {
    let mut profile = PrProfile::default();
    plan.distribute.copies.retain(|c| match &c.account {
        None => true,
        Some(a) => {
            profile
                .dropped_copies
                .push(format!("{}:{}", a.account_id, c.region));
            false
        }
    });
    let lp = &mut plan.distribute.launch_permissions;
    profile.dropped_launch_permissions = !(lp.account_ids.is_empty()
        && lp.organization_arns.is_empty()
        && lp.organizational_unit_arns.is_empty());
    *lp = Default::default();
    profile
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan_build, PlanInput};
    use crate::recipe::variables::VarOverrides;
    use crate::recipe::{check_sources, RecipeSource};

    const RECIPE: &str = r#"
[source]
ami = "ami-0123456789abcdef0"

[builder]
region = "eu-west-1"
instance_type = "t3.small"
ssh_user = "admin"

[[provision]]
type = "shell"
name = "Install"
inline = ["true"]
timeout = "30m"

[distribute]
regions = ["eu-west-1", "us-east-1"]

[[distribute.accounts]]
account_id = "222222222222"
role_arn = "arn:aws:iam::222222222222:role/bakery-ami-copy"
regions = ["eu-west-1"]

[distribute.launch_permissions]
organization_arns = ["arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5"]
"#;

    fn plan(recipe: &str, ephemeral: bool) -> BuildPlan {
        let checked = check_sources(None, &[RecipeSource::new("app", recipe)]);
        assert!(checked.is_ok(), "{}", checked.diagnostics);
        plan_build(
            &checked.set,
            &PlanInput {
                recipe: "app",
                version: "release-1.0.0",
                git_sha: "0123456789abcdef0123456789abcdef01234567",
                build_time: chrono::Utc::now(),
                vars: &VarOverrides::default(),
                ephemeral,
            },
        )
        .unwrap()
    }

    fn allowing() -> PolicyConfig {
        let mut p = PolicyConfig::default();
        p.default.accounts.insert(
            "222222222222".into(),
            AccountPolicy {
                role_arn: "arn:aws:iam::222222222222:role/bakery-ami-copy".into(),
                external_id: Some("from-the-operator".into()),
            },
        );
        p.default.launch_permissions =
            vec!["arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5".into()];
        p
    }

    /// A repository's recipe names an account and an organisation the operator never
    /// allowed: refused, naming each policy key.
    #[test]
    fn a_recipe_cannot_reach_accounts_the_operator_did_not_allow() {
        let mut p = plan(RECIPE, false);
        let err = PolicyConfig::default()
            .apply("acme/images", &mut p)
            .unwrap_err();
        assert_eq!(
            err.breaches,
            vec![
                Breach::AccountNotAllowed {
                    account: "222222222222".into()
                },
                Breach::LaunchPermissionNotAllowed {
                    grantee: "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5".into()
                },
            ]
        );
        let text = err.to_string();
        assert!(text.contains("policy.accounts") && text.contains("policy.launch_permissions"));
    }

    #[test]
    fn the_external_id_comes_from_the_policy_and_a_recipe_cannot_bring_its_own() {
        let mut p = plan(RECIPE, false);
        allowing().apply("acme/images", &mut p).unwrap();
        let target = p
            .distribute
            .copies
            .iter()
            .find_map(|c| c.account.clone())
            .unwrap();
        assert_eq!(target.external_id.as_deref(), Some("from-the-operator"));

        let own = RECIPE.replace(
            "role_arn = \"arn:aws:iam::222222222222:role/bakery-ami-copy\"",
            "role_arn = \"arn:aws:iam::222222222222:role/bakery-ami-copy\"\nexternal_id = \"guessed\"",
        );
        let mut p = plan(&own, false);
        let err = allowing().apply("acme/images", &mut p).unwrap_err();
        assert_eq!(
            err.breaches,
            vec![Breach::ExternalIdFromRecipe {
                account: "222222222222".into()
            }]
        );
    }

    #[test]
    fn another_role_regions_types_connect_and_long_steps_are_refused() {
        let recipe = RECIPE
            .replace("role/bakery-ami-copy", "role/admin")
            .replace("region = \"eu-west-1\"\ninstance_type", "region = \"eu-west-1\"\nconnect = { host = \"10.0.0.5\", port = 22 }\ninstance_type")
            .replace("timeout = \"30m\"", "timeout = \"100d\"");
        let mut p = plan(&recipe, false);
        let mut policy = allowing();
        policy.default.regions = vec!["eu-west-1".into()];
        policy.default.instance_types = vec!["t3.micro".into()];
        let err = policy.apply("acme/images", &mut p).unwrap_err();
        let keys: Vec<String> = err.breaches.iter().map(|b| b.to_string()).collect();
        assert!(keys.iter().any(|k| k.contains("role/admin")), "{keys:?}");
        assert!(
            keys.iter()
                .any(|k| k.contains("us-east-1 is not in policy.regions")),
            "{keys:?}"
        );
        assert!(
            keys.iter().any(|k| k.contains("policy.instance_types")),
            "{keys:?}"
        );
        assert!(
            keys.iter().any(|k| k.contains("policy.allow_connect")),
            "{keys:?}"
        );
        assert!(
            keys.iter().any(|k| k.contains("policy.max_step_secs")),
            "{keys:?}"
        );
    }

    /// A pull request's throwaway build stays in the home account and shares with nobody,
    /// whatever its recipe asks for. The planner plans it so; the policy holds it there
    /// even for a plan that says otherwise.
    #[test]
    fn pull_request_builds_stay_home_and_share_with_nobody() {
        let planned = plan(RECIPE, true);
        assert!(planned
            .distribute
            .copies
            .iter()
            .all(|c| c.account.is_none()));
        let mut p = plan(RECIPE, false);
        p.image.ephemeral = true;
        let profile = PolicyConfig::default()
            .apply("acme/images", &mut p)
            .unwrap();
        assert_eq!(profile.dropped_copies, vec!["222222222222:eu-west-1"]);
        assert!(profile.dropped_launch_permissions);
        assert!(p.distribute.copies.iter().all(|c| c.account.is_none()));
        assert_eq!(p.distribute.launch_permissions, Default::default());
    }

    #[test]
    fn a_repository_policy_replaces_the_default() {
        let mut config = PolicyConfig::default();
        config
            .repos
            .insert("acme/images".into(), allowing().default.clone());
        let mut p = plan(RECIPE, false);
        assert!(config.apply("acme/images", &mut p).is_ok());
        let mut p = plan(RECIPE, false);
        assert!(config.apply("acme/other", &mut p).is_err());
    }
}
