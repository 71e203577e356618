//! The end-to-end story harness: the real `bakery serve`, moto behind a recording proxy,
//! a sandboxed sshd as the builder, a stateful fake GitHub serving a real bare git
//! repository, and helpers that read like what a user does: commit, tag, push, and look
//! at what bakery left on GitHub.
//!
//! The sandbox plays the builder instance: recipes reach it through
//! `connect = { host, port }`. Like cloud-init on EC2, the harness authorizes every key
//! pair bakery imports into moto for the sandbox's build user.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ec2::config::{Credentials, SharedCredentialsProvider};
use bakery::aws::wait::PollSettings;
use bakery::aws::{AwsSession, AwsSettings, Target};
use bakery::database::{DynStore, Job, JobFilter, JobState, SqlStore};
use bakery::plan::model::AccountTarget;
use serde_json::{json, Value};

use super::aws_proxy::AwsProxy;
use super::bakery_process::{http, BakeryServer};
use super::examples::sign;
use super::fake_github::FakeGitHub;
use super::git::git;
use super::moto::Moto;
use super::push_event;
pub use super::push_event::{PushedTag, TagKind};
use super::sandbox::{Sandbox, SandboxOptions};

pub const REPO: &str = "acme/images";
pub const INSTALLATION: u64 = 4242;
pub const APP_ID: u64 = 77;
pub const WEBHOOK_SECRET: &str = "story-webhook-secret";
/// Signs the job page links on check runs.
pub const JOB_PAGE_KEY: &str = "story-job-page-key-0123456789";
pub const HOME: &str = "123456789012";
pub const OTHER: &str = "222222222222";
pub const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];
pub const OTHER_REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// How long a story waits for bakery to finish a job.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(600);

pub fn other_account() -> AccountTarget {
    AccountTarget {
        account_id: OTHER.into(),
        role_arn: format!("arn:aws:iam::{OTHER}:role/bakery-ami-copy"),
        external_id: Some(super::iam_oracle::TARGET_EXTERNAL_ID.into()),
    }
}

pub fn target(account: &str, region: &str) -> Target {
    Target {
        account: account.into(),
        region: region.into(),
    }
}

/// Every (account, region) the story recipe distributes to.
pub fn story_targets() -> Vec<Target> {
    let mut t: Vec<Target> = REGIONS.iter().map(|r| target(HOME, r)).collect();
    t.extend(OTHER_REGIONS.iter().map(|r| target(OTHER, r)));
    t
}

fn aws_settings(endpoint: &str) -> AwsSettings {
    AwsSettings {
        endpoint_url: Some(endpoint.into()),
        endpoints: Default::default(),
        credentials: Some(SharedCredentialsProvider::new(Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "story",
        ))),
        max_attempts: 3,
        poll: PollSettings {
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_millis(500),
            factor: 2.0,
        },
        installation: bakery::aws::tags::DEFAULT_INSTALLATION.into(),
        home_clients: Default::default(),
    }
}

