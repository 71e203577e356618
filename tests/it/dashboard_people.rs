//! People signed in to the dashboard with GitHub (the App's user authorisation, GitHub's
//! OAuth web flow against the fake GitHub): each sees only the builds of the repositories
//! GitHub says they can read, cancels only where they can write, and a forged, altered or
//! expired session cookie, a sign-in link started in another browser or a replayed code
//! gets nobody in. The bot's router runs in-process on a real port, with jobs written
//! straight into its store: no build runs, so this stays fast.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bakery::config::ServerConfig;
use bakery::database::{BuildRecord, BuildState, DynStore, JobKind, NewJob};
use bakery::server::{self, AppState};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::fake_github::FakeGitHub;
use crate::support::stores::TestStore;
use crate::support::story::app_private_key;

const APP_ID: u64 = 91;
const INSTALLATION: u64 = 9191;
const CLIENT_ID: &str = "Iv1.dashboard0123";
const CLIENT_SECRET: &str = "dashboard-client-secret-0123456789";
const SESSION_KEY: &str = "dashboard-session-key-0123456789";
const OPERATOR_TOKEN: &str = "people-operator-token-0123456789";
/// Mona can read this one: she sees its builds, and cannot cancel them.
const READ: &str = "acme/images";
/// Mona cannot read this one: nothing of it may show.
const HIDDEN: &str = "acme/secret-infra";
/// Mona can write this one: she may cancel its builds.
const WRITE: &str = "acme/ops-images";
const MONA: &str = "mona";

