use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ConfigCheckArgs {}

pub async fn run(_args: ConfigCheckArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`bakery config_check` is not available in this build")
}
