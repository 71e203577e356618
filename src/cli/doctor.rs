//! `bakery doctor`: checks the operator's real AWS and GitHub for everything bakery will
//! need, before the first build, and changes nothing (see [`crate::doctor`]). Exits
//! non-zero when a check fails.

use std::process::ExitCode;

use clap::ValueEnum;

use super::{ConfigArgs, RecipeArgs};
use crate::config::ServerConfig;
use crate::doctor::{self, Area, Check, Inputs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DoctorFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub recipe_args: RecipeArgs,
    /// Check only this recipe (a name under `recipes/`). Default: every recipe.
    #[arg(long)]
    pub recipe: Option<String>,
    /// The GitHub repository (`owner/name`) that holds the recipes: its `[policy]`
    /// applies, and the App's installation on it is checked.
    #[arg(long, value_name = "OWNER/NAME")]
    pub repository: Option<String>,
    /// The region to identify in when no recipe is checked.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    #[arg(long, value_enum, default_value_t = DoctorFormat::Table)]
    pub format: DoctorFormat,
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let config = ServerConfig::from_env(args.config.config.as_deref())?;
    let repo_key = args.repository.clone().unwrap_or_default();
    let policy = config.policy.for_repo(&repo_key).clone();
    let mut plan_checks = vec![];
    let mut plans = vec![];
    for recipe in recipe_names(&args)? {
        match plan(&args, &recipe) {
            Ok(mut p) => {
                p.repo = args.repository.clone();
                match config.policy.apply(&repo_key, &mut p) {
                    Ok(_) => {
                        plan_checks.push(Check::pass(
                            Area::Identity,
                            "server policy",
                            format!("recipe {recipe}"),
                            "the plan is inside the server's [policy]",
                        ));
                        plans.push(p);
                    }
                    Err(v) => plan_checks.push(Check::fail(
                        Area::Identity,
                        "server policy",
                        format!("recipe {recipe}"),
                        v.to_string(),
                        "change the recipe, or the server's [policy], so that they agree",
                    )),
                }
            }
            Err(e) => plan_checks.push(Check::fail(
                Area::Identity,
                "recipe",
                format!("recipe {recipe}"),
                format!("{e:#}"),
                "bakery validate lists the recipe's errors",
            )),
        }
    }
    let inputs = Inputs {
        aws: crate::aws::AwsSettings {
            endpoint_url: config.aws.endpoint_url.clone(),
            endpoints: config.aws.endpoints.clone(),
            ..crate::aws::AwsSettings::default()
        },
        github: config.github.clone(),
        repository: args.repository.clone(),
        accounts: policy.accounts.clone(),
        plans,
        home_region: args.region.clone(),
    };
    let mut report = doctor::run(&inputs).await;
    let tail = report.checks.split_off(report.checks.len().min(1));
    report.checks.extend(plan_checks);
    report.checks.extend(tail);
    match args.format {
        DoctorFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        DoctorFormat::Table => print!("{}", report.table()),
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn recipe_names(args: &DoctorArgs) -> anyhow::Result<Vec<String>> {
    if let Some(r) = &args.recipe {
        return Ok(vec![r.clone()]);
    }
    let checked = crate::recipe::load_repo(&args.recipe_args.repo)?;
    Ok(checked.set.names.iter().cloned().collect())
}

/// The recipe's plan as a release would make it (the version only names the probes).
fn plan(args: &DoctorArgs, recipe: &str) -> anyhow::Result<crate::plan::model::BuildPlan> {
    let git_sha = args
        .recipe_args
        .git_sha
        .clone()
        .unwrap_or_else(|| "0".repeat(40));
    let vars = args
        .recipe_args
        .vars
        .iter()
        .map(|v| {
            let (k, val) = v
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--var {v:?}: write it as name=value"))?;
            Ok((k.trim().to_string(), val.to_string()))
        })
        .collect::<anyhow::Result<_>>()?;
    crate::plan::plan_from_repo(&crate::plan::PlanRequest {
        repo_root: &args.recipe_args.repo,
        recipe,
        version: "doctor",
        git_sha: &git_sha,
        build_time: chrono::Utc::now(),
        vars,
        var_files: args.recipe_args.var_files.clone(),
        ephemeral: false,
    })
}
