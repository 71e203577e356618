//! The fast tier's harness: bakery's GitHub conversation in this process, in seconds.
//!
//! It starts the real router (`server::router`: signatures, intake, the store before the
//! 2xx), the real worker pool and job handlers, the store on SQLite in memory, and the
//! fake GitHub serving a real bare git repository. No moto, no sandbox, no `bakery`
//! binary: a recipe's images come from the fake engine (`fake_engine.rs`), the
//! provisioner is the `NoProvisioner` test hook and the AWS endpoint is a closed port, so
//! anything else that would reach a cloud fails loudly instead. What only real components
//! can show (the AWS calls of a build, cleanup, crashes) stays in the stories
//! (`story.rs`).
//!
//! Touches only its own temporary directories, a loopback port and the in-memory store.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bakery::config::ServerConfig;
use bakery::database::{DynStore, Job, JobFilter, SqlStore};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::bakery_process::http;
use super::examples::{example, sign};
use super::fake_engine::FakeEngine;
use super::fake_github::{FakeGitHub, PullState};
use super::git::git;
use super::push_event::{self, PushedTag, TagKind};
use super::story::{app_private_key, walk, write_files};

pub const REPO: &str = "acme/images";
pub const INSTALLATION: u64 = 4242;
pub const APP_ID: u64 = 77;
pub const BOT: &str = "bakery[bot]";
const WEBHOOK_SECRET: &str = "conversation-webhook-secret";
/// The repository's `bakery.toml`: the stories' (pull requests built on command), with
/// release tags building the example Ubuntu base, which distributes to a second account.
pub const CONVERSATION_BAKERY_TOML: &str = r#"pull_requests = "on-command"

[[tags]]
pattern = "release-*"
recipes = ["base-ubuntu"]

[[tags]]
pattern = "{recipe}/v*"

[defaults]
region = "us-east-1"
regions = ["us-east-1"]
kms_key = "alias/ami"
account_role = "bakery-ami-copy"
tags = { ManagedBy = "bakery" }
"#;
/// How long a conversation waits for one job: it touches no cloud, so seconds.
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

/// The App's private key, made once per test binary (generating one takes a second).
fn app_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(app_private_key)
}

pub struct Conversation {
    pub github: FakeGitHub,
    pub store: DynStore,
    /// Builds every recipe's EC2 images, and records what it was asked.
    pub engine: Arc<FakeEngine>,
    /// The router's address.
    pub addr: SocketAddr,
    /// The developer's clone of the repository.
    pub work: PathBuf,
    /// The repository GitHub holds.
    bare: PathBuf,
    clone_url: String,
    shutdown: CancellationToken,
    _dirs: Vec<tempfile::TempDir>,
}

