//! The GitHub API client: octocrab pointed at a configurable API base URL (github.com,
//! GitHub Enterprise Server, or a test server), authenticated as a GitHub App or with a
//! personal access token. Every call goes through [`retry::call`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use octocrab::Octocrab;
use serde::Deserialize;

use crate::config::{GitHubConfig, Secret};
use crate::github::api::auth::{
    parse_expiry, AccessTokenRequest, AccessTokenResponse, Credentials, InstallationToken,
    TokenCache,
};
use crate::github::api::retry;
use crate::retry::RetryPolicy;

pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// Cheap to clone; clones share the token cache.
#[derive(Clone)]
pub struct GitHubClient {
    inner: Arc<Inner>,
}

struct Inner {
    api_url: String,
    credentials: Credentials,
    /// No credentials: installation sessions are derived from it.
    anonymous: Octocrab,
    /// The App's JWT client, or the token client.
    principal: Octocrab,
    tokens: TokenCache,
    policy: RetryPolicy,
    bot_login: tokio::sync::OnceCell<String>,
}

impl std::fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubClient")
            .field("api_url", &self.inner.api_url)
            .field("credentials", &self.inner.credentials)
            .finish()
    }
}

/// Which API surface a session may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// An installation token: check runs are available.
    Installation,
    /// A personal access token: no checks API; progress goes to commit statuses.
    Token,
}

/// A client authenticated for one installation (or the token), plus the raw token for
/// git over HTTPS. `Debug` masks the token.
#[derive(Clone)]
pub struct Session {
    pub(crate) crab: Octocrab,
    token: Secret,
    kind: AuthKind,
    policy: RetryPolicy,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("kind", &self.kind)
            .field("token", &self.token)
            .finish()
    }
}

impl Session {
    pub fn kind(&self) -> AuthKind {
        self.kind
    }
    /// The token for git over HTTPS (user `x-access-token`). Never put it in a URL.
    pub fn git_token(&self) -> &Secret {
        &self.token
    }
    pub fn octocrab(&self) -> &Octocrab {
        &self.crab
    }
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

/// Answer of `GET /user` (`users/get-authenticated`); only the login is read.
#[derive(Deserialize)]
struct AuthenticatedUser {
    login: String,
}

/// Answer of `GET /repos/{owner}/{repo}/installation` (`apps/get-repo-installation`).
#[derive(Deserialize)]
struct RepoInstallation {
    id: u64,
}

/// Answer of `GET /repos/{owner}/{repo}/installation`, with what the App was granted.
#[derive(Debug, Clone, Deserialize)]
pub struct InstallationGrants {
    pub id: u64,
    /// Permission → `read` / `write` / `admin`.
    #[serde(default)]
    pub permissions: std::collections::BTreeMap<String, String>,
    /// The webhook events the installation receives.
    #[serde(default)]
    pub events: Vec<String>,
}

/// Answer of `GET /app` (`apps/get-authenticated`); only the slug is read.
#[derive(Deserialize)]
struct AuthenticatedApp {
    slug: Option<String>,
    name: String,
}

impl GitHubClient {
    /// A client for `api_url` (default [`DEFAULT_API_URL`]). A trailing slash is ignored.
    /// Must be called within a Tokio runtime.
    pub fn new(api_url: Option<&str>, credentials: Credentials) -> anyhow::Result<Self> {
        let api_url = api_url
            .unwrap_or(DEFAULT_API_URL)
            .trim_end_matches('/')
            .to_string();
        let builder = || -> anyhow::Result<_> {
            Ok(Octocrab::builder()
                .base_uri(api_url.as_str())
                .with_context(|| {
                    format!("github.api_url {api_url:?} is not a URL: use e.g. https://ghe.example.com/api/v3")
                })?
                .set_connect_timeout(Some(Duration::from_secs(10)))
                .set_read_timeout(Some(Duration::from_secs(60))))
        };
        let anonymous = builder()?
            .build()
            .context("cannot build the GitHub HTTP client")?;
        let principal = match &credentials {
            Credentials::Token(token) => builder()?
                .personal_token(token.expose().to_string())
                .build()
                .context("cannot build the GitHub HTTP client")?,
            Credentials::App {
                app_id,
                private_key,
            } => {
                let key = octocrab::EncodingKey::from_rsa_pem(private_key.expose().as_bytes())
                    .context(
                        "the GitHub App private key is not an RSA key in PEM format: use the \
                         .pem file downloaded from the App's settings page",
                    )?;
                builder()?
                    .app(octocrab::models::AppId(*app_id), key)
                    .build()
                    .context("cannot build the GitHub HTTP client")?
            }
        };
        Ok(GitHubClient {
            inner: Arc::new(Inner {
                api_url,
                credentials,
                anonymous,
                principal,
                tokens: TokenCache::new(TokenCache::DEFAULT_REFRESH_MARGIN),
                policy: retry::GITHUB,
                bot_login: tokio::sync::OnceCell::new(),
            }),
        })
    }

