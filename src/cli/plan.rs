use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {}

pub async fn run(_args: PlanArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`bakery plan` is not available in this build")
}
