//! The dashboard in a real browser: Debian's headless Chromium, driven by playwright-core
//! (`support/dashboard_browser.mjs`), during one release story. The operator signs in with
//! the token, opens the builds list while the release runs, watches the live log receive
//! the provisioning step's output (a line the builder prints only once the browser shows
//! the page), and opens the finished build with its images; then a person without read
//! access to the repository signs in with GitHub and sees none of its builds. Screenshots
//! of each page land in `target/dashboard-screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bakery::build::manifest::Manifest;
use bakery::database::{BuildFilter, BuildState};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::bakery_process::free_port;
use crate::support::story::*;

const OPERATOR_TOKEN: &str = "browser-operator-token-0123456789";
const CLIENT_ID: &str = "Iv1.browser0123";
const CLIENT_SECRET: &str = "browser-client-secret-0123456789";
const SESSION_KEY: &str = "browser-session-key-0123456789";
/// Someone GitHub knows, with no access to the story's repository.
const OUTSIDER: &str = "octo-outsider";
/// Inside the sandboxed builder: the provisioning step waits for it.
const WATCHED: &str = "/home/builder/.browser-watching";

const WAIT_STEP: &str = r#"
[[provision]]
type = "shell"
name = "Wait for the browser"
inline = ["echo waiting for the browser", "for i in $(seq 1 1200); do [ -e /home/builder/.browser-watching ] && break; sleep 0.1; done", "echo provisioned while the browser watched"]
"#;

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_in_a_real_browser() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let story = Story::start_with_env(
        |files, sandbox_port| {
            files.insert(
                "recipes/sandbox-base/recipe.toml".into(),
                sandbox_recipe(sandbox_port, WAIT_STEP),
            );
        },
        &[
            ("BAKERY_LISTEN", &listen),
            ("BAKERY_PUBLIC_URL", &url),
            ("BAKERY_JOB_PAGES__OPERATOR_TOKEN", OPERATOR_TOKEN),
            ("BAKERY_DASHBOARD__GITHUB_CLIENT_ID", CLIENT_ID),
            ("BAKERY_DASHBOARD__GITHUB_CLIENT_SECRET", CLIENT_SECRET),
            ("BAKERY_DASHBOARD__SESSION_KEY", SESSION_KEY),
        ],
    )
    .await;
    assert_eq!(story.bakery.addr.port(), port);
    story.github.set_oauth_app(
        CLIENT_ID,
        CLIENT_SECRET,
        &format!("{url}/dashboard/sign-in/github/callback"),
    );
    story.github.sign_in_browser(Some(OUTSIDER));

    // The release starts.
    let pushed = story.push_tag("release-0.1.0", TagKind::Annotated);
    let (code, body) = story
        .deliver("push", "browser-delivery-1", &story.push_payload(&pushed))
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

    // The browser.
    let shots = screenshots();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/dashboard_browser.mjs");
    let mut node = tokio::process::Command::new("node")
        .arg(&script)
        .env("BAKERY_URL", &url)
        .env("OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("JOB_ID", job_id.to_string())
        .env("SHOTS", &shots)
        .env("FIXTURES", &fixtures)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (scripts/setup.sh installs it)");
    let mut stdin = node.stdin.take().unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut result = None;
    let deadline = Duration::from_secs(600);
    while let Some(line) = tokio::time::timeout(deadline, lines.next_line())
        .await
        .expect("the browser keeps going")
        .unwrap()
    {
        if line == "WATCHING" {
            // The page shows the step waiting: only now may the builder go on.
            let host_path = story.sandbox.path(WATCHED);
            std::fs::write(&host_path, "").unwrap();
            stdin.write_all(b"go\n").await.unwrap();
        } else if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(serde_json::from_str::<serde_json::Value>(json).unwrap());
        }
    }
    let out = node.wait_with_output().await.unwrap();
    let result = result.unwrap_or_else(|| {
        panic!(
            "the browser script failed ({}): {}\nbakery's log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            story.bakery.log_text()
        )
    });
    let text = |k: &str| result[k].as_str().unwrap_or_default().to_string();

    // Signed out, the dashboard sends the browser to sign in.
    assert_eq!(text("unsignedUrl"), format!("{url}/dashboard/sign-in"));
    // The list showed the job while it ran.
    let list = text("listWhileRunning");
    assert!(
        list.contains(REPO) && list.contains(&format!("#{job_id}")),
        "{list}"
    );
    let on_open = text("stateOnOpen");
    assert!(
        on_open.starts_with("running") || on_open.starts_with("queued"),
        "the build page opened on a running job: {on_open}"
    );
    // The live log: the line the builder printed after the page was showing.
    let live = text("liveLog");
    assert!(
        live.contains("[provision]") && live.contains("provisioned while the browser watched"),
        "{live}"
    );

    // The finished build, with every image, and no live log any more.
    let job = story.wait_for_job(job_id).await;
    story.assert_succeeded(&job, &story.job_log(job_id).await);
    assert!(text("finalState").starts_with("succeeded"), "{result}");
    assert_eq!(result["finishedHasLiveScript"], false);
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
    let copies: Vec<_> = manifest.builds.iter().flat_map(|b| &b.copies).collect();
    assert_eq!(copies.len(), story_targets().len());
    let images_table = result["finishedImages"].to_string();
    let images_page = text("imagesPage");
    for c in copies {
        for shown in [&images_table, &images_page] {
            assert!(
                shown.contains(&c.ami) && shown.contains(&c.region) && shown.contains(&c.account),
                "{c:?} in {shown}"
            );
        }
    }

    // The person without read access: no build of the repository, and its job is not found.
    let person = text("personList");
    assert!(
        person.contains(OUTSIDER),
        "signed in as the outsider: {person}"
    );
    assert!(!person.contains(REPO), "{person}");
    assert_eq!(result["personLinks"], 0, "{person}");
    assert_eq!(result["personJobStatus"], 404);
    assert!(!text("personJobBody").contains(REPO));
    assert!(story
        .github
        .calls_of("repos/get-collaborator-permission-level")
        .iter()
        .any(|c| c
            .path
            .ends_with(&format!("/collaborators/{OUTSIDER}/permission"))));

    // Screenshots of each page, as PNG files.
    for name in [
        "builds.png",
        "build-live.png",
        "build.png",
        "images.png",
        "health.png",
        "builds-person-without-access.png",
    ] {
        let bytes = std::fs::read(shots.join(name)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is a PNG");
    }
    story.assert_no_github_violations();
    // The figure deploy/kubernetes/deployment.yaml's memory request comes from.
    let status = std::fs::read_to_string(format!("/proc/{}/status", story.bakery.child.id()))
        .unwrap_or_default();
    if let Some(peak) = status.lines().find(|l| l.starts_with("VmHWM")) {
        eprintln!("bakery serve's peak resident memory during the story: {peak}");
    }
}
