//! What job handlers share: configuration, the store, GitHub, checkouts, AWS, the image
//! engine and the provisioner. Built once by `bakery serve`.

use std::sync::Arc;

use anyhow::Context;

use crate::aws::AwsSettings;
use crate::build::{AwsEngine, ImageEngine};
use crate::config::ServerConfig;
use crate::database::DynStore;
use crate::github::git::checkout::{Checkouts, Target, Workspace};
use crate::github::{GitHubClient, GitHubReporter, RepoName};
use crate::provenance::ProvenanceKey;
use crate::provision::Provisioner;
use crate::redact::Redactor;
use crate::worker::JobContext;

pub struct JobDeps {
    pub config: ServerConfig,
    pub store: DynStore,
    /// `None` when no GitHub credentials are configured: jobs then fail with a message
    /// that says so.
    pub github: Option<GitHubClient>,
    pub checkouts: Checkouts,
    pub aws: AwsSettings,
    pub provisioner: Arc<dyn Provisioner>,
    /// Builds a recipe's EC2 images: the AWS engine, on `aws` with `provisioner`.
    pub engine: Arc<dyn ImageEngine>,
    /// Every secret bakery holds, masked in logs and comments: the process's redactor.
    pub redactor: Redactor,
    /// The key releases' provenance is signed with; `None`: releases carry none.
    pub provenance: Option<Arc<ProvenanceKey>>,
}

impl JobDeps {
    pub fn from_config(
        config: ServerConfig,
        store: DynStore,
        provisioner: Arc<dyn Provisioner>,
    ) -> anyhow::Result<Self> {
        let redactor = Redactor::global().clone();
        config.register_secrets(&redactor);
        let github = if config.github.app_id.is_some() || config.github.token.is_some() {
            Some(
                GitHubClient::from_config(&config.github)
                    .context("cannot set up the GitHub client")?,
            )
        } else {
            None
        };
        let aws = config.aws.settings();
        let provenance = match &config.provenance.signing_key {
            Some(k) => Some(Arc::new(
                ProvenanceKey::from_secret(k).context("provenance.signing_key")?,
            )),
            None => None,
        };
        let engine = Arc::new(AwsEngine::new(
            aws.clone(),
            store.clone(),
            provisioner.clone(),
        ));
        Ok(JobDeps {
            provenance,
            engine,
            checkouts: Checkouts::new(config.work_dir.clone()),
            config,
            store,
            github,
            aws,
            provisioner,
            redactor,
        })
    }

    pub fn github(&self) -> anyhow::Result<&GitHubClient> {
        self.github.as_ref().context(
            "no GitHub credentials are configured: set github.app_id with github.private_key_file, or github.token_file",
        )
    }

    /// A reporter for `repo`, as the installation named in the job's payload.
    pub async fn reporter(
        &self,
        repo: &str,
        installation_id: Option<i64>,
    ) -> anyhow::Result<GitHubReporter> {
        let name = RepoName::parse(repo)?;
        GitHubReporter::new(self.github()?, name, installation_id.map(|i| i as u64)).await
    }

    /// Checks `target` out into the job's workspace. The clone URL comes from GitHub's
    /// API, never from the delivery, so the token goes only where GitHub says the
    /// repository lives; the checkout stops when the job is cancelled.
    pub async fn check_out(
        &self,
        ctx: &JobContext,
        reporter: &GitHubReporter,
        target: &Target,
    ) -> anyhow::Result<Workspace> {
        let session = reporter.session().await?;
        let clone_url = reporter.repository().await?.clone_url;
        self.checkouts
            .until(ctx.cancel.clone())
            .checkout(
                reporter.repo(),
                &clone_url,
                Some(session.git_token()),
                target,
                &format!("job-{}", ctx.job.id),
            )
            .await
    }

    /// The link GitHub shows for a job (`details_url`): the job's page with its token.
    /// None without a public URL or a job page key.
    pub fn details_url(&self, job: i64) -> Option<String> {
        let base = self.config.public_url.as_ref()?;
        let key = self.config.job_pages.key.as_ref()?;
        Some(format!(
            "{}{}",
            base.trim_end_matches('/'),
            crate::server::job_page::job_path(key, job)
        ))
    }
}
