//! The provenance statement of one build: an in-toto Statement v1 whose predicate is SLSA
//! Provenance v1. Pure: built from what the build knows, read back by `bakery verify`.
//!
//! Subjects: every image the build released and the SBOM. An AMI has no content digest,
//! but its id is never reused and a registered image cannot change, so an image subject
//! is named by its ARN, carries its id as the digest (algorithm `ec2ImageId`) and its
//! account and region as annotations (the image is that id in that account and region); the SBOM subject carries its SHA-256.
//! Resolved dependencies: the repository at the tag's commit (`gitCommit`), the recipe
//! file (`sha256`) and the source image. The build id is the invocation id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// `predicateType` of SLSA Provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What a bakery build is: an EC2 image from a recipe at a tag (see the README's
/// "Signed provenance" section).
pub const BUILD_TYPE: &str = "urn:bakery:build-type:ec2-image:v1";
/// The digest algorithm name under which an image subject carries its AMI id.
pub const IMAGE_ID_DIGEST: &str = "ec2ImageId";

/// An in-toto ResourceDescriptor (the fields bakery uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub kind: String,
    pub subject: Vec<Resource>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Provenance,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: String,
    pub external_parameters: ExternalParameters,
    pub internal_parameters: Value,
    pub resolved_dependencies: Vec<Resource>,
}

/// What the repository chose: the tag, the recipe and its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalParameters {
    /// `owner/name`, when the build came from a repository the bot watches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    pub tag: String,
    pub recipe: String,
    /// The recipe file, relative to the repository root.
    pub recipe_path: String,
    /// The source image as the recipe asks for it (an id, a filter, another recipe).
    pub source: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    pub builder: Builder,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Builder {
    pub id: String,
    #[serde(default)]
    pub version: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// The build id (`bakery:build-id` on everything the build made).
    pub invocation_id: String,
    pub started_on: String,
    pub finished_on: String,
}

/// One released image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSubject {
    pub account: String,
    pub region: String,
    pub image_id: String,
}

impl ImageSubject {
    /// The image's ARN (an AMI's ARN names no account).
    pub fn arn(&self) -> String {
        format!("arn:aws:ec2:{}::image/{}", self.region, self.image_id)
    }
}

/// A file and its SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub name: String,
    pub sha256: String,
}

/// What a build knows when its images are released.
#[derive(Debug, Clone)]
pub struct BuildFacts {
    pub builder_id: String,
    pub build_id: String,
    pub repository: Option<String>,
    /// Where the repository is cloned from (its `git+` URI is a resolved dependency).
    pub repository_url: Option<String>,
    pub tag: String,
    pub git_sha: String,
    pub recipe: String,
    pub recipe_file: FileDigest,
    /// The plan's source (serialized `SourcePlan`).
    pub source: Value,
    /// The source image (its account is not known: empty).
    pub source_image: Option<ImageSubject>,
    /// Each provisioning step: name and type.
    pub steps: Vec<(String, String)>,
    pub images: Vec<ImageSubject>,
    pub sbom: Option<FileDigest>,
    pub started_on: String,
    pub finished_on: String,
}

