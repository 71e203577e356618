//! A stateful fake of the GitHub REST API, for tests.
//!
//! It serves the endpoints bakery calls on 127.0.0.1 (a free port), keeps what they
//! create (check runs with their history, statuses, comments, releases), and lets a test
//! set the rest (repositories, tags, users' permissions, the App and the token).
//!
//! Every request is matched to its operation in GitHub's REST description
//! (`@octokit/openapi`); a body the description rejects is answered 422 as GitHub would.
//! Every answer is built from the description's own example for the operation, with
//! the fields the fake keeps filled in, and is validated against the operation's
//! response schema: an answer that does not validate is answered 500 and recorded in
//! [`FakeGitHub::violations`], which tests assert empty.

mod git_http;
mod handlers;
pub mod oauth;
pub mod openapi;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub use openapi::{spec, Spec};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The path without the query.
    pub path: String,
    pub query: String,
    /// The description's operation id, or empty for an unknown endpoint.
    pub operation_id: String,
    /// The JSON body (`Null` when there was none).
    pub body: Value,
    pub status: u16,
    /// Who called: `jwt:<app id>`, `token:<login>`, or `none`.
    pub auth: String,
}

#[derive(Debug, Clone)]
pub struct CheckRun {
    /// The check run as the API shows it now.
    pub current: Value,
    /// Every annotation sent, in order.
    pub annotations: Vec<Value>,
    /// `status` after each change: `queued`, `in_progress`, `completed`.
    pub status_history: Vec<String>,
    /// Each output summary sent, in order.
    pub summaries: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RepoState {
    pub clone_url: String,
    /// A bare repository served over HTTP at `/git/{owner}/{repo}.git` (see
    /// [`FakeGitHub::serve_git`]).
    pub git_dir: Option<std::path::PathBuf>,
    /// Git over HTTP answers 404 for this repository, as GitHub does for a repository
    /// the App can no longer read.
    pub git_unreachable: bool,
    pub default_branch: String,
    /// `(name, sha)`, listed in this order.
    pub tags: Vec<(String, String)>,
    /// user → (permission, role_name).
    pub permissions: HashMap<String, (String, String)>,
    pub installation_id: Option<u64>,
    /// The installation's `permissions` and `events`, when a test sets them (otherwise
    /// the description's example).
    pub installation_grants: Option<(Value, Vec<String>)>,
    pub check_runs: BTreeMap<u64, CheckRun>,
    pub statuses: Vec<Value>,
    pub commit_comments: Vec<Value>,
    /// comment id → (issue number, comment).
    pub issue_comments: BTreeMap<u64, (u64, Value)>,
    pub releases: BTreeMap<u64, Value>,
    /// Release assets by id: (release id, the asset as answered, the uploaded bytes).
    pub release_assets: BTreeMap<u64, (u64, Value, Vec<u8>)>,
    /// Pull requests by number.
    pub pulls: BTreeMap<u64, PullState>,
    /// Deployments by id: the deployment as answered, and its statuses in order.
    pub deployments: BTreeMap<u64, (Value, Vec<Value>)>,
}

/// A pull request as the fake shows it through `pulls/get`.
#[derive(Debug, Clone, Default)]
pub struct PullState {
    pub head_sha: String,
    pub head_ref: String,
    /// `owner/name` of the head repository (the base repository unless from a fork).
    pub head_repo: String,
    pub base_ref: String,
    pub author: String,
    pub state: String,
}

/// An error the fake answers instead of handling a request.
#[derive(Debug, Clone)]
pub struct Failure {
    pub operation_id: String,
    pub status: u16,
    pub message: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct State {
    pub api_url: String,
    /// The GitHub App: id and slug.
    pub app: Option<(u64, String)>,
    /// A personal access token and its user's login.
    pub pat: Option<(String, String)>,
    /// Lifetime of the installation tokens the fake mints.
    pub token_ttl: chrono::Duration,
    /// Minted installation tokens: token → (installation, expiry).
    pub tokens: HashMap<String, (u64, chrono::DateTime<chrono::Utc>)>,
    /// Tokens minted for some repositories only (`repositories` in the request): token →
    /// the repository names (without owner) it may reach.
    pub token_scopes: HashMap<String, Vec<String>>,
    pub repos: BTreeMap<String, RepoState>,
    pub calls: Vec<Call>,
    pub failures: VecDeque<Failure>,
    pub violations: Vec<String>,
    /// The App's user authorisation (OAuth web flow) and who is signed in on GitHub.
    pub oauth: oauth::OAuthState,
    next_id: u64,
}

impl State {
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

pub struct FakeGitHub {
    url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGitHub {
    /// Starts the fake on a free port of 127.0.0.1.
    pub async fn start() -> FakeGitHub {
        // Load the description before the first request, outside any request's time.
        let _ = spec();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr: SocketAddr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let state = Arc::new(Mutex::new(State {
            api_url: url.clone(),
            app: None,
            pat: None,
            token_ttl: chrono::Duration::hours(1),
            tokens: HashMap::new(),
            token_scopes: HashMap::new(),
            repos: BTreeMap::new(),
            calls: Vec::new(),
            failures: VecDeque::new(),
            violations: Vec::new(),
            oauth: oauth::OAuthState::default(),
            next_id: 1000,
        }));
        let shared = state.clone();
        let app = axum::Router::new()
            .fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let shared = shared.clone();
                    async move {
                        if uri.path().starts_with("/git/") {
                            git_http::serve(&shared, method, uri, headers, body).await
                        } else if uri.path().starts_with("/login/oauth/") {
                            oauth::serve(&shared, method, uri, headers, body)
                        } else {
                            handle(&shared, method, uri, headers, body)
                        }
                    }
                },
            )
            // GitHub takes release assets up to 2 GiB (axum's default stops at 2 MiB).
            .layer(axum::extract::DefaultBodyLimit::max(2 << 30));
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("fake GitHub serves");
        });
        FakeGitHub { url, state, task }
    }

