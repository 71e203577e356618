//! What each operation does to the fake's state, and the answer it builds from the
//! description's example.

use std::collections::HashMap;

use axum::http::HeaderMap;
use base64::Engine;
use serde_json::{json, Value};

use super::openapi::{Operation, Spec};
use super::{CheckRun, RepoState, State};

pub enum Identity {
    Jwt(u64),
    Pat(String),
    /// A user access token from the App's user authorisation (`oauth.rs`).
    User(String),
    Installation {
        id: u64,
        login: String,
        /// The repositories (names without owner) the token was minted for; `None` for
        /// every repository of the installation.
        scope: Option<Vec<String>>,
    },
}

impl Identity {
    pub fn describe(&self) -> String {
        match self {
            Identity::Jwt(id) => format!("jwt:{id}"),
            Identity::Pat(login) => format!("token:{login}"),
            Identity::User(login) => format!("user:{login}"),
            Identity::Installation { login, .. } => format!("token:{login}"),
        }
    }
    fn login(&self) -> &str {
        match self {
            Identity::Jwt(_) => "",
            Identity::Pat(l) | Identity::User(l) | Identity::Installation { login: l, .. } => l,
        }
    }
}

/// Operations that take the App's JWT rather than a token.
const JWT_OPERATIONS: &[&str] = &[
    "apps/get-authenticated",
    "apps/create-installation-access-token",
    "apps/get-repo-installation",
];

type Failure = (u16, String);

pub fn authenticate(state: &State, op_id: &str, headers: &HeaderMap) -> Result<Identity, Failure> {
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or((401, "Requires authentication".to_string()))?;
    let credential = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("token "))
        .ok_or((401, "Bad credentials".to_string()))?;
    let jwt = decode_jwt(credential);
    if JWT_OPERATIONS.contains(&op_id) {
        let (app_id, _) = state
            .app
            .clone()
            .ok_or((401, "A JSON web token could not be decoded".to_string()))?;
        return match jwt {
            Some(claims) if claims_ok(&claims, app_id) => Ok(Identity::Jwt(app_id)),
            Some(_) => Err((
                401,
                "'Expiration time' claim ('exp') or issuer is invalid".into(),
            )),
            None => Err((401, "A JSON web token could not be decoded".into())),
        };
    }
    if jwt.is_some() {
        return Err((
            401,
            "A JSON web token cannot be used to access this resource".into(),
        ));
    }
    if let Some((token, login)) = &state.pat {
        if token == credential {
            return Ok(Identity::Pat(login.clone()));
        }
    }
    if let Some(login) = state.oauth.user_tokens.get(credential) {
        return Ok(Identity::User(login.clone()));
    }
    if let Some((installation, expires)) = state.tokens.get(credential) {
        if *expires <= chrono::Utc::now() {
            return Err((401, "Bad credentials".into()));
        }
        let slug = state
            .app
            .as_ref()
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        return Ok(Identity::Installation {
            id: *installation,
            login: format!("{slug}[bot]"),
            scope: state.token_scopes.get(credential).cloned(),
        });
    }
    Err((401, "Bad credentials".into()))
}

fn decode_jwt(s: &str) -> Option<Value> {
    let mut parts = s.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn claims_ok(claims: &Value, app_id: u64) -> bool {
    let iss_ok = match &claims["iss"] {
        Value::String(s) => s == &app_id.to_string(),
        Value::Number(n) => n.as_u64() == Some(app_id),
        _ => false,
    };
    let exp_ok = claims["exp"]
        .as_i64()
        .is_some_and(|exp| exp > chrono::Utc::now().timestamp());
    iss_ok && exp_ok
}

pub struct Request<'a> {
    pub spec: &'a Spec,
    pub op: &'a Operation,
    pub params: &'a HashMap<String, String>,
    pub query: &'a str,
    pub body: Value,
    pub identity: &'a Identity,
    /// The request body as sent (release asset uploads are not JSON).
    pub raw: &'a [u8],
    pub content_type: Option<String>,
}