impl Drop for Conversation {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Conversation {
    /// Starts the router, the workers and the fake GitHub, with a repository holding the
    /// example recipes and [`CONVERSATION_BAKERY_TOML`].
    pub async fn start() -> Conversation {
        let bare_dir = tempfile::tempdir().unwrap();
        let work_dir = tempfile::tempdir().unwrap();
        let bare = bare_dir.path().join("images.git");
        let work = work_dir.path().join("images");
        git(
            bare_dir.path(),
            &["init", "-q", "--bare", "-b", "main", "images.git"],
        );
        git(work_dir.path(), &["init", "-q", "-b", "main", "images"]);
        git(&work, &["config", "user.name", "Mona Lisa"]);
        git(&work, &["config", "user.email", "mona@example.com"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut files = BTreeMap::new();
        for entry in walk(&root.join("recipes")) {
            let rel = entry.strip_prefix(&root).unwrap().to_string_lossy();
            files.insert(rel.to_string(), std::fs::read_to_string(&entry).unwrap());
        }
        files.insert("bakery.toml".into(), CONVERSATION_BAKERY_TOML.into());
        write_files(&work, &files);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "Add the image recipes"]);
        git(&work, &["push", "-q", "origin", "main"]);

        let github = FakeGitHub::start().await;
        github.set_app(APP_ID, "bakery");
        github.add_repo(REPO, "", Some(INSTALLATION));
        let clone_url = github.serve_git(REPO, &bare);

        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("app.pem");
        std::fs::write(&key_file, app_key()).unwrap();
        // A closed port: nothing in a conversation may reach a cloud.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let no_aws = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let env: Vec<(String, String)> = [
            ("BAKERY_WEBHOOK__SECRETS", WEBHOOK_SECRET.to_string()),
            ("BAKERY_DATABASE_URL", "sqlite::memory:".to_string()),
            (
                "BAKERY_WORK_DIR",
                dir.path().join("work").display().to_string(),
            ),
            ("BAKERY_WORKERS__CONCURRENCY", "2".to_string()),
            ("BAKERY_WORKERS__POLL_MILLIS", "50".to_string()),
            ("BAKERY_GITHUB__API_URL", github.api_url().to_string()),
            ("BAKERY_GITHUB__APP_ID", APP_ID.to_string()),
            (
                "BAKERY_GITHUB__PRIVATE_KEY_FILE",
                key_file.display().to_string(),
            ),
            ("BAKERY_AWS__ENDPOINT_URL", no_aws),
            // The operator's policy: the Ubuntu base copies to its second account with the
            // role `bakery.toml` names.
            (
                "BAKERY_POLICY__DEFAULT__ACCOUNTS__111111111111__ROLE_ARN",
                "arn:aws:iam::111111111111:role/bakery-ami-copy".to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let config = ServerConfig::load(None, env).expect("the conversation's configuration");

        let store: DynStore = Arc::new(
            SqlStore::connect(config.database_url.expose())
                .await
                .unwrap(),
        );
        let job_queued = Arc::new(Notify::new());
        let state =
            bakery::server::AppState::new(&config, store.clone(), job_queued.clone()).unwrap();
        let provisioner: Arc<dyn bakery::provision::Provisioner> =
            Arc::new(bakery::build::hooks::NoProvisioner);
        let engine = Arc::new(FakeEngine::default());
        let deps = Arc::new(bakery::jobs::JobDeps {
            engine: engine.clone(),
            ..bakery::jobs::JobDeps::from_config(config.clone(), store.clone(), provisioner)
                .unwrap()
        });
        let handler = Arc::new(bakery::jobs::Dispatcher::new(deps));
        let shutdown = CancellationToken::new();
        let _workers = bakery::worker::WorkerPool::new(
            store.clone(),
            handler,
            config.workers.clone(),
            job_queued,
        )
        .spawn(shutdown.clone());
        // The workers stop with `shutdown`; their join set lives in the task below.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = bakery::server::router(state);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut workers = _workers;
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            while workers.join_next().await.is_some() {}
        });

        Conversation {
            github,
            store,
            engine,
            addr,
            work,
            bare,
            clone_url,
            shutdown,
            _dirs: vec![bare_dir, work_dir, dir],
        }
    }