    pub fn from_config(cfg: &GitHubConfig) -> anyhow::Result<Self> {
        Self::new(cfg.api_url.as_deref(), Credentials::from_config(cfg)?)
    }

    /// The same client with another retry policy (tests use short backoffs).
    pub fn with_policy(self, policy: RetryPolicy) -> Self {
        let inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("with_policy must be called before the client is shared"));
        GitHubClient {
            inner: Arc::new(Inner { policy, ..inner }),
        }
    }

    /// The same client with another installation-token refresh margin.
    pub fn with_refresh_margin(self, margin: Duration) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|_| {
            panic!("with_refresh_margin must be called before the client is shared")
        });
        GitHubClient {
            inner: Arc::new(Inner {
                tokens: TokenCache::new(margin),
                ..inner
            }),
        }
    }

    pub fn api_url(&self) -> &str {
        &self.inner.api_url
    }

    pub fn is_app(&self) -> bool {
        self.inner.credentials.is_app()
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.inner.policy
    }

    /// A session for a repository's installation. With a GitHub App the installation id
    /// (from the webhook payload) is required; with a token it is ignored.
    pub async fn session(&self, installation_id: Option<u64>) -> anyhow::Result<Session> {
        self.scoped_session(installation_id, None).await
    }

    /// A session for work on `repo` only: with a GitHub App, its token is minted for that
    /// one repository with the permissions a job needs there, so a job can touch no other
    /// repository of the installation.
    pub async fn repo_session(
        &self,
        installation_id: Option<u64>,
        repo: &crate::github::RepoName,
    ) -> anyhow::Result<Session> {
        self.scoped_session(installation_id, Some(repo)).await
    }

    async fn scoped_session(
        &self,
        installation_id: Option<u64>,
        repo: Option<&crate::github::RepoName>,
    ) -> anyhow::Result<Session> {
        match &self.inner.credentials {
            Credentials::Token(token) => Ok(Session {
                crab: self.inner.principal.clone(),
                token: token.clone(),
                kind: AuthKind::Token,
                policy: self.inner.policy,
            }),
            Credentials::App { app_id, .. } => {
                let id = installation_id.with_context(|| {
                    format!(
                        "GitHub App {app_id} needs an installation id to act on a repository: \
                         it comes with every webhook delivery (installation.id); install the \
                         App on the repository"
                    )
                })?;
                let token = self.token_for(id, repo.map(|r| r.name.clone())).await?;
                let crab = self
                    .inner
                    .anonymous
                    .user_access_token(token.token.expose().to_string())
                    .context("cannot build an installation client")?;
                Ok(Session {
                    crab,
                    token: token.token,
                    kind: AuthKind::Installation,
                    policy: self.inner.policy,
                })
            }
        }
    }

    /// The installation's access token, from the cache or freshly minted.
    pub async fn installation_token(
        &self,
        installation_id: u64,
    ) -> anyhow::Result<InstallationToken> {
        self.token_for(installation_id, None).await
    }

    /// The installation's token for `repo` (a repository name without owner) or for every
    /// repository, from the cache or freshly minted.
    async fn token_for(
        &self,
        installation_id: u64,
        repo: Option<String>,
    ) -> anyhow::Result<InstallationToken> {
        let app = &self.inner.principal;
        let policy = self.inner.policy;
        let body = AccessTokenRequest {
            repositories: repo.clone().map(|r| vec![r]),
            permissions: repo
                .is_some()
                .then_some(crate::github::api::auth::TokenPermissions::REPOSITORY_JOB),
        };
        self.inner
            .tokens
            .get_or_refresh((installation_id, repo), || async move {
                let route = format!("/app/installations/{installation_id}/access_tokens");
                let answer: AccessTokenResponse = retry::call(
                    &policy,
                    &format!("create an access token for installation {installation_id}"),
                    || app.post(route.as_str(), Some(&body)),
                )
                .await
                .with_context(|| {
                    format!(
                        "cannot get an access token for GitHub App installation \
                         {installation_id}: check that the App is installed and that its \
                         private key is current"
                    )
                })?;
                Ok(InstallationToken {
                    expires_at: parse_expiry(&answer.expires_at)?,
                    token: Secret::new(answer.token),
                })
            })
            .await
    }

    /// The App's installation on `repo` (`None` with a token, which needs none).
    pub async fn repo_installation(
        &self,
        repo: &crate::github::RepoName,
    ) -> anyhow::Result<Option<u64>> {
        if !self.is_app() {
            return Ok(None);
        }
        let route = format!("{}/installation", repo.route());
        let app = &self.inner.principal;
        let found: RepoInstallation = retry::call(
            &self.inner.policy,
            &format!("get the installation on {repo}"),
            || app.get(route.as_str(), None::<&()>),
        )
        .await
        .with_context(|| {
            format!("the GitHub App is not installed on {repo}: install it from the App's page")
        })?;
        Ok(Some(found.id))
    }

    /// The App's installation on `repo` with the permissions and events it was granted
    /// (`None` with a token, which has no installation).
    pub async fn repo_installation_grants(
        &self,
        repo: &crate::github::RepoName,
    ) -> anyhow::Result<Option<InstallationGrants>> {
        if !self.is_app() {
            return Ok(None);
        }
        let route = format!("{}/installation", repo.route());
        let app = &self.inner.principal;
        let found: InstallationGrants = retry::call(
            &self.inner.policy,
            &format!("get the installation on {repo}"),
            || app.get(route.as_str(), None::<&()>),
        )
        .await
        .with_context(|| {
            format!("the GitHub App is not installed on {repo}: install it from the App's page")
        })?;
        Ok(Some(found))
    }

    /// Forgets a cached installation token (after GitHub answered 401 with it).
    pub async fn invalidate_token(&self, installation_id: u64) {
        self.inner.tokens.invalidate(installation_id).await;
    }

    /// The login bakery's own comments carry: `<slug>[bot]` for an App, the token's user
    /// otherwise. Fetched once.
    pub async fn bot_login(&self) -> anyhow::Result<String> {
        let crab = &self.inner.principal;
        let policy = self.inner.policy;
        let is_app = self.is_app();
        self.inner
            .bot_login
            .get_or_try_init(|| async move {
                if is_app {
                    let app: AuthenticatedApp =
                        retry::call(&policy, "get the authenticated app", || {
                            crab.get("/app", None::<&()>)
                        })
                        .await
                        .context("cannot read the GitHub App's own details (GET /app)")?;
                    let slug = app.slug.unwrap_or_else(|| slugify(&app.name));
                    Ok(format!("{slug}[bot]"))
                } else {
                    let user: AuthenticatedUser =
                        retry::call(&policy, "get the authenticated user", || {
                            crab.get("/user", None::<&()>)
                        })
                        .await
                        .context(
                            "cannot read the token's user (GET /user): check that the token \
                             is valid",
                        )?;
                    Ok(user.login)
                }
            })
            .await
            .cloned()
    }
}