fn image_resource(i: &ImageSubject) -> Resource {
    Resource {
        name: Some(i.arn()),
        uri: None,
        digest: BTreeMap::from([(IMAGE_ID_DIGEST.to_string(), i.image_id.clone())]),
        media_type: None,
        annotations: [("account", &i.account), ("region", &i.region)]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

/// The statement of a build.
pub fn statement(f: &BuildFacts) -> Statement {
    let mut subject: Vec<Resource> = f.images.iter().map(image_resource).collect();
    if let Some(sbom) = &f.sbom {
        subject.push(Resource {
            name: Some(sbom.name.clone()),
            uri: None,
            digest: BTreeMap::from([("sha256".to_string(), sbom.sha256.clone())]),
            media_type: Some(crate::inventory::sbom::MEDIA_TYPE.to_string()),
            annotations: BTreeMap::new(),
        });
    }
    let mut deps = vec![Resource {
        name: f.repository.clone(),
        uri: f
            .repository_url
            .as_ref()
            .map(|u| format!("git+{u}@refs/tags/{}", f.tag)),
        digest: BTreeMap::from([("gitCommit".to_string(), f.git_sha.clone())]),
        media_type: None,
        annotations: BTreeMap::new(),
    }];
    deps.push(Resource {
        name: Some(f.recipe_file.name.clone()),
        uri: None,
        digest: BTreeMap::from([("sha256".to_string(), f.recipe_file.sha256.clone())]),
        media_type: None,
        annotations: BTreeMap::new(),
    });
    if let Some(src) = &f.source_image {
        deps.push(image_resource(src));
    }
    let steps: Vec<Value> = f
        .steps
        .iter()
        .map(|(name, kind)| serde_json::json!({ "name": name, "type": kind }))
        .collect();
    Statement {
        kind: STATEMENT_TYPE.to_string(),
        subject,
        predicate_type: PREDICATE_TYPE.to_string(),
        predicate: Provenance {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE.to_string(),
                external_parameters: ExternalParameters {
                    repository: f.repository.clone(),
                    tag: f.tag.clone(),
                    recipe: f.recipe.clone(),
                    recipe_path: f.recipe_file.name.clone(),
                    source: f.source.clone(),
                },
                internal_parameters: serde_json::json!({ "steps": steps }),
                resolved_dependencies: deps,
            },
            run_details: RunDetails {
                builder: Builder {
                    id: f.builder_id.clone(),
                    version: BTreeMap::from([(
                        "bakery".to_string(),
                        env!("CARGO_PKG_VERSION").to_string(),
                    )]),
                },
                metadata: Metadata {
                    invocation_id: f.build_id.clone(),
                    started_on: f.started_on.clone(),
                    finished_on: f.finished_on.clone(),
                },
            },
        },
    }
}

impl Statement {
    /// The statement's bytes as signed (compact JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a statement serializes")
    }

    /// The images this statement is about.
    pub fn images(&self) -> Vec<ImageSubject> {
        self.subject
            .iter()
            .filter_map(|s| {
                Some(ImageSubject {
                    image_id: s.digest.get(IMAGE_ID_DIGEST)?.clone(),
                    account: s.annotations.get("account")?.clone(),
                    region: s.annotations.get("region")?.clone(),
                })
            })
            .collect()
    }

    /// The SBOM subject, if the build had an inventory.
    pub fn sbom(&self) -> Option<FileDigest> {
        self.subject
            .iter()
            .filter(|s| s.media_type.as_deref() == Some(crate::inventory::sbom::MEDIA_TYPE))
            .find_map(|s| {
                Some(FileDigest {
                    name: s.name.clone()?,
                    sha256: s.digest.get("sha256")?.clone(),
                })
            })
    }

    /// The commit the build was made from.
    pub fn git_commit(&self) -> Option<&str> {
        self.predicate
            .build_definition
            .resolved_dependencies
            .iter()
            .find_map(|d| d.digest.get("gitCommit"))
            .map(String::as_str)
    }

    /// The AMI id of the source image.
    pub fn source_image_id(&self) -> Option<&str> {
        self.predicate
            .build_definition
            .resolved_dependencies
            .iter()
            .find_map(|d| d.digest.get(IMAGE_ID_DIGEST))
            .map(String::as_str)
    }

    pub fn build_id(&self) -> &str {
        &self.predicate.run_details.metadata.invocation_id
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn facts() -> BuildFacts {
        BuildFacts {
            builder_id: "https://bakery.example.com".into(),
            build_id: "b-0123".into(),
            repository: Some("acme/images".into()),
            repository_url: Some("https://github.com/acme/images.git".into()),
            tag: "release-1.0.0".into(),
            git_sha: "a".repeat(40),
            recipe: "web".into(),
            recipe_file: FileDigest {
                name: "recipes/web/recipe.toml".into(),
                sha256: "b".repeat(64),
            },
            source: serde_json::json!({ "kind": "ami_id", "id": "ami-0source" }),
            source_image: Some(ImageSubject {
                account: "123456789012".into(),
                region: "us-east-1".into(),
                image_id: "ami-0source".into(),
            }),
            steps: vec![("Install nginx".into(), "shell".into())],
            images: vec![
                ImageSubject {
                    account: "123456789012".into(),
                    region: "us-east-1".into(),
                    image_id: "ami-0aaa".into(),
                },
                ImageSubject {
                    account: "210987654321".into(),
                    region: "eu-west-1".into(),
                    image_id: "ami-0bbb".into(),
                },
            ],
            sbom: Some(FileDigest {
                name: "web-release-1.0.0.cdx.json".into(),
                sha256: "c".repeat(64),
            }),
            started_on: "2025-01-02T03:04:05Z".into(),
            finished_on: "2025-01-02T03:30:00Z".into(),
        }
    }

    #[test]
    fn the_statement_names_every_image_the_sbom_and_what_was_built_from() {
        let s = statement(&facts());
        let v: Value = serde_json::from_slice(&s.to_bytes()).unwrap();
        assert_eq!(v["_type"], STATEMENT_TYPE);
        assert_eq!(v["predicateType"], PREDICATE_TYPE);
        assert_eq!(v["subject"].as_array().unwrap().len(), 3);
        assert_eq!(
            v["subject"][1]["name"],
            "arn:aws:ec2:eu-west-1::image/ami-0bbb"
        );
        assert_eq!(v["subject"][1]["digest"]["ec2ImageId"], "ami-0bbb");
        assert_eq!(v["subject"][2]["digest"]["sha256"], "c".repeat(64));
        let def = &v["predicate"]["buildDefinition"];
        assert_eq!(def["externalParameters"]["tag"], "release-1.0.0");
        assert_eq!(
            def["resolvedDependencies"][0]["uri"],
            "git+https://github.com/acme/images.git@refs/tags/release-1.0.0"
        );
        assert_eq!(
            def["resolvedDependencies"][0]["digest"]["gitCommit"],
            "a".repeat(40)
        );
        assert_eq!(
            def["resolvedDependencies"][1]["digest"]["sha256"],
            "b".repeat(64)
        );
        assert_eq!(
            def["internalParameters"]["steps"][0]["name"],
            "Install nginx"
        );
        let run = &v["predicate"]["runDetails"];
        assert_eq!(run["metadata"]["invocationId"], "b-0123");
        assert_eq!(
            run["builder"]["version"]["bakery"],
            env!("CARGO_PKG_VERSION")
        );

        // Read back, it says the same.
        let back: Statement = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.images(), facts().images);
        assert_eq!(back.sbom(), facts().sbom);
        assert_eq!(back.git_commit(), Some("a".repeat(40).as_str()));
        assert_eq!(back.build_id(), "b-0123");
        assert_eq!(back.source_image_id(), Some("ami-0source"));
    }
}
