//! Webhook intake through the real axum router: GitHub's example payloads, signed as
//! GitHub signs them, become exactly the expected jobs; bad input is refused and stores
//! nothing.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bakery::config::ServerConfig;
use bakery::database::{DynStore, Job, JobFilter, JobKind};
use bakery::server::{self, AppState};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::support::examples::{example, sign};
use crate::support::stores::TestStore;

const SECRET: &str = "current-webhook-secret";
const OLD_SECRET: &str = "removed-webhook-secret";

struct Intake {
    router: axum::Router,
    store: DynStore,
    _keep: TestStore,
}

impl Intake {
    async fn new(tag_patterns: &[&str]) -> Intake {
        let test_store = TestStore::sqlite().await;
        let patterns = serde_json::to_string(tag_patterns).unwrap();
        let config = ServerConfig::load(
            None,
            vec![
                ("BAKERY_WEBHOOK__SECRETS".to_string(), SECRET.to_string()),
                ("BAKERY_WEBHOOK__TAG_PATTERNS".to_string(), patterns),
                (
                    "BAKERY_WEBHOOK__MAX_BODY_BYTES".to_string(),
                    (1024 * 1024).to_string(),
                ),
            ],
        )
        .unwrap();
        let store = test_store.store.clone();
        let state =
            AppState::new(&config, store.clone(), Arc::new(tokio::sync::Notify::new())).unwrap();
        Intake {
            router: server::router(state),
            store,
            _keep: test_store,
        }
    }

    async fn post_raw(&self, headers: &[(&str, &str)], body: Vec<u8>) -> (StatusCode, String) {
        let mut req = Request::post("/webhooks/github").header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).to_string())
    }

    /// Posts `payload` as GitHub would: signed with the current secret.
    async fn deliver(&self, event: &str, delivery: &str, payload: &Value) -> (StatusCode, String) {
        let body = serde_json::to_vec(payload).unwrap();
        let sig = sign(SECRET, &body);
        self.post_raw(
            &[
                ("x-github-event", event),
                ("x-github-delivery", delivery),
                ("x-hub-signature-256", &sig),
            ],
            body,
        )
        .await
    }

    async fn jobs(&self) -> Vec<Job> {
        self.store.list_jobs(&JobFilter::default()).await.unwrap()
    }
}

fn tag_push() -> Value {
    example("push", |e| {
        e["ref"] == "refs/tags/simple-tag" && e["deleted"] == false
    })
}

/// The same payload for another tag: only values change, never the shape.
fn with_tag(mut push: Value, tag: &str) -> Value {
    push["ref"] = json!(format!("refs/tags/{tag}"));
    push
}

#[tokio::test]
async fn ping_is_answered() {
    let intake = Intake::new(&["release-*"]).await;
    let ping = example("ping", |_| true);
    let (status, body) = intake.deliver("ping", "ping-1", &ping).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "pong\n");
    assert!(intake.jobs().await.is_empty());
}

#[tokio::test]
async fn release_tag_push_becomes_a_release_job() {
    let intake = Intake::new(&["release-*"]).await;
    let push = with_tag(tag_push(), "release-0.1.0");
    let (status, body) = intake.deliver("push", "push-1", &push).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let jobs = intake.jobs().await;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.kind, JobKind::Release);
    assert_eq!(job.repo, "Codertocat/Hello-World");
    assert_eq!(job.git_ref, "release-0.1.0");
    assert_eq!(job.sha, push["after"].as_str().unwrap());
    assert_eq!(job.payload["clone_url"], push["repository"]["clone_url"]);
    assert_eq!(job.delivery_ids, vec!["push-1"]);
}

