//! Server configuration: a TOML file plus `BAKERY_*` environment overrides.
//!
//! Every key can be overridden from the environment: `BAKERY_` + the key path in upper
//! case, with `__` between sections, e.g. `BAKERY_LISTEN=0.0.0.0:8080` or
//! `BAKERY_WORKERS__CONCURRENCY=4`. Secrets are read from the environment or from files
//! (`*_file` keys) and are never printed: see [`Secret`].

mod artifacts;
mod secret;

pub use artifacts::ArtifactsConfig;
pub use secret::Secret;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Environment variables with the `BAKERY_` prefix that are not configuration keys.
const NON_CONFIG_ENV: &[&str] = &["BAKERY_CONFIG", "BAKERY_LOG", "BAKERY_LOG_FORMAT"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the webhook listener binds.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Public base URL of this bot, used for links on GitHub (`details_url`).
    #[serde(default)]
    pub public_url: Option<String>,
    /// `sqlite://path/to/bakery.db` (default) or `postgres://...` for several replicas.
    /// A secret: a PostgreSQL URL may carry a password.
    #[serde(default = "defaults::database_url")]
    pub database_url: Secret,
    /// A file holding `database_url` (a mounted secret); it wins over `database_url`.
    #[serde(default)]
    pub database_url_file: Option<PathBuf>,
    #[serde(default)]
    pub webhook: WebhookConfig,
    #[serde(default)]
    pub workers: WorkerConfig,
    #[serde(default)]
    pub github: GitHubConfig,
    #[serde(default)]
    pub aws: AwsConfig,
    /// Where each repository's images may go and what its builds may do.
    #[serde(default)]
    pub policy: crate::policy::PolicyConfig,
    #[serde(default)]
    pub logs: LogConfig,
    #[serde(default)]
    pub job_pages: JobPagesConfig,
    /// Signed provenance of releases.
    #[serde(default)]
    pub provenance: ProvenanceConfig,
    /// Signing in to the dashboard with GitHub.
    #[serde(default)]
    pub dashboard: DashboardConfig,
    /// Where jobs check out repositories (a mirror cache and per-job workspaces).
    #[serde(default = "defaults::work_dir")]
    pub work_dir: PathBuf,
    /// The qemu builders' artifact directory and release assets.
    #[serde(default)]
    pub artifacts: ArtifactsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Webhook secrets. More than one may be configured while a secret is rotated.
    #[serde(default, deserialize_with = "one_or_many")]
    pub secrets: Vec<Secret>,
    /// Files that each hold one webhook secret.
    #[serde(default, deserialize_with = "one_or_many")]
    pub secret_files: Vec<PathBuf>,
    /// Tags that start a release build (globs).
    #[serde(default = "defaults::tag_patterns", deserialize_with = "one_or_many")]
    pub tag_patterns: Vec<String>,
    /// Largest delivery body accepted, in bytes. The events bakery acts on (tag pushes and
    /// creates, pull requests, comments) stay far below the 1 MiB default; GitHub's own
    /// maximum is 25 MiB.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// Deliveries read and checked at once; more wait for a turn.
    #[serde(default = "defaults::max_concurrent")]
    pub max_concurrent: usize,
    /// How long a delivery may take to arrive (its wait for a turn, then its body).
    /// GitHub gives up on a delivery after 10 seconds.
    #[serde(default = "defaults::read_timeout_secs")]
    pub read_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Jobs run at once by this process. `0` takes deliveries only (an intake-only
    /// replica); other replicas sharing the PostgreSQL store run the jobs.
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
    /// How long a job's lease lasts without renewal. A worker that dies leaves its lease
    /// to expire, and another worker picks the job up again.
    #[serde(default = "defaults::lease_secs")]
    pub lease_secs: u64,
    /// How often an idle worker looks for queued jobs.
    #[serde(default = "defaults::poll_millis")]
    pub poll_millis: u64,
    /// The longest a provisioning step may run. A recipe's `timeout` above it is lowered
    /// to it (the build log says so).
    #[serde(default = "defaults::max_step_timeout_secs")]
    pub max_step_timeout_secs: u64,
    /// A running build whose heartbeat is older than this has stopped (its process died):
    /// the job's next attempt, on any replica, takes the build over, and the janitor may
    /// clean up after it.
    #[serde(default = "defaults::build_stale_secs")]
    pub build_stale_secs: u64,
}

/// Who may open a job's page (`/jobs/{id}`): a link carrying the job's token (what check
/// runs link to), or an operator's `Authorization: Bearer` token. Anyone else gets 404.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobPagesConfig {
    /// The key job links are signed with (HMAC-SHA256 of the job id). Without it, check
    /// runs carry no link and only the operator token opens job pages.
    #[serde(default)]
    pub key: Option<Secret>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Opens every job page, sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub operator_token: Option<Secret>,
    #[serde(default)]
    pub operator_token_file: Option<PathBuf>,
}

