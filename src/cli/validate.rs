use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {}

pub async fn run(_args: ValidateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`bakery validate` is not available in this build")
}
