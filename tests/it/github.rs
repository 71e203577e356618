//! The GitHub side against the fake GitHub: the fake itself, the client (token and App
//! authentication, retries), the reporting calls, checkout from the payload's clone URL,
//! and `bakery sync`.

use std::time::Duration;

use bakery::config::Secret;
use bakery::github::api::auth::Credentials;
use bakery::github::api::reporter::{Annotation, AnnotationLevel, Conclusion};
use bakery::github::git::checkout::{Checkouts, Target};
use bakery::github::render;
use bakery::github::{GitHubClient, GitHubReporter, RepoName};
use bakery::retry::RetryPolicy;
use serde_json::{json, Value};

use crate::support::fake_github::FakeGitHub;
use crate::support::git;

const REPO: &str = "acme/images";
const SHA: &str = "3f2a9c1d5e6b7a8c9d0e1f2a3b4c5d6e7f8a9b0c";
const PAT: &str = "ghp_faketoken0123456789";

/// Short waits, so retried calls do not slow the tests; a generous per-attempt timeout
/// for a loaded machine.
const FAST: RetryPolicy = RetryPolicy::new(
    "test-github",
    4,
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_secs(60),
);

async fn fake_with_token() -> FakeGitHub {
    let fake = FakeGitHub::start().await;
    fake.set_pat(PAT, "release-bot");
    fake.add_repo(REPO, "/nonexistent", None);
    fake
}

fn token_client(fake: &FakeGitHub) -> GitHubClient {
    GitHubClient::new(Some(fake.api_url()), Credentials::Token(Secret::new(PAT)))
        .unwrap()
        .with_policy(FAST)
}

