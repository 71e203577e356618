//! Stories about what changed inside an image: two releases of one recipe, where the
//! second installs one more package; its release notes list exactly that package, and
//! each release carries its image's SBOM as an asset.

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
    let story = Story::start_with(|files, port| {
        files.insert("recipes/sandbox-base/recipe.toml".into(), recipe(port, ""));
    })
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
    assert_eq!(repo.release_assets.len(), 2);

    let section = &notes[notes.find("## Packages").unwrap()..];
    let section = &section[..section.find("## Images").unwrap_or(section.len())];
    insta::with_settings!({ filters => filters() }, {
        insta::assert_snapshot!("second_release_packages", section);
    });
    story.assert_no_github_violations();
}
