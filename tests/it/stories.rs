//! End-to-end stories: what a platform engineer does, and what bakery leaves behind.
//! Each story runs the real `bakery serve` against moto, a sandboxed sshd as the builder,
//! a fake GitHub that follows GitHub's REST description, and a real git repository.

use std::collections::{BTreeMap, BTreeSet};

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
        // The sandbox rootfs's package count.
        (r"\b\d+ packages\b", "[n] packages"),
        (r"\(\d+ in all", "([n] in all"),
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

/// `git tag -a release-0.1.0 -m … && git push origin release-0.1.0`, as most teams
/// release, and minutes later the tagged commit carries the result. GitHub's `push` names
/// the tag object in `after` and the commit in `head_commit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_story_with_an_annotated_tag() {
    release_story(TagKind::Annotated).await;
}

/// The same release with a lightweight tag (`git tag release-0.1.0`): the same images,
/// the same check run on the commit, the same comment and the same release.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_story_with_a_lightweight_tag() {
    release_story(TagKind::Lightweight).await;
}

async fn release_story(kind: TagKind) {
    let story = Story::start().await;
    story.push_tag("release-0.0.1", kind);
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
    let pushed = story.push_tag("release-0.1.0", kind);
    assert_eq!(pushed.is_annotated(), kind == TagKind::Annotated);
    let sha = pushed.commit.clone();

    let payload = story.push_payload(&pushed);
    assert_eq!(payload["after"], pushed.after.as_str());
    assert_eq!(payload["head_commit"]["id"], sha.as_str());
    let (status, body) = story.deliver("push", "release-delivery-1", &payload).await;
    assert_eq!(status, 202, "{body}");
    let job = story.wait_for_only_job().await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    assert_eq!(
        job.sha, sha,
        "the job builds the commit, not the tag object"
    );
    if kind == TagKind::Annotated {
        assert!(
            log.contains(&format!("tag object {}", pushed.after)),
            "the job records the tag object: {log}"
        );
    }

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
        assert_eq!(tags["bakery:repo"], REPO);
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
    assert_eq!(repo.commit_comments[0]["commit_id"], sha.as_str());
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
    let pushed = story.push_tag("release-1.0.0", TagKind::Annotated);
    let payload = story.push_payload(&pushed);
    for _ in 0..3 {
        let (status, _) = story.deliver("push", "same-delivery", &payload).await;
        assert!(status == 202 || status == 200);
    }
    let create = story.create_payload("release-1.0.0");
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
    let pushed = story.push_tag("release-2.0.0", TagKind::Annotated);
    let sha = pushed.commit.clone();
    story
        .deliver("push", "failing-1", &story.push_payload(&pushed))
        .await;
    let job = story.wait_for_only_job().await;
    assert_eq!(job.state, bakery::database::JobState::Failed);
    let error = job.error.clone().unwrap();
    assert!(error.contains("Install the agent"), "{error}");

    let run = check_run(&story, "bakery/sandbox-base");
    assert_eq!(run.current["conclusion"], "failure");
    assert_eq!(run.current["head_sha"], sha.as_str());
    let repo = story.github.repo(REPO);
    assert_eq!(repo.commit_comments.len(), 1);
    assert_eq!(repo.commit_comments[0]["commit_id"], sha.as_str());
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
    let sync = || {
        std::process::Command::new(crate::support::bakery_process::bakery_bin())
            .args(["sync", "--repo", REPO, "--format", "json"])
            .env("BAKERY_DATABASE_URL", story.bakery_database_url())
            .env("BAKERY_GITHUB__API_URL", story.github.api_url())
            .env("BAKERY_GITHUB__APP_ID", APP_ID.to_string())
            .env("BAKERY_GITHUB__PRIVATE_KEY_FILE", story.app_key_file())
            .output()
            .unwrap()
    };
    // The repository is known (its first sync records its history) before the tag.
    assert!(sync().status.success());
    let sha = story.push_tag("release-3.0.0", TagKind::Annotated).commit;
    // No delivery. The operator (or the server's periodic sync) runs `bakery sync`.
    let out = sync();
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
/// `packer build`, against moto and the sandboxed builder. The operator's configuration
/// file gives what the recipe may not: the other account's role and the external ID its
/// trust policy requires (the IAM oracle judges the AssumeRole), `connect`, and an
/// endpoint of their own for EC2 and KMS in eu-west-1 (a VPC endpoint's stand-in).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bakery_build_on_the_command_line() {
    let story = Story::start().await;
    let eu_endpoint = crate::support::aws_proxy::AwsProxy::start(story.moto.port).await;
    let config = story.work.join("..").join("operator.toml");
    std::fs::write(
        &config,
        format!(
            "[policy.default]\nallow_connect = true\n\n\
             [policy.default.accounts.\"{OTHER}\"]\nrole_arn = \"{}\"\nexternal_id = \"{}\"\n\n\
             [aws.endpoints]\nec2 = {{ \"eu-west-1\" = \"{eu}\" }}\nkms = {{ \"eu-west-1\" = \"{eu}\" }}\n",
            other_account().role_arn,
            crate::support::iam_oracle::TARGET_EXTERNAL_ID,
            eu = eu_endpoint.endpoint,
        ),
    )
    .unwrap();
    let manifest = story.work.join("manifest.json");
    let out = tokio::process::Command::new(crate::support::bakery_process::bakery_bin())
        .args([
            "build",
            "sandbox-base",
            "--version",
            "cli-1.0.0",
            "--repository",
            REPO,
            "--manifest",
        ])
        .arg(&manifest)
        .arg("--config")
        .arg(&config)
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
    // The other account was reached with the operator's external ID.
    let assumed = story.proxy.calls("AssumeRole");
    assert!(!assumed.is_empty());
    for call in &assumed {
        assert_eq!(
            call.param("ExternalId"),
            Some(crate::support::iam_oracle::TARGET_EXTERNAL_ID),
            "{call:?}"
        );
    }
    // EC2 and KMS in eu-west-1 went to their own endpoint, and only there.
    let eu = |r: &crate::support::aws_proxy::Recorded| {
        r.region == "eu-west-1" && (r.service == "ec2" || r.service == "kms")
    };
    let at_own = eu_endpoint.requests();
    assert!(
        at_own.iter().any(|r| r.action == "CopyImage"),
        "no copy into eu-west-1 at its endpoint: {:?}",
        at_own.iter().map(|r| &r.action).collect::<Vec<_>>()
    );
    assert!(at_own.iter().all(eu), "{at_own:?}");
    assert!(
        !story.proxy.requests().iter().any(eu),
        "EC2 or KMS in eu-west-1 went to the fallback endpoint"
    );
    // `--repository` makes the images this repository's, as the bot's are.
    for t in story_targets() {
        let images = story.images_named(&t, "sandbox-base-cli-1.0.0").await;
        assert_eq!(images.len(), 1, "{t}");
        assert_eq!(
            tags_of(&images[0]).get("bakery:repo").map(String::as_str),
            Some(REPO),
            "{t}"
        );
    }
}

