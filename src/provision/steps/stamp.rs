//! The stamp step: the release file (`ProvisionPlan::release_file`) written to the plan's
//! path, mode 0644, owned by root.

use bytes::Bytes;

use super::Session;
use crate::provision::quote::sh_quote;
use crate::provision::upload::{run_script, upload, Source};
use crate::provision::ProvisionPlan;

pub const STEP: &str = "stamp";

/// Writes the release file and returns its content.
pub async fn run(s: &mut Session, plan: &ProvisionPlan) -> anyhow::Result<String> {
    let path = plan.stamp_path.as_str();
    if !path.starts_with('/') {
        anyhow::bail!("stamp path {path:?} is not absolute; use e.g. /etc/release");
    }
    let content = plan.release_file.clone();
    let stage = s.stage_path("release");
    upload(
        &s.comm,
        STEP,
        Source::Bytes(Bytes::from(content.clone())),
        &stage,
        0o644,
        &s.log,
        &s.cancel,
    )
    .await?;
    let script = format!(
        "set -e\n{sudo}install -D -m 0644 -o root -g root {src} {dst}\nrm -f {src}\n",
        sudo = s.sudo(),
        src = sh_quote(&stage),
        dst = sh_quote(path),
    );
    run_script(
        &s.comm,
        STEP,
        &format!("writing {path}"),
        false,
        script,
        &s.log,
        &s.cancel,
    )
    .await?;
    s.log.info(
        STEP,
        format!(
            "wrote {path}: {}",
            content.lines().next().unwrap_or_default()
        ),
    );
    Ok(content)
}
