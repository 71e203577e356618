//! The real `bakery serve` process, started as the README starts it.

use serde_json::Value;

use crate::support::bakery_process::{bakery_bin, http, BakeryServer};
use crate::support::examples::{example, sign};

const SECRET: &str = "serve-test-secret";

#[tokio::test]
async fn serve_accepts_a_signed_ping_rejects_an_unsigned_one_and_lists_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = BakeryServer::start(dir.path(), &[("BAKERY_WEBHOOK__SECRETS", SECRET)]).await;

    let ping = serde_json::to_vec(&example("ping", |_| true)).unwrap();
    let sig = sign(SECRET, &ping);
    let (status, body) = http(
        server.addr,
        "POST",
        "/webhooks/github",
        &[
            ("X-GitHub-Event", "ping"),
            ("X-GitHub-Delivery", "ping-1"),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        &ping,
    )
    .await
    .unwrap();
    assert_eq!((status, body.as_str()), (200, "pong\n"));

    let (status, _) = http(
        server.addr,
        "POST",
        "/webhooks/github",
        &[
            ("X-GitHub-Event", "ping"),
            ("X-GitHub-Delivery", "ping-2"),
            ("Content-Type", "application/json"),
        ],
        &ping,
    )
    .await
    .unwrap();
    assert_eq!(status, 401);

    let push = serde_json::to_vec(&{
        let mut p = example("push", |e| {
            e["ref"] == "refs/tags/simple-tag" && e["deleted"] == false
        });
        p["ref"] = "refs/tags/release-0.1.0".into();
        p
    })
    .unwrap();
    let sig = sign(SECRET, &push);
    let (status, body) = http(
        server.addr,
        "POST",
        "/webhooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "push-1"),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        &push,
    )
    .await
    .unwrap();
    assert_eq!(status, 202, "{body}");

    let status = server.terminate();
    assert!(
        status.success(),
        "bakery serve exits cleanly on SIGTERM: {status:?}\n{}",
        server.log_text()
    );
    let log = server.log_text();
    assert!(
        log.contains("delivery=ping-1"),
        "log lines carry the delivery id:\n{log}"
    );
    assert!(log.contains("delivery=ping-2"), "refusals too:\n{log}");
    assert!(!log.contains(SECRET), "the secret never reaches the log");

    // `bakery jobs` reads the same store (the default SQLite file in the working folder).
    let out = std::process::Command::new(bakery_bin())
        .args(["jobs", "--format", "json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["kind"], "release");
    assert_eq!(jobs[0]["ref"], "release-0.1.0");
    assert_eq!(jobs[0]["delivery_ids"], serde_json::json!(["push-1"]));
    for field in ["id", "repo", "sha", "state", "created_at", "updated_at"] {
        assert!(
            jobs[0].get(field).is_some(),
            "jobs --format json has {field}"
        );
    }
}

#[tokio::test]
async fn config_check_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("webhook-secret");
    std::fs::write(&secret_file, "file-held-secret-value\n").unwrap();
    let out = std::process::Command::new(bakery_bin())
        .args(["config", "check"])
        .env("BAKERY_WEBHOOK__SECRETS", "env-held-secret-value")
        .env("BAKERY_WEBHOOK__SECRET_FILES", &secret_file)
        .env("BAKERY_GITHUB__TOKEN", "ghp_env_token_value")
        .env(
            "BAKERY_DATABASE_URL",
            "postgres://bakery:db-password-value@db.internal/bakery",
        )
        .output()
        .unwrap();
    assert!(out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in [
        "file-held-secret-value",
        "env-held-secret-value",
        "ghp_env_token_value",
        "db-password-value",
    ] {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }
    assert!(
        all.contains("secrets = [\n    \"***\",\n    \"***\",\n]"),
        "{all}"
    );
    assert!(
        all.contains("configuration ok (2 webhook secret(s)"),
        "{all}"
    );

    let bad = std::process::Command::new(bakery_bin())
        .args(["config", "check"])
        .env("BAKERY_WORKERS__LEASE_SECS", "1")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("workers.lease_secs must be at least 5 seconds"));
}
