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

/// How long the 2 GB story may take.
const FLOOD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

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
    let pushed = story.tag_and_push("release-5.0.0");
    let (status, body) = story
        .deliver("push", "flood-1", &story.push_payload(&pushed))
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
        // 2 GB through SSH takes about two minutes on an idle machine, much longer on a
        // loaded one; what this story checks is memory, not speed.
        assert!(
            started.elapsed() < FLOOD_TIMEOUT,
            "the build did not finish within {FLOOD_TIMEOUT:?}"
        );
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

/// 200 clients post 24 MiB of junk at once: half unsigned, half with a forged signature
/// and a body of unannounced size. The bot refuses the unsigned ones without reading their
/// bodies and reads the others a few at a time and only up to its cap; it stays bounded,
/// and signed deliveries sent meanwhile are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_unsigned_and_forged_posts_leaves_the_bot_bounded_and_serving() {
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
        // Half send no signature; half a well-formed wrong one, with a chunked body whose
        // size is not announced, so it has to be read (up to the cap) to be refused.
        let forged = i % 2 == 1;
        flood.spawn(async move { junk_post(addr, i, junk, forged).await });
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
        "{CLIENTS} unsigned or forged 24 MiB posts: bakery serve idle {}, peak {} (VmHWM), {:?}; answers {statuses:?}",
        mib(idle),
        mib(peak),
        started.elapsed()
    );
    assert!(
        !statuses.contains_key("200") && !statuses.contains_key("202"),
        "no junk post is accepted: {statuses:?}"
    );
    for (i, answer) in signed.into_iter().enumerate() {
        let (status, body) = answer
            .unwrap_or_else(|_| panic!("signed delivery {i} was answered within 30 s"))
            .unwrap();
        assert_eq!((status, body.as_str()), (200, "pong\n"), "delivery {i}");
    }
}

/// Posts `body` without a signature (or, `forged`, with a well-formed wrong one and a
/// chunked body); returns the status, or what went wrong.
async fn junk_post(
    addr: std::net::SocketAddr,
    i: usize,
    body: &'static [u8],
    forged: bool,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return "connect refused".into();
    };
    let framing = if forged {
        format!(
            "X-Hub-Signature-256: sha256={}\r\nTransfer-Encoding: chunked\r\n",
            "ab".repeat(32)
        )
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         X-GitHub-Event: push\r\nX-GitHub-Delivery: junk-{i}\r\n\
         Content-Type: application/json\r\n{framing}\r\n"
    );
    let mut write_failed = stream.write_all(head.as_bytes()).await.is_err();
    for chunk in body.chunks(256 << 10) {
        if write_failed {
            break;
        }
        let sent = if forged {
            let size = format!("{:x}\r\n", chunk.len());
            stream.write_all(size.as_bytes()).await.is_ok()
                && stream.write_all(chunk).await.is_ok()
                && stream.write_all(b"\r\n").await.is_ok()
        } else {
            stream.write_all(chunk).await.is_ok()
        };
        write_failed = !sent;
    }
    if forged && !write_failed {
        write_failed = stream.write_all(b"0\r\n\r\n").await.is_err();
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
