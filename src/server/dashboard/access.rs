//! What a dashboard viewer may see and do on a repository. The operator sees and cancels
//! everything; a person signed in with GitHub sees the builds of the repositories they can
//! read and cancels those of the repositories they can write, as GitHub answers through
//! the API (`repos/get-collaborator-permission-level`, asked with the App's installation
//! on that repository, or the configured token). Answers are remembered for
//! `dashboard.permission_cache_secs`; a failed lookup is not remembered and grants nothing.
//!
//! Touches: GitHub's API (read only), through `github::api::reporter`; nothing else.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::session::Viewer;
use crate::config::ServerConfig;
use crate::github::api::client::GitHubClient;
use crate::github::api::reporter::{GitHubReporter, UserPermission};
use crate::github::RepoName;

/// A viewer's access to one repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RepoAccess {
    /// Sees nothing of the repository.
    None,
    /// Sees its builds.
    Read,
    /// Sees its builds and may cancel them.
    Write,
}

impl RepoAccess {
    /// The access GitHub's permission answer grants: `none` nothing; write, maintain and
    /// admin (by permission or role) write; anything else (read, triage, a custom role)
    /// read.
    pub fn from_permission(p: &UserPermission) -> RepoAccess {
        if p.can_build() {
            RepoAccess::Write
        } else if p.permission == "none" {
            RepoAccess::None
        } else {
            RepoAccess::Read
        }
    }

    pub fn can_read(self) -> bool {
        self >= RepoAccess::Read
    }

    pub fn can_cancel(self) -> bool {
        self == RepoAccess::Write
    }
}

/// Looks up and remembers people's access to repositories.
pub struct Permissions {
    /// `None` when signing in with GitHub is off: nobody but the operator gets access.
    github: Option<GitHubClient>,
    ttl: Duration,
    /// (login, `owner/name`) → (access, when GitHub answered).
    cache: Mutex<HashMap<(String, String), (RepoAccess, Instant)>>,
}

impl Permissions {
    pub fn new(config: &ServerConfig) -> anyhow::Result<Permissions> {
        let github = if config.dashboard.github_sign_in() {
            Some(GitHubClient::from_config(&config.github)?)
        } else {
            None
        };
        Ok(Permissions {
            github,
            ttl: Duration::from_secs(config.dashboard.permission_cache_secs),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// `viewer`'s access to `repo` (`owner/name`).
    pub async fn access(&self, viewer: &Viewer, repo: &str) -> RepoAccess {
        match viewer {
            Viewer::Operator => RepoAccess::Write,
            Viewer::Person { login } => self.person(login, repo).await,
        }
    }

    /// Which of `repos` `viewer` can read.
    pub async fn readable<'a>(
        &self,
        viewer: &Viewer,
        repos: impl IntoIterator<Item = &'a str>,
    ) -> HashSet<String> {
        let mut unique: Vec<&str> = repos.into_iter().collect();
        unique.sort();
        unique.dedup();
        let mut out = HashSet::new();
        for repo in unique {
            if self.access(viewer, repo).await.can_read() {
                out.insert(repo.to_string());
            }
        }
        out
    }

    async fn person(&self, login: &str, repo: &str) -> RepoAccess {
        let key = (login.to_string(), repo.to_string());
        if let Some((access, at)) = self.cache.lock().expect("permission cache").get(&key) {
            if at.elapsed() < self.ttl {
                return *access;
            }
        }
        let Some(client) = &self.github else {
            return RepoAccess::None;
        };
        match lookup(client, login, repo).await {
            Ok(access) => {
                let mut cache = self.cache.lock().expect("permission cache");
                cache.retain(|_, (_, at)| at.elapsed() < self.ttl);
                cache.insert(key, (access, Instant::now()));
                access
            }
            Err(e) => {
                tracing::warn!(
                    "dashboard: cannot read {login}'s permission on {repo}, showing nothing: {e:#}"
                );
                RepoAccess::None
            }
        }
    }
}

async fn lookup(client: &GitHubClient, login: &str, repo: &str) -> anyhow::Result<RepoAccess> {
    let name = RepoName::parse(repo)?;
    let installation = client.repo_installation(&name).await?;
    let reporter = GitHubReporter::new(client, name, installation).await?;
    Ok(RepoAccess::from_permission(
        &reporter.user_permission(login).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(permission: &str, role: &str) -> RepoAccess {
        RepoAccess::from_permission(&UserPermission {
            permission: permission.into(),
            role_name: role.into(),
        })
    }

    #[test]
    fn permissions_map_to_access() {
        assert_eq!(p("none", "none"), RepoAccess::None);
        assert_eq!(p("read", "read"), RepoAccess::Read);
        assert_eq!(p("read", "triage"), RepoAccess::Read);
        assert_eq!(p("write", "write"), RepoAccess::Write);
        assert_eq!(p("write", "maintain"), RepoAccess::Write);
        assert_eq!(p("admin", "admin"), RepoAccess::Write);
        assert!(!RepoAccess::None.can_read());
        assert!(RepoAccess::Read.can_read() && !RepoAccess::Read.can_cancel());
        assert!(RepoAccess::Write.can_cancel());
    }

    #[tokio::test]
    async fn without_github_sign_in_a_person_sees_nothing() {
        let config = ServerConfig::load(None, Vec::<(String, String)>::new()).unwrap();
        let perms = Permissions::new(&config).unwrap();
        let person = Viewer::Person {
            login: "octocat".into(),
        };
        assert_eq!(perms.access(&person, "acme/app").await, RepoAccess::None);
        assert_eq!(
            perms.access(&Viewer::Operator, "acme/app").await,
            RepoAccess::Write
        );
    }
}
