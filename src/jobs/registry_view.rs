//! The registry as the server's channels and lifecycle jobs see it: a session in the
//! operator's home region, every account and region the operator's policy (and the
//! store's builds) name, and one repository's released images in them.
//!
//! Repository content never widens this: the accounts, regions and roles are the
//! operator's.
//!
//! Touches: STS and the cloud's read-only image calls (through the registry's scope and
//! lookup), the store (read).

use crate::aws::{AwsSession, Target};
use crate::registry::model::RegistryImage;
use crate::registry::ImageQuery;

use super::deps::JobDeps;

/// Where the registry is searched from.
pub struct RegistryScope {
    pub session: AwsSession,
    pub targets: Vec<Target>,
}

/// One repository's images, and the targets that could not be searched.
pub struct RepoImages {
    pub images: Vec<RegistryImage>,
    pub skipped: Vec<String>,
}

/// Connects in the policy's first default region and resolves the targets.
pub async fn scope(deps: &JobDeps) -> anyhow::Result<RegistryScope> {
    let session =
        AwsSession::connect(deps.aws.clone(), deps.config.policy.registry_region()).await?;
    let targets =
        crate::registry::scope::targets(&session, deps.store.as_ref(), &deps.config.policy).await?;
    Ok(RegistryScope { session, targets })
}

/// The images `repo` released, in every target of `scope`.
pub async fn repo_images(
    deps: &JobDeps,
    scope: &RegistryScope,
    repo: &str,
) -> anyhow::Result<RepoImages> {
    let report = crate::registry::lookup(
        &scope.session,
        deps.store.as_ref(),
        &scope.targets,
        &ImageQuery::default(),
        chrono::Utc::now(),
    )
    .await?;
    Ok(RepoImages {
        images: report
            .images
            .into_iter()
            .filter(|i| i.repo.as_deref() == Some(repo))
            .collect(),
        skipped: report.skipped,
    })
}
