//! The build's result file, in the shape of Packer's manifest post-processor, extended
//! with each copy's account, region, image, KMS key and snapshots.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::aws::distribute::CopyOutcome;
use crate::aws::release::ReleasedImage;
use crate::plan::model::{BuildFacts, BuildPlan};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub builds: Vec<ManifestBuild>,
    pub last_run_uuid: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestBuild {
    pub name: String,
    pub builder_type: String,
    /// Unix seconds.
    pub build_time: i64,
    pub files: Option<Vec<String>>,
    /// `region:ami-…` for every copy, comma-separated.
    pub artifact_id: String,
    pub packer_run_uuid: String,
    pub custom_data: BTreeMap<String, String>,
    pub copies: Vec<ManifestCopy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestCopy {
    pub account: String,
    pub region: String,
    pub ami: String,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub snapshot_ids: Vec<String>,
}

impl Manifest {
    pub fn from_build(plan: &BuildPlan, facts: &BuildFacts, copies: &[CopyOutcome]) -> Self {
        let copies: Vec<ManifestCopy> = copies
            .iter()
            .map(|c| ManifestCopy {
                account: c.target.account.clone(),
                region: c.target.region.clone(),
                ami: c.image_id.clone(),
                encrypted: c.encrypted,
                kms_key_id: c.kms_key_id.clone(),
                snapshot_ids: c.snapshot_ids.clone(),
            })
            .collect();
        Self::from_copies(plan, facts, copies)
    }

    /// For a build whose copies are known: the manifest an engine returns (the AWS engine
    /// from its copy outcomes, an engine that touches no cloud from what it made).
    pub fn from_copies(plan: &BuildPlan, facts: &BuildFacts, copies: Vec<ManifestCopy>) -> Self {
        Self::assemble(plan, &facts.build_id, Some(&facts.source_ami), copies)
    }

    /// For a version released earlier: the images that exist.
    pub fn from_release(plan: &BuildPlan, images: &[ReleasedImage]) -> Self {
        let build_id = images
            .first()
            .map(|i| i.build_id.clone())
            .unwrap_or_default();
        let copies = images
            .iter()
            .map(|i| ManifestCopy {
                account: i.target.account.clone(),
                region: i.target.region.clone(),
                ami: i.image_id.clone(),
                encrypted: plan.distribute.encrypted,
                kms_key_id: None,
                snapshot_ids: i.snapshot_ids.clone(),
            })
            .collect();
        Self::assemble(plan, &build_id, None, copies)
    }

    fn assemble(
        plan: &BuildPlan,
        build_id: &str,
        source_ami: Option<&str>,
        mut copies: Vec<ManifestCopy>,
    ) -> Self {
        copies.sort_by(|a, b| (&a.account, &a.region).cmp(&(&b.account, &b.region)));
        let artifact_id = copies
            .iter()
            .map(|c| format!("{}:{}", c.region, c.ami))
            .collect::<Vec<_>>()
            .join(",");
        let build_time = chrono::DateTime::parse_from_rfc3339(&plan.build_time)
            .map(|t| t.timestamp())
            .unwrap_or_else(|_| chrono::Utc::now().timestamp());
        let mut custom = BTreeMap::new();
        custom.insert("recipe".into(), plan.recipe.clone());
        custom.insert("version".into(), plan.version.clone());
        custom.insert("git_sha".into(), plan.git_sha.clone());
        custom.insert("image_name".into(), plan.image.name.clone());
        if let Some(src) = source_ami {
            custom.insert("source_ami".into(), src.to_string());
        }
        Manifest {
            builds: vec![ManifestBuild {
                name: plan.recipe.clone(),
                builder_type: "bakery".into(),
                build_time,
                files: None,
                artifact_id,
                packer_run_uuid: build_id.to_string(),
                custom_data: custom,
                copies,
            }],
            last_run_uuid: build_id.to_string(),
        }
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)? + "\n";
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
        }
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the manifest to {}", path.display()))
    }
}
