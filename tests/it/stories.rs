//! End-to-end stories: what a platform engineer does, and what bakery leaves behind.
//! Each story runs the real `bakery serve` against moto, a sandboxed sshd as the builder,
//! a fake GitHub that follows GitHub's REST description, and a real git repository.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::story::*;

fn snapshot_filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"ami-[0-9a-f]{8,17}", "ami-[id]"),
        (r"snap-[0-9a-f]{8,17}", "snap-[id]"),
        (r"\b[0-9a-f]{40}\b", "[sha]"),
        (r"\b[0-9a-f]{7}\b", "[short-sha]"),
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[uuid]",
        ),
        (
            r"arn:aws:kms:[a-z0-9-]+:[0-9]{12}:key/\[uuid\]",
            "[kms-key-arn]",
        ),
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[time]"),
        (r"\b\d+(\.\d+)?\s?(ms|s|m|h)\b( \d+s)?", "[duration]"),
        (r"token=[0-9a-f]{64}", "token=[token]"),
        (r"/jobs/\d+", "/jobs/[id]"),
    ]
}

fn check_run(story: &Story, name: &str) -> crate::support::fake_github::CheckRun {
    let repo = story.github.repo(REPO);
    let runs: Vec<_> = repo
        .check_runs
        .values()
        .filter(|r| r.current["name"] == name)
        .cloned()
        .collect();
    assert_eq!(runs.len(), 1, "one check run {name}: {runs:#?}");
    runs.into_iter().next().unwrap()
}

fn statuses_in_order(history: &[String]) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for s in history {
        if out.last() != Some(s) {
            out.push(s.clone());
        }
    }
    out
}

/// `git tag release-0.1.0 && git push origin release-0.1.0`, and minutes later the tagged
/// commit carries the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_story() {
    let story = Story::start().await;
    story.tag_and_push("release-0.0.1");
    story.commit(
        &[(
            "recipes/sandbox-base/files/motd",
            "Built by bakery. Welcome.\n",
        )],
        "feat: greet people at login",
    );
    story.commit(
        &[("docs/notes.md", "How we build images.\n")],
        "docs: explain the images",
    );
    let sha = story.tag_and_push("release-0.1.0");

    let (status, body) = story
        .deliver(
            "push",
            "release-delivery-1",
            &story.tag_push_payload("release-0.1.0", &sha),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let job = story.wait_for_only_job().await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);

    // The build's page on the bot, where the check run's details link points: the link
    // opens it, the bare job path does not.
    let run = check_run(&story, "bakery/sandbox-base");
    let link = run.current["details_url"].as_str().unwrap().to_string();
    let path = link
        .strip_prefix("https://bakery.example.com")
        .unwrap_or_else(|| panic!("details_url on the public URL: {link}"));
    let get = |path: String| async move {
        crate::support::bakery_process::http(story.bakery.addr, "GET", &path, &[], b"")
            .await
            .unwrap()
    };
    let (status, page) = get(path.to_string()).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("state: succeeded"), "{page}");
    assert!(
        page.contains("[provision]") || page.contains("Say hello"),
        "{page}"
    );
    let (status, _) = get(format!("/jobs/{}", job.id)).await;
    assert_eq!(status, 404, "no token, no page");

    // The check run went queued → in_progress → completed, and succeeded.
    assert_eq!(
        statuses_in_order(&run.status_history),
        vec!["queued", "in_progress", "completed"]
    );
    assert_eq!(run.current["conclusion"], "success");
    assert_eq!(run.current["head_sha"], sha.as_str());
    assert!(
        run.summaries.iter().any(|s| s.contains("provision")),
        "the live summary shows the steps: {:?}",
        run.summaries
    );

    // moto holds an encrypted copy in every account and region, tagged.
    let mut finals = BTreeSet::new();
    for t in story_targets() {
        let images = story.images_named(&t, "sandbox-base-release-0.1.0").await;
        assert_eq!(images.len(), 1, "one image in {t}: {images:#?}");
        let image = &images[0];
        finals.insert(image.image_id().unwrap().to_string());
        let tags: std::collections::BTreeMap<_, _> = image
            .tags()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap()))
            .collect();
        assert_eq!(tags["ImageVersion"], "release-0.1.0");
        assert_eq!(tags["bakery:recipe"], "sandbox-base");
        assert_eq!(tags["bakery:git-sha"], sha.as_str());
        assert_eq!(tags["Team"], "platform");
        assert!(tags.contains_key("bakery:build-id"));
    }
    // moto ignores CopyImage's encryption: the requests show what bakery asked for.
    let copies = story.proxy.calls("CopyImage");
    assert_eq!(copies.len(), story_targets().len(), "one copy per target");
    for c in &copies {
        assert_eq!(c.param("Encrypted"), Some("true"), "{c:?}");
        assert!(
            c.param("KmsKeyId")
                .is_some_and(|k| k.starts_with("arn:aws:kms:")),
            "{c:?}"
        );
    }
    // Nothing else is left: no builder, key pair, security group, intermediate image.
    for t in story_targets() {
        let left = story.leftovers(&t, &finals).await;
        assert!(left.is_empty(), "leftovers: {left:#?}");
    }

    // The builder carried the version: the sandbox's /etc/release.
    let release = story.sandbox.read("/etc/release").unwrap();
    assert_eq!(release.lines().next(), Some("release-0.1.0"));
    assert!(release.contains(&format!("GIT_SHA={sha}")), "{release}");
    assert!(release.contains("RECIPE=sandbox-base"), "{release}");
    // Sealed: no host keys, an empty machine-id.
    assert!(!story.sandbox.exists("/etc/ssh/ssh_host_ed25519_key"));
    assert_eq!(
        story.sandbox.read("/etc/machine-id").unwrap_or_default(),
        ""
    );

    // The commit comment lists every image; the release notes the changes since 0.0.1.
    let repo = story.github.repo(REPO);
    assert_eq!(repo.commit_comments.len(), 1, "{:#?}", repo.commit_comments);
    let comment = repo.commit_comments[0]["body"]
        .as_str()
        .unwrap()
        .to_string();
    for t in story_targets() {
        assert!(
            comment.contains(&t.region) && comment.contains(&t.account),
            "{comment}"
        );
    }
    assert_eq!(repo.releases.len(), 1);
    let release = repo.releases.values().next().unwrap().clone();
    assert_eq!(release["tag_name"], "release-0.1.0");
    let notes = release["body"].as_str().unwrap().to_string();
    assert!(notes.contains("greet people at login"), "{notes}");
    assert!(notes.contains("explain the images"), "{notes}");
    assert!(
        !notes.contains("Add the image recipes"),
        "only changes since release-0.0.1: {notes}"
    );
    insta::with_settings!({ filters => snapshot_filters() }, {
        insta::assert_snapshot!("release_story_commit_comment", comment);
        insta::assert_snapshot!("release_story_release_notes", notes);
    });
    story.assert_no_github_violations();
}