/// A fresh RSA key for the fake GitHub App.
pub(crate) fn app_private_key() -> String {
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("openssl runs (scripts/setup.sh installs it)");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

pub struct Story {
    pub moto: Moto,
    pub proxy: AwsProxy,
    /// A session straight to moto, for checks.
    pub check: AwsSession,
    pub sandbox: Sandbox,
    pub github: FakeGitHub,
    pub bakery: BakeryServer,
    pub store: DynStore,
    /// The developer's working clone.
    pub work: PathBuf,
    /// The bare repository GitHub serves.
    pub bare: PathBuf,
    pub clone_url: String,
    database_url: String,
    app_key_file: PathBuf,
    _dirs: Vec<tempfile::TempDir>,
    key_poller: tokio::task::JoinHandle<()>,
}

impl Drop for Story {
    fn drop(&mut self) {
        self.key_poller.abort();
    }
}

/// The story's own recipe: it runs against the sandbox, through a fixed address.
pub fn sandbox_recipe(port: u16, extra_steps: &str) -> String {
    format!(
        r#"description = "A base image built by the end-to-end story"

[source]
owners = ["amazon"]
name = "amzn2-ami-hvm-*-x86_64-gp2"
architecture = "x86_64"
most_recent = true

[builder]
instance_type = "t3.micro"
ssh_user = "builder"
connect = {{ host = "127.0.0.1", port = {port} }}
ssh_cidr = "10.0.0.0/8"

[variables]
greeting = {{ type = "string", default = "hello" }}

[[provision]]
type = "shell"
name = "Say hello"
inline = ["echo {{{{ var.greeting }}}} from {{{{ recipe }}}}", "uname -s"]

[[provision]]
type = "file"
name = "Install the motd"
source = "files/motd"
destination = "/etc/motd"
mode = "0644"
owner = "root:root"

[[provision]]
type = "shell"
name = "Write the app version"
inline = ["mkdir -p /opt/app", "echo {{{{ version }}}} > /opt/app/VERSION"]
sudo = true
{extra_steps}
[stamp]
extra = {{ OS = "debian-12" }}

[[verify]]
type = "command"
name = "app version matches"
command = "cat /opt/app/VERSION"
expect_stdout = "{{{{ version }}}}"

[image]
name = "sandbox-base-{{{{ version }}}}"
description = "Story base image {{{{ version }}}}"
tags = {{ Team = "platform" }}

[distribute]
regions = ["us-east-1", "eu-west-1", "ap-southeast-2"]
kms_key = "alias/ami"
deprecate_after = "180d"

[[distribute.accounts]]
account_id = "{OTHER}"
role_arn = "arn:aws:iam::{OTHER}:role/bakery-ami-copy"
regions = ["us-east-1", "eu-west-1"]
"#
    )
}

pub const STORY_BAKERY_TOML: &str = r#"# The story repository: release tags build the sandbox recipe; the examples ride along.
pull_requests = "on-command"

[[tags]]
pattern = "release-*"
recipes = ["sandbox-base"]

[[tags]]
pattern = "{recipe}/v*"

[defaults]
region = "us-east-1"
regions = ["us-east-1"]
kms_key = "alias/ami"
account_role = "bakery-ami-copy"
tags = { ManagedBy = "bakery" }
"#;

impl Story {
    /// Starts every component and a repository holding the example recipes and the
    /// story's own sandbox recipe, pushed to `main`.
    pub async fn start() -> Story {
        Self::start_with(|_, _| {}).await
    }

    /// Like [`Story::start`], with a chance to change the files of the first commit
    /// (the closure also gets the sandbox's SSH port).
    pub async fn start_with(edit: impl FnOnce(&mut BTreeMap<String, String>, u16)) -> Story {
        Self::start_with_env(edit, &[]).await
    }

    /// As [`Story::start_with`], with more `BAKERY_*` settings for `bakery serve` (the
    /// operator's configuration).
    pub async fn start_with_env(
        edit: impl FnOnce(&mut BTreeMap<String, String>, u16),
        extra_env: &[(&str, &str)],
    ) -> Story {
        let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
        let proxy = AwsProxy::start(moto.port).await;
        let check = AwsSession::connect(aws_settings(&moto.endpoint), "us-east-1")
            .await
            .unwrap();
        check
            .assume_role(&other_account(), "story-setup")
            .await
            .unwrap();
        for t in story_targets() {
            let kms = check.kms(&t).unwrap();
            let key = kms.create_key().description("ami").send().await.unwrap();
            kms.create_alias()
                .alias_name("alias/ami")
                .target_key_id(key.key_metadata().unwrap().key_id())
                .send()
                .await
                .unwrap();
        }

        let sandbox = tokio::task::spawn_blocking(|| Sandbox::start(SandboxOptions::default()))
            .await
            .unwrap()
            .expect("start the sandboxed sshd (scripts/sandbox/setup.sh)");

        // The repository: a bare one GitHub serves, and the developer's clone.
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

        let mut files = BTreeMap::new();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        for entry in walk(&root.join("recipes")) {
            let rel = entry
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .to_string();
            files.insert(rel, std::fs::read_to_string(&entry).unwrap());
        }
        files.insert("bakery.toml".into(), STORY_BAKERY_TOML.into());
        files.insert(
            "recipes/sandbox-base/recipe.toml".into(),
            sandbox_recipe(sandbox.port, ""),
        );
        files.insert(
            "recipes/sandbox-base/files/motd".into(),
            "Built by bakery.\n".into(),
        );
        edit(&mut files, sandbox.port);
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
        std::fs::write(&key_file, app_private_key()).unwrap();
        let db = format!("sqlite://{}/bakery.db", dir.path().display());
        let other_role_key = format!("BAKERY_POLICY__DEFAULT__ACCOUNTS__{OTHER}__ROLE_ARN");
        let other_role = other_account().role_arn;
        let other_external_key = format!("BAKERY_POLICY__DEFAULT__ACCOUNTS__{OTHER}__EXTERNAL_ID");
        let bakery_work = dir.path().join("work").display().to_string();
        let app_id = APP_ID.to_string();
        let no_config = dir.path().join("no-aws-config").display().to_string();
        let no_credentials = dir.path().join("no-aws-credentials").display().to_string();
        let mut env: Vec<(&str, &str)> = vec![
            ("BAKERY_WEBHOOK__SECRETS", WEBHOOK_SECRET),
            ("BAKERY_DATABASE_URL", &db),
            ("BAKERY_PUBLIC_URL", "https://bakery.example.com"),
            ("BAKERY_JOB_PAGES__KEY", JOB_PAGE_KEY),
            ("BAKERY_WORK_DIR", &bakery_work),
            ("BAKERY_WORKERS__CONCURRENCY", "1"),
            ("BAKERY_GITHUB__API_URL", github.api_url()),
            ("BAKERY_GITHUB__APP_ID", &app_id),
            (
                "BAKERY_GITHUB__PRIVATE_KEY_FILE",
                key_file.to_str().unwrap(),
            ),
            ("BAKERY_AWS__ENDPOINT_URL", &proxy.endpoint),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", &no_config),
            ("AWS_SHARED_CREDENTIALS_FILE", &no_credentials),
            ("BAKERY_LOG", "info,bakery=debug"),
            // The operator's policy: the story recipe reaches the sandbox through
            // `connect`, and copies to the other account with its role.
            ("BAKERY_POLICY__DEFAULT__ALLOW_CONNECT", "true"),
            (&other_role_key, &other_role),
            (&other_external_key, super::iam_oracle::TARGET_EXTERNAL_ID),
        ];
        env.extend_from_slice(extra_env);
        let bakery = BakeryServer::start(dir.path(), &env).await;
        let store: DynStore = Arc::new(SqlStore::connect(&db).await.unwrap());

        let key_poller = tokio::spawn(authorize_imported_keys(
            aws_settings(&moto.endpoint),
            sandbox.path("/home/builder/.ssh/authorized_keys"),
        ));

        Story {
            moto,
            proxy,
            check,
            sandbox,
            github,
            bakery,
            store,
            work,
            bare,
            clone_url,
            database_url: db,
            app_key_file: key_file,
            _dirs: vec![bare_dir, work_dir, dir],
            key_poller,
        }
    }

    /// The environment a `bakery` command needs to reach moto as the home account.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        let dir = self._dirs[2].path();
        vec![
            (
                "BAKERY_AWS__ENDPOINT_URL".into(),
                self.proxy.endpoint.clone(),
            ),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            (
                "AWS_CONFIG_FILE".into(),
                dir.join("no-aws-config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                dir.join("no-aws-credentials").display().to_string(),
            ),
        ]
    }

    /// The store `bakery serve` uses, for other `bakery` commands.
    pub fn bakery_database_url(&self) -> &str {
        &self.database_url
    }

    /// The GitHub App's private key file `bakery serve` uses.
    pub fn app_key_file(&self) -> &Path {
        &self.app_key_file
    }

    /// Commits `files` (path → content) in the developer's clone and pushes `main`.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        let map: BTreeMap<String, String> = files
            .iter()
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect();
        write_files(&self.work, &map);
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"]).trim().to_string()
    }

    /// `git tag TAG && git push origin TAG`, with the real git CLI: a lightweight tag.
    pub fn tag_and_push(&self, tag: &str) -> PushedTag {
        self.push_tag(tag, TagKind::Lightweight)
    }

    /// Tags HEAD as `tag` (`git tag` or `git tag -a`) and pushes it with the git CLI.
    pub fn push_tag(&self, tag: &str, kind: TagKind) -> PushedTag {
        push_event::tag_and_push(&self.work, &self.bare, tag, kind, false)
    }

    /// `git tag -f [-a] TAG && git push -f origin TAG`: moves (or re-creates) the tag at
    /// HEAD.
    pub fn force_tag(&self, tag: &str, kind: TagKind) -> PushedTag {
        push_event::tag_and_push(&self.work, &self.bare, tag, kind, true)
    }

    /// The `push` delivery GitHub sends for `pushed`, built from the real repository.
    pub fn push_payload(&self, pushed: &PushedTag) -> Value {
        let mut p =
            push_event::push_payload(&self.bare, &format!("https://github.com/{REPO}"), pushed);
        self.point_at_repo(&mut p);
        p
    }

    /// The `push` delivery GitHub sends when `main` moves from `before` to its head.
    pub fn branch_push_payload(&self, before: &str) -> Value {
        let after = self.head();
        let mut p = push_event::branch_push_payload(
            &self.bare,
            &format!("https://github.com/{REPO}"),
            "main",
            before,
            &after,
        );
        self.point_at_repo(&mut p);
        p
    }

    /// The `create` delivery GitHub sends for a new tag.
    pub fn create_payload(&self, tag: &str) -> Value {
        let mut p = push_event::create_payload("main", tag);
        self.point_at_repo(&mut p);
        p
    }

    /// Rewrites the example's repository and installation to the story's.
    pub fn point_at_repo(&self, p: &mut Value) {
        let (owner, name) = REPO.split_once('/').unwrap();
        let r = &mut p["repository"];
        r["full_name"] = json!(REPO);
        r["name"] = json!(name);
        r["owner"]["login"] = json!(owner);
        r["owner"]["name"] = json!(owner);
        r["clone_url"] = json!(self.clone_url);
        r["default_branch"] = json!("main");
        if p.get("installation").is_some() {
            p["installation"]["id"] = json!(INSTALLATION);
        } else {
            p["installation"] = json!({ "id": INSTALLATION, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDI0Mg==" });
        }
    }

    /// Posts a delivery to `bakery serve`, signed as GitHub signs it.
    pub async fn deliver(&self, event: &str, delivery: &str, payload: &Value) -> (u16, String) {
        let body = serde_json::to_vec(payload).unwrap();
        let sig = sign(WEBHOOK_SECRET, &body);
        http(
            self.bakery.addr,
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

    pub async fn jobs(&self) -> Vec<Job> {
        self.store.list_jobs(&JobFilter::default()).await.unwrap()
    }

    /// Waits until job `id` has finished, and returns it.
    pub async fn wait_for_job(&self, id: i64) -> Job {
        let started = Instant::now();
        loop {
            let job = self.store.get_job(id).await.unwrap().expect("job exists");
            if job.state.is_finished() {
                return job;
            }
            if started.elapsed() > JOB_TIMEOUT {
                panic!(
                    "job {id} did not finish within {JOB_TIMEOUT:?}: {job:?}\nbakery's log:\n{}",
                    self.bakery.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits for the single job of the store, and returns it finished.
    pub async fn wait_for_only_job(&self) -> Job {
        let started = Instant::now();
        loop {
            let jobs = self.jobs().await;
            if let Some(j) = jobs.first() {
                assert_eq!(jobs.len(), 1, "exactly one job: {jobs:?}");
                return self.wait_for_job(j.id).await;
            }
            assert!(started.elapsed() < JOB_TIMEOUT, "no job was created");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

    pub fn assert_succeeded(&self, job: &Job, log: &str) {
        assert_eq!(
            job.state,
            JobState::Succeeded,
            "job failed: {:?}\njob log:\n{log}\nbakery's log:\n{}",
            job.error,
            self.bakery.log_text()
        );
    }

    /// Every request bakery sent to GitHub passed the REST description.
    pub fn assert_no_github_violations(&self) {
        let v = self.github.violations();
        assert!(
            v.is_empty(),
            "requests or answers outside GitHub's REST description: {v:#?}"
        );
    }

    /// Images in `t` named `name`, as EC2 reports them.
    pub async fn images_named(&self, t: &Target, name: &str) -> Vec<aws_sdk_ec2::types::Image> {
        self.check
            .ec2(t)
            .unwrap()
            .describe_images()
            .owners("self")
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("name")
                    .values(name)
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .images()
            .to_vec()
    }

    /// Resources bakery left in `t`: instances not terminated, key pairs, security
    /// groups other than `default`, and images and snapshots other than `keep`.
    pub async fn leftovers(&self, t: &Target, keep_images: &BTreeSet<String>) -> Vec<String> {
        let ec2 = self.check.ec2(t).unwrap();
        let mut left = vec![];
        let instances = ec2.describe_instances().send().await.unwrap();
        for r in instances.reservations() {
            for i in r.instances() {
                let state = i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string());
                if state.as_deref() != Some("terminated") {
                    left.push(format!(
                        "{t}: instance {} ({state:?})",
                        i.instance_id().unwrap_or("?")
                    ));
                }
            }
        }
        for k in ec2.describe_key_pairs().send().await.unwrap().key_pairs() {
            left.push(format!("{t}: key pair {}", k.key_name().unwrap_or("?")));
        }
        for g in ec2
            .describe_security_groups()
            .send()
            .await
            .unwrap()
            .security_groups()
        {
            if g.group_name() != Some("default") {
                left.push(format!(
                    "{t}: security group {}",
                    g.group_id().unwrap_or("?")
                ));
            }
        }
        let images = ec2.describe_images().owners("self").send().await.unwrap();
        let mut kept_snapshots = BTreeSet::new();
        for i in images.images() {
            let id = i.image_id().unwrap_or("?").to_string();
            if keep_images.contains(&id) {
                for m in i.block_device_mappings() {
                    if let Some(s) = m.ebs().and_then(|e| e.snapshot_id()) {
                        kept_snapshots.insert(s.to_string());
                    }
                }
            } else {
                left.push(format!("{t}: image {id} {}", i.name().unwrap_or("")));
            }
        }
        let snaps = ec2
            .describe_snapshots()
            .owner_ids("self")
            .send()
            .await
            .unwrap();
        for s in snaps.snapshots() {
            let id = s.snapshot_id().unwrap_or("?");
            let tagged_by_bakery = s.tags().iter().any(|t| t.key() == Some("bakery:build-id"));
            if tagged_by_bakery && !kept_snapshots.contains(id) {
                left.push(format!("{t}: snapshot {id}"));
            }
        }
        left
    }
}

/// Like cloud-init on EC2: authorizes, for the sandbox's build user, every key pair
/// imported into moto's builder region.
async fn authorize_imported_keys(settings: AwsSettings, authorized_keys: PathBuf) {
    let Ok(session) = AwsSession::connect(settings, "us-east-1").await else {
        return;
    };
    let Ok(ec2) = session.ec2(&target(HOME, "us-east-1")) else {
        return;
    };
    authorize_key_pairs(ec2, vec![authorized_keys]).await
}

/// Like cloud-init on EC2: every key pair imported into `ec2`'s region is appended, once,
/// to each of the `authorized_keys` files. Runs until aborted.
pub(crate) async fn authorize_key_pairs(ec2: aws_sdk_ec2::Client, authorized_keys: Vec<PathBuf>) {
    let mut seen = BTreeSet::new();
    loop {
        if let Ok(out) = ec2
            .describe_key_pairs()
            .include_public_key(true)
            .send()
            .await
        {
            for k in out.key_pairs() {
                if let Some(public) = k.public_key() {
                    if seen.insert(public.to_string()) {
                        for file in &authorized_keys {
                            use std::io::Write;
                            if let Ok(mut f) = std::fs::OpenOptions::new()
                                .append(true)
                                .create(true)
                                .open(file)
                            {
                                let _ = writeln!(f, "{}", public.trim());
                            }
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

pub(crate) fn write_files(root: &Path, files: &BTreeMap<String, String>) {
    for (path, content) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        if path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}