/// A GitHub App private key in the format GitHub hands out (PKCS#1 PEM), made with the
/// real openssl CLI.
fn app_private_key() -> String {
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("openssl runs (scripts/github/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn app_client(fake: &FakeGitHub, app_id: u64, key: &str) -> GitHubClient {
    GitHubClient::new(
        Some(&format!("{}/", fake.api_url())),
        Credentials::App {
            app_id,
            private_key: Secret::new(key),
        },
    )
    .unwrap()
    .with_policy(FAST)
}

/// Raw JSON call through octocrab, for testing the fake itself.
async fn raw(fake: &FakeGitHub, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let crab = octocrab::Octocrab::builder()
        .base_uri(fake.api_url())
        .unwrap()
        .personal_token(PAT.to_string())
        .build()
        .unwrap();
    let uri = path.to_string();
    let response = match method {
        "GET" => crab._get(uri).await,
        "POST" => crab._post(uri, body.as_ref()).await,
        "PATCH" => crab._patch(uri, body.as_ref()).await,
        _ => unreachable!(),
    }
    .expect("the fake answers");
    let status = response.status().as_u16();
    let text = crab.body_to_string(response).await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn fake_validates_requests_against_the_rest_description() {
    let fake = fake_with_token().await;
    let path = format!("/repos/{REPO}/statuses/{SHA}");

    let (status, body) = raw(
        &fake,
        "POST",
        &path,
        Some(json!({"state": "success", "context": "bakery/base"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["state"], "success");
    assert_eq!(body["creator"]["login"], "release-bot");

    let (status, body) = raw(&fake, "POST", &path, Some(json!({"state": "done"}))).await;
    assert_eq!(status, 422, "an enum value GitHub does not know");
    assert!(
        body["message"].as_str().unwrap().contains("$.state"),
        "{body}"
    );

    let (status, _) = raw(&fake, "POST", &path, Some(json!({"context": "x"}))).await;
    assert_eq!(status, 422, "the required state is missing");

    let (status, _) = raw(
        &fake,
        "POST",
        &path,
        Some(json!({"state": "success", "description": 5})),
    )
    .await;
    assert_eq!(status, 422, "a number where a string belongs");

    let (status, _) = raw(
        &fake,
        "GET",
        &format!("/repos/{REPO}/no-such-endpoint"),
        None,
    )
    .await;
    assert_eq!(status, 404);

    let (status, _) = raw(&fake, "GET", "/repos/acme/unknown/tags", None).await;
    assert_eq!(
        status, 404,
        "repositories the fake does not have are not found"
    );

    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    let calls = fake.calls_of("repos/create-commit-status");
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[0].body["context"], "bakery/base");
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("POST", path.as_str())
    );
    assert_eq!(calls[1].status, 422);
}

#[test]
fn fake_matches_the_most_specific_path_template() {
    let spec = crate::support::fake_github::spec();
    let (op, params) = spec
        .find("GET", "/repos/acme/images/releases/tags/release%2F1.0")
        .unwrap();
    assert_eq!(op.template, "/repos/{owner}/{repo}/releases/tags/{tag}");
    assert_eq!(op.operation_id, "repos/get-release-by-tag");
    assert!(params.contains(&("tag".to_string(), "release/1.0".to_string())));
    let (op, _) = spec
        .find("GET", "/repos/acme/images/releases/latest")
        .unwrap();
    assert_eq!(op.operation_id, "repos/get-latest-release");
    assert!(spec.find("DELETE", "/user").is_none());
}

#[tokio::test]
async fn fake_rejects_more_than_50_annotations_like_github() {
    let fake = FakeGitHub::start().await;
    let key = app_private_key();
    fake.set_app(77, "bakery-bot");
    fake.add_repo(REPO, "/nonexistent", Some(5));
    let client = app_client(&fake, 77, &key);
    let session = client.session(Some(5)).await.unwrap();
    let annotation = json!({"path": "a", "start_line": 1, "end_line": 1, "annotation_level": "failure", "message": "m"});
    let body = json!({
        "name": "bakery/base",
        "head_sha": SHA,
        "output": {"title": "t", "summary": "s", "annotations": vec![annotation; 51]},
    });
    let response = session
        .octocrab()
        ._post(format!("/repos/{REPO}/check-runs"), Some(&body))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let text = session.octocrab().body_to_string(response).await.unwrap();
    assert!(text.contains("at most 50"), "{text}");
}

#[tokio::test]
async fn token_reporting_uses_statuses_comments_and_releases() {
    let fake = fake_with_token().await;
    let client = token_client(&fake);
    let reporter = GitHubReporter::new(&client, RepoName::parse(REPO).unwrap(), None)
        .await
        .unwrap();
    assert!(!reporter.uses_checks(), "a token has no checks API");
    assert_eq!(reporter.bot_login().await.unwrap(), "release-bot");

    // Progress as commit statuses: pending, pending, success.
    let progress = reporter
        .start_progress(
            "bakery/base",
            SHA,
            Some("https://bakery.example.com/builds/1"),
            None,
        )
        .await
        .unwrap();
    reporter
        .update_progress(&progress, "Provisioning", "| step |")
        .await
        .unwrap();
    reporter
        .complete_progress(
            &progress,
            Conclusion::Success,
            "Built 3 images",
            "summary",
            &[],
        )
        .await
        .unwrap();
    let statuses = fake.repo(REPO).statuses;
    let states: Vec<&str> = statuses
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["pending", "pending", "success"]);
    assert!(statuses.iter().all(|s| s["context"] == "bakery/base"
        && s["target_url"] == "https://bakery.example.com/builds/1"));

    // The commit comment.
    let summary = render::BuildSummary {
        version: "release-0.1.0".into(),
        git_sha: SHA.into(),
        recipes: vec![],
        images: vec![render::ImageRow {
            recipe: "base".into(),
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            ami: "ami-0123".into(),
            kms_key: Some("alias/ami".into()),
        }],
        duration: Duration::from_secs(60),
        details_url: None,
        disk_builds: vec![],
    };
    let url = reporter
        .comment_on_commit(SHA, &render::success_comment(&summary))
        .await
        .unwrap();
    assert!(url.contains("#commitcomment-"), "{url}");
    let comments = fake.repo(REPO).commit_comments;
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0]["commit_id"], SHA);
    assert!(comments[0]["body"].as_str().unwrap().contains("ami-0123"));

    // The release: created once, updated on a rerun.
    let first = reporter
        .upsert_release("release-0.1.0", SHA, "release-0.1.0", "notes v1")
        .await
        .unwrap();
    assert!(first.created);
    let second = reporter
        .upsert_release("release-0.1.0", SHA, "release-0.1.0", "notes v2")
        .await
        .unwrap();
    assert!(!second.created);
    assert_eq!(first.id, second.id);
    let releases = fake.repo(REPO).releases;
    assert_eq!(releases.len(), 1);
    let release = releases.values().next().unwrap();
    assert_eq!(release["body"], "notes v2");
    assert_eq!(release["tag_name"], "release-0.1.0");
    assert_eq!(release["target_commitish"], SHA);
    assert_eq!(fake.calls_of("repos/create-release").len(), 1);
    assert_eq!(fake.calls_of("repos/update-release").len(), 1);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn sticky_comment_is_edited_never_duplicated() {
    let fake = fake_with_token().await;
    let client = token_client(&fake);
    let reporter = GitHubReporter::new(&client, RepoName::parse(REPO).unwrap(), None)
        .await
        .unwrap();
    // Someone quotes the marker: bakery must not take over their comment.
    fake.add_issue_comment(
        REPO,
        12,
        "mallory",
        &format!("{}\nlooks like bakery's", render::PLAN_MARKER),
    );
    for i in 0..120 {
        fake.add_issue_comment(REPO, 12, "someone", &format!("comment {i}"));
    }
    let plan_v1 = render::plan_comment(SHA, &[], &[]);
    let created = reporter
        .upsert_sticky_comment(12, render::PLAN_MARKER, &plan_v1)
        .await
        .unwrap();
    let plan_v2 = render::plan_comment("9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d", &[], &[]);
    let edited = reporter
        .upsert_sticky_comment(12, render::PLAN_MARKER, &plan_v2)
        .await
        .unwrap();
    assert_eq!(created.id, edited.id);
    // Unchanged content: no write at all.
    reporter
        .upsert_sticky_comment(12, render::PLAN_MARKER, &plan_v2)
        .await
        .unwrap();

    let comments = reporter.list_pr_comments(12).await.unwrap();
    assert_eq!(comments.len(), 122, "listing follows pages of 100");
    let ours: Vec<_> = comments
        .iter()
        .filter(|c| c.author.as_deref() == Some("release-bot"))
        .collect();
    assert_eq!(ours.len(), 1);
    assert!(ours[0].body.contains("9e8d7c6"));
    assert_eq!(fake.calls_of("issues/create-comment").len(), 1);
    assert_eq!(fake.calls_of("issues/update-comment").len(), 1);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn permissions_and_tags() {
    let fake = fake_with_token().await;
    fake.set_permission(REPO, "writer", "write", "maintain");
    fake.set_permission(REPO, "reader", "read", "triage");
    for i in 0..105 {
        fake.add_tag(REPO, &format!("release-0.{i}.0"), &format!("{i:040x}"));
    }
    let client = token_client(&fake);
    let reporter = GitHubReporter::new(&client, RepoName::parse(REPO).unwrap(), None)
        .await
        .unwrap();
    let writer = reporter.user_permission("writer").await;
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    assert!(writer.unwrap().can_build());
    assert!(!reporter
        .user_permission("reader")
        .await
        .unwrap()
        .can_build());
    let stranger = reporter.user_permission("stranger").await.unwrap();
    assert_eq!(stranger.permission, "none");
    assert!(!stranger.can_build());

    let tags = reporter.list_tags().await.unwrap();
    assert_eq!(tags.len(), 105);
    assert_eq!(tags[104].name, "release-0.104.0");
    assert_eq!(tags[104].sha, format!("{:040x}", 104));
    let pages: Vec<String> = fake
        .calls_of("repos/list-tags")
        .iter()
        .map(|c| c.query.clone())
        .collect();
    assert_eq!(pages, vec!["per_page=100&page=1", "per_page=100&page=2"]);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn retries_transient_errors_and_rate_limits_but_not_client_errors() {
    let fake = fake_with_token().await;
    let client = token_client(&fake);
    let reporter = GitHubReporter::new(&client, RepoName::parse(REPO).unwrap(), None)
        .await
        .unwrap();

    fake.fail_next("repos/create-commit-comment", 502, "Server Error", &[], 2);
    reporter.comment_on_commit(SHA, "hello").await.unwrap();
    let calls = fake.calls_of("repos/create-commit-comment");
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        vec![502, 502, 201]
    );

    fake.fail_next(
        "repos/create-commit-comment",
        403,
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        &[],
        1,
    );
    fake.fail_next(
        "repos/create-commit-comment",
        429,
        "Too Many Requests",
        &[("retry-after", "1")],
        1,
    );
    reporter.comment_on_commit(SHA, "again").await.unwrap();
    assert_eq!(fake.calls_of("repos/create-commit-comment").len(), 6);

    fake.fail_next(
        "repos/create-commit-comment",
        403,
        "Resource not accessible by integration",
        &[],
        1,
    );
    let err = reporter
        .comment_on_commit(SHA, "refused")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("contents: write"), "{err:#}");
    assert_eq!(
        fake.calls_of("repos/create-commit-comment").len(),
        7,
        "no retry"
    );

    fake.fail_next("repos/create-commit-comment", 500, "Server Error", &[], 10);
    let err = reporter.comment_on_commit(SHA, "down").await.unwrap_err();
    assert!(format!("{err:#}").contains("attempt 4 of 4"), "{err:#}");
    assert_eq!(fake.calls_of("repos/create-commit-comment").len(), 11);
}

#[tokio::test]
async fn app_checks_go_queued_in_progress_completed_with_batched_annotations() {
    let fake = FakeGitHub::start().await;
    let key = app_private_key();
    fake.set_app(77, "bakery-bot");
    fake.add_repo(REPO, "/nonexistent", Some(5));
    // Tokens inside the refresh margin: every call takes a fresh one.
    fake.set_token_ttl(chrono::Duration::minutes(3));
    let client = app_client(&fake, 77, &key);
    assert_eq!(client.bot_login().await.unwrap(), "bakery-bot[bot]");

    let reporter = GitHubReporter::new(&client, RepoName::parse(REPO).unwrap(), Some(5))
        .await
        .unwrap();
    assert!(reporter.uses_checks());
    let progress = reporter
        .start_progress(
            "bakery/base",
            SHA,
            Some("https://bakery.example.com/builds/7"),
            Some("job-7"),
        )
        .await
        .unwrap();
    let summary = render::progress_summary(&[render::StepProgress {
        name: "launch builder".into(),
        state: render::StepState::Running,
        elapsed: None,
    }]);
    reporter
        .update_progress(&progress, "Building base", &summary)
        .await
        .unwrap();
    let annotations: Vec<Annotation> = (1..=120)
        .map(|i| Annotation {
            path: "recipes/base/recipe.toml".into(),
            line: i,
            level: AnnotationLevel::Failure,
            message: format!("problem {i}"),
            title: None,
        })
        .collect();
    reporter
        .complete_progress(
            &progress,
            Conclusion::Failure,
            "3 problems",
            "see annotations",
            &annotations,
        )
        .await
        .unwrap();

    let repo = fake.repo(REPO);
    assert_eq!(repo.check_runs.len(), 1);
    let run = repo.check_runs.values().next().unwrap();
    assert_eq!(
        run.status_history,
        vec!["queued", "in_progress", "completed"]
    );
    assert_eq!(run.current["conclusion"], "failure");
    assert_eq!(
        run.current["details_url"],
        "https://bakery.example.com/builds/7"
    );
    assert_eq!(run.current["external_id"], "job-7");
    assert_eq!(run.current["output"]["annotations_count"], 120);
    assert_eq!(run.annotations[119]["start_line"], 120);
    assert!(run.summaries[0].contains("launch builder"));
    let sizes: Vec<usize> = fake
        .calls_of("checks/update")
        .iter()
        .map(|c| {
            c.body["output"]["annotations"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .collect();
    assert_eq!(sizes, vec![0, 50, 50, 20]);
    assert!(fake
        .calls_of("checks/update")
        .iter()
        .all(|c| c.auth == "token:bakery-bot[bot]"));
    assert_eq!(fake.calls_of("apps/get-authenticated")[0].auth, "jwt:77");
    assert_eq!(
        fake.calls_of("apps/create-installation-access-token").len(),
        4,
        "a near-expiry token is replaced for each step: new, start, update, complete"
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// A release job's first attempt dies with its check run in progress. The retried
/// attempt takes that check run over, so GitHub never shows a check run in progress for
/// ever beside the new one. Another job's finished check run of the same name is left
/// alone.
#[tokio::test]
async fn a_retried_attempt_takes_over_its_dead_attempts_check_run() {
    let fake = FakeGitHub::start().await;
    let key = app_private_key();
    fake.set_app(77, "bakery-bot");
    fake.add_repo(REPO, "/nonexistent", Some(5));
    let client = app_client(&fake, 77, &key);
    let reporter = GitHubReporter::new(&client, RepoName::parse(REPO).unwrap(), Some(5))
        .await
        .unwrap();
    let earlier_job = reporter
        .start_progress("bakery/base", SHA, None, Some("6"))
        .await
        .unwrap();
    reporter
        .complete_progress(&earlier_job, Conclusion::Failure, "Failed", "broke", &[])
        .await
        .unwrap();

    let first = reporter
        .start_progress("bakery/base", SHA, None, Some("7"))
        .await
        .unwrap();
    reporter
        .update_progress(&first, "Building base", "step distribute")
        .await
        .unwrap();
    // The first attempt's process dies here. The retried attempt:
    let second = reporter
        .start_progress("bakery/base", SHA, None, Some("7"))
        .await
        .unwrap();
    assert_eq!(second.check_run_id, first.check_run_id);
    reporter
        .complete_progress(&second, Conclusion::Success, "Built base", "done", &[])
        .await
        .unwrap();

    let repo = fake.repo(REPO);
    let runs: Vec<_> = repo.check_runs.values().map(|r| &r.current).collect();
    assert_eq!(runs.len(), 2, "{runs:#?}");
    for run in &runs {
        assert_eq!(run["status"], "completed", "{run:#?}");
    }
    let earlier = &repo.check_runs[&earlier_job.check_run_id.unwrap()].current;
    assert_eq!(
        earlier["conclusion"], "failure",
        "another job's run is left alone"
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn installation_tokens_are_cached_and_refreshed_before_expiry() {
    let fake = FakeGitHub::start().await;
    let key = app_private_key();
    fake.set_app(77, "bakery-bot");
    fake.add_repo(REPO, "/nonexistent", Some(5));

    let client = app_client(&fake, 77, &key);
    let a = client.session(Some(5)).await.unwrap();
    let b = client.session(Some(5)).await.unwrap();
    assert_eq!(a.git_token().expose(), b.git_token().expose());
    assert_eq!(
        fake.calls_of("apps/create-installation-access-token").len(),
        1
    );
    assert!(
        client.session(None).await.is_err(),
        "an App needs the installation"
    );

    // Tokens that expire within the refresh margin are replaced on the next use.
    fake.set_token_ttl(chrono::Duration::minutes(2));
    let client = app_client(&fake, 77, &key);
    let c = client.session(Some(5)).await.unwrap();
    let d = client.session(Some(5)).await.unwrap();
    assert_ne!(c.git_token().expose(), d.git_token().expose());
    assert_eq!(
        fake.calls_of("apps/create-installation-access-token").len(),
        3
    );

    // An installation the App does not have.
    let err = client.session(Some(999)).await.unwrap_err();
    assert!(format!("{err:#}").contains("installation 999"), "{err:#}");
    // A token of another installation does not see this repository.
    fake.add_repo("acme/other", "/nonexistent", Some(6));
    let other = GitHubReporter::new(&client, RepoName::parse("acme/other").unwrap(), Some(6))
        .await
        .unwrap();
    other.list_tags().await.unwrap();
    let wrong = GitHubReporter::new(&client, RepoName::parse(REPO).unwrap(), Some(6))
        .await
        .unwrap();
    assert!(wrong.list_tags().await.is_err());
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn checkout_uses_the_clone_url_the_api_reports() {
    let (work, bare, sha) = git::bare_with(&[
        ("bakery.toml", "[defaults]\n"),
        ("recipes/base/recipe.toml", "name = \"base\"\n"),
    ]);
    git::git(work.path(), &["tag", "release-0.1.0"]);
    git::git(work.path(), &["push", "-q", "origin", "release-0.1.0"]);
    let fake = FakeGitHub::start().await;
    let key = app_private_key();
    fake.set_app(77, "bakery-bot");
    fake.add_repo(REPO, bare.path().to_str().unwrap(), Some(5));

    let client = app_client(&fake, 77, &key);
    let repo = RepoName::parse(REPO).unwrap();
    let installation = client.repo_installation(&repo).await.unwrap();
    assert_eq!(installation, Some(5));
    let reporter = GitHubReporter::new(&client, repo.clone(), installation)
        .await
        .unwrap();
    let info = reporter.repository().await;
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    let info = info.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ws = Checkouts::new(dir.path())
        .checkout(
            &repo,
            &info.clone_url,
            Some(reporter.session().await.unwrap().git_token()),
            &Target::Tag {
                name: "release-0.1.0".into(),
                commit: Some(sha.clone()),
            },
            "job-1",
        )
        .await
        .unwrap();
    assert_eq!(ws.sha, sha);
    assert!(ws.path.join("recipes/base/recipe.toml").exists());
}

#[tokio::test]
async fn sync_command_enqueues_release_jobs_for_missed_tags() {
    let fake = fake_with_token().await;
    fake.add_tag(REPO, "release-0.1.0", &"a".repeat(40));
    fake.add_tag(REPO, "release-0.2.0", &"b".repeat(40));
    fake.add_tag(REPO, "nightly-3", &"c".repeat(40));
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bakery.db").display());
    let run = || async {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_bakery"))
            .args(["sync", "--repo", REPO, "--format", "json"])
            .env("BAKERY_GITHUB__API_URL", fake.api_url())
            .env("BAKERY_GITHUB__TOKEN", PAT)
            .env("BAKERY_DATABASE_URL", &db)
            .env("BAKERY_LOG", "warn")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "bakery sync failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stderr).contains(PAT));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    // The repository's first sync: its tags are history, reported and not built.
    let first = run().await;
    assert_eq!(first[0]["matching"], 2, "{first}");
    assert_eq!(first[0]["first_sync"], true, "{first}");
    assert_eq!(first[0]["enqueued"].as_array().unwrap().len(), 0, "{first}");
    assert_eq!(
        first[0]["history"],
        serde_json::json!(["release-0.1.0", "release-0.2.0"])
    );
    // Tags pushed since (or moved since) are enqueued, once.
    fake.add_tag(REPO, "release-0.3.0", &"d".repeat(40));
    fake.add_tag(REPO, "release-0.4.0", &"e".repeat(40));
    let second = run().await;
    assert_eq!(second[0]["first_sync"], false, "{second}");
    assert_eq!(
        second[0]["enqueued"].as_array().unwrap().len(),
        2,
        "{second}"
    );
    let third = run().await;
    assert_eq!(third[0]["enqueued"].as_array().unwrap().len(), 0, "{third}");

    let store = bakery::database::SqlStore::connect(&db).await.unwrap();
    use bakery::database::Store;
    let jobs = store
        .list_jobs(&bakery::database::JobFilter::default())
        .await
        .unwrap();
    let mut keys: Vec<String> = jobs.iter().map(|j| j.dedup_key.clone()).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            format!("release:{REPO}:release-0.3.0:{}", "d".repeat(40)),
            format!("release:{REPO}:release-0.4.0:{}", "e".repeat(40)),
        ]
    );
    assert_eq!(jobs[0].payload["clone_url"], "/nonexistent");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn app_manifest_asks_for_exactly_what_bakery_uses() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/github-app-manifest.json")).unwrap(),
    )
    .unwrap();
    let permissions = manifest["default_permissions"].as_object().unwrap();
    let mut granted: Vec<(String, String)> = permissions
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    granted.sort();
    assert_eq!(
        granted,
        [
            ("checks", "write"),
            ("contents", "write"),
            ("issues", "write"),
            ("metadata", "read"),
            ("pull_requests", "write"),
            ("statuses", "write"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // Every permission and level is one GitHub knows (the description's app-permissions).
    let spec = crate::support::fake_github::spec();
    let reference = json!({"$ref": "#/components/schemas/app-permissions"});
    let schema = spec.resolve(&reference);
    for (name, level) in permissions {
        let prop = schema["properties"]
            .get(name)
            .unwrap_or_else(|| panic!("GitHub has no App permission {name:?}"));
        assert!(
            prop["enum"].as_array().unwrap().contains(level),
            "{name}: {level} is not a level GitHub offers"
        );
    }
    // Every event is one GitHub sends (webhook payload examples exist for it).
    let examples: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join(
            "tests/fixtures/node_modules/@octokit/webhooks-examples/api.github.com/index.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let known: Vec<&str> = examples
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let events: Vec<&str> = manifest["default_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(events, ["push", "create", "pull_request", "issue_comment"]);
    for e in events {
        assert!(known.contains(&e), "GitHub sends no {e:?} event");
    }
}

#[tokio::test]
async fn release_publishing_comments_and_updates_the_release_on_rerun() {
    let (work, bare, _) = git::bare_with(&[
        ("bakery.toml", "[defaults]\n"),
        ("recipes/base/recipe.toml", "name = \"base\"\n"),
    ]);
    git::git(work.path(), &["tag", "release-0.1.0"]);
    std::fs::create_dir_all(work.path().join("recipes/web")).unwrap();
    std::fs::write(
        work.path().join("recipes/web/recipe.toml"),
        "name = \"web\"\n",
    )
    .unwrap();
    git::git(work.path(), &["add", "-A"]);
    git::git(
        work.path(),
        &["commit", "-q", "-m", "feat(web): add the web recipe (#3)"],
    );
    git::git(work.path(), &["tag", "release-0.2.0"]);
    git::git(work.path(), &["push", "-q", "origin", "main", "--tags"]);
    let sha = git::git(work.path(), &["rev-parse", "HEAD"]);

    let fake = fake_with_token().await;
    let client = token_client(&fake);
    let repo = RepoName::parse(REPO).unwrap();
    let reporter = GitHubReporter::new(&client, repo.clone(), None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ws = Checkouts::new(dir.path())
        .checkout(
            &repo,
            bare.path().to_str().unwrap(),
            None,
            &Target::Tag {
                name: "release-0.2.0".into(),
                commit: Some(sha.clone()),
            },
            "job-9",
        )
        .await
        .unwrap();
    let summary = render::BuildSummary {
        version: "release-0.2.0".into(),
        git_sha: sha.clone(),
        recipes: vec![],
        images: vec![render::ImageRow {
            recipe: "web".into(),
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            ami: "ami-0web".into(),
            kms_key: Some("alias/ami".into()),
        }],
        duration: Duration::from_secs(90),
        details_url: None,
        disk_builds: vec![],
    };
    let patterns = vec!["release-*".to_string()];
    let store = bakery::database::SqlStore::open_sqlite_memory()
        .await
        .unwrap();
    let first = bakery::github::publish::publish_release(
        &reporter,
        &store,
        &ws.path,
        "release-0.2.0",
        &patterns,
        &summary,
        &[],
    )
    .await
    .unwrap();
    assert!(first.release.created);
    assert_eq!(first.notes.previous_tag.as_deref(), Some("release-0.1.0"));
    let rerun = bakery::github::publish::publish_release(
        &reporter,
        &store,
        &ws.path,
        "release-0.2.0",
        &patterns,
        &summary,
        &[],
    )
    .await
    .unwrap();
    assert!(!rerun.release.created);

    let state = fake.repo(REPO);
    assert_eq!(state.releases.len(), 1);
    let body = state.releases.values().next().unwrap()["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(body.contains("## Changes since `release-0.1.0`"), "{body}");
    assert!(
        body.contains("- **web:** add the web recipe (#3)"),
        "{body}"
    );
    assert!(body.contains("- `web`"), "{body}");
    assert!(body.contains("ami-0web"), "{body}");
    assert_eq!(state.commit_comments.len(), 2, "one comment per run");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn comment_commands_need_write_permission_to_build() {
    use bakery::github::publish::{decide_command, CommandDecision};
    use bakery::github::webhook::commands::Command;
    let fake = fake_with_token().await;
    fake.set_permission(REPO, "writer", "write", "write");
    fake.set_permission(REPO, "reader", "read", "read");
    let client = token_client(&fake);
    let reporter = GitHubReporter::new(&client, RepoName::parse(REPO).unwrap(), None)
        .await
        .unwrap();

    let build = decide_command(&reporter, "writer", "/bakery build web")
        .await
        .unwrap();
    assert_eq!(
        build,
        CommandDecision::Run(Command::Build {
            recipe: Some("web".into())
        })
    );
    match decide_command(&reporter, "reader", "/bakery build")
        .await
        .unwrap()
    {
        CommandDecision::Refuse(text) => assert!(text.contains("needs write permission"), "{text}"),
        other => panic!("a reader may not build: {other:?}"),
    }
    match decide_command(&reporter, "stranger", "/bakery cancel")
        .await
        .unwrap()
    {
        CommandDecision::Refuse(text) => assert!(text.contains("you have none"), "{text}"),
        other => panic!("a stranger may not cancel: {other:?}"),
    }
    assert_eq!(
        decide_command(&reporter, "reader", "/bakery validate")
            .await
            .unwrap(),
        CommandDecision::Run(Command::Validate)
    );
    match decide_command(&reporter, "reader", "/bakery deploy")
        .await
        .unwrap()
    {
        CommandDecision::Reply(text) => assert!(text.contains("`deploy` is not a bakery command")),
        other => panic!("unknown commands get help: {other:?}"),
    }
    // bakery's own comments (its help text quotes commands) are never commands.
    assert_eq!(
        decide_command(&reporter, "release-bot", "/bakery build")
            .await
            .unwrap(),
        CommandDecision::Ignore
    );
    assert_eq!(
        decide_command(&reporter, "writer", "> /bakery build")
            .await
            .unwrap(),
        CommandDecision::Ignore
    );
    assert_eq!(
        fake.calls_of("repos/get-collaborator-permission-level")
            .len(),
        3
    );
}

#[tokio::test]
async fn checkout_over_http_sends_the_installation_token_only_through_the_callback() {
    let (work, bare, sha) = git::bare_with(&[("recipes/base/recipe.toml", "name = \"base\"\n")]);
    git::git(work.path(), &["tag", "release-0.1.0"]);
    git::git(work.path(), &["push", "-q", "origin", "release-0.1.0"]);
    let fake = FakeGitHub::start().await;
    let key = app_private_key();
    fake.set_app(77, "bakery-bot");
    fake.add_repo(REPO, "", Some(5));
    let clone_url = fake.serve_git(REPO, bare.path());

    let client = app_client(&fake, 77, &key);
    let repo = RepoName::parse(REPO).unwrap();
    let reporter = GitHubReporter::new(&client, repo.clone(), Some(5))
        .await
        .unwrap();
    assert_eq!(reporter.repository().await.unwrap().clone_url, clone_url);
    let token = reporter.session().await.unwrap().git_token().clone();
    let target = Target::Tag {
        name: "release-0.1.0".into(),
        commit: Some(sha.clone()),
    };
    let dir = tempfile::tempdir().unwrap();
    let checkouts = Checkouts::new(dir.path()).with_policy(FAST);

    // Without a token the server refuses, and bakery says what to check.
    let err = checkouts
        .checkout(&repo, &clone_url, None, &target, "job-1")
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot fetch acme/images"),
        "{err:#}"
    );

    let ws = checkouts
        .checkout(&repo, &clone_url, Some(&token), &target, "job-1")
        .await
        .unwrap();
    assert_eq!(ws.sha, sha);
    assert!(ws.path.join("recipes/base/recipe.toml").exists());
    let git_calls: Vec<_> = fake
        .calls_of("git")
        .into_iter()
        .filter(|c| c.status == 200)
        .collect();
    assert!(!git_calls.is_empty());
    assert!(git_calls.iter().all(|c| c.auth == "token:bakery-bot[bot]"));

    // The token is in no file bakery wrote (mirror, workspace).
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(token.expose()),
                    "token written to {}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn fake_validator_covers_the_schema_keywords_github_uses() {
    let spec = crate::support::fake_github::spec();
    let schema = json!({
        "type": "object",
        "required": ["kind"],
        "additionalProperties": false,
        "properties": {
            "kind": {"type": "string", "enum": ["a", "b"]},
            "note": {"type": "string", "nullable": true, "maxLength": 3},
            "items": {"type": "array", "maxItems": 2, "items": {"type": "integer"}},
            "one": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "any": {"anyOf": [{"type": "boolean"}, {"$ref": "#/components/schemas/simple-user"}]}
        }
    });
    let ok = json!({"kind": "a", "note": null, "items": [1, 2], "one": 5, "any": true});
    assert!(
        spec.validate(&ok, &schema).is_empty(),
        "{:?}",
        spec.validate(&ok, &schema)
    );
    let cases = [
        (json!({}), "missing required property \"kind\""),
        (json!({"kind": "c"}), "is not one of"),
        (json!({"kind": "a", "extra": 1}), "\"extra\" is not allowed"),
        (json!({"kind": "a", "note": "long"}), "at most 3"),
        (
            json!({"kind": "a", "items": [1, 2, 3]}),
            "at most 2 allowed",
        ),
        (
            json!({"kind": "a", "items": ["x"]}),
            "$.items[0]: expected integer",
        ),
        (json!({"kind": "a", "one": true}), "matches 0 of oneOf"),
        (
            json!({"kind": "a", "any": {"login": "x"}}),
            "matches none of anyOf",
        ),
    ];
    for (value, expected) in cases {
        let errors = spec.validate(&value, &schema).join("; ");
        assert!(
            errors.contains(expected),
            "{value}: expected {expected:?} in {errors:?}"
        );
    }
}

/// A tiny HTTP server on 127.0.0.1 that answers every request with `answer(port)` and
/// records each request's head.
async fn recording_server(
    answer: impl Fn(u16) -> String + Send + Sync + 'static,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (log, answer) = (seen.clone(), std::sync::Arc::new(answer));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (log, answer) = (log.clone(), answer.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).to_string());
                let _ = sock.write_all(answer(port).as_bytes()).await;
            });
        }
    });
    (port, seen)
}

/// The repository's server redirects the fetch to another host, which asks for a
/// password: the installation token goes to the repository's own origin only, so the
/// other host never sees it.
#[tokio::test]
async fn a_redirect_to_another_host_gets_no_token() {
    let (hostile, hostile_seen) = recording_server(|_| {
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
            .to_string()
    })
    .await;
    let (origin, _) = recording_server(move |_| {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{hostile}/acme/images.git/info/refs?service=git-upload-pack\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
    })
    .await;
    let token = bakery::config::Secret::new("ghs_redirected_token_value");
    let dir = tempfile::tempdir().unwrap();
    let err = Checkouts::new(dir.path())
        .with_policy(FAST)
        .checkout(
            &RepoName::parse(REPO).unwrap(),
            &format!("http://127.0.0.1:{origin}/acme/images.git"),
            Some(&token),
            &Target::Tag {
                name: "release-0.1.0".into(),
                commit: None,
            },
            "job-1",
        )
        .await
        .unwrap_err();
    let seen = hostile_seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the redirect was followed: {err:#}");
    assert!(
        seen.iter()
            .all(|r| !r.to_ascii_lowercase().contains("authorization:")),
        "the token was offered to another host: {seen:#?}"
    );
}

/// A job's token is minted for the job's repository alone, with the permissions a job
/// needs there: a playbook, a log line or a bug that leaks it cannot touch the other
/// repositories the App is installed on.
#[tokio::test]
async fn a_jobs_token_reaches_only_its_own_repository() {
    let fake = FakeGitHub::start().await;
    let key = app_private_key();
    fake.set_app(77, "bakery-bot");
    fake.add_repo("acme/images", "", Some(5));
    fake.add_repo("acme/secrets", "", Some(5));
    let client = app_client(&fake, 77, &key);
    let images = GitHubReporter::new(&client, RepoName::parse("acme/images").unwrap(), Some(5))
        .await
        .unwrap();
    images.repository().await.unwrap();

    let minted = fake.calls_of("apps/create-installation-access-token");
    let body = &minted.last().unwrap().body;
    assert_eq!(body["repositories"], json!(["images"]), "{body}");
    assert_eq!(body["permissions"]["contents"], "write");
    assert_eq!(body["permissions"]["metadata"], "read");

    let token = images
        .session()
        .await
        .unwrap()
        .git_token()
        .expose()
        .to_string();
    let crab = octocrab::Octocrab::builder()
        .base_uri(fake.api_url())
        .unwrap()
        .user_access_token(token)
        .build()
        .unwrap();
    let own = crab._get("/repos/acme/images").await.unwrap();
    assert_eq!(own.status().as_u16(), 200);
    let other = crab._get("/repos/acme/secrets").await.unwrap();
    assert_eq!(
        other.status().as_u16(),
        404,
        "the token reached another repository"
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}
