//! How bakery authenticates to GitHub: as a GitHub App (JWT, then per-installation access
//! tokens, cached and refreshed before they expire) or with a personal access token.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{GitHubConfig, Secret};

/// The credentials from the server configuration. `Debug` shows no secret.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A personal access token (classic or fine-grained). No checks API: progress is
    /// reported with commit statuses.
    Token(Secret),
    /// A GitHub App: its id and RSA private key (PEM).
    App { app_id: u64, private_key: Secret },
}

impl Credentials {
    /// Reads the credentials from the `[github]` section, loading `*_file` secrets.
    pub fn from_config(cfg: &GitHubConfig) -> anyhow::Result<Self> {
        let key = match (&cfg.private_key, &cfg.private_key_file) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(path)) => Some(Secret::from_file(path).with_context(|| {
                format!(
                    "cannot load the GitHub App private key from {}: download a key from the \
                     App's settings page and point github.private_key_file at it",
                    path.display()
                )
            })?),
            (None, None) => None,
        };
        let token = match (&cfg.token, &cfg.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(path)) => Some(Secret::from_file(path).with_context(|| {
                format!("cannot load the GitHub token from {}", path.display())
            })?),
            (None, None) => None,
        };
        match (cfg.app_id, key, token) {
            (Some(app_id), Some(private_key), _) => Ok(Credentials::App {
                app_id,
                private_key,
            }),
            (Some(_), None, _) => anyhow::bail!(
                "github.app_id is set but no private key is: set github.private_key_file \
                 (or BAKERY_GITHUB__PRIVATE_KEY)"
            ),
            (None, Some(_), _) => anyhow::bail!(
                "a GitHub App private key is set but github.app_id is not: set the App's id \
                 from its settings page"
            ),
            (None, None, Some(token)) => Ok(Credentials::Token(token)),
            (None, None, None) => anyhow::bail!(
                "no GitHub credentials: set github.app_id with github.private_key_file for a \
                 GitHub App, or github.token_file for a personal access token"
            ),
        }
    }

    pub fn is_app(&self) -> bool {
        matches!(self, Credentials::App { .. })
    }
}

/// An installation access token and when it expires.
#[derive(Clone)]
pub struct InstallationToken {
    pub token: Secret,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallationToken")
            .field("token", &self.token)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Answer of `POST /app/installations/{installation_id}/access_tokens`
/// (`apps/create-installation-access-token`); only the fields bakery reads.
#[derive(Deserialize)]
pub(crate) struct AccessTokenResponse {
    pub token: String,
    pub expires_at: String,
}

/// Body of `apps/create-installation-access-token`. For a repository's work the token is
/// minted for that one repository, with only the permissions bakery uses there; empty, it
/// reaches every repository of the installation with all the App's permissions.
#[derive(Serialize, Default)]
pub(crate) struct AccessTokenRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<TokenPermissions>,
}

/// What a job does on its repository: check runs, statuses, commit comments and
/// releases (contents), pull-request comments (issues, pull requests), reading code.
#[derive(Serialize)]
pub(crate) struct TokenPermissions {
    pub checks: &'static str,
    pub contents: &'static str,
    pub issues: &'static str,
    pub metadata: &'static str,
    pub pull_requests: &'static str,
    pub statuses: &'static str,
}

impl TokenPermissions {
    pub const REPOSITORY_JOB: TokenPermissions = TokenPermissions {
        checks: "write",
        contents: "write",
        issues: "write",
        metadata: "read",
        pull_requests: "write",
        statuses: "write",
    };
}

/// Which token: an installation's, for every repository or for one.
pub type TokenKey = (u64, Option<String>);

/// Installation tokens by installation id. A token is reused until it is within
/// `refresh_margin` of its expiry, then replaced.
#[derive(Debug)]
pub struct TokenCache {
    refresh_margin: Duration,
    tokens: tokio::sync::Mutex<HashMap<TokenKey, InstallationToken>>,
}

impl TokenCache {
    /// GitHub's tokens last an hour; refreshing five minutes early leaves every call made
    /// with a token enough time to finish.
    pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

