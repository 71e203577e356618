//! Who is looking at the dashboard. The operator signs in with the operator token
//! (`job_pages.operator_token`); the session cookie carries an HMAC of that token under a
//! fixed label, so the cookie opens the dashboard only while the token is unchanged, and
//! the token itself is never stored in the browser. A bearer token works as for the job
//! pages. A person signed in with GitHub (`github_sign_in.rs`) carries a cookie with their
//! login and its expiry, signed with `dashboard.session_key`; a cookie whose signature does
//! not match or whose time has passed is nobody's. Anything else is a visitor, who is sent
//! to the sign-in page.
//!
//! Touches: request headers and cookies only.

use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::page::{self, escape};
use crate::config::Secret;
use crate::server::AppState;

pub const COOKIE: &str = "bakery_session";

/// A signed-in viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// Holds the operator token: sees and cancels everything.
    Operator,
    /// Signed in with GitHub: sees what GitHub lets them read (`access.rs`).
    Person { login: String },
}

/// The prefix of a person's session cookie value.
const PERSON: &str = "p.";

fn person_signature(key: &Secret, login: &str, expires: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key");
    mac.update(format!("bakery dashboard person session\n{login}\n{expires}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A person's session cookie value: `p.<login>.<expiry, unix seconds>.<signature>`.
pub fn person_cookie(key: &Secret, login: &str, expires: i64) -> String {
    format!(
        "{PERSON}{login}.{expires}.{}",
        person_signature(key, login, expires)
    )
}

/// Whether `login` is a GitHub login (letters, digits and single hyphens), so it can sit
/// in a cookie and a page unescaped.
pub fn is_login(login: &str) -> bool {
    !login.is_empty()
        && login.len() <= 39
        && login.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The login of a person's cookie value, if it is signed with `key` and has not expired.
pub fn person_of(key: &Secret, value: &str, now: i64) -> Option<String> {
    let rest = value.strip_prefix(PERSON)?;
    let mut parts = rest.split('.');
    let (login, expires, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_login(login) {
        return None;
    }
    let expires: i64 = expires.parse().ok()?;
    let expected = person_signature(key, login, expires);
    if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) || expires <= now {
        return None;
    }
    Some(login.to_string())
}

/// The cookie value for the operator's session.
fn operator_cookie(token: &Secret) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(token.expose().as_bytes()).expect("HMAC takes any key");
    mac.update(b"bakery dashboard operator session");
    hex::encode(mac.finalize().into_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The viewer of a request, if any.
pub fn viewer(state: &AppState, headers: &HeaderMap) -> Option<Viewer> {
    if let (Some(given), Some(github)) = (cookie_value(headers, COOKIE), &state.dashboard.github) {
        if let Some(login) = person_of(&github.session_key, given, chrono::Utc::now().timestamp()) {
            return Some(Viewer::Person { login });
        }
    }
    let token = state.operator_token.as_ref()?;
    if let Some(given) = cookie_value(headers, COOKIE) {
        if constant_time_eq(operator_cookie(token).as_bytes(), given.as_bytes()) {
            return Some(Viewer::Operator);
        }
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(given) = bearer {
        if constant_time_eq(token.expose().as_bytes(), given.trim().as_bytes()) {
            return Some(Viewer::Operator);
        }
    }
    None
}

/// Whether the dashboard is on: an operator token or signing in with GitHub is configured.
pub fn dashboard_on(state: &AppState) -> bool {
    state.operator_token.is_some() || state.dashboard.github.is_some()
}

/// What a page answers a request without a viewer: the sign-in page when the dashboard
/// is on, 404 when it is off (as the job pages).
pub fn refuse(state: &AppState) -> Response {
    if !dashboard_on(state) {
        return not_found();
    }
    Redirect::to("/dashboard/sign-in").into_response()
}

/// The answer for what a viewer may not see: the same as for what does not exist.
pub fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

pub async fn sign_in_page(State(state): State<AppState>) -> Response {
    if !dashboard_on(&state) {
        return not_found();
    }
    sign_in_form(&state, None)
}

/// The sign-in page: GitHub's button when configured, the operator token's form when
/// configured; `error` above them.
pub fn sign_in_form(state: &AppState, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let github = if state.dashboard.github.is_some() {
        "<p><a class=\"button\" href=\"/dashboard/sign-in/github\">Sign in with GitHub</a></p>"
    } else {
        ""
    };
    let operator = if state.operator_token.is_some() {
        "<form method=\"post\" action=\"/dashboard/sign-in\">\
         <label for=\"token\">Operator token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>"
    } else {
        ""
    };
    let body = format!("<h1>Sign in</h1>{error}{github}{operator}");
    page::html(
        if error.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        },
        "Sign in",
        None,
        &body,
    )
}

#[derive(Deserialize)]
pub struct SignIn {
    token: String,
}

pub async fn sign_in(State(state): State<AppState>, Form(form): Form<SignIn>) -> Response {
    let Some(token) = &state.operator_token else {
        return not_found();
    };
    if !constant_time_eq(token.expose().as_bytes(), form.token.trim().as_bytes()) {
        return sign_in_form(&state, Some("That token does not open the dashboard."));
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=43200",
        operator_cookie(token)
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/dashboard".to_string()),
        ],
    )
        .into_response()
}

pub async fn sign_out() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                format!("{COOKIE}=; Path=/dashboard; HttpOnly; SameSite=Lax; Max-Age=0"),
            ),
            (header::LOCATION, "/dashboard/sign-in".to_string()),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_not_the_token() {
        let token = Secret::new("operator-token-0123456789");
        let c = operator_cookie(&token);
        assert_eq!(c.len(), 64);
        assert!(!c.contains("operator-token"));
        assert_ne!(c, operator_cookie(&Secret::new("another-token-0123456789")));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; bakery_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some("abc"));
        assert_eq!(cookie_value(&h, "c"), None);
    }

    #[test]
    fn a_person_cookie_holds_only_while_signed_and_unexpired() {
        let key = Secret::new("session-key-0123456789abcdef");
        let now = 1_700_000_000;
        let good = person_cookie(&key, "octocat", now + 60);
        assert_eq!(person_of(&key, &good, now).as_deref(), Some("octocat"));
        // Expired.
        assert_eq!(person_of(&key, &good, now + 60), None);
        // Another key signed it.
        let other = Secret::new("another-key-0123456789abcdef");
        assert_eq!(person_of(&other, &good, now), None);
        // The login or the expiry changed under the signature.
        let sig = good.rsplit('.').next().unwrap();
        assert_eq!(
            person_of(&key, &format!("p.admin.{}.{sig}", now + 60), now),
            None
        );
        assert_eq!(
            person_of(&key, &format!("p.octocat.{}.{sig}", now + 9999), now),
            None
        );
        assert_eq!(person_of(&key, "p.octocat", now), None);
        assert!(!is_login("a.b") && !is_login("") && is_login("mona-lisa"));
    }
}