struct Http {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Http {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The value the answer sets for cookie `name` (`None` if it sets none).
    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies().into_iter().find_map(|c| {
            let first = c.split(';').next()?;
            let (k, v) = first.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }
    fn text(&self) -> String {
        format!("{} {:?}\n{}", self.status, self.headers, self.body)
    }
}

/// One HTTP/1.1 request to `url` (`http://host:port/path?query`).
async fn request(method: &str, url: &str, cookie: &str) -> Http {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = host.parse().unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let cookie = if cookie.is_empty() {
        String::new()
    } else {
        format!("Cookie: {cookie}\r\n")
    };
    let length = if method == "POST" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{cookie}{length}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Http {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A person's session cookie as the dashboard signs it: `p.<login>.<expiry>.<HMAC>`.
fn signed(key: &str, login: &str, expires: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("bakery dashboard person session\n{login}\n{expires}").as_bytes());
    format!(
        "bakery_session=p.{login}.{expires}.{}",
        hex::encode(mac.finalize().into_bytes())
    )
}

struct Board {
    url: String,
    github: FakeGitHub,
    store: DynStore,
    _store: TestStore,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Board {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Board {
    async fn start() -> Board {
        let github = FakeGitHub::start().await;
        github.set_app(APP_ID, "bakery");
        for repo in [READ, HIDDEN, WRITE] {
            github.add_repo(repo, "", Some(INSTALLATION));
        }
        github.set_permission(READ, MONA, "read", "read");
        github.set_permission(WRITE, MONA, "write", "write");
        // On HIDDEN, GitHub knows Mona as no collaborator (404, read as `none`).

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        github.set_oauth_app(
            CLIENT_ID,
            CLIENT_SECRET,
            &format!("{url}/dashboard/sign-in/github/callback"),
        );
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("app.pem");
        std::fs::write(&key, app_private_key()).unwrap();
        let test_store = TestStore::sqlite().await;
        let config = ServerConfig::load(
            None,
            [
                ("BAKERY_PUBLIC_URL", url.as_str()),
                ("BAKERY_GITHUB__API_URL", github.api_url()),
                ("BAKERY_GITHUB__APP_ID", &APP_ID.to_string()),
                ("BAKERY_GITHUB__PRIVATE_KEY_FILE", key.to_str().unwrap()),
                ("BAKERY_JOB_PAGES__OPERATOR_TOKEN", OPERATOR_TOKEN),
                ("BAKERY_DASHBOARD__GITHUB_CLIENT_ID", CLIENT_ID),
                ("BAKERY_DASHBOARD__GITHUB_CLIENT_SECRET", CLIENT_SECRET),
                ("BAKERY_DASHBOARD__SESSION_KEY", SESSION_KEY),
                ("BAKERY_DASHBOARD__PERMISSION_CACHE_SECS", "2"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap();
        let store = test_store.store.clone();
        let state =
            AppState::new(&config, store.clone(), Arc::new(tokio::sync::Notify::new())).unwrap();
        let app = server::router(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Board {
            url,
            github,
            store,
            _store: test_store,
            _dir: dir,
            task,
        }
    }

    /// A queued release job of `repo` with a log line and a build of `recipe`.
    async fn job(&self, repo: &str, tag: &str, recipe: &str) -> i64 {
        let sha = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
        let id = self
            .store
            .enqueue_job(&NewJob {
                kind: JobKind::Release,
                repo: repo.into(),
                git_ref: tag.into(),
                sha: sha.into(),
                pr_number: None,
                dedup_key: format!("release:{repo}:{tag}:{sha}"),
                payload: json!({"tag": tag}),
            })
            .await
            .unwrap()
            .unwrap();
        self.store
            .append_job_log(id, "provision", &format!("building {recipe} of {repo}"))
            .await
            .unwrap();
        let now = chrono::Utc::now();
        self.store
            .upsert_build(&BuildRecord {
                build_id: format!("build-{recipe}"),
                job_id: Some(id),
                recipe: recipe.into(),
                version: "1.0.0".into(),
                git_sha: sha.into(),
                state: BuildState::Running,
                plan: json!({}),
                manifest: None,
                error: None,
                created_at: now,
                updated_at: now,
            })
            .await
            .unwrap();
        id
    }

    async fn get(&self, path: &str, cookie: &str) -> Http {
        request("GET", &format!("{}{path}", self.url), cookie).await
    }

    async fn post(&self, path: &str, cookie: &str) -> Http {
        request("POST", &format!("{}{path}", self.url), cookie).await
    }

    /// Signs in through GitHub as whoever is signed in on the fake GitHub: the bot's
    /// redirect, GitHub's authorize page, the callback. Returns the callback's answer and
    /// the state cookie the browser held.
    async fn sign_in(&self) -> (Http, String) {
        let start = self.get("/dashboard/sign-in/github", "").await;
        assert_eq!(start.status, 303, "{}", start.text());
        let state = start.cookie("bakery_oauth_state").expect("a state cookie");
        let authorize = start.header("location").unwrap().to_string();
        assert!(
            authorize.starts_with(&format!("{}/login/oauth/authorize?", self.github.api_url())),
            "{authorize}"
        );
        assert!(
            authorize.contains(&format!("client_id={CLIENT_ID}")),
            "{authorize}"
        );
        let at_github = request("GET", &authorize, "").await;
        assert_eq!(at_github.status, 302, "{}", at_github.text());
        let callback = at_github.header("location").unwrap().to_string();
        assert!(callback.starts_with(&self.url), "{callback}");
        let path = callback.strip_prefix(&self.url).unwrap();
        let cookie = format!("bakery_oauth_state={state}");
        (self.get(path, &cookie).await, callback)
    }
}

fn permission_lookups(github: &FakeGitHub, repo: &str) -> usize {
    github
        .calls_of("repos/get-collaborator-permission-level")
        .iter()
        .filter(|c| c.path == format!("/repos/{repo}/collaborators/{MONA}/permission"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_sees_only_the_builds_of_repositories_they_can_read() {
    let board = Board::start().await;
    let read_job = board.job(READ, "release-1.0.0", "base").await;
    let hidden_job = board.job(HIDDEN, "release-9.9.9", "vault-bastion").await;
    let write_job = board.job(WRITE, "release-2.0.0", "ops").await;

    // The sign-in page offers GitHub.
    let page = board.get("/dashboard/sign-in", "").await;
    assert!(
        page.body.contains("/dashboard/sign-in/github"),
        "{}",
        page.text()
    );

    // Mona signs in with GitHub.
    board.github.sign_in_browser(Some(MONA));
    let (signed_in, _) = board.sign_in().await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.text());
    assert_eq!(signed_in.header("location"), Some("/dashboard"));
    let session = signed_in
        .cookie("bakery_session")
        .expect("a session cookie");
    assert!(session.starts_with(&format!("p.{MONA}.")), "{session}");
    let cookie = format!("bakery_session={session}");
    assert!(signed_in
        .cookies()
        .iter()
        .any(|c| c.starts_with("bakery_session=") && c.contains("HttpOnly")));

    // The builds list: her repositories' jobs, nothing of the hidden one (not its name,
    // its job, its recipe or its tag).
    let list = board.get("/dashboard", &cookie).await;
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(list.body.contains(MONA), "who is signed in: {}", list.body);
    for shown in [
        format!("/dashboard/jobs/{read_job}\""),
        format!("/dashboard/jobs/{write_job}\""),
    ] {
        assert!(list.body.contains(&shown), "{shown} in {}", list.body);
    }
    for hidden in [
        HIDDEN,
        "vault-bastion",
        "release-9.9.9",
        &format!("/dashboard/jobs/{hidden_job}\""),
    ] {
        assert!(!list.body.contains(hidden), "{hidden} in {}", list.body);
    }
    // Filtering by the hidden repository shows nothing either.
    let filtered = board
        .get("/dashboard?repo=acme%2Fsecret-infra", &cookie)
        .await;
    assert!(
        filtered.body.contains("No builds match."),
        "{}",
        filtered.body
    );

    // The hidden job's page, live log and cancel answer as for a job that does not exist.
    for (method, path) in [
        ("GET", format!("/dashboard/jobs/{hidden_job}")),
        ("GET", format!("/dashboard/jobs/{hidden_job}/log")),
        ("POST", format!("/dashboard/jobs/{hidden_job}/cancel")),
        ("GET", "/dashboard/jobs/987654".to_string()),
    ] {
        let answer = request(method, &format!("{}{path}", board.url), &cookie).await;
        assert_eq!(answer.status, 404, "{method} {path}: {}", answer.text());
        assert!(!answer.body.contains("vault-bastion"));
    }
    assert!(
        !board
            .store
            .get_job(hidden_job)
            .await
            .unwrap()
            .unwrap()
            .cancel_requested
    );
    // The images and health pages hold every repository's builds: health is the
    // operator's, images shows hers only.
    assert_eq!(board.get("/dashboard/health", &cookie).await.status, 404);
    let images = board.get("/dashboard/images", &cookie).await;
    assert_eq!(images.status, 200);

    // Read permission: the page, no cancel button, and a cancel is refused.
    let page = board
        .get(&format!("/dashboard/jobs/{read_job}"), &cookie)
        .await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        page.body.contains("building base of acme/images"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Cancel this job"), "{}", page.body);
    let refused = board
        .post(&format!("/dashboard/jobs/{read_job}/cancel"), &cookie)
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        !board
            .store
            .get_job(read_job)
            .await
            .unwrap()
            .unwrap()
            .cancel_requested
    );

    // Write permission: the cancel button, and the cancel goes through.
    let page = board
        .get(&format!("/dashboard/jobs/{write_job}"), &cookie)
        .await;
    assert!(page.body.contains("Cancel this job"), "{}", page.body);
    let cancelled = board
        .post(&format!("/dashboard/jobs/{write_job}/cancel"), &cookie)
        .await;
    assert_eq!(cancelled.status, 303, "{}", cancelled.text());
    assert!(
        board
            .store
            .get_job(write_job)
            .await
            .unwrap()
            .unwrap()
            .cancel_requested
    );

    // Permissions come from GitHub, asked once per repository while remembered...
    assert_eq!(permission_lookups(&board.github, READ), 1);
    assert_eq!(permission_lookups(&board.github, HIDDEN), 1);
    // ... and a revoked permission shows once the memory expires.
    board.github.set_permission(READ, MONA, "none", "none");
    let still = board.get("/dashboard", &cookie).await;
    assert!(still
        .body
        .contains(&format!("/dashboard/jobs/{read_job}\"")));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let after = board.get("/dashboard", &cookie).await;
    assert!(
        !after
            .body
            .contains(&format!("/dashboard/jobs/{read_job}\"")),
        "a revoked permission still shows the job: {}",
        after.body
    );
    assert_eq!(
        board
            .get(&format!("/dashboard/jobs/{read_job}"), &cookie)
            .await
            .status,
        404
    );

    // Mona's user token went nowhere: not into a cookie, not onto a page.
    let tokens: Vec<String> = board
        .github
        .state()
        .oauth
        .user_tokens
        .keys()
        .cloned()
        .collect();
    assert_eq!(tokens.len(), 1, "one sign-in, one user token");
    for answer in [&signed_in, &list, &page, &after] {
        for t in &tokens {
            assert!(!answer.text().contains(t.as_str()), "the user token leaked");
        }
        for secret in [CLIENT_SECRET, SESSION_KEY] {
            assert!(!answer.text().contains(secret), "a secret leaked");
        }
    }
    assert_eq!(board.github.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_or_replayed_sign_ins_get_nobody_in() {
    let board = Board::start().await;
    let hidden_job = board.job(HIDDEN, "release-9.9.9", "vault-bastion").await;
    let now = chrono::Utc::now().timestamp();
    let denied = |answer: &Http| {
        answer.status == 303 && answer.header("location") == Some("/dashboard/sign-in")
    };

    // A well-signed, unexpired cookie opens the dashboard (so what follows is refused for
    // what is wrong with it, not for its form).
    let good = signed(SESSION_KEY, MONA, now + 3600);
    assert_eq!(board.get("/dashboard", &good).await.status, 200);

    // Expired; signed with another key; the login or the expiry changed under the
    // signature; no signature.
    let sig = good.rsplit('.').next().unwrap().to_string();
    for forged in [
        signed(SESSION_KEY, MONA, now - 1),
        signed("not-the-session-key-0123456789", MONA, now + 3600),
        signed(OPERATOR_TOKEN, MONA, now + 3600),
        format!("bakery_session=p.octo-admin.{}.{sig}", now + 3600),
        format!("bakery_session=p.{MONA}.{}.{sig}", now + 999_999),
        format!("bakery_session=p.{MONA}.{}", now + 3600),
    ] {
        let answer = board.get("/dashboard", &forged).await;
        assert!(denied(&answer), "{forged}: {}", answer.text());
        let page = board
            .get(&format!("/dashboard/jobs/{hidden_job}"), &forged)
            .await;
        assert!(denied(&page), "{forged}: {}", page.text());
    }

    // A sign-in link started in another browser (its state is not this browser's): the
    // callback refuses it and sets no session.
    board.github.sign_in_browser(Some(MONA));
    let start = board.get("/dashboard/sign-in/github", "").await;
    let authorize = start.header("location").unwrap().to_string();
    let callback = request("GET", &authorize, "")
        .await
        .header("location")
        .unwrap()
        .to_string();
    let path = callback.strip_prefix(&board.url).unwrap().to_string();
    let other = format!("bakery_oauth_state={}", "0".repeat(64));
    for cookie in ["", other.as_str()] {
        let answer = board.get(&path, cookie).await;
        assert_eq!(answer.status, 400, "{}", answer.text());
        assert_eq!(answer.cookie("bakery_session"), None);
    }
    // From the browser that started it, the same callback signs in (a refused state never
    // reached GitHub, so the code was still unused).
    let state = start.cookie("bakery_oauth_state").unwrap();
    let cookie = format!("bakery_oauth_state={state}");
    let first = board.get(&path, &cookie).await;
    assert_eq!(first.status, 303, "{}", first.text());
    assert!(first.cookie("bakery_session").is_some());
    // Replayed: GitHub refuses a code the second time; no session.
    let replay = board.get(&path, &cookie).await;
    assert_eq!(replay.status, 400, "{}", replay.text());
    assert_eq!(replay.cookie("bakery_session"), None);

    // Nobody signed in on GitHub (the person said no): no session.
    board.github.sign_in_browser(None);
    let (refused, _) = board.sign_in().await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(refused.cookie("bakery_session"), None);
    assert_eq!(board.github.violations(), Vec::<String>::new());
}