    pub fn new(refresh_margin: Duration) -> Self {
        TokenCache {
            refresh_margin,
            tokens: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The cached token for `installation`, or the one `fetch` mints. Concurrent callers
    /// wait for one fetch instead of minting a token each.
    pub async fn get_or_refresh<F, Fut>(
        &self,
        installation: TokenKey,
        fetch: F,
    ) -> anyhow::Result<InstallationToken>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<InstallationToken>>,
    {
        let mut tokens = self.tokens.lock().await;
        if let Some(t) = tokens.get(&installation) {
            if self.is_fresh(t, Utc::now()) {
                return Ok(t.clone());
            }
        }
        let fresh = fetch().await?;
        // Masked from here on, in everything bakery writes.
        crate::redact::Redactor::global().add_expiring(fresh.token.expose());
        tokens.insert(installation, fresh.clone());
        Ok(fresh)
    }

    /// Forgets a token GitHub refused (revoked, or the installation was reinstalled).
    pub async fn invalidate(&self, installation: u64) {
        self.tokens
            .lock()
            .await
            .retain(|(id, _), _| *id != installation);
    }

    fn is_fresh(&self, t: &InstallationToken, now: DateTime<Utc>) -> bool {
        let margin = chrono::Duration::from_std(self.refresh_margin)
            .unwrap_or_else(|_| chrono::Duration::minutes(5));
        t.expires_at - now > margin
    }
}

pub(crate) fn parse_expiry(expires_at: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(expires_at)
        .map(|d| d.with_timezone(&Utc))
        .with_context(|| format!("GitHub sent an unreadable token expiry {expires_at:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn token(value: &str, expires_in: chrono::Duration) -> InstallationToken {
        InstallationToken {
            token: Secret::new(value),
            expires_at: Utc::now() + expires_in,
        }
    }

    #[tokio::test]
    async fn reuses_a_token_until_it_nears_expiry() {
        let cache = TokenCache::new(Duration::from_secs(300));
        let minted = AtomicU32::new(0);
        let mint = |ttl: chrono::Duration| {
            let n = minted.fetch_add(1, Ordering::SeqCst);
            async move { Ok(token(&format!("ghs_token{n}"), ttl)) }
        };
        let a = cache
            .get_or_refresh((7, None), || mint(chrono::Duration::hours(1)))
            .await
            .unwrap();
        let b = cache
            .get_or_refresh((7, None), || mint(chrono::Duration::hours(1)))
            .await
            .unwrap();
        assert_eq!(a.token.expose(), b.token.expose());
        assert_eq!(minted.load(Ordering::SeqCst), 1);

        // Another installation has its own token.
        cache
            .get_or_refresh((8, None), || mint(chrono::Duration::hours(1)))
            .await
            .unwrap();
        assert_eq!(minted.load(Ordering::SeqCst), 2);

        // A token inside the refresh margin is replaced.
        cache.invalidate(7).await;
        let near = cache
            .get_or_refresh((7, None), || mint(chrono::Duration::minutes(2)))
            .await
            .unwrap();
        let replaced = cache
            .get_or_refresh((7, None), || mint(chrono::Duration::hours(1)))
            .await
            .unwrap();
        assert_ne!(near.token.expose(), replaced.token.expose());
        assert_eq!(minted.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn debug_masks_tokens_and_keys() {
        let t = token("ghs_supersecret", chrono::Duration::hours(1));
        assert!(!format!("{t:?}").contains("supersecret"));
        let c = Credentials::App {
            app_id: 1,
            private_key: Secret::new("-----BEGIN RSA PRIVATE KEY-----abc"),
        };
        assert!(!format!("{c:?}").contains("BEGIN"));
    }

    #[test]
    fn config_picks_app_or_token_and_names_the_fix() {
        let mut cfg = GitHubConfig::default();
        let err = Credentials::from_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("github.token_file"), "{err}");
        cfg.token = Some(Secret::new("ghp_abc"));
        assert!(!Credentials::from_config(&cfg).unwrap().is_app());
        cfg.app_id = Some(42);
        let err = Credentials::from_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("private_key_file"), "{err}");
        cfg.private_key = Some(Secret::new("pem"));
        assert!(Credentials::from_config(&cfg).unwrap().is_app());
    }
}
