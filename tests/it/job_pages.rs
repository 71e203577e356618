//! Job pages are private: the real `bakery serve` shows a job's page only to a link that
//! carries the job's token (what check runs link to) or to an operator's bearer token.
//! Anything else is told the page does not exist.

use std::sync::Arc;

use bakery::database::{DynStore, SqlStore};
use hmac::{KeyInit, Mac};

use crate::support::bakery_process::{http, BakeryServer};
use crate::support::examples::{example, sign};

const SECRET: &str = "job-pages-webhook-secret";
const PAGE_KEY: &str = "job-pages-link-key-0123456789";
const OPERATOR: &str = "operator-token-abcdef0123456789";

/// The token a job's link carries: HMAC-SHA256 of `job:<id>` under the server's key.
fn link_token(key: &str, job: i64) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("job:{job}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

struct Bot {
    server: BakeryServer,
    store: DynStore,
    _dir: tempfile::TempDir,
}

/// `bakery serve` taking deliveries only (no workers), with a job page key and an
/// operator token, and three queued release jobs of a private repository.
async fn bot_with_three_jobs() -> Bot {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/bakery.db", dir.path().display());
    let server = BakeryServer::start(
        dir.path(),
        &[
            ("BAKERY_WEBHOOK__SECRETS", SECRET),
            ("BAKERY_DATABASE_URL", &db),
            ("BAKERY_WORKERS__CONCURRENCY", "0"),
            ("BAKERY_JOB_PAGES__KEY", PAGE_KEY),
            ("BAKERY_JOB_PAGES__OPERATOR_TOKEN", OPERATOR),
        ],
    )
    .await;
    for i in 1..=3 {
        let mut push = example("push", |e| {
            e["ref"] == "refs/tags/simple-tag" && e["deleted"] == false
        });
        push["ref"] = format!("refs/tags/release-{i}").into();
        push["repository"]["full_name"] = "acme/private-images".into();
        let body = serde_json::to_vec(&push).unwrap();
        let sig = sign(SECRET, &body);
        let (status, text) = http(
            server.addr,
            "POST",
            "/webhooks/github",
            &[
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", &format!("push-{i}")),
                ("X-Hub-Signature-256", &sig),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
        .await
        .unwrap();
        assert_eq!(status, 202, "{text}");
    }
    let store: DynStore = Arc::new(SqlStore::connect(&db).await.unwrap());
    store
        .append_job_log(1, "provision", "| 10.0.3.7 internal-db.acme.corp")
        .await
        .unwrap();
    Bot {
        server,
        store,
        _dir: dir,
    }
}

async fn get(bot: &Bot, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    http(bot.server.addr, "GET", path, headers, b"")
        .await
        .unwrap()
}

/// Someone who found the port walks the ids, guesses tokens, or tries the operator
/// header with a wrong value: every answer is the same 404, with nothing of the job.
#[tokio::test]
async fn job_pages_without_a_valid_token_do_not_exist() {
    let bot = bot_with_three_jobs().await;
    let not_found = get(&bot, "/jobs/999", &[]).await;
    assert_eq!(not_found.0, 404);
    let wrong_token = link_token("another-key", 1);
    let other_jobs_token = link_token(PAGE_KEY, 2);
    for id in 1..=4 {
        for (path, headers) in [
            (format!("/jobs/{id}"), vec![]),
            (format!("/jobs/{id}?token="), vec![]),
            (format!("/jobs/{id}?token={wrong_token}"), vec![]),
            (format!("/jobs/{id}?token=xyz"), vec![]),
            (
                format!("/jobs/{id}"),
                vec![("Authorization", "Bearer not-the-operator-token")],
            ),
            (format!("/jobs/{id}"), vec![("Authorization", PAGE_KEY)]),
        ] {
            let (status, body) = get(&bot, &path, &headers).await;
            assert_eq!(
                (status, body.as_str()),
                (not_found.0, not_found.1.as_str()),
                "{path} {headers:?}"
            );
        }
    }
    // One job's token opens that job only.
    let (status, _) = get(&bot, &format!("/jobs/1?token={other_jobs_token}"), &[]).await;
    assert_eq!(status, 404);
}

/// The job's own link opens its page; the operator's token opens any page.
#[tokio::test]
async fn the_job_link_or_the_operator_token_open_the_page() {
    let bot = bot_with_three_jobs().await;
    let (status, page) = get(
        &bot,
        &format!("/jobs/1?token={}", link_token(PAGE_KEY, 1)),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("acme/private-images release-1"), "{page}");
    assert!(page.contains("internal-db.acme.corp"), "{page}");
    let bearer = format!("Bearer {OPERATOR}");
    for id in 1..=3 {
        let (status, page) = get(&bot, &format!("/jobs/{id}"), &[("Authorization", &bearer)]).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains(&format!("release-{id}")), "{page}");
    }
}

/// A long log comes in pages; each page links to the next, with the same token.
#[tokio::test]
async fn long_logs_are_paginated() {
    let bot = bot_with_three_jobs().await;
    let lines: Vec<(String, String)> = (0..2500)
        .map(|i| ("provision".to_string(), format!("| output line {i:05}")))
        .collect();
    bot.store.append_job_log_batch(2, &lines).await.unwrap();
    let token = link_token(PAGE_KEY, 2);
    let mut path = format!("/jobs/2?token={token}");
    let mut seen = vec![];
    for _ in 0..10 {
        let (status, page) = get(&bot, &path, &[]).await;
        assert_eq!(status, 200, "{page}");
        let on_page: Vec<&str> = page
            .lines()
            .filter(|l| l.contains("| output line"))
            .collect();
        assert!(on_page.len() <= 1000, "a page holds at most 1000 lines");
        seen.extend(
            on_page
                .iter()
                .map(|l| l.rsplit(' ').next().unwrap().to_string()),
        );
        match page.lines().find_map(|l| l.strip_prefix("next page: ")) {
            Some(next) => {
                assert!(next.contains(&format!("token={token}")), "{next}");
                path = next.to_string();
            }
            None => break,
        }
    }
    let expected: Vec<String> = (0..2500).map(|i| format!("{i:05}")).collect();
    assert_eq!(seen, expected, "every line once, in order");
}

/// `/readyz` says whether the store answers, never why not: the store's error names
/// hosts, databases and users.
#[tokio::test]
async fn readiness_does_not_show_the_store_error() {
    let pg = crate::support::stores::TestStore::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let server = BakeryServer::start(
        dir.path(),
        &[
            ("BAKERY_WEBHOOK__SECRETS", SECRET),
            ("BAKERY_DATABASE_URL", &pg.url),
            ("BAKERY_WORKERS__CONCURRENCY", "0"),
        ],
    )
    .await;
    let (status, body) = http(server.addr, "GET", "/readyz", &[], b"").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    // The database goes away under the server.
    drop(pg);
    let (status, body) = http(server.addr, "GET", "/readyz", &[], b"").await.unwrap();
    assert_eq!((status, body.as_str()), (503, "not ready\n"));
}
