//! What `bakery verify` checks, pure: the envelope's signature with the public key, the
//! statement's shape, an image's tags against the statement, the SBOM's bytes against
//! its subject digest. Reading the tags and files is the command's business.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::dsse::{Envelope, OpenError};
use super::key::PublicKey;
use super::statement::{ImageSubject, Statement, PREDICATE_TYPE, STATEMENT_TYPE};
use crate::aws::tags;
use crate::plan::model::tag_keys;

/// A statement whose signature verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub statement: Statement,
    /// `sha256:` and the SHA-256 of the signed payload: the images' `bakery:provenance`.
    pub digest: String,
}

/// Why a provenance does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Envelope(#[from] OpenError),
    #[error("the signed payload is not an in-toto statement with SLSA provenance v1: {0}")]
    NotProvenance(String),
    #[error("the provenance is for {found}, not {expected}")]
    OtherRelease { expected: String, found: String },
    #[error("{image} is not one of the images this provenance is about ({listed})")]
    NotASubject { image: String, listed: String },
    #[error("the provenance has no SBOM subject, but an SBOM was given")]
    NoSbomSubject,
    #[error(
        "the SBOM does not match the provenance: {name} has SHA-256 {expected} there, \
         the file given has {found}"
    )]
    SbomDiffers {
        name: String,
        expected: String,
        found: String,
    },
}

/// An image tag that does not say what the statement says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagProblem {
    Missing {
        key: String,
        expected: String,
    },
    Differs {
        key: String,
        expected: String,
        found: String,
    },
}

impl std::fmt::Display for TagProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TagProblem::Missing { key, expected } => {
                write!(f, "tag {key} is missing (the provenance says {expected:?})")
            }
            TagProblem::Differs {
                key,
                expected,
                found,
            } => write!(
                f,
                "tag {key} is {found:?}, the provenance says {expected:?}"
            ),
        }
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Checks the envelope's signature with `key`, then reads the statement.
pub fn open(envelope: &[u8], key: &PublicKey) -> Result<Opened, VerifyError> {
    let payload = Envelope::from_json(envelope)?.open(key)?;
    let statement: Statement =
        serde_json::from_slice(&payload).map_err(|e| VerifyError::NotProvenance(e.to_string()))?;
    if statement.kind != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
        return Err(VerifyError::NotProvenance(format!(
            "_type {:?}, predicateType {:?}",
            statement.kind, statement.predicate_type
        )));
    }
    Ok(Opened {
        statement,
        digest: digest(&payload),
    })
}

impl Opened {
    /// `recipe@version` of the statement.
    pub fn release(&self) -> String {
        let p = &self
            .statement
            .predicate
            .build_definition
            .external_parameters;
        format!("{}@{}", p.recipe, p.tag)
    }

    /// Refuses a statement about another recipe or version than `recipe@version`.
    pub fn expect_release(&self, release: &str) -> Result<(), VerifyError> {
        if self.release() == release {
            Ok(())
        } else {
            Err(VerifyError::OtherRelease {
                expected: release.to_string(),
                found: self.release(),
            })
        }
    }