/// The operator shortens a wait budget (`aws.budgets.instance_running`): the server's
/// builds wait that long and no longer. Here EC2 keeps the builder `pending` (the proxy
/// answers so), so the build gives up after 2 s instead of the default 15 minutes, says
/// which wait ran out of which budget, and cleans up what it made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_waits_only_as_long_as_the_configured_budget() {
    let story = Story::start_with_env(
        |_, _| {},
        &[("BAKERY_AWS__BUDGETS__INSTANCE_RUNNING", "2s")],
    )
    .await;
    story.proxy.rewrite(
        "DescribeInstances",
        usize::MAX,
        |_| true,
        |body| *body = body.replace("<name>running</name>", "<name>pending</name>"),
    );
    let pushed = story.push_tag("release-6.1.0", TagKind::Annotated);
    let started = std::time::Instant::now();
    let (status, body) = story
        .deliver("push", "slow-builder", &story.push_payload(&pushed))
        .await;
    assert_eq!(status, 202, "{body}");
    let job = story.wait_for_only_job().await;
    assert_eq!(job.state, bakery::database::JobState::Failed);
    let error = job.error.clone().unwrap_or_default();
    assert!(
        error.contains("to run did not happen within 2s"),
        "the configured budget, not the default: {error}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(story.proxy.calls("RunInstances").len(), 1);
    assert!(
        !story.proxy.calls("TerminateInstances").is_empty(),
        "the builder is cleaned up"
    );
}

fn tags_of(image: &aws_sdk_ec2::types::Image) -> BTreeMap<String, String> {
    bakery::aws::tags::to_map(image.tags())
}

