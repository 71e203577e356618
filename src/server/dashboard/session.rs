//! Who is looking at the dashboard. The operator signs in with the operator token
//! (`job_pages.operator_token`); the session cookie carries an HMAC of that token under a
//! fixed label, so the cookie opens the dashboard only while the token is unchanged, and
//! the token itself is never stored in the browser. A bearer token works as for the job
//! pages. Anything else is a visitor, who is sent to the sign-in page.

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

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
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

/// What a page answers a request without a viewer: the sign-in page when the dashboard
/// is on, 404 when no operator token is configured (as the job pages).
pub fn refuse(state: &AppState) -> Response {
    if state.operator_token.is_none() {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    Redirect::to("/dashboard/sign-in").into_response()
}

pub async fn sign_in_page(State(state): State<AppState>) -> Response {
    if state.operator_token.is_none() {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    sign_in_form(None)
}

fn sign_in_form(error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1>{error}\
         <form method=\"post\" action=\"/dashboard/sign-in\">\
         <label for=\"token\">Operator token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>"
    );
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
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    if !constant_time_eq(token.expose().as_bytes(), form.token.trim().as_bytes()) {
        return sign_in_form(Some("That token does not open the dashboard."));
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
                format!("{COOKIE}=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0"),
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
}