impl Request<'_> {
    fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or("")
    }
    fn repo_name(&self) -> String {
        format!("{}/{}", self.param("owner"), self.param("repo"))
    }
    fn query_u64(&self, name: &str) -> Option<u64> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse().ok())
    }
    fn query_str(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
    /// The description's example answer for `status`.
    fn example(&self, status: u16) -> Value {
        let mut v = self.spec.example(self.op, status).unwrap_or_else(|| {
            panic!(
                "the description has no example answer {status} for {}",
                self.op.operation_id
            )
        });
        if let Some(schema) = self.spec.response_schema(self.op, status) {
            self.spec.complete(&mut v, schema);
        }
        v
    }
    /// The first item of a list example.
    fn item_example(&self, status: u16) -> Value {
        self.example(status)
            .as_array()
            .and_then(|a| a.first().cloned())
            .expect("list example with an item")
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn not_found() -> Failure {
    (404, "Not Found".into())
}

/// The repository a request names, if it exists and the caller may see it.
fn repo_for<'s>(state: &'s mut State, req: &Request) -> Result<&'s mut RepoState, Failure> {
    let name = req.repo_name();
    let repo = state.repos.get_mut(&name).ok_or_else(not_found)?;
    if let Identity::Installation { id, scope, .. } = req.identity {
        if repo.installation_id != Some(*id) {
            return Err(not_found());
        }
        // A token minted for some repositories sees no other (GitHub answers 404).
        if scope
            .as_ref()
            .is_some_and(|names| !names.iter().any(|n| *n == req.param("repo")))
        {
            return Err(not_found());
        }
    }
    Ok(repo)
}

/// GitHub answers 422 `No commit found for SHA` for check runs, statuses and commit
/// comments on anything but a commit of the repository (a tag object's SHA included).
/// Only repositories with real git behind them are checked.
fn commit_exists(repo: &RepoState, sha: &str) -> Result<(), Failure> {
    let Some(dir) = &repo.git_dir else {
        return Ok(());
    };
    let kind = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["cat-file", "-t", "--end-of-options", sha])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if kind.as_deref() == Some("commit") && sha.len() == 40 {
        Ok(())
    } else {
        Err((422, format!("No commit found for SHA: {sha}")))
    }
}

/// `(name, commit)` of every tag of the bare repository `dir`, peeled through annotated
/// tag objects, in name order.
fn git_tags(dir: &std::path::Path) -> Vec<(String, String)> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "for-each-ref",
            "refs/tags",
            "--format=%(refname:strip=2) %(objectname) %(*objectname)",
        ])
        .output()
        .expect("git for-each-ref runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let (name, object, peeled) = (parts.next()?, parts.next()?, parts.next());
            let commit = peeled.filter(|p| !p.is_empty()).unwrap_or(object);
            Some((name.to_string(), commit.to_string()))
        })
        .collect()
}

fn set(v: &mut Value, key: &str, value: Value) {
    v.as_object_mut()
        .expect("object")
        .insert(key.to_string(), value);
}

fn set_login(user: &mut Value, login: &str) {
    if user.is_object() {
        set(user, "login", json!(login));
    }
}

