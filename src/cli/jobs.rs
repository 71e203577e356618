use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct JobsArgs {}

pub async fn run(_args: JobsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`bakery jobs` is not available in this build")
}
