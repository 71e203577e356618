use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct SyncArgs {}

pub async fn run(_args: SyncArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`bakery sync` is not available in this build")
}
