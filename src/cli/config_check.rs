use std::process::ExitCode;

use super::ConfigArgs;
use crate::config::ServerConfig;

#[derive(Debug, clap::Args)]
pub struct ConfigCheckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Prints the resolved configuration with secrets masked, then its warnings.
pub async fn run(args: ConfigCheckArgs) -> anyhow::Result<ExitCode> {
    let config = ServerConfig::from_env(args.config.config.as_deref())?;
    print!("{}", config.to_masked_toml()?);
    let warnings = config.warnings();
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "configuration ok ({} webhook secret(s), {} warning(s))",
        config.webhook.secrets.len(),
        warnings.len()
    );
    Ok(ExitCode::SUCCESS)
}