    /// The API base URL to configure bakery with.
    pub fn api_url(&self) -> &str {
        &self.url
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake GitHub state")
    }

    /// Accepts JWTs of App `id`; its bot login is `<slug>[bot]`.
    pub fn set_app(&self, id: u64, slug: &str) {
        self.state().app = Some((id, slug.to_string()));
    }

    /// The App's OAuth credentials and its callback URL, for user authorisation.
    pub fn set_oauth_app(&self, client_id: &str, client_secret: &str, callback_url: &str) {
        self.state().oauth.app = Some(oauth::OAuthApp {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            callback_url: callback_url.to_string(),
        });
    }

    /// Who is signed in on GitHub in the browser that authorises (`None`: nobody).
    pub fn sign_in_browser(&self, login: Option<&str>) {
        self.state().oauth.browser_login = login.map(str::to_string);
    }

    /// Accepts `token` as a personal access token of `login`.
    pub fn set_pat(&self, token: &str, login: &str) {
        self.state().pat = Some((token.to_string(), login.to_string()));
    }

    pub fn set_token_ttl(&self, ttl: chrono::Duration) {
        self.state().token_ttl = ttl;
    }

    /// Adds a repository (`owner/name`) cloned from `clone_url`.
    pub fn add_repo(&self, full_name: &str, clone_url: &str, installation_id: Option<u64>) {
        self.state().repos.insert(
            full_name.to_string(),
            RepoState {
                clone_url: clone_url.to_string(),
                default_branch: "main".into(),
                installation_id,
                ..RepoState::default()
            },
        );
    }

    /// Serves the bare repository `git_dir` over HTTP, behind token authentication, and
    /// makes that the repository's clone URL. Returns the URL.
    pub fn serve_git(&self, repo: &str, git_dir: &std::path::Path) -> String {
        let url = format!("{}/git/{repo}.git", self.url);
        let u = url.clone();
        self.repo_mut(repo, move |r| {
            r.git_dir = Some(git_dir.to_path_buf());
            r.clone_url = u;
        });
        url
    }

    /// Makes the repository's git unreachable (or reachable again).
    pub fn set_git_unreachable(&self, repo: &str, unreachable: bool) {
        self.repo_mut(repo, move |r| r.git_unreachable = unreachable);
    }

    /// Lists a tag for a repository without real git behind it (one served with
    /// [`FakeGitHub::serve_git`] lists the tags of its git repository).
    pub fn add_tag(&self, repo: &str, name: &str, sha: &str) {
        self.repo_mut(repo, |r| r.tags.push((name.to_string(), sha.to_string())));
    }

    /// Opens (or moves the head of) pull request `number`.
    pub fn set_pull(&self, repo: &str, number: u64, pull: PullState) {
        self.repo_mut(repo, |r| {
            r.pulls.insert(number, pull);
        });
    }

    /// Sets `user`'s permission (`admin`, `write`, `read`, `none`) and role.
    /// What the App's installation on `repo` was granted: `permissions` (`{"checks":
    /// "write", ...}`) and the webhook `events`.
    pub fn set_installation_grants(&self, repo: &str, permissions: Value, events: &[&str]) {
        let events = events.iter().map(|e| e.to_string()).collect();
        self.repo_mut(repo, |r| {
            r.installation_grants = Some((permissions, events))
        });
    }

    pub fn set_permission(&self, repo: &str, user: &str, permission: &str, role: &str) {
        self.repo_mut(repo, |r| {
            r.permissions
                .insert(user.to_string(), (permission.to_string(), role.to_string()));
        });
    }