    /// The subject with AMI id `image_id`.
    pub fn image(&self, image_id: &str) -> Result<ImageSubject, VerifyError> {
        let images = self.statement.images();
        images
            .iter()
            .find(|i| i.image_id == image_id)
            .cloned()
            .ok_or_else(|| VerifyError::NotASubject {
                image: image_id.to_string(),
                listed: images
                    .iter()
                    .map(|i| format!("{} in {}/{}", i.image_id, i.account, i.region))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The tags an image of this statement must carry.
    pub fn expected_tags(&self) -> BTreeMap<String, String> {
        let s = &self.statement;
        let p = &s.predicate.build_definition.external_parameters;
        let mut t = BTreeMap::from([
            (tags::PROVENANCE.to_string(), self.digest.clone()),
            (tag_keys::BUILD_ID.to_string(), s.build_id().to_string()),
            (tag_keys::RECIPE.to_string(), p.recipe.clone()),
            (tag_keys::IMAGE_VERSION.to_string(), p.tag.clone()),
        ]);
        if let Some(sha) = s.git_commit() {
            t.insert(tag_keys::GIT_SHA.to_string(), sha.to_string());
        }
        if let Some(ami) = s.source_image_id() {
            t.insert(tag_keys::SOURCE_AMI.to_string(), ami.to_string());
        }
        if let Some(repo) = &p.repository {
            t.insert(tag_keys::REPO.to_string(), repo.clone());
        }
        t
    }

    /// Every tag of `tags` (an image's) that does not say what the statement says.
    pub fn check_tags(&self, tags: &BTreeMap<String, String>) -> Vec<TagProblem> {
        self.expected_tags()
            .into_iter()
            .filter_map(|(key, expected)| match tags.get(&key) {
                None => Some(TagProblem::Missing { key, expected }),
                Some(found) if *found != expected => Some(TagProblem::Differs {
                    key,
                    expected,
                    found: found.clone(),
                }),
                Some(_) => None,
            })
            .collect()
    }

    /// Checks that `sbom` is the SBOM the statement names.
    pub fn check_sbom(&self, sbom: &[u8]) -> Result<(), VerifyError> {
        let subject = self.statement.sbom().ok_or(VerifyError::NoSbomSubject)?;
        let found = hex::encode(Sha256::digest(sbom));
        if found == subject.sha256 {
            Ok(())
        } else {
            Err(VerifyError::SbomDiffers {
                name: subject.name,
                expected: subject.sha256,
                found,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provenance::dsse::IN_TOTO_PAYLOAD_TYPE;
    use crate::provenance::key::ProvenanceKey;
    use crate::provenance::statement::{statement, tests::facts};

    fn signed(key: &ProvenanceKey) -> (Vec<u8>, Vec<u8>) {
        let payload = statement(&facts()).to_bytes();
        (
            Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, key).to_jsonl(),
            payload,
        )
    }

    fn tags_of(opened: &Opened) -> BTreeMap<String, String> {
        let mut t = opened.expected_tags();
        t.insert("Name".into(), "web".into());
        t
    }

    #[test]
    fn round_trip() {
        let key = ProvenanceKey::from_seed(&[3; 32]);
        let (envelope, payload) = signed(&key);
        let opened = open(&envelope, &key.public()).unwrap();
        assert_eq!(opened.statement, statement(&facts()));
        assert_eq!(opened.digest, digest(&payload));
        assert_eq!(opened.release(), "web@release-1.0.0");
        opened.expect_release("web@release-1.0.0").unwrap();
        assert!(opened.check_tags(&tags_of(&opened)).is_empty());
        assert_eq!(opened.image("ami-0bbb").unwrap().region, "eu-west-1");
    }

    #[test]
    fn a_tampered_statement_is_refused() {
        let key = ProvenanceKey::from_seed(&[3; 32]);
        let (envelope, _) = signed(&key);
        // Someone swaps an image id in the statement and keeps the signature.
        let mut env = Envelope::from_json(&envelope).unwrap();
        let forged = String::from_utf8(statement(&facts()).to_bytes())
            .unwrap()
            .replace("ami-0bbb", "ami-0evil");
        use base64::Engine;
        env.payload = base64::engine::general_purpose::STANDARD.encode(forged);
        let err = open(&env.to_jsonl(), &key.public()).unwrap_err();
        assert!(
            matches!(err, VerifyError::Envelope(OpenError::BadSignature { .. })),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_key_is_refused() {
        let (envelope, _) = signed(&ProvenanceKey::from_seed(&[3; 32]));
        let other = ProvenanceKey::from_seed(&[4; 32]).public();
        let err = open(&envelope, &other).unwrap_err();
        assert!(
            matches!(err, VerifyError::Envelope(OpenError::BadSignature { .. })),
            "{err}"
        );
        assert!(err.to_string().contains(&other.key_id()), "{err}");
    }

    #[test]
    fn altered_tags_another_release_and_a_swapped_sbom_are_named() {
        let key = ProvenanceKey::from_seed(&[3; 32]);
        let opened = open(&signed(&key).0, &key.public()).unwrap();
        let mut tags = tags_of(&opened);
        tags.insert(tag_keys::GIT_SHA.into(), "f".repeat(40));
        tags.remove(tags::PROVENANCE);
        let problems = opened.check_tags(&tags);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.contains(&TagProblem::Differs {
            key: tag_keys::GIT_SHA.into(),
            expected: "a".repeat(40),
            found: "f".repeat(40),
        }));
        assert!(problems
            .iter()
            .any(|p| matches!(p, TagProblem::Missing { key, .. } if key == tags::PROVENANCE)));

        assert!(matches!(
            opened.expect_release("web@release-2.0.0"),
            Err(VerifyError::OtherRelease { .. })
        ));
        assert!(matches!(
            opened.image("ami-0other"),
            Err(VerifyError::NotASubject { .. })
        ));
        assert!(matches!(
            opened.check_sbom(b"another SBOM"),
            Err(VerifyError::SbomDiffers { .. })
        ));
    }

    #[test]
    fn a_signed_payload_that_is_no_provenance_is_refused() {
        let key = ProvenanceKey::from_seed(&[3; 32]);
        let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, b"{\"hello\": 1}", &key).to_jsonl();
        assert!(matches!(
            open(&env, &key.public()),
            Err(VerifyError::NotProvenance(_))
        ));
    }
}