/// GitHub's slug for an App name without one: lower case, runs of other characters as `-`.
fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// True when `login` is bakery's own (its comments are never commands).
pub fn is_own_comment(author_login: &str, bot_login: &str) -> bool {
    author_login.eq_ignore_ascii_case(bot_login)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_comments_compare_logins_case_insensitively() {
        assert!(is_own_comment("Bakery-Bot[bot]", "bakery-bot[bot]"));
        assert!(!is_own_comment("bakery-bot", "bakery-bot[bot]"));
    }

    #[test]
    fn slugs_follow_github_rules() {
        assert_eq!(slugify("Bakery Bot (prod)"), "bakery-bot-prod");
    }

    #[tokio::test]
    async fn a_bad_key_names_the_fix() {
        let err = GitHubClient::new(
            None,
            Credentials::App {
                app_id: 1,
                private_key: Secret::new("not a key"),
            },
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("PEM"), "{err:#}");
    }

    #[tokio::test]
    async fn a_token_session_needs_no_installation() {
        let c = GitHubClient::new(
            Some("http://127.0.0.1:9/api/v3/"),
            Credentials::Token(Secret::new("ghp_abcdef")),
        )
        .unwrap();
        assert_eq!(c.api_url(), "http://127.0.0.1:9/api/v3");
        let s = c.session(None).await.unwrap();
        assert_eq!(s.kind(), AuthKind::Token);
        assert!(!format!("{s:?}").contains("ghp_abcdef"));
        assert!(!format!("{c:?}").contains("ghp_abcdef"));
    }
}