/// Signed provenance: with a signing key, every release gets an in-toto statement with
/// SLSA provenance, signed (DSSE, Ed25519), attached to the GitHub Release, its digest
/// tagged on the images as `bakery:provenance`. Without one, releases carry none.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceConfig {
    /// The Ed25519 private key in PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).
    #[serde(default)]
    pub signing_key: Option<Secret>,
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// SLSA `builder.id`, a URI naming this bot; defaults to `public_url`.
    #[serde(default)]
    pub builder_id: Option<String>,
}

/// Signing in to the dashboard with GitHub: the GitHub App's user authorisation (OAuth
/// web flow). With `github_client_id`, `github_client_secret` and `session_key` set, a
/// person signs in with their GitHub account and sees the builds of the repositories they
/// can read; cancelling needs write permission. Permissions are asked of GitHub with the
/// App's credentials (`[github]`), never with the person's token, which is not kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// The GitHub App's client ID (its settings page, "Client ID").
    #[serde(default)]
    pub github_client_id: Option<String>,
    /// The GitHub App's client secret.
    #[serde(default)]
    pub github_client_secret: Option<Secret>,
    #[serde(default)]
    pub github_client_secret_file: Option<PathBuf>,
    /// Where people sign in: `https://github.com` unless `github.api_url` names a GitHub
    /// Enterprise Server (then that host).
    #[serde(default)]
    pub github_web_url: Option<String>,
    /// Signs the session cookies of people signed in with GitHub (at least 16 characters).
    #[serde(default)]
    pub session_key: Option<Secret>,
    #[serde(default)]
    pub session_key_file: Option<PathBuf>,
    /// How long a GitHub sign-in lasts, in hours.
    #[serde(default = "defaults::session_hours")]
    pub session_hours: u64,
    /// How long a person's permission on a repository is remembered, in seconds.
    #[serde(default = "defaults::permission_cache_secs")]
    pub permission_cache_secs: u64,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            github_client_id: None,
            github_client_secret: None,
            github_client_secret_file: None,
            github_web_url: None,
            session_key: None,
            session_key_file: None,
            session_hours: defaults::session_hours(),
            permission_cache_secs: defaults::permission_cache_secs(),
        }
    }
}

impl DashboardConfig {
    /// Whether people may sign in with GitHub.
    pub fn github_sign_in(&self) -> bool {
        self.github_client_id.is_some()
    }

    /// The GitHub web host sign-in goes through, without a trailing slash.
    pub fn web_url(&self, api_url: Option<&str>) -> String {
        if let Some(u) = &self.github_web_url {
            return u.trim_end_matches('/').to_string();
        }
        match api_url.map(|u| u.trim_end_matches('/')) {
            None | Some("https://api.github.com") => "https://github.com".into(),
            Some(u) => u.strip_suffix("/api/v3").unwrap_or(u).to_string(),
        }
    }
}

