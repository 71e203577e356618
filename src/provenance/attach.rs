//! A released build's signed provenance: the statement made from the plan, the manifest,
//! the recipe file and the SBOM, signed with the configured key (through
//! [`super::key`], which never gives the key out), and the `bakery:provenance` tag put on
//! each of the build's final images (CreateTags on those images only). The envelope goes
//! to the GitHub Release as an asset (`github/publish.rs`).
//!
//! Touches: the store (reads the build's SBOM), the checkout (reads the recipe file), the
//! tags of this build's final images.

use anyhow::Context;
use futures::future::try_join_all;
use sha2::{Digest, Sha256};

use super::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use super::key::ProvenanceKey;
use super::statement::{statement, BuildFacts, FileDigest, ImageSubject};
use super::verify::digest;
use crate::aws::session::Target;
use crate::aws::{tags, AwsSession};
use crate::build::Manifest;
use crate::database::Store;
use crate::plan::model::BuildPlan;

/// The media type of the envelope asset.
pub const MEDIA_TYPE: &str = "application/json";

/// A signed provenance, ready to attach to the release.
#[derive(Debug, Clone)]
pub struct Signed {
    /// `<recipe>-<version>.intoto.jsonl`.
    pub asset_name: String,
    /// The DSSE envelope, one JSON line.
    pub envelope: Vec<u8>,
    /// What the images are tagged with: `sha256:` and the statement's SHA-256.
    pub digest: String,
}

/// Who made the build and where from: what the job knows besides the build.
#[derive(Debug, Clone)]
pub struct Origin {
    /// SLSA `builder.id`: this bot (its public URL, or the configured id).
    pub builder_id: String,
    /// Where the repository is cloned from.
    pub repository_url: Option<String>,
    /// The checkout the build was made from.
    pub root: std::path::PathBuf,
}

/// Characters GitHub keeps in an asset name; others become `-`.
fn asset_name(recipe: &str, version: &str) -> String {
    format!("{recipe}-{version}.intoto.jsonl")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The facts of a built recipe, for its statement.
pub async fn facts(
    store: &dyn Store,
    plan: &BuildPlan,
    manifest: &Manifest,
    build_id: &str,
    origin: &Origin,
) -> anyhow::Result<BuildFacts> {
    let recipe_path = format!(
        "{}/{}/{}",
        crate::recipe::RECIPES_DIR,
        plan.recipe,
        crate::recipe::RECIPE_FILE
    );
    let recipe_bytes = std::fs::read(origin.root.join(&recipe_path))
        .with_context(|| format!("cannot read {recipe_path} for the provenance"))?;
    let sbom = crate::inventory::history::release_sbom(store, &plan.recipe, &plan.version)
        .await?
        .map(|(name, bytes)| FileDigest {
            name,
            sha256: hex::encode(Sha256::digest(&bytes)),
        });
    let build = manifest
        .builds
        .first()
        .context("the manifest has no build")?;
    let source_image = build
        .custom_data
        .get("source_ami")
        .filter(|s| !s.is_empty())
        .map(|id| ImageSubject {
            account: String::new(),
            region: plan.builder.region.clone(),
            image_id: id.clone(),
        });
    Ok(BuildFacts {
        builder_id: origin.builder_id.clone(),
        build_id: build_id.to_string(),
        repository: plan.repo.clone(),
        repository_url: origin.repository_url.clone(),
        tag: plan.version.clone(),
        git_sha: plan.git_sha.clone(),
        recipe: plan.recipe.clone(),
        recipe_file: FileDigest {
            name: recipe_path,
            sha256: hex::encode(Sha256::digest(&recipe_bytes)),
        },
        source: serde_json::to_value(&plan.source)?,
        source_image,
        steps: plan
            .provision
            .iter()
            .map(|s| {
                let kind = match s {
                    crate::plan::model::ProvisionStep::Shell(_) => "shell",
                    crate::plan::model::ProvisionStep::File(_) => "file",
                    crate::plan::model::ProvisionStep::Ansible(_) => "ansible",
                };
                (s.name().to_string(), kind.to_string())
            })
            .collect(),
        images: manifest
            .builds
            .iter()
            .flat_map(|b| b.copies.iter())
            .map(|c| ImageSubject {
                account: c.account.clone(),
                region: c.region.clone(),
                image_id: c.ami.clone(),
            })
            .collect(),
        sbom,
        started_on: plan.build_time.clone(),
        finished_on: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// Signs the statement of `facts` with `key`.
pub fn sign(facts: &BuildFacts, key: &ProvenanceKey) -> Signed {
    let payload = statement(facts).to_bytes();
    Signed {
        asset_name: asset_name(&facts.recipe, &facts.tag),
        envelope: Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, key).to_jsonl(),
        digest: digest(&payload),
    }
}

/// Tags each image of `facts` with the provenance's digest.
pub async fn tag_images(
    session: &AwsSession,
    facts: &BuildFacts,
    signed: &Signed,
) -> anyhow::Result<()> {
    try_join_all(facts.images.iter().map(|i| async move {
        let target = Target {
            account: i.account.clone(),
            region: i.region.clone(),
        };
        crate::aws::image::tag_image(
            session,
            &target,
            &i.image_id,
            (tags::PROVENANCE, &signed.digest),
            &format!("tag {} in {target} with its provenance", i.image_id),
        )
        .await
    }))
    .await?;
    Ok(())
}

/// The whole of it for a built recipe: its facts, signed, its images tagged.
pub async fn attach(
    store: &dyn Store,
    session: &AwsSession,
    key: &ProvenanceKey,
    plan: &BuildPlan,
    manifest: &Manifest,
    build_id: &str,
    origin: &Origin,
) -> anyhow::Result<Signed> {
    let facts = facts(store, plan, manifest, build_id, origin).await?;
    let signed = sign(&facts, key);
    tag_images(session, &facts, &signed).await?;
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_asset_is_named_after_the_recipe_and_version() {
        assert_eq!(
            asset_name("web", "release-1.0.0"),
            "web-release-1.0.0.intoto.jsonl"
        );
        assert_eq!(asset_name("web", "v1/rc"), "web-v1-rc.intoto.jsonl");
    }

    #[test]
    fn the_tag_is_the_digest_of_the_signed_statement() {
        let key = ProvenanceKey::from_seed(&[5; 32]);
        let facts = super::super::statement::tests::facts();
        let signed = sign(&facts, &key);
        let opened = super::super::verify::open(&signed.envelope, &key.public()).unwrap();
        assert_eq!(opened.digest, signed.digest);
        assert!(signed.digest.starts_with("sha256:"));
        // No key material in what is attached.
        let text = String::from_utf8(signed.envelope.clone()).unwrap();
        assert!(!text.contains("PRIVATE"));
    }
}