/// GitHub redelivers a push (and sends `create` too): one build.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_push_builds_once() {
    let story = Story::start().await;
    let sha = story.tag_and_push("release-1.0.0");
    let payload = story.tag_push_payload("release-1.0.0", &sha);
    for _ in 0..3 {
        let (status, _) = story.deliver("push", "same-delivery", &payload).await;
        assert!(status == 202 || status == 200);
    }
    let mut create = crate::support::examples::example("create", |e| e["ref_type"] == "tag");
    create["ref"] = serde_json::json!("release-1.0.0");
    story.point_at_repo(&mut create);
    let (status, body) = story.deliver("create", "create-delivery", &create).await;
    assert_eq!(status, 202, "{body}");
    let job = story.wait_for_only_job().await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    assert_eq!(job.delivery_ids.len(), 2, "{:?}", job.delivery_ids);
    assert_eq!(
        story.proxy.calls("RunInstances").len(),
        1,
        "one builder launched"
    );
    assert_eq!(story.github.repo(REPO).releases.len(), 1);
}

/// A provisioning step fails: the commit gets the failing step and its log tail, and
/// nothing is left in any account or region.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_provision_step_reports_and_leaves_nothing() {
    let story = Story::start_with(|files, port| {
        let failing = "\n[[provision]]\ntype = \"shell\"\nname = \"Install the agent\"\n\
                       inline = [\"echo fetching the agent\", \"echo 'agent: download failed' >&2\", \"exit 3\"]\n";
        files.insert("recipes/sandbox-base/recipe.toml".into(), sandbox_recipe(port, failing));
    })
    .await;
    let sha = story.tag_and_push("release-2.0.0");
    story
        .deliver(
            "push",
            "failing-1",
            &story.tag_push_payload("release-2.0.0", &sha),
        )
        .await;
    let job = story.wait_for_only_job().await;
    assert_eq!(job.state, bakery::database::JobState::Failed);
    let error = job.error.clone().unwrap();
    assert!(error.contains("Install the agent"), "{error}");

    let run = check_run(&story, "bakery/sandbox-base");
    assert_eq!(run.current["conclusion"], "failure");
    let repo = story.github.repo(REPO);
    assert_eq!(repo.commit_comments.len(), 1);
    let comment = repo.commit_comments[0]["body"].as_str().unwrap();
    assert!(comment.contains("Install the agent"), "{comment}");
    assert!(
        comment.contains("agent: download failed"),
        "the log tail: {comment}"
    );
    assert!(repo.releases.is_empty());
    for t in story_targets() {
        let left = story.leftovers(&t, &BTreeSet::new()).await;
        assert!(left.is_empty(), "leftovers after a failure: {left:#?}");
    }
    story.assert_no_github_violations();
}

