//! Signing in to the dashboard with GitHub: the GitHub App's user authorisation, GitHub's
//! OAuth web flow.
//!
//! 1. `GET /dashboard/sign-in/github` sets a random `state` in a short-lived cookie and
//!    sends the browser to `<web>/login/oauth/authorize` with the App's client ID.
//! 2. GitHub sends the browser back to `GET /dashboard/sign-in/github/callback` with a
//!    `code` and the `state`; a `state` that is not the cookie's is refused (a forged
//!    sign-in link).
//! 3. The code is exchanged at `<web>/login/oauth/access_token` for the person's user
//!    token, which is used once for `GET /user` (their login) and then dropped: it is
//!    never stored, logged or put in a cookie.
//! 4. The session cookie carries the login and its expiry, signed (`session.rs`).
//!
//! Touches: GitHub's OAuth endpoints and `GET /user`; the browser's cookies.

use std::time::Duration;

use anyhow::Context;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use octocrab::Octocrab;
use serde::{Deserialize, Serialize};

use super::session::{self, COOKIE};
use crate::config::{Secret, ServerConfig};
use crate::github::api::retry;
use crate::server::AppState;

/// The cookie holding the sign-in's `state` between the two legs.
pub const STATE_COOKIE: &str = "bakery_oauth_state";
/// How long a sign-in may take at GitHub.
const STATE_TTL_SECS: u64 = 600;

/// Signing in with GitHub, as configured.
pub struct GitHubSignIn {
    client_id: String,
    client_secret: Secret,
    web_url: String,
    /// Where GitHub sends the browser back; `None`: the App's own callback URL.
    redirect_uri: Option<String>,
    pub session_key: Secret,
    session_secs: i64,
    web: Octocrab,
    api: Octocrab,
}

impl GitHubSignIn {
    /// `None` when `dashboard.github_client_id` is not set.
    pub fn new(config: &ServerConfig) -> anyhow::Result<Option<GitHubSignIn>> {
        let d = &config.dashboard;
        let Some(client_id) = d.github_client_id.clone() else {
            return Ok(None);
        };
        let (Some(client_secret), Some(session_key)) =
            (d.github_client_secret.clone(), d.session_key.clone())
        else {
            anyhow::bail!("signing in with GitHub needs dashboard.github_client_secret and dashboard.session_key");
        };
        let web_url = d.web_url(config.github.api_url.as_deref());
        let api_url = config
            .github
            .api_url
            .as_deref()
            .unwrap_or("https://api.github.com")
            .trim_end_matches('/')
            .to_string();
        let client = |base: &str| -> anyhow::Result<Octocrab> {
            Octocrab::builder()
                .base_uri(base)
                .with_context(|| format!("{base:?} is not a URL"))?
                .add_header(header::ACCEPT, "application/json".into())
                .set_connect_timeout(Some(Duration::from_secs(10)))
                .set_read_timeout(Some(Duration::from_secs(30)))
                .build()
                .context("cannot build the GitHub HTTP client")
        };
        Ok(Some(GitHubSignIn {
            client_id,
            client_secret,
            redirect_uri: config.public_url.as_ref().map(|u| {
                format!(
                    "{}/dashboard/sign-in/github/callback",
                    u.trim_end_matches('/')
                )
            }),
            session_key,
            session_secs: d.session_hours as i64 * 3600,
            web: client(&web_url)?,
            api: client(&api_url)?,
            web_url,
        }))
    }

    /// Where the browser goes to authorise: GitHub's authorize page.
    fn authorize_url(&self, state: &str) -> String {
        let mut url = format!(
            "{}/login/oauth/authorize?client_id={}&state={}",
            self.web_url,
            encode(&self.client_id),
            encode(state)
        );
        if let Some(r) = &self.redirect_uri {
            url.push_str(&format!("&redirect_uri={}", encode(r)));
        }
        url
    }

    /// The code for the person's user token, then their login.
    async fn login_of(&self, code: &str) -> Result<String, SignInError> {
        let body = TokenRequest {
            client_id: &self.client_id,
            client_secret: self.client_secret.expose(),
            code,
            redirect_uri: self.redirect_uri.as_deref(),
        };
        let answer: TokenAnswer = retry::call(
            &retry::GITHUB,
            "exchange a sign-in code for a user token",
            || self.web.post("/login/oauth/access_token", Some(&body)),
        )
        .await
        .map_err(SignInError::GitHub)?;
        let token = match answer {
            TokenAnswer::Token { access_token } => Secret::new(access_token),
            TokenAnswer::Refused { error } => return Err(SignInError::Refused(error)),
        };
        let api = self
            .api
            .user_access_token(token.expose().to_string())
            .map_err(|e| SignInError::GitHub(e.into()))?;
        let user: User = retry::call(&retry::GITHUB, "get the signed-in user", || {
            api.get("/user", None::<&()>)
        })
        .await
        .map_err(SignInError::GitHub)?;
        if !session::is_login(&user.login) {
            return Err(SignInError::Refused("unexpected login".into()));
        }
        Ok(user.login)
    }
}