    /// Points a GitHub example payload at the conversation's repository and installation.
    pub fn point_at_repo(&self, p: &mut Value) {
        let (owner, name) = REPO.split_once('/').unwrap();
        let r = &mut p["repository"];
        r["full_name"] = json!(REPO);
        r["name"] = json!(name);
        r["owner"]["login"] = json!(owner);
        r["owner"]["name"] = json!(owner);
        r["clone_url"] = json!(self.clone_url);
        r["default_branch"] = json!("main");
        p["installation"] = json!({ "id": INSTALLATION, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDI0Mg==" });
    }

    /// `git tag [-a] TAG && git push origin TAG` at the head of `main`.
    pub fn push_tag(&self, tag: &str, kind: TagKind) -> PushedTag {
        push_event::tag_and_push(&self.work, &self.bare, tag, kind, false)
    }

    /// The `push` delivery GitHub sends for `pushed`, built from the real repository.
    pub fn push_payload(&self, pushed: &PushedTag) -> Value {
        let mut p =
            push_event::push_payload(&self.bare, &format!("https://github.com/{REPO}"), pushed);
        self.point_at_repo(&mut p);
        p
    }

    /// Posts a delivery signed with `secret` to the router.
    pub async fn deliver_signed(
        &self,
        secret: &str,
        event: &str,
        delivery: &str,
        payload: &Value,
    ) -> (u16, String) {
        let body = serde_json::to_vec(payload).unwrap();
        let sig = sign(secret, &body);
        http(
            self.addr,
            "POST",
            "/webhooks/github",
            &[
                ("X-GitHub-Event", event),
                ("X-GitHub-Delivery", delivery),
                ("X-Hub-Signature-256", &sig),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
        .await
        .unwrap()
    }

    /// Posts a correctly signed delivery and waits for the job it made to finish.
    pub async fn deliver_and_wait(&self, event: &str, delivery: &str, payload: &Value) -> Job {
        let (status, body) = self
            .deliver_signed(WEBHOOK_SECRET, event, delivery, payload)
            .await;
        assert_eq!(status, 202, "{event} {delivery}: {body}");
        let started = Instant::now();
        loop {
            let job = self
                .jobs()
                .await
                .into_iter()
                .find(|j| j.delivery_ids.iter().any(|d| d == delivery));
            if let Some(job) = job {
                let job = self.store.get_job(job.id).await.unwrap().unwrap();
                if job.state.is_finished() {
                    return job;
                }
            }
            assert!(
                started.elapsed() < JOB_TIMEOUT,
                "delivery {delivery} made no finished job within {JOB_TIMEOUT:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn jobs(&self) -> Vec<Job> {
        self.store.list_jobs(&JobFilter::default()).await.unwrap()
    }

    pub async fn job_log(&self, id: i64) -> String {
        self.store
            .job_log(id)
            .await
            .unwrap()
            .into_iter()
            .map(|l| format!("[{}] {}\n", l.step, l.message))
            .collect()
    }

    /// Commits `files` on `branch` and publishes it as GitHub does for pull request
    /// `number` (`refs/pull/<number>/head`), with the fake's pull request state. Returns
    /// the head SHA.
    pub fn open_pr(
        &self,
        number: u64,
        branch: &str,
        author: &str,
        files: &[(&str, &str)],
    ) -> String {
        git(&self.work, &["checkout", "-q", "-B", branch, "main"]);
        for (path, content) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "-m", &format!("change {branch}")],
        );
        git(
            &self.work,
            &[
                "push",
                "-q",
                "-f",
                "origin",
                &format!("HEAD:refs/pull/{number}/head"),
            ],
        );
        let sha = git(&self.work, &["rev-parse", "HEAD"]).trim().to_string();
        git(&self.work, &["checkout", "-q", "main"]);
        self.github.set_pull(
            REPO,
            number,
            PullState {
                head_sha: sha.clone(),
                head_ref: branch.into(),
                head_repo: REPO.into(),
                base_ref: "main".into(),
                author: author.into(),
                state: "open".into(),
            },
        );
        sha
    }

    /// GitHub's `pull_request` event, from the official example with only the values
    /// changed.
    pub fn pr_payload(
        &self,
        action: &str,
        number: u64,
        sha: &str,
        branch: &str,
        author: &str,
    ) -> Value {
        let mut p = example("pull_request", |e| e["action"] == action);
        self.point_at_repo(&mut p);
        p["number"] = json!(number);
        let pr = &mut p["pull_request"];
        pr["number"] = json!(number);
        pr["draft"] = json!(false);
        pr["user"]["login"] = json!(author);
        pr["head"]["sha"] = json!(sha);
        pr["head"]["ref"] = json!(branch);
        pr["head"]["label"] = json!(format!("acme:{branch}"));
        pr["head"]["repo"]["full_name"] = json!(REPO);
        pr["head"]["repo"]["name"] = json!("images");
        pr["head"]["repo"]["owner"]["login"] = json!("acme");
        pr["base"]["ref"] = json!("main");
        pr["base"]["repo"]["full_name"] = json!(REPO);
        p
    }

    /// GitHub's `issue_comment` `created` event on pull request `number`, from the
    /// official example with only the values changed.
    pub fn comment_payload(&self, number: u64, comment_id: u64, author: &str, body: &str) -> Value {
        let mut p = example("issue_comment", |e| e["action"] == "created");
        self.point_at_repo(&mut p);
        let api = format!("https://api.github.com/repos/{REPO}");
        p["issue"]["number"] = json!(number);
        p["issue"]["pull_request"] = json!({
            "url": format!("{api}/pulls/{number}"),
            "html_url": format!("https://github.com/{REPO}/pull/{number}"),
            "diff_url": format!("https://github.com/{REPO}/pull/{number}.diff"),
            "patch_url": format!("https://github.com/{REPO}/pull/{number}.patch"),
            "merged_at": null
        });
        p["comment"]["id"] = json!(comment_id);
        p["comment"]["body"] = json!(body);
        p["comment"]["user"]["login"] = json!(author);
        p["comment"]["author_association"] = json!("MEMBER");
        p
    }

    /// The bodies of bakery's comments on pull request `number`, oldest first.
    pub fn bot_comments(&self, number: u64) -> Vec<String> {
        self.github
            .repo(REPO)
            .issue_comments
            .values()
            .filter(|(n, c)| *n == number && c["user"]["login"] == BOT)
            .map(|(_, c)| c["body"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Every request bakery sent to GitHub passed the REST description.
    pub fn assert_no_github_violations(&self) {
        let v = self.github.violations();
        assert!(v.is_empty(), "outside GitHub's REST description: {v:#?}");
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.work.join(Path::new(rel))
    }
}