/// What the store keeps of a job's build output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Lines of build output kept per job. Past this (or `max_bytes`) the log keeps the
    /// last lines of the output and one line saying how much was dropped.
    #[serde(default = "defaults::log_max_lines")]
    pub max_lines: usize,
    /// Bytes of build output kept per job.
    #[serde(default = "defaults::log_max_bytes")]
    pub max_bytes: usize,
    /// Days after which the logs of finished jobs are deleted (hourly). `0` keeps them.
    #[serde(default = "defaults::log_retention_days")]
    pub retention_days: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubConfig {
    /// REST API base URL; set it for GitHub Enterprise Server.
    #[serde(default)]
    pub api_url: Option<String>,
    /// GitHub App id (with `private_key` or `private_key_file`).
    #[serde(default)]
    pub app_id: Option<u64>,
    #[serde(default)]
    pub private_key: Option<Secret>,
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// A personal access token, instead of a GitHub App.
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// How often the server runs `bakery sync` over the repositories it has seen, to pick
    /// up tags whose delivery was lost (GitHub sends no events for a push of more than
    /// three tags). `0` turns it off.
    #[serde(default = "defaults::sync_interval_secs")]
    pub sync_interval_secs: u64,
    /// A release tag below which sync never builds (tags ordered naturally: `release-1.10.0`
    /// is above `release-1.9.0`). It replaces the default floor, what a repository held
    /// when this installation first saw it: sync builds every matching tag without a job
    /// at or above it, the first sync included.
    #[serde(default)]
    pub sync_floor: Option<String>,
}

impl GitHubConfig {
    /// The configured sync floor, if any.
    pub fn sync_floor(&self) -> Option<crate::github::sync::SyncFloor> {
        self.sync_floor
            .as_deref()
            .and_then(crate::github::sync::SyncFloor::new)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Send every AWS call without an endpoint in `endpoints` here (a test server).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// An endpoint per service and region (VPC interface endpoints), falling back to
    /// `endpoint_url`.
    #[serde(default)]
    pub endpoints: crate::aws::endpoints::EndpointsConfig,
    /// How old a leftover resource must be before `janitor` deletes it, e.g. `6h`.
    #[serde(default)]
    pub janitor_ttl: Option<String>,
    /// How often the server runs the janitor. `0` turns it off.
    #[serde(default = "defaults::janitor_interval_secs")]
    pub janitor_interval_secs: u64,
    /// This installation's id: the `bakery:installation` tag on everything it creates in
    /// AWS. Its cleanup and janitor only touch resources with this marker, so give every
    /// installation that shares an AWS account its own id.
    #[serde(default = "defaults::installation")]
    pub installation: String,
    /// The Parameter Store hierarchy of each release's version parameters
    /// (`<prefix>/<repo>/<recipe>/versions/<version>`), `/bakery` by default.
    #[serde(default)]
    pub ssm_prefix: crate::registry::parameter_names::ParameterPrefix,
    /// How long each wait of a build may take (`[aws.budgets]`, e.g.
    /// `image_available = "2h"`).
    #[serde(default)]
    pub budgets: crate::aws::Budgets,
}

impl AwsConfig {
    /// How bakery talks to AWS under this configuration.
    pub fn settings(&self) -> crate::aws::AwsSettings {
        crate::aws::AwsSettings {
            endpoint_url: self.endpoint_url.clone(),
            endpoints: self.endpoints.clone(),
            installation: self.installation.clone(),
            ..crate::aws::AwsSettings::default()
        }
    }
}

mod defaults {
    use super::*;
    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn database_url() -> Secret {
        Secret::new("sqlite://.bakery/bakery.db")
    }
    pub fn work_dir() -> PathBuf {
        PathBuf::from(".bakery/work")
    }
    pub fn tag_patterns() -> Vec<String> {
        vec!["release-*".into()]
    }
    pub fn max_body_bytes() -> usize {
        1024 * 1024
    }
    pub fn max_concurrent() -> usize {
        16
    }
    pub fn read_timeout_secs() -> u64 {
        10
    }
    pub fn concurrency() -> usize {
        2
    }
    pub fn lease_secs() -> u64 {
        60
    }
    pub fn poll_millis() -> u64 {
        500
    }
    pub fn build_stale_secs() -> u64 {
        60
    }
    pub fn sync_interval_secs() -> u64 {
        15 * 60
    }
    pub fn janitor_interval_secs() -> u64 {
        60 * 60
    }
    pub fn installation() -> String {
        crate::aws::tags::DEFAULT_INSTALLATION.to_string()
    }
    pub fn max_step_timeout_secs() -> u64 {
        2 * 60 * 60
    }
    pub fn log_max_lines() -> usize {
        50_000
    }
    pub fn log_max_bytes() -> usize {
        8 * 1024 * 1024
    }
    pub fn log_retention_days() -> u64 {
        30
    }
    pub fn session_hours() -> u64 {
        8
    }
    pub fn permission_cache_secs() -> u64 {
        60
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_lines: defaults::log_max_lines(),
            max_bytes: defaults::log_max_bytes(),
            retention_days: defaults::log_retention_days(),
        }
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            secrets: vec![],
            secret_files: vec![],
            tag_patterns: defaults::tag_patterns(),
            max_body_bytes: defaults::max_body_bytes(),
            max_concurrent: defaults::max_concurrent(),
            read_timeout_secs: defaults::read_timeout_secs(),
        }
    }
}

