use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {}

pub async fn run(_args: BuildArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`bakery build` is not available in this build")
}
