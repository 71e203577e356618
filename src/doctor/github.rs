//! The GitHub side: the App's installation on the recipe repository, the permissions and
//! events it was granted against what bakery uses, and an installation token minted for
//! that repository. With a personal access token, that the token can read the
//! repository. Reads only (minting a token changes nothing).

use std::collections::BTreeMap;

use super::{Area, Check};
use crate::config::GitHubConfig;
use crate::github::api::auth::TokenPermissions;
use crate::github::{GitHubClient, RepoName};

/// The webhook events bakery acts on (`deploy/github-app-manifest.json`).
pub const EVENTS: [&str; 4] = ["push", "create", "pull_request", "issue_comment"];

fn rank(level: &str) -> u8 {
    match level {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        _ => 0,
    }
}

/// The permissions a job asks for on its repository, as `name → level`.
pub fn needed_permissions() -> BTreeMap<String, String> {
    let value = serde_json::to_value(&TokenPermissions::REPOSITORY_JOB).unwrap_or_default();
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Every GitHub check for `repo`.
pub async fn check(config: &GitHubConfig, repo: Option<&str>) -> Vec<Check> {
    let area = Area::GitHub;
    let Some(repo) = repo else {
        return vec![Check::fail(
            area,
            "repository",
            "-",
            "no recipe repository named",
            "pass --repository OWNER/NAME, the repository that holds the recipes",
        )];
    };
    let name = match RepoName::parse(repo) {
        Ok(n) => n,
        Err(e) => {
            return vec![Check::fail(
                area,
                "repository",
                repo,
                format!("{e:#}"),
                "write it as owner/name",
            )]
        }
    };
    let client = match GitHubClient::from_config(config) {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                area,
                "credentials",
                repo,
                format!("{e:#}"),
                "set github.app_id and github.private_key_file (or github.token_file) in the server configuration",
            )]
        }
    };
    if !client.is_app() {
        return token_checks(&client, &name).await;
    }
    let grants = match client.repo_installation_grants(&name).await {
        Ok(Some(g)) => g,
        Ok(None) => return vec![],
        Err(e) => {
            return vec![Check::fail(
                area,
                "installation",
                repo,
                format!("{e:#}"),
                format!("install the GitHub App on {repo} (its page: Install App), and check github.app_id and the private key"),
            )]
        }
    };
    let mut out = vec![Check::pass(
        area,
        "installation",
        repo,
        format!("the App is installed (installation {})", grants.id),
    )];
    let mut missing = vec![];
    for (perm, level) in needed_permissions() {
        let has = grants
            .permissions
            .get(&perm)
            .map(String::as_str)
            .unwrap_or("none");
        if rank(has) < rank(&level) {
            missing.push(format!("{perm}: {level} (has {has})"));
        }
    }
    out.push(if missing.is_empty() {
        Check::pass(area, "permissions", repo, "checks, contents, issues, pull requests and statuses to write, metadata to read")
    } else {
        Check::fail(
            area,
            "permissions",
            repo,
            format!("missing {}", missing.join(", ")),
            "grant them in the App's settings (Permissions & events), as deploy/github-app-manifest.json asks, then accept the new permissions on the installation",
        )
    });
    let absent: Vec<&str> = EVENTS
        .iter()
        .copied()
        .filter(|e| !grants.events.iter().any(|g| g == e))
        .collect();
    out.push(if absent.is_empty() {
        Check::pass(area, "events", repo, EVENTS.join(", "))
    } else {
        Check::fail(
            area,
            "events",
            repo,
            format!("not subscribed to {}", absent.join(", ")),
            "subscribe the App to these events (Permissions & events), as deploy/github-app-manifest.json does",
        )
    });
    out.push(match client.repo_session(Some(grants.id), &name).await {
        Ok(_) => Check::pass(
            area,
            "installation token",
            repo,
            "minted for this repository",
        ),
        Err(e) => Check::fail(
            area,
            "installation token",
            repo,
            format!("{e:#}"),
            "check the App's private key (github.private_key_file) and its permissions",
        ),
    });
    out
}

async fn token_checks(client: &GitHubClient, repo: &RepoName) -> Vec<Check> {
    let full = repo.to_string();
    let session = match client.session(None).await {
        Ok(s) => s,
        Err(e) => {
            return vec![Check::fail(
                Area::GitHub,
                "token",
                &full,
                format!("{e:#}"),
                "check github.token_file",
            )]
        }
    };
    let route = repo.route();
    let got: Result<serde_json::Value, _> =
        session.octocrab().get(route.as_str(), None::<&()>).await;
    vec![match got {
        Ok(_) => Check::pass(
            Area::GitHub,
            "token",
            &full,
            "the token reads the repository (GitHub does not list a token's permissions: it needs contents, statuses, issues and pull requests to write)",
        ),
        Err(e) => Check::fail(
            Area::GitHub,
            "token",
            &full,
            format!("{e}"),
            "give the token access to the repository (contents, statuses, issues and pull requests to write)",
        ),
    }]
}
