//! Git over HTTP for the fake's repositories, as GitHub serves it: the real
//! `git http-backend` behind HTTP basic authentication that takes an installation token
//! (or the personal access token) as the password, any user name.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::io::AsyncWriteExt;

use super::{Call, State};

/// Serves `/git/{owner}/{repo}.git/...` from the repository's `git_dir`.
pub async fn serve(
    shared: &std::sync::Mutex<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let (status, response, auth) = {
        let state = shared.lock().expect("fake GitHub state");
        let auth = authorized(&state, &headers);
        let rest = path.trim_start_matches("/git/");
        let found = state.repos.iter().find_map(|(name, repo)| {
            let prefix = format!("{name}.git");
            rest.strip_prefix(&prefix)
                .filter(|_| repo.git_dir.is_some() && !repo.git_unreachable)
                .map(|suffix| (repo.git_dir.clone().unwrap(), suffix.to_string()))
        });
        match (found, &auth) {
            (None, _) => (404, None, auth.clone()),
            (Some(_), None) => (401, None, None),
            (Some(target), Some(_)) => (0, Some(target), auth.clone()),
        }
    };
    let record = |status: u16| Call {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        operation_id: "git".into(),
        body: serde_json::Value::Null,
        status,
        auth: auth
            .clone()
            .map(|a| format!("token:{a}"))
            .unwrap_or_else(|| "none".into()),
    };
    let Some((git_dir, path_info)) = response else {
        shared.lock().unwrap().calls.push(record(status));
        let mut r = StatusCode::from_u16(status).unwrap().into_response();
        if status == 401 {
            r.headers_mut().insert(
                "www-authenticate",
                "Basic realm=\"GitHub\"".parse().unwrap(),
            );
        }
        return r;
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &git_dir)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", &path_info)
        .env("REQUEST_METHOD", method.as_str())
        .env("QUERY_STRING", &query)
        .env(
            "CONTENT_TYPE",
            headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        )
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", "x-access-token")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("git http-backend starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&body).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    // CGI: headers, a blank line, the body.
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| {
            out.stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, 2))
        });
    let (head, payload) = match split {
        Some((i, n)) => (&out.stdout[..i], out.stdout[i + n..].to_vec()),
        None => (&out.stdout[..], Vec::new()),
    };
    let mut status = 200;
    let mut response = Response::builder();
    for line in String::from_utf8_lossy(head).lines() {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("status") {
                status = v
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(500);
            } else {
                response = response.header(k, v);
            }
        }
    }
    shared.lock().unwrap().calls.push(record(status));
    response
        .status(status)
        .body(axum::body::Body::from(payload))
        .unwrap()
}

/// The password of a basic `Authorization` header, if it is a token the fake accepts.
/// Returns the caller's login.
fn authorized(state: &State, headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_user, password) = text.split_once(':')?;
    if let Some((token, login)) = &state.pat {
        if token == password {
            return Some(login.clone());
        }
    }
    let (_, expires) = state.tokens.get(password)?;
    if *expires <= chrono::Utc::now() {
        return None;
    }
    let slug = state
        .app
        .as_ref()
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    Some(format!("{slug}[bot]"))
}
