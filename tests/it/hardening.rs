//! What a hostile build or a hostile client can do to the bot, against the real
//! `bakery serve`: a step that prints gigabytes, a flood of unsigned deliveries. The bot
//! stays within bounded memory, says what it dropped, and keeps serving GitHub.

use std::time::{Duration, Instant};

use crate::support::bakery_process::{http, BakeryServer};
use crate::support::examples::{example, sign};
use crate::support::story::*;

/// What `bakery serve` may hold at its peak while a build floods it or clients do. It
/// idles at a few tens of MiB; without bounds the same runs reach gigabytes.
const PEAK_RSS_BOUND: u64 = 256 << 20;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// A recipe step prints 2 GB (`yes` with long lines, as a runaway build does). The bot's
/// memory stays bounded, the build goes on, and the job log keeps the start and the end
/// of the output with a line that says how much it dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_printing_two_gigabytes_leaves_the_bot_bounded() {
    let story = Story::start_with(|files, port| {
        let flood = "\n[[provision]]\ntype = \"shell\"\nname = \"Print a lot\"\n\
                     inline = [\"echo first-line-of-the-flood\", \
                     \"yes \\\"$(printf %01000d 0)\\\" | head -c 2000000000\", \
                     \"echo; echo last-line-of-the-flood\"]\n";
        files.insert(
            "recipes/sandbox-base/recipe.toml".into(),
            sandbox_recipe(port, flood),
        );
    })
    .await;
    let idle = story.bakery.rss();
    let sha = story.tag_and_push("release-5.0.0");
    let (status, body) = story
        .deliver(
            "push",
            "flood-1",
            &story.tag_push_payload("release-5.0.0", &sha),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    // Watch the bot while the step runs: stop at once if it grows past the bound.
    let started = Instant::now();
    let job = loop {
        let peak = story.bakery.peak_rss();
        assert!(
            peak < PEAK_RSS_BOUND,
            "bakery serve grew to {} (idle {}) after {:?} of output",
            mib(peak),
            mib(idle),
            started.elapsed()
        );
        let jobs = story.jobs().await;
        if let Some(j) = jobs.first() {
            if j.state.is_finished() {
                break j.clone();
            }
        }
        assert!(started.elapsed() < JOB_TIMEOUT, "the build did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let peak = story.bakery.peak_rss();
    eprintln!(
        "2 GB step: bakery serve idle {}, peak {} (VmHWM), {:?}",
        mib(idle),
        mib(peak),
        started.elapsed()
    );
    let log = story.job_log(job.id).await;
    story.assert_succeeded(&job, &log);

    // The start and the end are kept; the middle is summarised.
    assert!(log.contains("first-line-of-the-flood"), "the start is kept");
    assert!(log.contains("last-line-of-the-flood"), "the end is kept");
    let summary = log
        .lines()
        .find(|l| l.contains("lines of output dropped"))
        .unwrap_or_else(|| panic!("the log says what it dropped:\n{}", &log[..4000]));
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (lines, bytes) = (numbers[0], numbers[1]);
    assert!(lines > 1_900_000, "{summary}");
    assert!(bytes > 1_900_000_000, "{summary}");
    assert!(
        log.len() < 40 << 20,
        "the stored log is capped: {}",
        mib(log.len() as u64)
    );
    assert!(
        story.bakery.log_text().len() < 40 << 20,
        "the server log is capped too"
    );
}

/// 200 clients post 24 MiB of unsigned junk at once. The bot answers them without
/// reading their bodies, stays bounded, and signed deliveries sent meanwhile are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_unsigned_posts_leaves_the_bot_bounded_and_serving() {
    const CLIENTS: usize = 200;
    const BODY: usize = 24 << 20;
    let dir = tempfile::tempdir().unwrap();
    let server = BakeryServer::start(
        dir.path(),
        &[
            ("BAKERY_WEBHOOK__SECRETS", WEBHOOK_SECRET),
            ("BAKERY_WORKERS__CONCURRENCY", "0"),
        ],
    )
    .await;
    let addr = server.addr;
    let idle = server.rss();
    let junk: &'static [u8] = Box::leak(vec![b'x'; BODY].into_boxed_slice());

    let started = Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        flood.spawn(async move { unsigned_post(addr, i, junk).await });
    }
    // Signed deliveries while the flood runs.
    let ping = serde_json::to_vec(&example("ping", |_| true)).unwrap();
    let sig = sign(WEBHOOK_SECRET, &ping);
    let mut signed = vec![];
    for i in 0..5 {
        let id = format!("during-flood-{i}");
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            http(
                addr,
                "POST",
                "/webhooks/github",
                &[
                    ("X-GitHub-Event", "ping"),
                    ("X-GitHub-Delivery", &id),
                    ("X-Hub-Signature-256", &sig),
                    ("Content-Type", "application/json"),
                ],
                &ping,
            ),
        )
        .await;
        signed.push(answer);
        let peak = server.peak_rss();
        assert!(
            peak < PEAK_RSS_BOUND,
            "bakery serve grew to {} (idle {}) under the flood",
            mib(peak),
            mib(idle)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    while let Some(r) = flood.join_next().await {
        let peak = server.peak_rss();
        assert!(
            peak < PEAK_RSS_BOUND,
            "bakery serve grew to {} (idle {}) under the flood",
            mib(peak),
            mib(idle)
        );
        *statuses.entry(r.unwrap()).or_default() += 1;
    }
    let peak = server.peak_rss();
    eprintln!(
        "{CLIENTS} unsigned 24 MiB posts: bakery serve idle {}, peak {} (VmHWM), {:?}; answers {statuses:?}",
        mib(idle),
        mib(peak),
        started.elapsed()
    );
    assert!(
        !statuses.contains_key("200") && !statuses.contains_key("202"),
        "no unsigned post is accepted: {statuses:?}"
    );
    for (i, answer) in signed.into_iter().enumerate() {
        let (status, body) = answer
            .unwrap_or_else(|_| panic!("signed delivery {i} was answered within 30 s"))
            .unwrap();
        assert_eq!((status, body.as_str()), (200, "pong\n"), "delivery {i}");
    }
}

/// Posts `body` without a signature; returns the status, or what went wrong.
async fn unsigned_post(addr: std::net::SocketAddr, i: usize, body: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return "connect refused".into();
    };
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         X-GitHub-Event: push\r\nX-GitHub-Delivery: junk-{i}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut write_failed = false;
    if stream.write_all(head.as_bytes()).await.is_err() {
        write_failed = true;
    } else {
        for chunk in body.chunks(256 << 10) {
            if stream.write_all(chunk).await.is_err() {
                write_failed = true;
                break;
            }
        }
    }
    let mut answer = vec![];
    let _ = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    match text.split_whitespace().nth(1) {
        Some(status) => status.to_string(),
        None if write_failed => "closed while sending".into(),
        None => "no answer".into(),
    }
}