pub fn dispatch(state: &mut State, req: &Request) -> Result<(u16, Value), Failure> {
    let api = state.api_url.clone();
    match req.op.operation_id.as_str() {
        "apps/get-authenticated" => {
            let (id, slug) = state.app.clone().expect("authenticated as the App");
            let mut v = req.example(200);
            set(&mut v, "id", json!(id));
            set(&mut v, "slug", json!(slug));
            set(&mut v, "name", json!(slug));
            Ok((200, v))
        }
        "users/get-authenticated" => {
            let mut v = req.example(200);
            set(&mut v, "login", json!(req.identity.login()));
            Ok((200, v))
        }
        "apps/create-installation-access-token" => {
            let installation: u64 = req
                .param("installation_id")
                .parse()
                .map_err(|_| not_found())?;
            if !state
                .repos
                .values()
                .any(|r| r.installation_id == Some(installation))
            {
                return Err(not_found());
            }
            let token = format!("ghs_fake{}", uuid::Uuid::new_v4().simple());
            let expires = chrono::Utc::now() + state.token_ttl;
            state.tokens.insert(token.clone(), (installation, expires));
            if let Some(names) = req.body.get("repositories").and_then(Value::as_array) {
                let names = names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect();
                state.token_scopes.insert(token.clone(), names);
            }
            let mut v = req.example(201);
            set(&mut v, "token", json!(token));
            set(
                &mut v,
                "expires_at",
                json!(expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            );
            Ok((201, v))
        }
        "apps/get-repo-installation" => {
            let repo = state.repos.get(&req.repo_name()).ok_or_else(not_found)?;
            let id = repo.installation_id.ok_or_else(not_found)?;
            let grants = repo.installation_grants.clone();
            let mut v = req.example(200);
            set(&mut v, "id", json!(id));
            if let Some((permissions, events)) = grants {
                set(&mut v, "permissions", permissions);
                set(&mut v, "events", json!(events));
            }
            Ok((200, v))
        }
        "repos/get" => {
            let full = req.repo_name();
            let repo = repo_for(state, req)?;
            let mut v = req.example(200);
            set(&mut v, "name", json!(req.param("repo")));
            set(&mut v, "full_name", json!(full));
            set(&mut v, "clone_url", json!(repo.clone_url));
            set(&mut v, "default_branch", json!(repo.default_branch));
            set_login(&mut v["owner"], req.param("owner"));
            Ok((200, v))
        }
        "pulls/get" => {
            let full = req.repo_name();
            let number: u64 = req.param("pull_number").parse().map_err(|_| not_found())?;
            let pull = repo_for(state, req)?
                .pulls
                .get(&number)
                .cloned()
                .ok_or_else(not_found)?;
            let mut v = req.example(200);
            set(&mut v, "number", json!(number));
            set(&mut v, "state", json!(pull.state));
            set(&mut v, "draft", json!(false));
            set(
                &mut v,
                "url",
                json!(format!("{api}/repos/{full}/pulls/{number}")),
            );
            set_login(&mut v["user"], &pull.author);
            for (end, git_ref, sha, repo_name) in [
                ("head", &pull.head_ref, &pull.head_sha, &pull.head_repo),
                ("base", &pull.base_ref, &pull.head_sha, &full),
            ] {
                let e = &mut v[end];
                set(e, "ref", json!(git_ref));
                if end == "head" {
                    set(e, "sha", json!(sha));
                }
                let (owner, name) = repo_name.split_once('/').unwrap_or((repo_name, ""));
                set(e, "label", json!(format!("{owner}:{git_ref}")));
                set(&mut e["repo"], "full_name", json!(repo_name));
                set(&mut e["repo"], "name", json!(name));
                set_login(&mut e["repo"]["owner"], owner);
            }
            Ok((200, v))
        }
        "repos/list-tags" => {
            let full = req.repo_name();
            let repo = repo_for(state, req)?;
            // GitHub lists each tag with the commit it points at, annotated or not.
            let tags = match &repo.git_dir {
                Some(dir) => git_tags(dir),
                None => repo.tags.clone(),
            };
            let template = req.item_example(200);
            let items: Vec<Value> = tags
                .iter()
                .map(|(name, sha)| {
                    let mut t = template.clone();
                    set(&mut t, "name", json!(name));
                    set(
                        &mut t["commit"],
                        "url",
                        json!(format!("{api}/repos/{full}/commits/{sha}")),
                    );
                    set(&mut t["commit"], "sha", json!(sha));
                    set(
                        &mut t,
                        "zipball_url",
                        json!(format!("{api}/repos/{full}/zipball/{name}")),
                    );
                    set(
                        &mut t,
                        "tarball_url",
                        json!(format!("{api}/repos/{full}/tarball/{name}")),
                    );
                    t
                })
                .collect();
            Ok((200, Value::Array(page(req, items))))
        }
        "repos/get-collaborator-permission-level" => {
            let user = req.param("username").to_string();
            let repo = repo_for(state, req)?;
            let (permission, role) = repo.permissions.get(&user).cloned().ok_or_else(not_found)?;
            let mut v = req.example(200);
            set(&mut v, "permission", json!(permission));
            set(&mut v, "role_name", json!(role));
            set_login(&mut v["user"], &user);
            set(&mut v["user"], "role_name", json!(role));
            Ok((200, v))
        }
        "checks/create" => {
            if matches!(req.identity, Identity::Pat(_) | Identity::User(_)) {
                return Err((403, "You must authenticate via a GitHub App.".into()));
            }
            let full = req.repo_name();
            let id = state.next_id();
            let repo = repo_for(state, req)?;
            let b = &req.body;
            commit_exists(repo, b["head_sha"].as_str().unwrap_or(""))?;
            let mut v = req.example(201);
            set(&mut v, "id", json!(id));
            set(&mut v, "node_id", json!(format!("CR_{id}")));
            set(&mut v, "name", b["name"].clone());
            set(&mut v, "head_sha", b["head_sha"].clone());
            set(
                &mut v,
                "url",
                json!(format!("{api}/repos/{full}/check-runs/{id}")),
            );
            set(&mut v, "html_url", json!(format!("{api}/{full}/runs/{id}")));
            set(
                &mut v,
                "details_url",
                b.get("details_url").cloned().unwrap_or(Value::Null),
            );
            set(
                &mut v,
                "external_id",
                b.get("external_id").cloned().unwrap_or(json!("")),
            );
            set(
                &mut v,
                "status",
                b.get("status").cloned().unwrap_or(json!("queued")),
            );
            set(&mut v, "conclusion", Value::Null);
            set(&mut v, "started_at", json!(now()));
            set(&mut v, "completed_at", Value::Null);
            set(&mut v, "pull_requests", json!([]));
            let mut run = CheckRun {
                current: v,
                annotations: vec![],
                status_history: vec![],
                summaries: vec![],
            };
            apply_check_update(&mut run, b, &api, &full, id);
            let answer = run.current.clone();
            repo.check_runs.insert(id, run);
            Ok((201, answer))
        }
        "checks/list-for-ref" => {
            let git_ref = req.param("ref").to_string();
            let name = req.query_str("check_name").map(str::to_string);
            let status = req.query_str("status").map(str::to_string);
            let repo = repo_for(state, req)?;
            let runs: Vec<Value> = repo
                .check_runs
                .values()
                .map(|r| r.current.clone())
                .filter(|r| r["head_sha"] == git_ref.as_str())
                .filter(|r| name.as_ref().is_none_or(|n| r["name"] == n.as_str()))
                .filter(|r| status.as_ref().is_none_or(|s| r["status"] == s.as_str()))
                .collect();
            let mut v = req.example(200);
            set(&mut v, "total_count", json!(runs.len()));
            set(&mut v, "check_runs", Value::Array(page(req, runs)));
            Ok((200, v))
        }
        "checks/update" => {
            if matches!(req.identity, Identity::Pat(_) | Identity::User(_)) {
                return Err((403, "You must authenticate via a GitHub App.".into()));
            }
            let full = req.repo_name();
            let id: u64 = req.param("check_run_id").parse().map_err(|_| not_found())?;
            let repo = repo_for(state, req)?;
            let run = repo.check_runs.get_mut(&id).ok_or_else(not_found)?;
            apply_check_update(run, &req.body, &api, &full, id);
            Ok((200, run.current.clone()))
        }
        "repos/create-commit-status" => {
            let id = state.next_id();
            let full = req.repo_name();
            let sha = req.param("sha").to_string();
            let login = req.identity.login().to_string();
            let repo = repo_for(state, req)?;
            commit_exists(repo, &sha)?;
            let b = &req.body;
            let mut v = req.example(201);
            set(&mut v, "id", json!(id));
            set(&mut v, "node_id", json!(format!("SC_{id}")));
            set(
                &mut v,
                "url",
                json!(format!("{api}/repos/{full}/statuses/{sha}")),
            );
            set(&mut v, "state", b["state"].clone());
            set(
                &mut v,
                "description",
                b.get("description").cloned().unwrap_or(Value::Null),
            );
            set(
                &mut v,
                "target_url",
                b.get("target_url").cloned().unwrap_or(Value::Null),
            );
            set(
                &mut v,
                "context",
                b.get("context").cloned().unwrap_or(json!("default")),
            );
            set(&mut v, "created_at", json!(now()));
            set(&mut v, "updated_at", json!(now()));
            set_login(&mut v["creator"], &login);
            repo.statuses.push(v.clone());
            Ok((201, v))
        }
        "repos/create-deployment" => {
            let id = state.next_id();
            let full = req.repo_name();
            let login = req.identity.login().to_string();
            let repo = repo_for(state, req)?;
            let b = &req.body;
            let git_ref = b["ref"].as_str().unwrap_or_default().to_string();
            // bakery deploys a commit; GitHub resolves a branch or tag name the same way.
            commit_exists(repo, &git_ref)?;
            let environment = b.get("environment").cloned().unwrap_or(json!("production"));
            let mut v = req.example(201);
            set(&mut v, "id", json!(id));
            set(&mut v, "node_id", json!(format!("DE_{id}")));
            set(
                &mut v,
                "url",
                json!(format!("{api}/repos/{full}/deployments/{id}")),
            );
            set(
                &mut v,
                "statuses_url",
                json!(format!("{api}/repos/{full}/deployments/{id}/statuses")),
            );
            set(
                &mut v,
                "repository_url",
                json!(format!("{api}/repos/{full}")),
            );
            set(&mut v, "sha", json!(git_ref));
            set(&mut v, "ref", json!(git_ref));
            set(
                &mut v,
                "task",
                b.get("task").cloned().unwrap_or(json!("deploy")),
            );
            set(
                &mut v,
                "payload",
                b.get("payload").cloned().unwrap_or(json!({})),
            );
            set(&mut v, "environment", environment.clone());
            set(&mut v, "original_environment", environment.clone());
            set(
                &mut v,
                "description",
                b.get("description").cloned().unwrap_or(Value::Null),
            );
            set(
                &mut v,
                "production_environment",
                b.get("production_environment")
                    .cloned()
                    .unwrap_or(json!(environment == json!("production"))),
            );
            set(
                &mut v,
                "transient_environment",
                b.get("transient_environment")
                    .cloned()
                    .unwrap_or(json!(false)),
            );
            set(&mut v, "created_at", json!(now()));
            set(&mut v, "updated_at", json!(now()));
            set_login(&mut v["creator"], &login);
            repo.deployments.insert(id, (v.clone(), vec![]));
            Ok((201, v))
        }
        "repos/create-deployment-status" => {
            let deployment: u64 = req
                .param("deployment_id")
                .parse()
                .map_err(|_| not_found())?;
            let id = state.next_id();
            let full = req.repo_name();
            let login = req.identity.login().to_string();
            let repo = repo_for(state, req)?;
            let (d, statuses) = repo
                .deployments
                .get_mut(&deployment)
                .ok_or_else(not_found)?;
            let b = &req.body;
            let mut v = req.example(201);
            set(&mut v, "id", json!(id));
            set(&mut v, "node_id", json!(format!("DES_{id}")));
            set(
                &mut v,
                "url",
                json!(format!(
                    "{api}/repos/{full}/deployments/{deployment}/statuses/{id}"
                )),
            );
            set(&mut v, "state", b["state"].clone());
            set(
                &mut v,
                "description",
                b.get("description").cloned().unwrap_or(json!("")),
            );
            set(
                &mut v,
                "environment",
                b.get("environment")
                    .cloned()
                    .unwrap_or_else(|| d["environment"].clone()),
            );
            set(
                &mut v,
                "target_url",
                b.get("target_url").cloned().unwrap_or(json!("")),
            );
            set(
                &mut v,
                "log_url",
                b.get("log_url").cloned().unwrap_or(json!("")),
            );
            set(
                &mut v,
                "environment_url",
                b.get("environment_url").cloned().unwrap_or(json!("")),
            );
            set(
                &mut v,
                "deployment_url",
                json!(format!("{api}/repos/{full}/deployments/{deployment}")),
            );
            set(
                &mut v,
                "repository_url",
                json!(format!("{api}/repos/{full}")),
            );
            set(&mut v, "created_at", json!(now()));
            set(&mut v, "updated_at", json!(now()));
            set_login(&mut v["creator"], &login);
            statuses.push(v.clone());
            Ok((201, v))
        }
        "repos/create-commit-comment" => {
            let id = state.next_id();
            let full = req.repo_name();
            let sha = req.param("commit_sha").to_string();
            let login = req.identity.login().to_string();
            let repo = repo_for(state, req)?;
            commit_exists(repo, &sha)?;
            let mut v = req.example(201);
            set(&mut v, "id", json!(id));
            set(&mut v, "node_id", json!(format!("CC_{id}")));
            set(
                &mut v,
                "url",
                json!(format!("{api}/repos/{full}/comments/{id}")),
            );
            set(
                &mut v,
                "html_url",
                json!(format!("{api}/{full}/commit/{sha}#commitcomment-{id}")),
            );
            set(&mut v, "body", req.body["body"].clone());
            set(&mut v, "commit_id", json!(sha));
            set(&mut v, "path", Value::Null);
            set(&mut v, "position", Value::Null);
            set(&mut v, "line", Value::Null);
            set(&mut v, "created_at", json!(now()));
            set(&mut v, "updated_at", json!(now()));
            set_login(&mut v["user"], &login);
            repo.commit_comments.push(v.clone());
            Ok((201, v))
        }
        "issues/list-comments" => {
            let number: u64 = req.param("issue_number").parse().map_err(|_| not_found())?;
            let repo = repo_for(state, req)?;
            let items: Vec<Value> = repo
                .issue_comments
                .values()
                .filter(|(n, _)| *n == number)
                .map(|(_, c)| c.clone())
                .collect();
            Ok((200, Value::Array(page(req, items))))
        }
        "issues/create-comment" => {
            let number: u64 = req.param("issue_number").parse().map_err(|_| not_found())?;
            let id = state.next_id();
            let full = req.repo_name();
            let login = req.identity.login().to_string();
            let repo = repo_for(state, req)?;
            let body = req.body["body"].as_str().unwrap_or_default();
            let v = issue_comment_value(&api, &full, number, id, &login, body);
            repo.issue_comments.insert(id, (number, v.clone()));
            Ok((201, v))
        }
        "issues/update-comment" => {
            let id: u64 = req.param("comment_id").parse().map_err(|_| not_found())?;
            let login = req.identity.login().to_string();
            let repo = repo_for(state, req)?;
            let (_, comment) = repo.issue_comments.get_mut(&id).ok_or_else(not_found)?;
            if comment["user"]["login"].as_str() != Some(login.as_str()) {
                return Err((403, "Resource not accessible by integration".into()));
            }
            set(comment, "body", req.body["body"].clone());
            set(comment, "updated_at", json!(now()));
            Ok((200, comment.clone()))
        }
        "repos/get-release-by-tag" => {
            let tag = req.param("tag").to_string();
            let repo = repo_for(state, req)?;
            let found = repo
                .releases
                .values()
                .find(|r| r["tag_name"].as_str() == Some(tag.as_str()))
                .cloned()
                .ok_or_else(not_found)?;
            Ok((200, found))
        }
        "repos/create-release" => {
            let id = state.next_id();
            let full = req.repo_name();
            let login = req.identity.login().to_string();
            let repo = repo_for(state, req)?;
            let b = &req.body;
            let tag = b["tag_name"].as_str().unwrap_or_default().to_string();
            if repo
                .releases
                .values()
                .any(|r| r["tag_name"].as_str() == Some(tag.as_str()))
            {
                return Err((422, "Validation Failed: tag_name already_exists".into()));
            }
            let mut v = req.example(201);
            set(&mut v, "id", json!(id));
            set(&mut v, "node_id", json!(format!("RE_{id}")));
            set(
                &mut v,
                "url",
                json!(format!("{api}/repos/{full}/releases/{id}")),
            );
            set(
                &mut v,
                "html_url",
                json!(format!("{api}/{full}/releases/tag/{tag}")),
            );
            set(
                &mut v,
                "assets_url",
                json!(format!("{api}/repos/{full}/releases/{id}/assets")),
            );
            set(
                &mut v,
                "upload_url",
                json!(format!(
                    "{api}/repos/{full}/releases/{id}/assets{{?name,label}}"
                )),
            );
            set(
                &mut v,
                "tarball_url",
                json!(format!("{api}/repos/{full}/tarball/{tag}")),
            );
            set(
                &mut v,
                "zipball_url",
                json!(format!("{api}/repos/{full}/zipball/{tag}")),
            );
            set(&mut v, "tag_name", json!(tag));
            set(
                &mut v,
                "target_commitish",
                b.get("target_commitish").cloned().unwrap_or(json!("main")),
            );
            set(
                &mut v,
                "name",
                b.get("name").cloned().unwrap_or(Value::Null),
            );
            set(
                &mut v,
                "body",
                b.get("body").cloned().unwrap_or(Value::Null),
            );
            set(
                &mut v,
                "draft",
                b.get("draft").cloned().unwrap_or(json!(false)),
            );
            set(
                &mut v,
                "prerelease",
                b.get("prerelease").cloned().unwrap_or(json!(false)),
            );
            set(&mut v, "created_at", json!(now()));
            set(&mut v, "published_at", json!(now()));
            set(&mut v, "assets", json!([]));
            set_login(&mut v["author"], &login);
            repo.releases.insert(id, v.clone());
            Ok((201, v))
        }
        "repos/update-release" => {
            let id: u64 = req.param("release_id").parse().map_err(|_| not_found())?;
            let repo = repo_for(state, req)?;
            let release = repo.releases.get_mut(&id).ok_or_else(not_found)?;
            // Request fields that are also answer fields (make_latest, for one, is not).
            if let Some(fields) = req.body.as_object() {
                for (k, v) in fields {
                    if release.get(k).is_some() {
                        set(release, k, v.clone());
                    }
                }
            }
            Ok((200, release.clone()))
        }
        "repos/upload-release-asset" => {
            let release_id: u64 = req.param("release_id").parse().map_err(|_| not_found())?;
            let name = req
                .query_str("name")
                .ok_or((422, "Validation Failed: name is missing".to_string()))?
                .to_string();
            let id = state.next_id();
            let full = req.repo_name();
            let login = req.identity.login().to_string();
            let repo = repo_for(state, req)?;
            let tag = repo.releases.get(&release_id).ok_or_else(not_found)?["tag_name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if repo
                .release_assets
                .values()
                .any(|(r, a, _)| *r == release_id && a["name"] == name.as_str())
            {
                return Err((422, "Validation Failed: name already_exists".into()));
            }
            let mut v = req.example(201);
            set(&mut v, "id", json!(id));
            set(&mut v, "node_id", json!(format!("RA_{id}")));
            set(
                &mut v,
                "url",
                json!(format!("{api}/repos/{full}/releases/assets/{id}")),
            );
            set(
                &mut v,
                "browser_download_url",
                json!(format!("{api}/{full}/releases/download/{tag}/{name}")),
            );
            set(&mut v, "name", json!(name));
            set(&mut v, "label", Value::Null);
            set(&mut v, "state", json!("uploaded"));
            set(
                &mut v,
                "content_type",
                json!(req
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into())),
            );
            set(&mut v, "size", json!(req.raw.len()));
            set(&mut v, "download_count", json!(0));
            set(&mut v, "created_at", json!(now()));
            set(&mut v, "updated_at", json!(now()));
            set_login(&mut v["uploader"], &login);
            repo.release_assets
                .insert(id, (release_id, v.clone(), req.raw.to_vec()));
            if let Some(release) = repo.releases.get_mut(&release_id) {
                if let Some(list) = release.get_mut("assets").and_then(Value::as_array_mut) {
                    list.push(v.clone());
                }
            }
            Ok((201, v))
        }
        "repos/list-release-assets" => {
            let release_id: u64 = req.param("release_id").parse().map_err(|_| not_found())?;
            let repo = repo_for(state, req)?;
            if !repo.releases.contains_key(&release_id) {
                return Err(not_found());
            }
            let items = repo
                .release_assets
                .values()
                .filter(|(r, _, _)| *r == release_id)
                .map(|(_, a, _)| a.clone())
                .collect();
            Ok((200, Value::Array(page(req, items))))
        }
        "repos/delete-release-asset" => {
            let id: u64 = req.param("asset_id").parse().map_err(|_| not_found())?;
            let repo = repo_for(state, req)?;
            let (release_id, _, _) = repo.release_assets.remove(&id).ok_or_else(not_found)?;
            if let Some(list) = repo
                .releases
                .get_mut(&release_id)
                .and_then(|r| r.get_mut("assets"))
                .and_then(Value::as_array_mut)
            {
                list.retain(|a| a["id"] != json!(id));
            }
            Ok((204, Value::Null))
        }
        other => Err((
            404,
            format!("the fake GitHub does not implement {other} (it is in the description)"),
        )),
    }
}

/// `per_page` and `page` as GitHub applies them (30 per page by default).
fn page(req: &Request, items: Vec<Value>) -> Vec<Value> {
    let per_page = req.query_u64("per_page").unwrap_or(30).clamp(1, 100) as usize;
    let page = req.query_u64("page").unwrap_or(1).max(1) as usize;
    items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect()
}

/// Applies a create or update body to a check run, as GitHub does: a conclusion
/// completes the run; annotations are appended.
fn apply_check_update(run: &mut CheckRun, b: &Value, api: &str, full: &str, id: u64) {
    let v = &mut run.current;
    for key in [
        "name",
        "details_url",
        "external_id",
        "started_at",
        "completed_at",
    ] {
        if let Some(x) = b.get(key) {
            set(v, key, x.clone());
        }
    }
    if let Some(s) = b.get("status") {
        set(v, "status", s.clone());
    }
    if let Some(c) = b.get("conclusion") {
        set(v, "conclusion", c.clone());
        set(v, "status", json!("completed"));
        if v["completed_at"].is_null() {
            set(v, "completed_at", json!(now()));
        }
    }
    if let Some(out) = b.get("output") {
        if let Some(a) = out.get("annotations").and_then(Value::as_array) {
            run.annotations.extend(a.iter().cloned());
        }
        if let Some(s) = out.get("summary").and_then(Value::as_str) {
            run.summaries.push(s.to_string());
        }
    }
    let output = json!({
        "title": b.pointer("/output/title").cloned().unwrap_or_else(|| v["output"]["title"].clone()),
        "summary": b.pointer("/output/summary").cloned().unwrap_or_else(|| v["output"]["summary"].clone()),
        "text": b.pointer("/output/text").cloned().unwrap_or_else(|| v["output"]["text"].clone()),
        "annotations_count": run.annotations.len(),
        "annotations_url": format!("{api}/repos/{full}/check-runs/{id}/annotations"),
    });
    set(v, "output", output);
    let status = v["status"].as_str().unwrap_or_default().to_string();
    if run.status_history.last() != Some(&status) {
        run.status_history.push(status);
    }
}

/// An issue comment shaped like the description's example.
pub fn issue_comment_value(
    api: &str,
    full: &str,
    number: u64,
    id: u64,
    login: &str,
    body: &str,
) -> Value {
    let spec = super::spec();
    let (op, _) = spec
        .find("POST", &format!("/repos/{full}/issues/{number}/comments"))
        .expect("issues/create-comment in the description");
    let mut v = spec.example(op, 201).expect("issue comment example");
    spec.complete(
        &mut v,
        spec.response_schema(op, 201).expect("issue comment schema"),
    );
    set(&mut v, "id", json!(id));
    set(&mut v, "node_id", json!(format!("IC_{id}")));
    set(
        &mut v,
        "url",
        json!(format!("{api}/repos/{full}/issues/comments/{id}")),
    );
    set(
        &mut v,
        "html_url",
        json!(format!("{api}/{full}/pull/{number}#issuecomment-{id}")),
    );
    set(
        &mut v,
        "issue_url",
        json!(format!("{api}/repos/{full}/issues/{number}")),
    );
    set(&mut v, "body", json!(body));
    set(&mut v, "created_at", json!(now()));
    set(&mut v, "updated_at", json!(now()));
    set_login(&mut v["user"], login);
    v
}
