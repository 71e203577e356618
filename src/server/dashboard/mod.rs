//! The operator's dashboard: server-rendered HTML pages under `/dashboard`, one file per
//! page (`builds.rs`, `build.rs`, `images.rs`, `health.rs`), the live log stream
//! (`live_log.rs`) and sign-in (`session.rs`). No front-end build: plain HTML and one
//! stylesheet, usable without JavaScript; only the live log uses a few lines of script.
//!
//! Access follows the job pages' rule: the operator token (`job_pages.operator_token`),
//! given as a bearer token or through the sign-in form, which sets a session cookie that
//! is an HMAC of the token, never the token itself, sees everything. A person signed in
//! with GitHub (`github_sign_in.rs`) sees the builds of the repositories they can read and
//! cancels those they can write (`access.rs`). With neither configured the dashboard
//! answers 404, as the job pages do. Pages read the store only; the cancel button asks
//! the store to cancel a job, as `bakery jobs cancel` does.

pub mod access;
pub mod build;
pub mod builds;
pub mod github_sign_in;
pub mod health;
pub mod images;
pub mod live_log;
pub mod page;
pub mod session;

use axum::routing::{get, post};
use axum::Router;

use super::AppState;
use crate::config::ServerConfig;

/// What the dashboard's pages share besides the store: signing in with GitHub and the
/// people's permissions.
pub struct Dashboard {
    pub github: Option<github_sign_in::GitHubSignIn>,
    pub permissions: access::Permissions,
}

impl Dashboard {
    pub fn new(config: &ServerConfig) -> anyhow::Result<Dashboard> {
        Ok(Dashboard {
            github: github_sign_in::GitHubSignIn::new(config)?,
            permissions: access::Permissions::new(config)?,
        })
    }
}

/// The dashboard's routes, mounted on the bot's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(builds::builds_page))
        .route("/dashboard/", get(builds::builds_page))
        .route(
            "/dashboard/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/dashboard/sign-in/github", get(github_sign_in::start))
        .route(
            "/dashboard/sign-in/github/callback",
            get(github_sign_in::callback),
        )
        .route("/dashboard/sign-out", post(session::sign_out))
        .route("/dashboard/jobs/{id}", get(build::build_page))
        .route("/dashboard/jobs/{id}/log", get(live_log::live_log))
        .route("/dashboard/jobs/{id}/cancel", post(build::cancel))
        .route("/dashboard/images", get(images::images_page))
        .route("/dashboard/health", get(health::health_page))
        .route("/dashboard/style.css", get(page::stylesheet))
}