/// The delivery of a tag was lost: `bakery sync` finds the tag and the build runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_picks_up_a_tag_whose_delivery_was_lost() {
    let story = Story::start().await;
    let sha = story.tag_and_push("release-3.0.0");
    // No delivery. The operator (or the server's periodic sync) runs `bakery sync`.
    let out = std::process::Command::new(crate::support::bakery_process::bakery_bin())
        .args(["sync", "--repo", REPO, "--format", "json"])
        .env("BAKERY_DATABASE_URL", story.bakery_database_url())
        .env("BAKERY_GITHUB__API_URL", story.github.api_url())
        .env("BAKERY_GITHUB__APP_ID", APP_ID.to_string())
        .env("BAKERY_GITHUB__PRIVATE_KEY_FILE", story.app_key_file())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.to_string().contains("release-3.0.0"), "{report}");
    let job = story.wait_for_only_job().await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    assert_eq!(job.sha, sha);
    assert_eq!(story.github.repo(REPO).releases.len(), 1);
}

/// The same engine from the command line: `bakery build` in a checkout, like
/// `packer build`, against moto and the sandboxed builder.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bakery_build_on_the_command_line() {
    let story = Story::start().await;
    let manifest = story.work.join("manifest.json");
    let out = tokio::process::Command::new(crate::support::bakery_process::bakery_bin())
        .args([
            "build",
            "sandbox-base",
            "--version",
            "cli-1.0.0",
            "--manifest",
        ])
        .arg(&manifest)
        .current_dir(&story.work)
        .envs(story.aws_env())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bakery build failed:\n{stderr}");
    assert!(
        stderr.contains("provision"),
        "plain log lines off a terminal:\n{stderr}"
    );

    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let build = &manifest["builds"][0];
    assert_eq!(build["builder_type"], "bakery");
    assert_eq!(build["custom_data"]["version"], "cli-1.0.0");
    let copies = build["copies"].as_array().unwrap();
    assert_eq!(copies.len(), story_targets().len());
    let mut finals = BTreeSet::new();
    for c in copies {
        assert_eq!(c["encrypted"], true);
        assert!(c["kms_key_id"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:kms:"));
        finals.insert(c["ami"].as_str().unwrap().to_string());
    }
    let artifact_id = build["artifact_id"].as_str().unwrap();
    assert_eq!(
        artifact_id.split(',').count(),
        story_targets().len(),
        "{artifact_id}"
    );
    for t in story_targets() {
        let left = story.leftovers(&t, &finals).await;
        assert!(left.is_empty(), "leftovers: {left:#?}");
    }
    let release = story.sandbox.read("/etc/release").unwrap();
    assert_eq!(release.lines().next(), Some("cli-1.0.0"));
}

/// A version is built once: the same tag again reports the existing images, and a tag
/// moved to another commit is refused. Both get a comment that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_released_version_is_immutable() {
    let story = Story::start().await;
    let sha = story.tag_and_push("release-4.0.0");
    story
        .deliver(
            "push",
            "first",
            &story.tag_push_payload("release-4.0.0", &sha),
        )
        .await;
    let first = story.wait_for_only_job().await;
    let log = story.job_log(first.id).await;
    story.assert_succeeded(&first, &log);
    let launched = story.proxy.calls("RunInstances").len();

    // The same push again, as a new delivery (a re-run from GitHub's UI): no build.
    let (status, body) = story
        .deliver(
            "push",
            "again",
            &story.tag_push_payload("release-4.0.0", &sha),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(
        body.contains("already covers"),
        "the same (repo, tag, SHA) is one job: {body}"
    );

    // The tag is moved to a new commit and pushed again.
    story.commit(
        &[("docs/moved.md", "moved\n")],
        "chore: something after the release",
    );
    crate::support::git::git(&story.work, &["tag", "-f", "release-4.0.0"]);
    crate::support::git::git(
        &story.work,
        &["push", "-q", "-f", "origin", "release-4.0.0"],
    );
    let moved_sha = story.head();
    let (status, _) = story
        .deliver(
            "push",
            "moved",
            &story.tag_push_payload("release-4.0.0", &moved_sha),
        )
        .await;
    assert_eq!(status, 202);
    let jobs = story.jobs().await;
    assert_eq!(
        jobs.len(),
        2,
        "a moved tag is a new (repo, tag, SHA): {jobs:?}"
    );
    let moved = story.wait_for_job(jobs[1].id).await;
    assert_eq!(moved.state, bakery::database::JobState::Failed);
    assert!(
        moved.error.as_deref().unwrap_or("").contains("immutable"),
        "{:?}",
        moved.error
    );
    assert_eq!(
        story.proxy.calls("RunInstances").len(),
        launched,
        "nothing launched"
    );

    let repo = story.github.repo(REPO);
    let refusal: Vec<&str> = repo
        .commit_comments
        .iter()
        .filter(|c| c["commit_id"] == moved_sha.as_str())
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(refusal.len(), 1, "{:#?}", repo.commit_comments);
    assert!(
        refusal[0].contains(&sha[..7]),
        "names the commit it was built from: {}",
        refusal[0]
    );
    story.assert_no_github_violations();
}