/// `git tag -a` and `git tag`, pushed to a real repository, delivered as GitHub builds
/// the `push` from it: the job names the commit either way (the tag object is `after`
/// for an annotated tag), and records the tag object when there is one. Both push the
/// same commit, so both are one release.
#[tokio::test]
async fn annotated_and_lightweight_tags_name_the_commit() {
    use crate::support::push_event::{push_payload, tag_and_push, TagKind};
    let (work, bare, commit) = crate::support::git::bare_with(&[("bakery.toml", "")]);
    let web = "https://github.com/Codertocat/Hello-World";
    let intake = Intake::new(&["release-*"]).await;

    let annotated = tag_and_push(
        work.path(),
        bare.path(),
        "release-1.0.0",
        TagKind::Annotated,
        false,
    );
    assert_ne!(annotated.after, commit, "`after` is the tag object");
    let payload = push_payload(bare.path(), web, &annotated);
    assert_eq!(payload["after"], annotated.after.as_str());
    let (status, body) = intake.deliver("push", "annotated", &payload).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let jobs = intake.jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].sha, commit, "the job builds the commit");
    assert_eq!(jobs[0].payload["tag_object"], annotated.after.as_str());
    assert_eq!(
        jobs[0].dedup_key,
        format!("release:Codertocat/Hello-World:release-1.0.0:{commit}")
    );

    let lightweight = tag_and_push(
        work.path(),
        bare.path(),
        "release-1.0.1",
        TagKind::Lightweight,
        false,
    );
    assert_eq!(lightweight.after, commit);
    let (status, body) = intake
        .deliver(
            "push",
            "lightweight",
            &push_payload(bare.path(), web, &lightweight),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let jobs = intake.jobs().await;
    let job = jobs.iter().find(|j| j.git_ref == "release-1.0.1").unwrap();
    assert_eq!(job.sha, commit);
    assert!(job.payload["tag_object"].is_null(), "{}", job.payload);
}

