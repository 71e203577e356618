//! A recipe's package changes for release notes: this release's inventory against the
//! previous release's, both read from the store (`build_inventories`, the newest
//! succeeded build of a recipe and version that has one); and this release's SBOM, the
//! release asset made from the same inventory.

use serde::Serialize;

use super::diff::{diff, InventoryDiff};
use super::model::{Collected, OsRelease};
use crate::database::{BuildFilter, BuildRecord, BuildState, Store};

/// What the notes say about one recipe's packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PackageReport {
    /// This build has no inventory: its builder has no known package manager.
    NoInventory,
    /// The recipe's first release.
    First {
        packages: usize,
        os: Option<OsRelease>,
        kernel: Option<String>,
    },
    /// There is a previous release, but no inventory of it (built before inventories
    /// were kept, or without a package manager).
    PreviousUnknown { previous: String, packages: usize },
    /// Compared with the previous release.
    Compared {
        previous: String,
        packages: usize,
        diff: Box<InventoryDiff>,
    },
}

/// One recipe's [`PackageReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipePackages {
    pub recipe: String,
    pub report: PackageReport,
}

/// The newest inventory recorded for a succeeded build of `recipe` at `version`.
pub async fn release_inventory(
    store: &dyn Store,
    recipe: &str,
    version: &str,
) -> anyhow::Result<Option<Collected>> {
    Ok(release_build_inventory(store, recipe, version)
        .await?
        .map(|(_, c)| c))
}

/// The newest succeeded build of `recipe` at `version` that has an inventory, with it.
async fn release_build_inventory(
    store: &dyn Store,
    recipe: &str,
    version: &str,
) -> anyhow::Result<Option<(BuildRecord, Collected)>> {
    let builds = store
        .list_builds(&BuildFilter {
            recipe: Some(recipe.to_string()),
            version: Some(version.to_string()),
            state: Some(BuildState::Succeeded),
        })
        .await?;
    for b in builds.into_iter().rev() {
        if let Some(c) = store.inventory(&b.build_id).await? {
            return Ok(Some((b, c)));
        }
    }
    Ok(None)
}

/// The SBOM of `recipe` at `version` as a release asset: its file name
/// (`<recipe>-<version>.cdx.json`, characters GitHub would rename replaced by `-`) and
/// bytes. `None` when the build has no package inventory.
pub async fn release_sbom(
    store: &dyn Store,
    recipe: &str,
    version: &str,
) -> anyhow::Result<Option<(String, Vec<u8>)>> {
    let Some((build, Collected::Inventory(inv))) =
        release_build_inventory(store, recipe, version).await?
    else {
        return Ok(None);
    };
    let build_time = build
        .plan
        .get("build_time")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| build.created_at.to_rfc3339());
    let doc = super::sbom::cyclonedx(&inv, recipe, version, &build_time);
    let name: String = format!("{recipe}-{version}.cdx.json")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    Ok(Some((name, super::sbom::to_bytes(&doc))))
}

/// Compares `recipe` at `version` with the same recipe at `previous` (the previous tag of
/// the same pattern; `None` for a first release).
pub async fn package_report(
    store: &dyn Store,
    recipe: &str,
    version: &str,
    previous: Option<&str>,
) -> anyhow::Result<PackageReport> {
    let Some(Collected::Inventory(now)) = release_inventory(store, recipe, version).await? else {
        return Ok(PackageReport::NoInventory);
    };
    let packages = now.packages.len();
    let Some(previous) = previous else {
        return Ok(PackageReport::First {
            packages,
            os: now.os.clone(),
            kernel: now.kernel.clone(),
        });
    };
    Ok(match release_inventory(store, recipe, previous).await? {
        Some(Collected::Inventory(before)) => PackageReport::Compared {
            previous: previous.to_string(),
            packages,
            diff: Box::new(diff(&before, &now)),
        },
        _ => PackageReport::PreviousUnknown {
            previous: previous.to_string(),
            packages,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::SqlStore;
    use crate::inventory::{Inventory, Package, PackageManager};

    fn inventory(packages: &[(&str, &str)]) -> Collected {
        Collected::Inventory(Inventory::new(
            PackageManager::Dpkg,
            None,
            Some("6.1.0".into()),
            packages
                .iter()
                .map(|(n, v)| Package {
                    name: n.to_string(),
                    version: v.to_string(),
                    arch: "amd64".into(),
                    source: None,
                })
                .collect(),
        ))
    }

    async fn build(store: &SqlStore, id: &str, version: &str, state: BuildState, c: &Collected) {
        let now = chrono::Utc::now();
        store
            .upsert_build(&BuildRecord {
                build_id: id.into(),
                job_id: None,
                recipe: "web".into(),
                version: version.into(),
                git_sha: "0".repeat(40),
                state,
                plan: serde_json::json!({ "build_time": "2025-01-02T03:04:05Z" }),
                manifest: None,
                error: None,
                created_at: now,
                updated_at: now,
            })
            .await
            .unwrap();
        store.put_inventory(id, c).await.unwrap();
    }

    #[tokio::test]
    async fn compares_with_the_previous_releases_succeeded_build() {
        let store = SqlStore::open_sqlite_memory().await.unwrap();
        build(
            &store,
            "b1",
            "v1",
            BuildState::Succeeded,
            &inventory(&[("bash", "5.1")]),
        )
        .await;
        // A failed build of v1 with another inventory is not the release.
        build(
            &store,
            "b1x",
            "v1",
            BuildState::Failed,
            &inventory(&[("zsh", "1")]),
        )
        .await;
        let v2 = inventory(&[("bash", "5.2"), ("htop", "3")]);
        build(&store, "b2", "v2", BuildState::Succeeded, &v2).await;
        assert_eq!(store.inventory("b2").await.unwrap(), Some(v2));

        let PackageReport::Compared { diff, packages, .. } =
            package_report(&store, "web", "v2", Some("v1"))
                .await
                .unwrap()
        else {
            panic!("expected a comparison")
        };
        assert_eq!(packages, 2);
        assert_eq!(diff.upgraded.len(), 1);
        assert_eq!(diff.added.len(), 1);
        assert!(diff.removed.is_empty());

        assert!(matches!(
            package_report(&store, "web", "v1", None).await.unwrap(),
            PackageReport::First { packages: 1, .. }
        ));
        assert!(matches!(
            package_report(&store, "web", "v2", Some("v0"))
                .await
                .unwrap(),
            PackageReport::PreviousUnknown { packages: 2, .. }
        ));
        let (name, bytes) = release_sbom(&store, "web", "v2").await.unwrap().unwrap();
        assert_eq!(name, "web-v2.cdx.json");
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["metadata"]["timestamp"], "2025-01-02T03:04:05Z");
    }

    #[tokio::test]
    async fn a_build_without_a_package_manager_has_no_report_and_no_sbom() {
        let store = SqlStore::open_sqlite_memory().await.unwrap();
        let none = Collected::NoPackageManager {
            os: None,
            kernel: None,
        };
        build(&store, "b1", "v1", BuildState::Succeeded, &none).await;
        assert_eq!(
            package_report(&store, "web", "v1", None).await.unwrap(),
            PackageReport::NoInventory
        );
        assert_eq!(release_sbom(&store, "web", "v1").await.unwrap(), None);
    }
}