impl Default for GitHubConfig {
    fn default() -> Self {
        GitHubConfig {
            api_url: None,
            app_id: None,
            private_key: None,
            private_key_file: None,
            token: None,
            token_file: None,
            sync_interval_secs: defaults::sync_interval_secs(),
            sync_floor: None,
        }
    }
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            endpoint_url: None,
            endpoints: Default::default(),
            janitor_ttl: None,
            janitor_interval_secs: defaults::janitor_interval_secs(),
            installation: defaults::installation(),
            ssm_prefix: Default::default(),
            budgets: Default::default(),
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: defaults::concurrency(),
            lease_secs: defaults::lease_secs(),
            poll_millis: defaults::poll_millis(),
            max_step_timeout_secs: defaults::max_step_timeout_secs(),
            build_stale_secs: defaults::build_stale_secs(),
        }
    }
}

impl ServerConfig {
    /// Reads the file (if any), applies `BAKERY_*` overrides from `env`, and resolves
    /// secret files.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("config file {} is not valid TOML", p.display()))?
            }
            None => toml::Table::new(),
        };
        apply_env_overrides(&mut table, env)?;
        let config: ServerConfig = table.try_into().with_context(|| match path {
            Some(p) => format!(
                "invalid configuration in {} or BAKERY_* variables",
                p.display()
            ),
            None => "invalid configuration in BAKERY_* variables".to_string(),
        })?;
        config.resolved()
    }

    /// Loads from the process environment.
    pub fn from_env(path: Option<&Path>) -> anyhow::Result<Self> {
        Self::load(path, std::env::vars())
    }

    /// Reads secret files into secrets, and checks the values fit together.
    fn resolved(mut self) -> anyhow::Result<Self> {
        if let Some(file) = self.database_url_file.take() {
            self.database_url = Secret::from_file(&file).context("database_url_file")?;
        }
        for file in std::mem::take(&mut self.webhook.secret_files) {
            let secret = Secret::from_file(&file).context("webhook.secret_files")?;
            self.webhook.secrets.push(secret);
        }
        self.webhook.secrets.retain(|s| !s.is_empty());
        if let Some(file) = self.github.private_key_file.take() {
            self.github.private_key =
                Some(Secret::from_file(&file).context("github.private_key_file")?);
        }
        if let Some(file) = self.job_pages.key_file.take() {
            self.job_pages.key = Some(Secret::from_file(&file).context("job_pages.key_file")?);
        }
        if let Some(file) = self.job_pages.operator_token_file.take() {
            self.job_pages.operator_token =
                Some(Secret::from_file(&file).context("job_pages.operator_token_file")?);
        }
        for (name, secret) in [
            ("job_pages.key", &self.job_pages.key),
            ("job_pages.operator_token", &self.job_pages.operator_token),
        ] {
            if let Some(s) = secret {
                anyhow::ensure!(
                    s.expose().len() >= 16,
                    "{name} must be at least 16 characters (e.g. `openssl rand -hex 32`)"
                );
            }
        }
        if let Some(file) = self.provenance.signing_key_file.take() {
            self.provenance.signing_key =
                Some(Secret::from_file(&file).context("provenance.signing_key_file")?);
        }
        if let Some(key) = &self.provenance.signing_key {
            crate::provenance::ProvenanceKey::from_secret(key).context("provenance.signing_key")?;
        }
        if let Some(file) = self.dashboard.github_client_secret_file.take() {
            self.dashboard.github_client_secret =
                Some(Secret::from_file(&file).context("dashboard.github_client_secret_file")?);
        }
        if let Some(file) = self.dashboard.session_key_file.take() {
            self.dashboard.session_key =
                Some(Secret::from_file(&file).context("dashboard.session_key_file")?);
        }
        if let Some(file) = self.github.token_file.take() {
            self.github.token = Some(Secret::from_file(&file).context("github.token_file")?);
        }
        if self.dashboard.github_sign_in() {
            anyhow::ensure!(
                self.dashboard.github_client_secret.is_some(),
                "dashboard.github_client_id needs dashboard.github_client_secret (or _file)"
            );
            anyhow::ensure!(
                self.dashboard
                    .session_key
                    .as_ref()
                    .is_some_and(|k| k.expose().len() >= 16),
                "signing in with GitHub needs dashboard.session_key (or _file) of at least 16 \
                 characters (e.g. `openssl rand -hex 32`)"
            );
            anyhow::ensure!(
                self.github.app_id.is_some() || self.github.token.is_some(),
                "signing in with GitHub needs GitHub credentials ([github]) to read people's \
                 permissions"
            );
            anyhow::ensure!(
                self.dashboard.session_hours >= 1,
                "dashboard.session_hours must be at least 1"
            );
        }
        anyhow::ensure!(
            self.workers.lease_secs >= 5,
            "workers.lease_secs must be at least 5 seconds"
        );
        anyhow::ensure!(
            self.workers.build_stale_secs >= 3,
            "workers.build_stale_secs must be at least 3 seconds"
        );
        anyhow::ensure!(
            self.webhook.max_body_bytes >= 1024,
            "webhook.max_body_bytes must be at least 1024"
        );
        anyhow::ensure!(
            self.webhook.max_concurrent >= 1,
            "webhook.max_concurrent must be at least 1"
        );
        anyhow::ensure!(
            self.webhook.read_timeout_secs >= 1,
            "webhook.read_timeout_secs must be at least 1 second"
        );
        for p in &self.webhook.tag_patterns {
            globset::Glob::new(p)
                .with_context(|| format!("webhook.tag_patterns: {p:?} is not a valid glob"))?;
        }
        if let Err(errors) = self
            .aws
            .endpoints
            .validate(self.aws.endpoint_url.as_deref())
        {
            let list: Vec<String> = errors.iter().map(|e| format!("\n  - {e}")).collect();
            anyhow::bail!("the AWS endpoints cannot be used:{}", list.concat());
        }
        anyhow::ensure!(
            crate::aws::tags::valid_installation(&self.aws.installation),
            "aws.installation {:?} must be 1 to 64 letters, digits or -_.:/",
            self.aws.installation
        );
        self.aws.budgets.check()?;
        if self.github.app_id.is_some() != self.github.private_key.is_some() {
            anyhow::bail!(
                "github.app_id and github.private_key (or private_key_file) go together: set both for a GitHub App"
            );
        }
        // From here on, nothing bakery writes shows them.
        self.register_secrets(crate::redact::Redactor::global());
        Ok(self)
    }

    /// Adds every secret of the configuration to `redactor`: webhook secrets, the GitHub
    /// token or App key, the database password, the job page key and operator token, the
    /// provenance signing key.
    pub fn register_secrets(&self, redactor: &crate::redact::Redactor) {
        for s in &self.webhook.secrets {
            redactor.add(s.expose());
        }
        if let Some(t) = &self.github.token {
            redactor.add(t.expose());
        }
        if let Some(k) = &self.github.private_key {
            redactor.add_multiline(k.expose());
        }
        if let Some(k) = &self.provenance.signing_key {
            redactor.add_multiline(k.expose());
        }
        redactor.add_url_password(self.database_url.expose());
        for s in [
            &self.job_pages.key,
            &self.job_pages.operator_token,
            &self.dashboard.github_client_secret,
            &self.dashboard.session_key,
        ]
        .into_iter()
        .flatten()
        {
            redactor.add(s.expose());
        }
    }

    /// Problems worth a warning that do not stop the server.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = vec![];
        if self.webhook.secrets.is_empty() {
            w.push("no webhook secret is configured: every delivery will be rejected with 401 (set BAKERY_WEBHOOK__SECRETS or webhook.secret_files)".into());
        }
        if self.job_pages.key.is_none() {
            w.push("no job page key is configured: check runs carry no link to the job's page (set job_pages.key_file)".into());
        }
        if self.github.app_id.is_none() && self.github.token.is_none() {
            w.push("no GitHub credentials are configured: builds cannot report back (set github.app_id + github.private_key_file, or github.token_file)".into());
        }
        w
    }

    /// The resolved configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> anyhow::Result<String> {
        toml::to_string_pretty(self).context("cannot render the configuration")
    }
}

