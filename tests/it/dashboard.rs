//! The operator's dashboard over HTTP during a release story: sign-in with the operator
//! token, the builds list, the live log (server-sent events) receiving the provisioning
//! step's output and resuming from a line, the finished build with its images, the
//! images and health pages; no secret on any page.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bakery::build::manifest::Manifest;
use bakery::database::{BuildFilter, BuildState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::story::*;

const OPERATOR_TOKEN: &str = "story-operator-token-0123456789";

/// One HTTP/1.1 request; the whole answer, headers included, read until `until` appears
/// or the connection closes.
async fn raw(addr: SocketAddr, request: &str, until: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + JOB_TIMEOUT;
    loop {
        let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf))
            .await
            .expect("the answer keeps coming")
            .unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if until.is_some_and(|u| text.contains(u)) {
            break;
        }
        assert!(Instant::now() < deadline, "no {until:?} in {text}");
    }
    String::from_utf8_lossy(&out).to_string()
}

async fn get(addr: SocketAddr, path: &str, cookie: &str) -> String {
    raw(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: bakery\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
        None,
    )
    .await
}

fn status(answer: &str) -> u16 {
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

fn assert_no_secret(page: &str) {
    for secret in [WEBHOOK_SECRET, OPERATOR_TOKEN, JOB_PAGE_KEY] {
        assert!(!page.contains(secret), "a secret on a page: {page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_follows_a_release_live() {
    let story = Story::start_with_env(
        |_, _| {},
        &[("BAKERY_JOB_PAGES__OPERATOR_TOKEN", OPERATOR_TOKEN)],
    )
    .await;
    let addr = story.bakery.addr;

    // Nobody signed in: the sign-in page, and no log stream.
    let anon = get(addr, "/dashboard", "").await;
    assert_eq!(status(&anon), 303, "{anon}");
    assert!(anon.contains("location: /dashboard/sign-in"), "{anon}");
    assert_eq!(status(&get(addr, "/dashboard/jobs/1/log", "").await), 404);
    let forged = get(addr, "/dashboard", "bakery_session=00").await;
    assert_eq!(status(&forged), 303);

    // A wrong token is refused; the operator token signs in with a cookie that is not it.
    let post = |token: &str| {
        let body = format!("token={token}");
        format!(
            "POST /dashboard/sign-in HTTP/1.1\r\nHost: bakery\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let wrong = raw(addr, &post("not-the-token-0123456789"), None).await;
    assert_eq!(status(&wrong), 401, "{wrong}");
    let signed_in = raw(addr, &post(OPERATOR_TOKEN), None).await;
    assert_eq!(status(&signed_in), 303, "{signed_in}");
    assert_no_secret(&signed_in);
    let cookie = signed_in
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("bakery_session="), "{cookie}");
    assert!(signed_in.to_lowercase().contains("httponly"));

    // The release starts; the builds list shows it while it runs.
    let pushed = story.push_tag("release-0.1.0", TagKind::Annotated);
    let (code, body) = story
        .deliver("push", "dashboard-delivery-1", &story.push_payload(&pushed))
        .await;
    assert_eq!(code, 202, "{body}");
    let started = Instant::now();
    let job_id = loop {
        if let Some(j) = story.jobs().await.first() {
            break j.id;
        }
        assert!(started.elapsed() < JOB_TIMEOUT);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let list = get(addr, "/dashboard", &cookie).await;
    assert_eq!(status(&list), 200, "{list}");
    assert!(
        list.contains(&format!("/dashboard/jobs/{job_id}")),
        "{list}"
    );
    assert!(list.contains(REPO) && list.contains("tag push"), "{list}");

    // The live log receives the provisioning step's output, then ends with the job.
    let stream = raw(
        addr,
        &format!(
            "GET /dashboard/jobs/{job_id}/log HTTP/1.1\r\nHost: bakery\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
        Some("event: end"),
    )
    .await;
    assert!(stream.contains("text/event-stream"), "{stream}");
    assert!(
        stream.contains("[provision]"),
        "the provisioning output: {stream}"
    );
    let job = story.wait_for_job(job_id).await;
    let log = story.job_log(job_id).await;
    story.assert_succeeded(&job, &log);
    assert_no_secret(&stream);

    // It resumes after the line the browser saw last.
    let resumed = raw(
        addr,
        &format!(
            "GET /dashboard/jobs/{job_id}/log?after=1 HTTP/1.1\r\nHost: bakery\r\nCookie: {cookie}\r\n\
             Last-Event-ID: 3\r\nConnection: close\r\n\r\n"
        ),
        Some("event: end"),
    )
    .await;
    let ids: Vec<i64> = resumed
        .lines()
        .filter_map(|l| l.strip_prefix("id: ")?.trim().parse().ok())
        .collect();
    assert_eq!(ids.first(), Some(&4), "{resumed}");
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");

    // The finished build: its steps with timings and every image.
    let page = get(addr, &format!("/dashboard/jobs/{job_id}"), &cookie).await;
    assert_eq!(status(&page), 200, "{page}");
    assert!(
        page.contains("succeeded") && page.contains("provision"),
        "{page}"
    );
    assert!(!page.contains("EventSource"), "no live log once finished");
    assert!(!page.contains("Cancel this job"), "nothing to cancel");
    let builds = story
        .store
        .list_builds(&BuildFilter::default())
        .await
        .unwrap();
    let build = builds
        .iter()
        .find(|b| b.job_id == Some(job_id) && b.state == BuildState::Succeeded)
        .expect("a succeeded build");
    let manifest: Manifest = serde_json::from_value(build.manifest.clone().unwrap()).unwrap();
    let copies: Vec<_> = manifest
        .builds
        .iter()
        .flat_map(|b| b.copies.iter())
        .collect();
    assert_eq!(copies.len(), story_targets().len());
    let images = get(addr, "/dashboard/images", &cookie).await;
    for c in &copies {
        for p in [&page, &images] {
            assert!(
                p.contains(&c.ami) && p.contains(&c.region) && p.contains(&c.account),
                "{c:?} in {p}"
            );
        }
    }
    let health = get(addr, "/dashboard/health", &cookie).await;
    assert!(health.contains("<dd id=\"queue-depth\">0</dd>"), "{health}");

    // Filters: another repository has no builds.
    let other = get(addr, "/dashboard?repo=acme%2Fother", &cookie).await;
    assert!(other.contains("No builds match."), "{other}");
    assert!(
        !other.contains(&format!("/dashboard/jobs/{job_id}\"")),
        "{other}"
    );

    for p in [&list, &page, &images, &health] {
        assert_no_secret(p);
    }
}
