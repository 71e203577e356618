use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct JanitorArgs {}

pub async fn run(_args: JanitorArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`bakery janitor` is not available in this build")
}