/// Applies `BAKERY_SECTION__KEY=value` variables onto the TOML table. A value that
/// parses as a TOML value (number, boolean, array) takes that type; anything else is a
/// string.
fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("BAKERY_") else {
            continue;
        };
        // `BAKERY_TEST_*` are the test hooks' variables, never configuration.
        if NON_CONFIG_ENV.contains(&name.as_str()) || rest.is_empty() || rest.starts_with("TEST_") {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let parsed = parse_env_value(&value);
        let mut cursor = &mut *table;
        for section in &path[..path.len() - 1] {
            let entry = cursor
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cursor = entry.as_table_mut().with_context(|| {
                format!("{name}: `{section}` is not a section of the configuration")
            })?;
        }
        cursor.insert(path[path.len() - 1].clone(), parsed);
    }
    Ok(())
}

fn parse_env_value(value: &str) -> toml::Value {
    let trimmed = value.trim();
    if trimmed == "true" || trimmed == "false" || trimmed.starts_with('[') {
        if let Ok(t) = format!("v = {trimmed}").parse::<toml::Table>() {
            if let Some(v) = t.get("v") {
                return v.clone();
            }
        }
    }
    if let Ok(i) = trimmed.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    toml::Value::String(value.to_string())
}

/// Accepts a single value where a list is expected (`BAKERY_WEBHOOK__SECRETS=abc`).
fn one_or_many<'de, D, T>(de: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match OneOrMany::<T>::deserialize(de)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(v) => vec![v],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_provenance_key_is_a_secret_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("provenance.pem");
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEIEZjRsic4KuwCZJAjtRSoAnMQ4bubPYRhnI3QtzXMdXw\n\
                   -----END PRIVATE KEY-----\n";
        std::fs::write(&file, pem).unwrap();
        let c = ServerConfig::load(
            None,
            env(&[(
                "BAKERY_PROVENANCE__SIGNING_KEY_FILE",
                file.to_str().unwrap(),
            )]),
        )
        .unwrap();
        assert_eq!(
            c.provenance.signing_key.as_ref().unwrap().expose(),
            pem.trim_end()
        );
        // Never shown: not by the configuration, not by anything written out.
        let shown = format!("{c:?}{}", toml::to_string(&c).unwrap());
        assert!(!shown.contains("MC4CAQAw"), "{shown}");
        let redactor = crate::redact::Redactor::new();
        c.register_secrets(&redactor);
        let line = "MC4CAQAwBQYDK2VwBCIEIEZjRsic4KuwCZJAjtRSoAnMQ4bubPYRhnI3QtzXMdXw";
        assert!(!redactor.redact(line).contains("MC4CAQAw"));

        // What is not an Ed25519 private key is refused at load, without showing it.
        let err = format!(
            "{:#}",
            ServerConfig::load(
                None,
                env(&[("BAKERY_PROVENANCE__SIGNING_KEY", "not-a-key-0123456789")])
            )
            .unwrap_err()
        );
        assert!(err.contains("provenance.signing_key"), "{err}");
        assert!(err.contains("not an Ed25519 private key"), "{err}");
        assert!(!err.contains("not-a-key-0123456789"), "{err}");
    }

    #[test]
    fn defaults_without_file_or_env() {
        let c = ServerConfig::load(None, env(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url.expose(), "sqlite://.bakery/bakery.db");
        assert_eq!(c.webhook.tag_patterns, vec!["release-*"]);
        assert_eq!(c.webhook.max_body_bytes, 1024 * 1024);
        assert_eq!(c.warnings().len(), 3);
    }

    #[test]
    fn aws_wait_budgets_come_from_the_environment_and_test_hooks_are_not_configuration() {
        let c = ServerConfig::load(
            None,
            env(&[
                ("BAKERY_AWS__BUDGETS__IMAGE_AVAILABLE", "2h 30m"),
                ("BAKERY_TEST_PAUSE_AT", "instance"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.aws.budgets.image_available,
            std::time::Duration::from_secs(150 * 60)
        );
        assert_eq!(
            c.aws.budgets.copy_available,
            crate::aws::Budgets::default().copy_available
        );
        let err = ServerConfig::load(None, env(&[("BAKERY_AWS__BUDGETS__COPY_AVAILABLE", "0s")]))
            .unwrap_err();
        let err = err
            .downcast_ref::<crate::aws::budgets::BudgetTooShort>()
            .expect("a typed refusal");
        assert_eq!(err.key, "copy_available");
    }

    #[test]
    fn aws_endpoints_per_service_and_region_are_checked_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bakery.toml");
        std::fs::write(
            &file,
            "[aws]\nendpoint_url = \"http://127.0.0.1:5000\"\n\
             [aws.endpoints]\nec2 = { \"eu-west-1\" = \"https://vpce-1.ec2.eu-west-1.vpce.amazonaws.com\" }\n",
        )
        .unwrap();
        let c = ServerConfig::load(Some(&file), env(&[])).unwrap();
        assert_eq!(
            c.aws
                .endpoints
                .get(crate::aws::endpoints::Service::Ec2, "eu-west-1"),
            Some("https://vpce-1.ec2.eu-west-1.vpce.amazonaws.com")
        );
        std::fs::write(
            &file,
            "[aws.endpoints]\nkms = { \"eu-west-1\" = \"kms.eu-west-1\" }\n",
        )
        .unwrap();
        let err = format!(
            "{:#}",
            ServerConfig::load(Some(&file), env(&[])).unwrap_err()
        );
        assert!(
            err.contains(
                "aws.endpoints.kms.\"eu-west-1\": \"kms.eu-west-1\" is not an http(s) URL"
            ),
            "{err}"
        );
        std::fs::write(
            &file,
            "[aws.endpoints]\ns3 = { \"eu-west-1\" = \"https://x\" }\n",
        )
        .unwrap();
        let err = format!(
            "{:#}",
            ServerConfig::load(Some(&file), env(&[])).unwrap_err()
        );
        assert!(err.contains("unknown field `s3`"), "{err}");
        std::fs::write(&file, "[aws]\nssm_prefix = \"/aws/amis\"\n").unwrap();
        let err = format!(
            "{:#}",
            ServerConfig::load(Some(&file), env(&[])).unwrap_err()
        );
        assert!(err.contains("reserves names under /aws"), "{err}");
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bakery.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[workers]\nconcurrency = 3\n",
        )
        .unwrap();
        let c = ServerConfig::load(
            Some(&file),
            env(&[
                ("BAKERY_WORKERS__CONCURRENCY", "5"),
                ("BAKERY_WEBHOOK__SECRETS", "s3cr3t-value"),
                ("BAKERY_WEBHOOK__TAG_PATTERNS", "[\"release-*\", \"v*\"]"),
                ("BAKERY_LOG", "debug"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.workers.concurrency, 5);
        assert_eq!(c.webhook.secrets, vec![Secret::new("s3cr3t-value")]);
        assert_eq!(c.webhook.tag_patterns, vec!["release-*", "v*"]);
    }

    #[test]
    fn secret_files_are_read_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "from-a-file-secret\n").unwrap();
        let c = ServerConfig::load(
            None,
            env(&[
                ("BAKERY_WEBHOOK__SECRET_FILES", f.to_str().unwrap()),
                ("BAKERY_WEBHOOK__SECRETS", "inline-env-secret"),
                ("BAKERY_GITHUB__TOKEN", "ghp_tokenvalue1234"),
            ]),
        )
        .unwrap();
        assert_eq!(c.webhook.secrets.len(), 2);
        assert_eq!(c.webhook.secrets[1].expose(), "from-a-file-secret");
        let shown = format!("{c:?}\n{}", c.to_masked_toml().unwrap());
        for secret in [
            "from-a-file-secret",
            "inline-env-secret",
            "ghp_tokenvalue1234",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked into {shown}");
        }
        assert!(shown.contains("***"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = ServerConfig::load(None, env(&[("BAKERY_LISTN", "127.0.0.1:1")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `listn`"),
            "{err:#}"
        );
    }

    #[test]
    fn missing_secret_file_names_the_file() {
        let err = ServerConfig::load(
            None,
            env(&[("BAKERY_WEBHOOK__SECRET_FILES", "/nonexistent/bakery-secret")]),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/bakery-secret"));
    }
}