#[tokio::test]
async fn the_example_tag_follows_the_configured_patterns() {
    let intake = Intake::new(&["release-*"]).await;
    let (status, body) = intake.deliver("push", "p-1", &tag_push()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        body.contains("does not match the release patterns (release-*)"),
        "{body}"
    );
    assert!(intake.jobs().await.is_empty());

    let intake = Intake::new(&["simple-*"]).await;
    let (status, _) = intake.deliver("push", "p-1", &tag_push()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(intake.jobs().await.len(), 1);
}

#[tokio::test]
async fn branch_push_and_tag_deletion_are_ignored_with_a_reason() {
    let intake = Intake::new(&["simple-*"]).await;
    let branch = example("push", |e| e["ref"] == "refs/heads/master");
    let (status, body) = intake.deliver("push", "b-1", &branch).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        body,
        "ignored: push to branch master: only release tags are built\n"
    );

    let deletion = example("push", |e| {
        e["ref"] == "refs/tags/simple-tag" && e["deleted"] == true
    });
    let (status, body) = intake.deliver("push", "d-1", &deletion).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(body.contains("tag simple-tag was deleted"), "{body}");

    let delete_event = example("delete", |e| e["ref_type"] == "tag");
    let (status, body) = intake.deliver("delete", "d-2", &delete_event).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(body.contains("was deleted"), "{body}");

    let (status, body) = intake
        .deliver("star", "s-1", &json!({"action": "created"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(body.contains("does not act on `star` events"), "{body}");
    assert!(intake.jobs().await.is_empty());
}

#[tokio::test]
async fn create_and_push_of_one_tag_make_one_job() {
    let intake = Intake::new(&["simple-*"]).await;
    let create = example("create", |e| e["ref_type"] == "tag");
    let (status, _) = intake.deliver("create", "c-1", &create).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = intake.deliver("push", "p-1", &tag_push()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(body.contains("already covers this"), "{body}");
    let jobs = intake.jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].sha, tag_push()["after"].as_str().unwrap());
    assert_eq!(jobs[0].delivery_ids.len(), 2);
}

#[tokio::test]
async fn pull_requests_become_validation_jobs() {
    let intake = Intake::new(&["release-*"]).await;
    let opened = example("pull_request", |e| e["action"] == "opened");
    let sync = example("pull_request", |e| e["action"] == "synchronize");
    let closed = example("pull_request", |e| e["action"] == "closed");
    assert_eq!(
        intake.deliver("pull_request", "pr-1", &opened).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        intake.deliver("pull_request", "pr-2", &sync).await.0,
        StatusCode::ACCEPTED
    );
    let (status, body) = intake.deliver("pull_request", "pr-3", &closed).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(body.contains("needs no validation"), "{body}");
    // One job per (PR, head SHA): the examples may share both.
    let expected: std::collections::BTreeSet<(Option<i64>, String)> = [&opened, &sync]
        .iter()
        .map(|e| {
            (
                e["number"].as_i64(),
                e["pull_request"]["head"]["sha"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let jobs = intake.jobs().await;
    let got: std::collections::BTreeSet<(Option<i64>, String)> =
        jobs.iter().map(|j| (j.pr_number, j.sha.clone())).collect();
    assert_eq!(got, expected);
    assert_eq!(jobs.len(), expected.len());
    assert!(jobs.iter().all(|j| j.kind == JobKind::Validation));
    for job in &jobs {
        assert_eq!(
            job.git_ref,
            format!("refs/pull/{}/head", job.pr_number.unwrap())
        );
        assert_eq!(job.payload["is_fork"], false);
    }
}

#[tokio::test]
async fn pr_comments_become_command_jobs_issue_comments_do_not() {
    let intake = Intake::new(&["release-*"]).await;
    let on_issue = example("issue_comment", |e| e["action"] == "created");
    let (status, body) = intake.deliver("issue_comment", "ic-1", &on_issue).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(body.contains("not a pull request"), "{body}");

    // The same comment on a pull request: GitHub adds `issue.pull_request`.
    let mut on_pr = on_issue.clone();
    let repo_url = on_pr["repository"]["url"].as_str().unwrap().to_string();
    let number = on_pr["issue"]["number"].as_i64().unwrap();
    on_pr["issue"]["pull_request"] = json!({
        "url": format!("{repo_url}/pulls/{number}"),
        "html_url": format!("{}/pull/{number}", on_pr["repository"]["html_url"].as_str().unwrap()),
        "diff_url": null, "patch_url": null, "merged_at": null
    });
    on_pr["comment"]["body"] = json!("/bakery build");
    let (status, _) = intake.deliver("issue_comment", "ic-2", &on_pr).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let jobs = intake.jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].kind, JobKind::Command);
    assert_eq!(jobs[0].pr_number, Some(number));
    assert_eq!(jobs[0].payload["body"], "/bakery build");
    assert_eq!(jobs[0].payload["author"], on_pr["comment"]["user"]["login"]);
}

#[tokio::test]
async fn ten_redeliveries_make_one_job() {
    let intake = Intake::new(&["simple-*"]).await;
    let push = tag_push();
    let (status, _) = intake.deliver("push", "same-delivery", &push).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for _ in 0..10 {
        let (status, body) = intake.deliver("push", "same-delivery", &push).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.starts_with("duplicate delivery same-delivery"),
            "{body}"
        );
    }
    let jobs = intake.jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].delivery_ids, vec!["same-delivery"]);
}

#[tokio::test]
async fn bad_signatures_are_refused_and_store_nothing() {
    let intake = Intake::new(&["simple-*"]).await;
    let body = serde_json::to_vec(&tag_push()).unwrap();
    let base = [("x-github-event", "push"), ("x-github-delivery", "sig-1")];

    let wrong = sign("not-the-secret", &body);
    let old = sign(OLD_SECRET, &body);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("x-hub-signature-256", wrong.as_str())],
            "does not match",
        ),
        (
            vec![("x-hub-signature-256", old.as_str())],
            "does not match",
        ),
        (vec![], "missing X-Hub-Signature-256"),
        (vec![("x-hub-signature-256", "sha256=nothex")], "malformed"),
    ];
    for (extra, message) in cases {
        let mut headers = base.to_vec();
        headers.extend(extra);
        let (status, text) = intake.post_raw(&headers, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
        assert!(text.contains(message), "{text}");
    }
    // A signature over other bytes (tampered payload).
    let tampered = {
        let mut p = tag_push();
        p["after"] = json!("0000000000000000000000000000000000000001");
        serde_json::to_vec(&p).unwrap()
    };
    let sig = sign(SECRET, &body);
    let (status, _) = intake
        .post_raw(&[base[0], base[1], ("x-hub-signature-256", &sig)], tampered)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(intake.jobs().await.is_empty());
    // Nothing recorded: the properly signed delivery with the same id is new.
    let (status, _) = intake.deliver("push", "sig-1", &tag_push()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(intake.jobs().await.len(), 1);
}

#[tokio::test]
async fn missing_headers_are_named() {
    let intake = Intake::new(&["simple-*"]).await;
    let body = serde_json::to_vec(&tag_push()).unwrap();
    let sig = sign(SECRET, &body);
    let (status, text) = intake
        .post_raw(
            &[("x-github-delivery", "h-1"), ("x-hub-signature-256", &sig)],
            body.clone(),
        )
        .await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::BAD_REQUEST, "missing X-GitHub-Event header\n")
    );
    let (status, text) = intake
        .post_raw(
            &[("x-github-event", "push"), ("x-hub-signature-256", &sig)],
            body,
        )
        .await;
    assert_eq!(
        (status, text.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "missing X-GitHub-Delivery header\n"
        )
    );
    assert!(intake.jobs().await.is_empty());
}