/// A version is built once: the same tag again reports the existing images, a tag object
/// re-created on the same commit is the same release, and a tag moved to another commit
/// is refused on that commit, with a comment that says why and a failed check.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_released_version_is_immutable() {
    let story = Story::start().await;
    let pushed = story.push_tag("release-4.0.0", TagKind::Annotated);
    let sha = pushed.commit.clone();
    story
        .deliver("push", "first", &story.push_payload(&pushed))
        .await;
    let first = story.wait_for_only_job().await;
    let log = story.job_log(first.id).await;
    story.assert_succeeded(&first, &log);
    let launched = story.proxy.calls("RunInstances").len();

    // The same push again, as a new delivery (a re-run from GitHub's UI): no build.
    let (status, body) = story
        .deliver("push", "again", &story.push_payload(&pushed))
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(
        body.contains("already covers"),
        "the same (repo, tag, commit) is one job: {body}"
    );

    // The annotated tag is re-created on the same commit (a new message, a signature):
    // a new tag object, the same commit. Not a move.
    let recreated = story.force_tag("release-4.0.0", TagKind::Annotated);
    assert_eq!(recreated.commit, sha);
    assert_ne!(recreated.after, pushed.after, "a new tag object");
    let (status, body) = story
        .deliver("push", "recreated", &story.push_payload(&recreated))
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("already covers"), "{body}");
    assert_eq!(story.jobs().await.len(), 1);

    // The tag is moved to a new commit and pushed again.
    story.commit(
        &[("docs/moved.md", "moved\n")],
        "chore: something after the release",
    );
    let moved = story.force_tag("release-4.0.0", TagKind::Annotated);
    let moved_sha = moved.commit.clone();
    assert_ne!(moved_sha, sha);
    let (status, _) = story
        .deliver("push", "moved", &story.push_payload(&moved))
        .await;
    assert_eq!(status, 202);
    let jobs = story.jobs().await;
    assert_eq!(
        jobs.len(),
        2,
        "a moved tag is a new (repo, tag, commit): {jobs:?}"
    );
    let refused = story.wait_for_job(jobs[1].id).await;
    assert_eq!(refused.state, bakery::database::JobState::Failed);
    assert_eq!(refused.sha, moved_sha);
    assert!(
        refused.error.as_deref().unwrap_or("").contains("immutable"),
        "{:?}",
        refused.error
    );
    assert_eq!(
        story.proxy.calls("RunInstances").len(),
        launched,
        "nothing launched"
    );

    // The refusal is on the new commit: a comment naming the released commit, and a
    // failed check run.
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
    let failed: Vec<_> = repo
        .check_runs
        .values()
        .filter(|r| r.current["head_sha"] == moved_sha.as_str())
        .collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].current["conclusion"], "failure");
    story.assert_no_github_violations();
}

/// The repository cannot be read when the job runs (the App lost access, GitHub is
/// down): the tagged commit shows a failed `bakery/release` check with the reason, not
/// nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkout_that_fails_shows_a_failed_check_with_the_reason() {
    let story = Story::start().await;
    let pushed = story.push_tag("release-5.0.0", TagKind::Annotated);
    story.github.set_git_unreachable(REPO, true);
    let (status, body) = story
        .deliver("push", "unreachable", &story.push_payload(&pushed))
        .await;
    assert_eq!(status, 202, "{body}");
    let job = story.wait_for_only_job().await;
    assert_eq!(job.state, bakery::database::JobState::Failed);

    let run = check_run(&story, "bakery/release");
    assert_eq!(run.current["head_sha"], pushed.commit.as_str());
    assert_eq!(run.current["conclusion"], "failure");
    let summary = run.current["output"]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(
        summary.contains("cannot fetch acme/images"),
        "the reason is on the check run: {summary}"
    );
    assert!(
        run.current["output"]["title"]
            .as_str()
            .is_some_and(|t| t.contains("release-5.0.0 was not built")),
        "{:?}",
        run.current["output"]
    );
    assert_eq!(story.proxy.calls("RunInstances").len(), 0);
    story.assert_no_github_violations();
}

/// Only the tag's `create` arrives (its `push` was lost): the worker peels the tag in its
/// mirror, records the commit on the job, and reports there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tag_known_only_from_its_create_event_builds_its_commit() {
    let story = Story::start().await;
    let pushed = story.push_tag("release-6.0.0", TagKind::Annotated);
    let (status, body) = story
        .deliver(
            "create",
            "create-only",
            &story.create_payload("release-6.0.0"),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let job = story.wait_for_only_job().await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    assert_eq!(job.sha, pushed.commit, "the commit is recorded on the job");
    assert_eq!(
        job.dedup_key,
        format!("release:{REPO}:release-6.0.0:{}", pushed.commit),
        "a late push of the tag merges with this job"
    );
    let run = check_run(&story, "bakery/sandbox-base");
    assert_eq!(run.current["head_sha"], pushed.commit.as_str());
    assert_eq!(run.current["conclusion"], "success");

    // The push arrives late: it is the same job.
    let (status, body) = story
        .deliver("push", "late-push", &story.push_payload(&pushed))
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("already covers"), "{body}");
    assert_eq!(story.jobs().await.len(), 1);
    story.assert_no_github_violations();
}