/// Why a sign-in did not happen. Decided on these variants, never on text.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the sign-in link is not this browser's (its state does not match)")]
    StateMismatch,
    #[error("GitHub did not authorise the sign-in: {0}")]
    Refused(String),
    #[error("GitHub could not be asked: {0:#}")]
    GitHub(anyhow::Error),
}

#[derive(Serialize)]
struct TokenRequest<'a> {
    client_id: &'a str,
    client_secret: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_uri: Option<&'a str>,
}

/// GitHub's answer to the code exchange: a token, or an `error` (with status 200).
#[derive(Deserialize)]
#[serde(untagged)]
enum TokenAnswer {
    Token { access_token: String },
    Refused { error: String },
}

#[derive(Deserialize)]
struct User {
    login: String,
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /dashboard/sign-in/github`: off to GitHub with a fresh `state`.
pub async fn start(State(state): State<AppState>) -> Response {
    let Some(github) = &state.dashboard.github else {
        return session::not_found();
    };
    let nonce = hex::encode(rand::random::<[u8; 32]>());
    let cookie = format!(
        "{STATE_COOKIE}={nonce}; Path=/dashboard/sign-in/github; HttpOnly; SameSite=Lax; Max-Age={STATE_TTL_SECS}"
    );
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie)],
        "signing in with GitHub\n",
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&github.authorize_url(&nonce)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

#[derive(Debug, Deserialize)]
pub struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// `GET /dashboard/sign-in/github/callback`: GitHub's answer; a session on success.
pub async fn callback(
    State(state): State<AppState>,
    Query(query): Query<Callback>,
    headers: HeaderMap,
) -> Response {
    let Some(github) = &state.dashboard.github else {
        return session::not_found();
    };
    let result = async {
        let expected = session::cookie_value(&headers, STATE_COOKIE).unwrap_or_default();
        let given = query.state.as_deref().unwrap_or_default();
        if expected.len() != 64 || !constant_time_eq(expected, given) {
            return Err(SignInError::StateMismatch);
        }
        if let Some(error) = &query.error {
            return Err(SignInError::Refused(error.clone()));
        }
        let code = query
            .code
            .as_deref()
            .ok_or_else(|| SignInError::Refused("no code".into()))?;
        github.login_of(code).await
    }
    .await;
    let clear_state = format!(
        "{STATE_COOKIE}=; Path=/dashboard/sign-in/github; HttpOnly; SameSite=Lax; Max-Age=0"
    );
    match result {
        Ok(login) => {
            let expires = chrono::Utc::now().timestamp() + github.session_secs;
            tracing::info!(login = %login, "signed in to the dashboard with GitHub");
            let cookie = format!(
                "{COOKIE}={}; Path=/dashboard; HttpOnly; SameSite=Lax; Max-Age={}",
                session::person_cookie(&github.session_key, &login, expires),
                github.session_secs
            );
            let mut response = (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, "/dashboard".to_string())],
            )
                .into_response();
            for c in [cookie, clear_state] {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    response.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            response
        }
        Err(e) => {
            tracing::warn!("dashboard sign-in with GitHub refused: {e}");
            let message = match &e {
                SignInError::StateMismatch => {
                    "That sign-in link did not start in this browser. Sign in again."
                }
                SignInError::Refused(_) => "GitHub did not authorise the sign-in.",
                SignInError::GitHub(_) => "GitHub could not be reached. Try again.",
            };
            let mut response = session::sign_in_form(&state, Some(message));
            *response.status_mut() = match e {
                SignInError::GitHub(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::BAD_REQUEST,
            };
            if let Ok(v) = HeaderValue::from_str(&clear_state) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response
        }
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_authorize_url_carries_client_state_and_callback() {
        let config = ServerConfig::load(
            None,
            [
                ("BAKERY_PUBLIC_URL", "https://bakery.example.com/"),
                ("BAKERY_GITHUB__TOKEN", "ghp_token"),
                ("BAKERY_DASHBOARD__GITHUB_CLIENT_ID", "Iv1.abc"),
                ("BAKERY_DASHBOARD__GITHUB_CLIENT_SECRET", "client-secret"),
                ("BAKERY_DASHBOARD__SESSION_KEY", "session-key-0123456789"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap();
        let g = GitHubSignIn::new(&config).unwrap().unwrap();
        assert_eq!(
            g.authorize_url("s1"),
            "https://github.com/login/oauth/authorize?client_id=Iv1.abc&state=s1\
             &redirect_uri=https%3A%2F%2Fbakery.example.com%2Fdashboard%2Fsign-in%2Fgithub%2Fcallback"
        );
    }

    #[test]
    fn github_sign_in_needs_a_session_key() {
        let err = ServerConfig::load(
            None,
            [
                ("BAKERY_GITHUB__TOKEN", "ghp_token"),
                ("BAKERY_DASHBOARD__GITHUB_CLIENT_ID", "Iv1.abc"),
                ("BAKERY_DASHBOARD__GITHUB_CLIENT_SECRET", "client-secret"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("session_key"), "{err:#}");
    }
}
