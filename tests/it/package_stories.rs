//! Stories about what changed inside an image: two releases of one recipe, where the
//! second installs one more package; its release notes list exactly that package, and
//! each release carries its image's SBOM and its signed provenance as assets, which
//! `bakery verify` checks the images against.

use crate::support::story::*;

/// The story recipe with `extra` provision steps. Sealing keeps the sandbox's host keys:
/// both releases are built on the same sandboxed builder.
fn recipe(port: u16, extra: &str) -> String {
    sandbox_recipe(port, &format!("{extra}\n[seal]\nhost_keys = false\n"))
}

/// A provision step that builds a tiny Debian package on the builder and installs it:
/// one package more, none upgraded.
const INSTALL_ONE_PACKAGE: &str = r#"
[[provision]]
type = "shell"
name = "Install the probe package"
sudo = true
inline = [
  "mkdir -p /tmp/bakery-probe/DEBIAN",
  "printf 'Package: bakery-probe\nVersion: 1.0-1\nArchitecture: all\nMaintainer: Story <story@example.com>\nDescription: one more package\n' > /tmp/bakery-probe/DEBIAN/control",
  "dpkg-deb --build /tmp/bakery-probe /tmp/bakery-probe.deb",
  "dpkg -i /tmp/bakery-probe.deb",
]
"#;

fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"ami-[0-9a-f]{8,17}", "ami-[id]"),
        (r"\b[0-9a-f]{40}\b", "[sha]"),
        (r"\b[0-9a-f]{7}\b", "[short-sha]"),
        (r"\(\d+ in all", "([n] in all"),
        (
            r"first release: \d+ packages",
            "first release: [n] packages",
        ),
        (
            r"arn:aws:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]{36}",
            "[kms-key-arn]",
        ),
    ]
}

fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (scripts/github/setup.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn release_body(story: &Story, tag: &str) -> String {
    let repo = story.github.repo(REPO);
    let release = repo
        .releases
        .values()
        .find(|r| r["tag_name"] == tag)
        .unwrap_or_else(|| panic!("no release {tag}: {:#?}", repo.releases));
    release["body"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_second_release_lists_the_one_package_it_added() {
    // The operator's provenance key, made as the README says.
    let keys = tempfile::tempdir().unwrap();
    let private = keys.path().join("provenance.pem");
    let public = keys.path().join("provenance.pub.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        private.to_str().unwrap(),
    ]);
    openssl(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    let story = Story::start_with_env(
        |files, port| {
            files.insert("recipes/sandbox-base/recipe.toml".into(), recipe(port, ""));
        },
        &[(
            "BAKERY_PROVENANCE__SIGNING_KEY_FILE",
            private.to_str().unwrap(),
        )],
    )
    .await;
    let first = story.push_tag("release-0.1.0", TagKind::Annotated);
    story
        .deliver("push", "first", &story.push_payload(&first))
        .await;
    let job = story.wait_for_only_job().await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    let notes = release_body(&story, "release-0.1.0");
    assert!(notes.contains("## Packages"), "{notes}");
    assert!(
        regex::Regex::new(r"First release: \d+ packages")
            .unwrap()
            .is_match(&notes),
        "{notes}"
    );

    story.commit(
        &[(
            "recipes/sandbox-base/recipe.toml",
            &recipe(story.sandbox.port, INSTALL_ONE_PACKAGE),
        )],
        "feat: install the probe package",
    );
    let second = story.push_tag("release-0.2.0", TagKind::Annotated);
    story
        .deliver("push", "second", &story.push_payload(&second))
        .await;
    let jobs = story.jobs().await;
    let job = story
        .wait_for_job(jobs.iter().map(|j| j.id).max().unwrap())
        .await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);

    let notes = release_body(&story, "release-0.2.0");
    assert!(
        notes.contains("0 upgraded, 1 added, 0 removed since `release-0.1.0`"),
        "{notes}"
    );
    assert!(
        notes.contains("**Added**\n\n- `bakery-probe` `1.0-1`\n"),
        "{notes}"
    );
    assert!(!notes.contains("**Upgraded**") && !notes.contains("**Removed**"));
    let repo = story.github.repo(REPO);
    let comment = repo
        .commit_comments
        .iter()
        .find(|c| c["commit_id"] == second.commit.as_str())
        .map(|c| c["body"].as_str().unwrap().to_string())
        .expect("a comment on the second release's commit");
    assert!(
        comment.contains("**Packages:** 0 upgraded, 1 added, 0 removed since `release-0.1.0`"),
        "{comment}"
    );
    // Each release carries its SBOM, uploaded through the release-asset endpoint: valid
    // CycloneDX 1.5, and the second one holds the new package.
    let sbom_of = |name: &str| -> serde_json::Value {
        let found: Vec<_> = repo
            .release_assets
            .values()
            .filter(|(_, a, _)| a["name"] == name)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one asset {name}: {:#?}",
            repo.release_assets
        );
        let (release_id, asset, bytes) = found[0];
        assert_eq!(asset["content_type"], "application/vnd.cyclonedx+json");
        assert!(repo.releases[release_id]["assets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == name));
        serde_json::from_slice(bytes).unwrap()
    };
    let first_sbom = sbom_of("sandbox-base-release-0.1.0.cdx.json");
    let second_sbom = sbom_of("sandbox-base-release-0.2.0.cdx.json");
    crate::inventory::validate_cyclonedx(&second_sbom).unwrap_or_else(|e| panic!("{e}"));
    let purls = |doc: &serde_json::Value| -> Vec<String> {
        doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["purl"].as_str().map(str::to_string))
            .collect()
    };
    let added: Vec<String> = purls(&second_sbom)
        .into_iter()
        .filter(|p| !purls(&first_sbom).contains(p))
        .collect();
    assert_eq!(
        added,
        vec!["pkg:deb/debian/bakery-probe@1.0-1?arch=all&distro=debian-12".to_string()]
    );
    assert_eq!(repo.release_assets.len(), 4, "{:#?}", repo.release_assets);

    // Each release's signed provenance: an asset, its digest tagged on every image.
    let asset = |name: &str| -> Vec<u8> {
        repo.release_assets
            .values()
            .find(|(_, a, _)| a["name"] == name)
            .map(|(_, _, bytes)| bytes.clone())
            .unwrap_or_else(|| panic!("no asset {name}: {:#?}", repo.release_assets))
    };
    let key = bakery::provenance::PublicKey::from_pem(&std::fs::read_to_string(&public).unwrap())
        .unwrap();
    let envelope = asset("sandbox-base-release-0.2.0.intoto.jsonl");
    let opened = bakery::provenance::verify::open(&envelope, &key).unwrap();
    opened.expect_release("sandbox-base@release-0.2.0").unwrap();
    // The statement the bot signed is an in-toto Statement v1 with SLSA Provenance v1.
    let payload = bakery::provenance::dsse::Envelope::from_json(&envelope)
        .unwrap()
        .open(&key)
        .unwrap();
    crate::provenance::validate(&serde_json::from_slice(&payload).unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(opened.statement.git_commit(), Some(second.commit.as_str()));
    let images = opened.statement.images();
    assert_eq!(images.len(), story_targets().len(), "{images:?}");
    for image in &images {
        let ec2 = story
            .check
            .ec2(&target(&image.account, &image.region))
            .unwrap();
        let described = ec2
            .describe_images()
            .image_ids(&image.image_id)
            .send()
            .await
            .unwrap();
        let tags = bakery::aws::tags::to_map(described.images()[0].tags());
        assert_eq!(opened.check_tags(&tags), vec![], "{image:?}: {tags:?}");
    }
    opened
        .check_sbom(&asset("sandbox-base-release-0.2.0.cdx.json"))
        .unwrap();
    // The private key is nowhere: not in the envelope, the job logs, the server's log, the
    // release notes or the comments.
    let secret_line = std::fs::read_to_string(&private)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let mut seen = vec![
        String::from_utf8(envelope.clone()).unwrap(),
        story.bakery.log_text(),
    ];
    for j in story.jobs().await {
        seen.push(story.job_log(j.id).await);
    }
    seen.extend(repo.releases.values().map(|r| r.to_string()));
    seen.extend(repo.commit_comments.iter().map(|c| c.to_string()));
    for text in &seen {
        assert!(!text.contains(&secret_line) && !text.contains("PRIVATE KEY"));
    }
    assert!(seen
        .iter()
        .any(|t| t.contains("provenance signed with key")));

    // `bakery verify`, as a consumer runs it before launching an image: it passes on
    // the released image, and fails on a swapped SBOM, a wrong key and an altered tag.
    let files = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| -> String {
        let p = files.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let provenance = file("p.intoto.jsonl", &envelope);
    let sbom = file("s.cdx.json", &asset("sandbox-base-release-0.2.0.cdx.json"));
    let other_sbom = file("s1.cdx.json", &asset("sandbox-base-release-0.1.0.cdx.json"));
    let wrong_key = file(
        "wrong.pub.pem",
        bakery::provenance::ProvenanceKey::from_seed(&[9; 32])
            .public()
            .to_pem()
            .as_bytes(),
    );
    let public = public.display().to_string();
    let home_image = images.iter().find(|i| i.account == HOME).unwrap();
    let verify = |args: Vec<String>| {
        let aws = story.aws_env();
        async move {
            let out = tokio::process::Command::new(crate::support::bakery_process::bakery_bin())
                .arg("verify")
                .args(&args)
                .envs(aws)
                .output()
                .await
                .unwrap();
            (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        }
    };
    let args = |what: &str, key: &str, sbom: &str| -> Vec<String> {
        [
            "--key",
            key,
            "--provenance",
            &provenance,
            "--sbom",
            sbom,
            what,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let (ok, out) = verify(args("sandbox-base@release-0.2.0", &public, &sbom)).await;
    assert!(ok, "{out}");
    assert_eq!(out.matches("ok     tags:").count(), REGIONS.len(), "{out}");
    assert!(out.contains("\nverified\n"), "{out}");
    let (ok, out) = verify(args(&home_image.image_id, &public, &sbom)).await;
    assert!(ok, "{out}");

    let (ok, out) = verify(args(&home_image.image_id, &public, &other_sbom)).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAILED sbom: the SBOM does not match the provenance"),
        "{out}"
    );
    let (ok, out) = verify(args(&home_image.image_id, &wrong_key, &sbom)).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAILED signature: no signature in the envelope verifies"),
        "{out}"
    );
    let (ok, out) = verify(args("sandbox-base@release-0.1.0", &public, &sbom)).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("is for sandbox-base@release-0.2.0, not sandbox-base@release-0.1.0"),
        "{out}"
    );

    story
        .check
        .ec2(&target(&home_image.account, &home_image.region))
        .unwrap()
        .create_tags()
        .resources(&home_image.image_id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("bakery:git-sha")
                .value(first.commit.as_str())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (ok, out) = verify(args(&home_image.image_id, &public, &sbom)).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "FAILED tags: {} in {HOME}/{}: tag bakery:git-sha is \"{}\", the provenance says \"{}\"",
            home_image.image_id, home_image.region, first.commit, second.commit
        )),
        "{out}"
    );

    let section = &notes[notes.find("## Packages").unwrap()..];
    let section = &section[..section.find("## Images").unwrap_or(section.len())];
    insta::with_settings!({ filters => filters() }, {
        insta::assert_snapshot!("second_release_packages", section);
    });
    story.assert_no_github_violations();
}