    /// Answers the next `times` calls of `operation_id` with `status`.
    pub fn fail_next(
        &self,
        operation_id: &str,
        status: u16,
        message: &str,
        headers: &[(&str, &str)],
        times: usize,
    ) {
        let mut s = self.state();
        for _ in 0..times {
            s.failures.push_back(Failure {
                operation_id: operation_id.to_string(),
                status,
                message: message.to_string(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            });
        }
    }

    /// Adds a comment by `login` to issue or PR `number`, as if a user wrote it.
    pub fn add_issue_comment(&self, repo: &str, number: u64, login: &str, body: &str) -> u64 {
        let mut s = self.state();
        let api = s.api_url.clone();
        let id = s.next_id();
        let comment = handlers::issue_comment_value(&api, repo, number, id, login, body);
        s.repos
            .get_mut(repo)
            .expect("repo added")
            .issue_comments
            .insert(id, (number, comment));
        id
    }

    fn repo_mut(&self, repo: &str, f: impl FnOnce(&mut RepoState)) {
        let mut s = self.state();
        let r = s
            .repos
            .get_mut(repo)
            .unwrap_or_else(|| panic!("add_repo({repo:?}) first"));
        f(r);
    }

    pub fn repo(&self, repo: &str) -> RepoState {
        self.state().repos.get(repo).cloned().expect("repo added")
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Calls of one operation, in order.
    pub fn calls_of(&self, operation_id: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.operation_id == operation_id)
            .collect()
    }

    /// Answers the fake built that do not validate against the description (should be none).
    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }
}

/// GitHub's documentation link in error bodies.
const DOCS: &str = "https://docs.github.com/rest";

fn error_body(message: &str) -> Value {
    json!({ "message": message, "documentation_url": DOCS })
}

fn handle(
    shared: &Mutex<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let spec = spec();
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let mut state = shared.lock().expect("fake GitHub state");
    let mut call = Call {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        operation_id: String::new(),
        body: Value::Null,
        status: 0,
        auth: "none".into(),
    };
    let (status, value, extra_headers) = answer(
        &mut state, spec, &method, &path, &query, &headers, &body, &mut call,
    );
    call.status = status;
    state.calls.push(call);
    let mut response = (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json; charset=utf-8")],
        value.map(|v| v.to_string()).unwrap_or_default(),
    )
        .into_response();
    for (k, v) in extra_headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    response
}

type Answer = (u16, Option<Value>, Vec<(String, String)>);

#[allow(clippy::too_many_arguments)]
fn answer(
    state: &mut State,
    spec: &Spec,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Bytes,
    call: &mut Call,
) -> Answer {
    let Some((op, params)) = spec.find(method.as_str(), path) else {
        return (404, Some(error_body("Not Found")), vec![]);
    };
    call.operation_id = op.operation_id.clone();

    // Release assets are uploaded as raw bytes, not JSON.
    let raw_body = op.operation_id == "repos/upload-release-asset";
    let json_body = if body.is_empty() || raw_body {
        None
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => {
                call.body = v.clone();
                Some(v)
            }
            Err(_) => return (400, Some(error_body("Problems parsing JSON")), vec![]),
        }
    };

    // Authentication, as GitHub checks it first.
    let identity = match handlers::authenticate(state, &op.operation_id, headers) {
        Ok(id) => id,
        Err((status, message)) => return (status, Some(error_body(&message)), vec![]),
    };
    call.auth = identity.describe();

    // The request body against the description.
    if let Some((schema, required)) = spec.request_schema(op) {
        match &json_body {
            Some(v) => {
                let errors = spec.validate(v, schema);
                if !errors.is_empty() {
                    return (
                        422,
                        Some(error_body(&format!(
                            "Invalid request.\n\n{}",
                            errors.join("\n")
                        ))),
                        vec![],
                    );
                }
            }
            None if required => {
                return (
                    422,
                    Some(error_body("Invalid request.\n\nNo body.")),
                    vec![],
                );
            }
            None => {}
        }
    }

    if let Some(pos) = state
        .failures
        .iter()
        .position(|f| f.operation_id == op.operation_id)
    {
        let f = state.failures.remove(pos).unwrap();
        return (f.status, Some(error_body(&f.message)), f.headers);
    }

    let params: HashMap<String, String> = params.into_iter().collect();
    let request = handlers::Request {
        spec,
        op,
        params: &params,
        query,
        body: json_body.unwrap_or(Value::Null),
        identity: &identity,
        raw: body,
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    let (status, value) = match handlers::dispatch(state, &request) {
        Ok(ok) => ok,
        Err((status, message)) => (status, error_body(&message)),
    };

    // The answer against the description: the fake must never invent a field.
    if let Some(schema) = spec.response_schema(op, status) {
        let errors = spec.validate(&value, schema);
        if !errors.is_empty() {
            let v = format!(
                "{} {} ({}) answer {status} does not match the description: {}",
                method,
                path,
                op.operation_id,
                errors.join("; ")
            );
            state.violations.push(v.clone());
            return (500, Some(error_body(&v)), vec![]);
        }
    } else if (200..300).contains(&status) && status != 204 {
        let v = format!(
            "{} {} ({}) answered {status}, which the description does not document",
            method, path, op.operation_id
        );
        state.violations.push(v.clone());
        return (500, Some(error_body(&v)), vec![]);
    }
    (status, Some(value), vec![])
}
