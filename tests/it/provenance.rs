//! The provenance statement's shape, checked with in-toto's official attestation bindings
//! (the in-toto-attestation package, installed by scripts/provenance/setup.sh): a Statement
//! v1 whose predicate is SLSA Provenance v1, and what the bindings refuse.

use std::io::Write;
use std::process::{Command, Stdio};

use bakery::provenance::statement::{statement, BuildFacts, FileDigest, ImageSubject};
use serde_json::Value;

fn python() -> String {
    let venv = std::env::var("BAKERY_INTOTO_VENV").unwrap_or_else(|_| {
        format!(
            "{}/.cache/bakery/intoto-venv",
            std::env::var("HOME").unwrap()
        )
    });
    let py = format!("{venv}/bin/python");
    assert!(
        std::path::Path::new(&py).exists(),
        "{py} is missing: run scripts/provenance/setup.sh"
    );
    py
}

/// Runs the bindings on `doc`: `Ok` when valid, else what they said.
pub(crate) fn validate(doc: &Value) -> Result<(), String> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/support/intoto_validate.py"
    );
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(doc).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        assert_eq!(text.trim(), "valid");
        Ok(())
    } else {
        Err(text)
    }
}

fn facts() -> BuildFacts {
    BuildFacts {
        builder_id: "https://bakery.example.com".into(),
        build_id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
        repository: Some("acme/images".into()),
        repository_url: Some("https://github.com/acme/images.git".into()),
        tag: "release-1.0.0".into(),
        git_sha: "3f786850e387550fdab836ed7e6dc881de23001b".into(),
        recipe: "web".into(),
        recipe_file: FileDigest {
            name: "recipes/web/recipe.toml".into(),
            sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
        },
        source: serde_json::json!({ "kind": "ami_id", "id": "ami-0source1234567890" }),
        source_image: Some(ImageSubject {
            account: String::new(),
            region: "us-east-1".into(),
            image_id: "ami-0source1234567890".into(),
        }),
        steps: vec![
            ("Install nginx".into(), "shell".into()),
            ("Configure".into(), "ansible".into()),
        ],
        images: vec![
            ImageSubject {
                account: "123456789012".into(),
                region: "us-east-1".into(),
                image_id: "ami-0aaaaaaaaaaaaaaaa".into(),
            },
            ImageSubject {
                account: "222222222222".into(),
                region: "eu-west-1".into(),
                image_id: "ami-0bbbbbbbbbbbbbbbb".into(),
            },
        ],
        sbom: Some(FileDigest {
            name: "web-release-1.0.0.cdx.json".into(),
            sha256: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae".into(),
        }),
        started_on: "2025-01-02T03:04:05Z".into(),
        finished_on: "2025-01-02T03:30:00+00:00".into(),
    }
}

#[test]
fn the_statement_is_an_in_toto_statement_with_slsa_provenance_v1() {
    let doc: Value = serde_json::from_slice(&statement(&facts()).to_bytes()).unwrap();
    validate(&doc).unwrap_or_else(|e| panic!("{e}\n{doc:#}"));
}

#[test]
fn the_bindings_refuse_what_is_not_one() {
    let doc: Value = serde_json::from_slice(&statement(&facts()).to_bytes()).unwrap();
    // A subject without a digest.
    let mut bad = doc.clone();
    bad["subject"][0].as_object_mut().unwrap().remove("digest");
    assert!(validate(&bad).unwrap_err().contains("digest"));
    // A field SLSA Provenance v1 does not have.
    let mut bad = doc.clone();
    bad["predicate"]["runDetails"]["buildId"] = Value::String("b".into());
    assert!(validate(&bad).is_err());
    // A time that is not RFC 3339.
    let mut bad = doc.clone();
    bad["predicate"]["runDetails"]["metadata"]["startedOn"] = Value::String("yesterday".into());
    assert!(validate(&bad).is_err());
    // Another statement type.
    let mut bad = doc;
    bad["_type"] = Value::String("https://in-toto.io/Statement/v0.1".into());
    assert!(validate(&bad).is_err());
}