/// Someone who holds the webhook secret forges a push whose `repository.clone_url` is
/// their own server, to collect the installation token on its password prompt. bakery
/// fetches from the clone URL GitHub's API reports: the forged server hears nothing, and
/// the real repository is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_clone_url_never_receives_the_token() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = heard.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 16 * 1024];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).to_string());
            let _ = sock
                .write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        }
    });

    let story = Story::start().await;
    let pushed = story.push_tag("release-7.0.0", TagKind::Annotated);
    let mut forged = story.push_payload(&pushed);
    forged["repository"]["clone_url"] =
        serde_json::json!(format!("http://127.0.0.1:{port}/acme/images.git"));
    let (status, body) = story.deliver("push", "forged", &forged).await;
    assert_eq!(status, 202, "{body}");
    let job = story.wait_for_only_job().await;
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);
    assert!(
        heard.lock().unwrap().is_empty(),
        "the forged clone URL was contacted: {:#?}",
        heard.lock().unwrap()
    );
    server.abort();
    story.assert_no_github_violations();
}

/// A recipe in the repository adds an AWS account the operator never allowed (the
/// attacker's own, with a role that trusts bakery). The release is refused before
/// anything is launched, and the failed check names the policy key; nothing is shared
/// with or copied to that account.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recipe_cannot_send_images_to_an_account_the_operator_did_not_allow() {
    const FOREIGN: &str = "333333333333";
    let story = Story::start_with(|files, port| {
        let recipe = sandbox_recipe(port, "").replace(
            "[[distribute.accounts]]",
            &format!(
                "[[distribute.accounts]]\naccount_id = \"{FOREIGN}\"\n\
                 role_arn = \"arn:aws:iam::{FOREIGN}:role/bakery-publisher\"\n\
                 regions = [\"us-east-1\"]\n\n[[distribute.accounts]]"
            ),
        );
        files.insert("recipes/sandbox-base/recipe.toml".into(), recipe);
    })
    .await;
    let pushed = story.push_tag("release-8.0.0", TagKind::Annotated);
    let (status, body) = story
        .deliver("push", "foreign", &story.push_payload(&pushed))
        .await;
    assert_eq!(status, 202, "{body}");
    let job = story.wait_for_only_job().await;
    assert_eq!(job.state, bakery::database::JobState::Failed);
    let error = job.error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!("account {FOREIGN} is not in policy.accounts")),
        "{error}"
    );
    assert!(
        story.proxy.calls("RunInstances").is_empty(),
        "nothing launched"
    );
    assert!(
        story.proxy.calls("ModifyImageAttribute").is_empty(),
        "nothing shared"
    );
    let run = check_run(&story, "bakery/sandbox-base");
    assert_eq!(run.current["conclusion"], "failure");
    assert_eq!(run.current["head_sha"], pushed.commit.as_str());
    story.assert_no_github_violations();
}

/// A recipe step that would run for hours holds a worker and a builder. The operator's
/// `policy.max_build_secs` stops the build: everything it made is cleaned up, and the
/// failed check says which limit stopped it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_past_the_operators_time_limit_is_stopped_and_cleaned_up() {
    let story = Story::start_with_env(
        |files, port| {
            let slow = "\n[[provision]]\ntype = \"shell\"\nname = \"Wait for ever\"\n\
                        inline = [\"sleep 600\"]\n";
            files.insert(
                "recipes/sandbox-base/recipe.toml".into(),
                sandbox_recipe(port, slow),
            );
        },
        &[("BAKERY_POLICY__DEFAULT__MAX_BUILD_SECS", "8")],
    )
    .await;
    let pushed = story.push_tag("release-9.0.0", TagKind::Annotated);
    story
        .deliver("push", "slow", &story.push_payload(&pushed))
        .await;
    let job = story.wait_for_only_job().await;
    assert_eq!(job.state, bakery::database::JobState::Failed);
    let error = job.error.clone().unwrap_or_default();
    assert!(error.contains("policy.max_build_secs (8 s)"), "{error}");
    let run = check_run(&story, "bakery/sandbox-base");
    assert_eq!(run.current["conclusion"], "failure");
    for t in story_targets() {
        let left = story.leftovers(&t, &BTreeSet::new()).await;
        assert!(left.is_empty(), "leftovers after the time limit: {left:#?}");
    }
    story.assert_no_github_violations();
}