/// A client that announces a body and never finishes it holds its turn only for the read
/// timeout: it gets 408, and a signed delivery waiting for that turn is then accepted.
#[tokio::test]
async fn a_stalled_body_times_out_and_gives_its_turn_to_the_next_delivery() {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let store = crate::support::stores::TestStore::sqlite().await;
    let config = bakery::config::ServerConfig::load(
        None,
        [
            ("BAKERY_WEBHOOK__SECRETS", WEBHOOK_SECRET),
            ("BAKERY_WEBHOOK__MAX_CONCURRENT", "1"),
            ("BAKERY_WEBHOOK__READ_TIMEOUT_SECS", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .unwrap();
    let state = bakery::server::AppState::new(
        &config,
        store.store.clone(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    )
    .unwrap();
    let router = bakery::server::router(state);

    // A well-formed (but wrong) signature and a body that never ends.
    let stalled = Request::post("/webhooks/github")
        .header("x-github-event", "push")
        .header("x-github-delivery", "stalled")
        .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
        .body(Body::from_stream(futures::stream::pending::<
            Result<bytes::Bytes, std::io::Error>,
        >()))
        .unwrap();
    let started = Instant::now();
    let stalled = tokio::spawn(router.clone().oneshot(stalled));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let ping = serde_json::to_vec(&example("ping", |_| true)).unwrap();
    let signed = Request::post("/webhooks/github")
        .header("x-github-event", "ping")
        .header("x-github-delivery", "waiting")
        .header("x-hub-signature-256", sign(WEBHOOK_SECRET, &ping))
        .body(Body::from(ping))
        .unwrap();
    let signed = router.clone().oneshot(signed).await.unwrap();
    let stalled = stalled.await.unwrap().unwrap();
    assert_eq!(stalled.status(), 408);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(signed.status(), 200);
    let body = signed.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"pong\n");
}
