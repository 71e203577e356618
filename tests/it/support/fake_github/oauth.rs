//! GitHub's OAuth web flow for a GitHub App's user authorisation, which the REST
//! description does not cover (it lives on the web host, `/login/oauth/…`). It follows
//! GitHub's documentation ("Generating a user access token for a GitHub App"):
//!
//! - `GET /login/oauth/authorize?client_id&redirect_uri&state`: the person signed in on
//!   this fake GitHub ([`super::FakeGitHub::sign_in_browser`]) authorises at once; the
//!   browser is redirected to `redirect_uri` (or the App's callback URL) with `code` and
//!   `state`, or with `error=redirect_uri_mismatch` for a `redirect_uri` outside the
//!   callback URL, or `error=access_denied` when nobody is signed in.
//! - `POST /login/oauth/access_token` (JSON or form body; JSON answer with
//!   `Accept: application/json`, form-encoded otherwise): a code is good once, for ten
//!   minutes, for the App that asked for it; errors come back with status 200 and an
//!   `error` (`incorrect_client_credentials`, `bad_verification_code`,
//!   `redirect_uri_mismatch`).
//!
//! The user tokens it mints (`ghu_…`) authenticate as the person on the REST API.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{Call, State};

/// The GitHub App's OAuth side.
#[derive(Debug, Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
    pub callback_url: String,
}

#[derive(Debug, Default)]
pub struct OAuthState {
    pub app: Option<OAuthApp>,
    /// Who is signed in on GitHub in "the browser".
    pub browser_login: Option<String>,
    /// code → (login, redirect_uri given to authorize, expiry).
    codes: HashMap<String, (String, Option<String>, chrono::DateTime<chrono::Utc>)>,
    /// user token → login.
    pub user_tokens: HashMap<String, String>,
}

const ERROR_URI: &str =
    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors";

fn params(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn redirect(location: &str) -> Response {
    (StatusCode::FOUND, [("location", location.to_string())], "").into_response()
}

/// Whether `given` is within the callback URL: same scheme, host and port, and a path
/// at or under the callback's.
fn within(callback: &str, given: &str) -> bool {
    given == callback || given.starts_with(&format!("{}/", callback.trim_end_matches('/')))
}

pub fn serve(
    shared: &Mutex<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = shared.lock().expect("fake GitHub state");
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let (response, status) = match (method.as_str(), path.as_str()) {
        ("GET", "/login/oauth/authorize") => authorize(&mut state, &params(&query)),
        ("POST", "/login/oauth/access_token") => access_token(&mut state, &headers, &body),
        _ => ((StatusCode::NOT_FOUND, "Not Found").into_response(), 404),
    };
    state.calls.push(Call {
        method: method.to_string(),
        path,
        query,
        operation_id: String::new(),
        body: Value::Null,
        status,
        auth: "none".into(),
    });
    response
}

fn authorize(state: &mut State, q: &HashMap<String, String>) -> (Response, u16) {
    let Some(app) = state
        .oauth
        .app
        .clone()
        .filter(|a| q.get("client_id") == Some(&a.client_id))
    else {
        return ((StatusCode::NOT_FOUND, "Not Found").into_response(), 404);
    };
    let st = q.get("state").cloned().unwrap_or_default();
    let given = q.get("redirect_uri").cloned();
    let target = given.clone().unwrap_or_else(|| app.callback_url.clone());
    if !within(&app.callback_url, &target) {
        let to = format!(
            "{}?error=redirect_uri_mismatch&error_description={}&error_uri={}&state={}",
            app.callback_url,
            encode("The redirect_uri MUST match the registered callback URL for this application."),
            encode(ERROR_URI),
            encode(&st)
        );
        return (redirect(&to), 302);
    }
    let sep = if target.contains('?') { '&' } else { '?' };
    let Some(login) = state.oauth.browser_login.clone() else {
        let to = format!(
            "{target}{sep}error=access_denied&error_description={}&error_uri={}&state={}",
            encode("The user has denied your application access."),
            encode(ERROR_URI),
            encode(&st)
        );
        return (redirect(&to), 302);
    };
    let code = uuid::Uuid::new_v4().simple().to_string()[..20].to_string();
    state.oauth.codes.insert(
        code.clone(),
        (
            login,
            given,
            chrono::Utc::now() + chrono::Duration::minutes(10),
        ),
    );
    (
        redirect(&format!("{target}{sep}code={code}&state={}", encode(&st))),
        302,
    )
}

fn access_token(state: &mut State, headers: &HeaderMap, body: &Bytes) -> (Response, u16) {
    let form: HashMap<String, String> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
            .collect(),
        _ => params(&String::from_utf8_lossy(body)),
    };
    let answer = exchange(state, &form);
    let json = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let response = if json {
        (
            StatusCode::OK,
            [("content-type", "application/json; charset=utf-8")],
            answer.to_string(),
        )
            .into_response()
    } else {
        let text: Vec<String> = answer
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                format!("{k}={}", encode(&v))
            })
            .collect();
        (
            StatusCode::OK,
            [(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            text.join("&"),
        )
            .into_response()
    };
    (response, 200)
}

fn error(code: &str, description: &str) -> Value {
    json!({
        "error": code,
        "error_description": description,
        "error_uri": format!("https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#{}", code.replace('_', "-")),
    })
}

fn exchange(state: &mut State, form: &HashMap<String, String>) -> Value {
    let Some(app) = state.oauth.app.clone() else {
        return error(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
        );
    };
    if form.get("client_id") != Some(&app.client_id)
        || form.get("client_secret") != Some(&app.client_secret)
    {
        return error(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
        );
    }
    let code = form.get("code").cloned().unwrap_or_default();
    // A code is good once.
    let Some((login, given, expires)) = state.oauth.codes.remove(&code) else {
        return error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
        );
    };
    if expires <= chrono::Utc::now() {
        return error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
        );
    }
    if let (Some(asked), Some(now)) = (&given, form.get("redirect_uri")) {
        if asked != now {
            return error(
                "redirect_uri_mismatch",
                "The redirect_uri MUST match the registered callback URL for this application.",
            );
        }
    }
    let token = format!("ghu_{}", uuid::Uuid::new_v4().simple());
    state.oauth.user_tokens.insert(token.clone(), login);
    json!({
        "access_token": token,
        "expires_in": 28800,
        "refresh_token": format!("ghr_{}", uuid::Uuid::new_v4().simple()),
        "refresh_token_expires_in": 15897600,
        "scope": "",
        "token_type": "bearer",
    })
}