#[tokio::test]
async fn oversized_body_is_413() {
    let intake = Intake::new(&["simple-*"]).await;
    let mut push = tag_push();
    push["padding_for_size"] = json!("x".repeat(2 * 1024 * 1024));
    let (status, text) = intake.deliver("push", "big-1", &push).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");

    // Also without a Content-Length to trust: a streamed body is cut at the limit.
    let body = serde_json::to_vec(&push).unwrap();
    let sig = sign(SECRET, &body);
    let stream = futures::stream::iter(
        body.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let req = Request::post("/webhooks/github")
        .header("x-github-event", "push")
        .header("x-github-delivery", "big-2")
        .header("x-hub-signature-256", sig)
        .body(Body::from_stream(stream))
        .unwrap();
    let resp = intake.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(intake.jobs().await.is_empty());
}

#[tokio::test]
async fn truncated_and_misshapen_json_is_400() {
    let intake = Intake::new(&["simple-*"]).await;
    let full = serde_json::to_vec(&tag_push()).unwrap();
    let truncated = full[..full.len() / 2].to_vec();
    let sig = sign(SECRET, &truncated);
    let (status, text) = intake
        .post_raw(
            &[
                ("x-github-event", "push"),
                ("x-github-delivery", "t-1"),
                ("x-hub-signature-256", &sig),
            ],
            truncated,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.starts_with("payload is not valid JSON"), "{text}");

    // Valid JSON, wrong shape: a push without its repository.
    let mut push = tag_push();
    push.as_object_mut().unwrap().remove("repository");
    let (status, text) = intake.deliver("push", "t-2", &push).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains(
            "push payload is missing or has a malformed field: missing field `repository`"
        ),
        "{text}"
    );

    // A JSON array, and a number where a string belongs.
    let (status, _) = intake
        .deliver("pull_request", "t-3", &json!([1, 2, 3]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut pr = example("pull_request", |e| e["action"] == "opened");
    pr["pull_request"]["head"]["sha"] = json!(42);
    let (status, text) = intake.deliver("pull_request", "t-4", &pr).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(intake.jobs().await.is_empty());
}

#[tokio::test]
async fn readiness_and_health() {
    let intake = Intake::new(&["release-*"]).await;
    for path in ["/healthz", "/readyz"] {
        let resp = intake
            .router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
}

/// A push to the default branch whose commits change `channels.toml` (built from real git
/// as GitHub builds it) becomes one reconcile job for the pushed commit; a push that does
/// not touch the file, or to another branch, is ignored with a reason.
#[tokio::test]
async fn a_default_branch_push_that_changes_channels_is_reconciled() {
    use crate::support::git::{bare_with, git};
    use crate::support::push_event::branch_push_payload;
    let (work, bare, first) = bare_with(&[("README.md", "images\n")]);
    let web = "https://github.com/octo-org/images";
    let commit = |path: &str, text: &str| {
        std::fs::write(work.path().join(path), text).unwrap();
        git(work.path(), &["add", "-A"]);
        git(work.path(), &["commit", "-q", "-m", "change"]);
        git(work.path(), &["push", "-q", "origin", "main"]);
        git(work.path(), &["rev-parse", "HEAD"])
    };
    let channels = commit("channels.toml", "production = { base = \"release-1\" }\n");
    let readme = commit("README.md", "images, again\n");
    let on = |before: &str, after: &str, default_branch: &str| {
        let mut p = branch_push_payload(bare.path(), web, "main", before, after);
        p["repository"]["default_branch"] = json!(default_branch);
        p
    };

    let intake = Intake::new(&["release-*"]).await;
    let (status, body) = intake
        .deliver("push", "c-1", &on(&first, &channels, "main"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let jobs = intake.jobs().await;
    assert_eq!(jobs.len(), 1, "{body}");
    assert_eq!(jobs[0].kind, JobKind::Reconcile);
    assert_eq!(jobs[0].sha, channels);
    assert_eq!(jobs[0].git_ref, "refs/heads/main");
    assert_eq!(jobs[0].payload["branch"], "main");

    // Both commits at once: the file is still among the changes.
    let intake = Intake::new(&["release-*"]).await;
    intake
        .deliver("push", "c-2", &on(&first, &readme, "main"))
        .await;
    assert_eq!(intake.jobs().await.len(), 1);

    for (delivery, payload) in [
        ("r-1", on(&channels, &readme, "main")),
        ("o-1", on(&first, &channels, "develop")),
    ] {
        let intake = Intake::new(&["release-*"]).await;
        let (status, body) = intake.deliver("push", delivery, &payload).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert!(body.starts_with("ignored: push to branch main"), "{body}");
        assert!(intake.jobs().await.is_empty(), "{delivery}");
    }
}
