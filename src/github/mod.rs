//! Everything that speaks GitHub, in four parts:
//!
//! - [`webhook`]: what GitHub sends (typed deliveries, comment commands) — intake;
//! - [`api`]: what bakery asks GitHub (the client, authentication, the one retry loop, and
//!   the reporting facade jobs use);
//! - [`git`]: local git work on the repository (checkout of the commit a job builds,
//!   release notes from history);
//! - [`render`]: everything bakery writes on GitHub, as pure functions;
//!
//! plus [`publish`], which composes render and api into a finished job's reports, and
//! [`sync`] (`bakery sync`).

pub mod api;
pub mod git;
pub mod publish;
pub mod render;
pub(crate) mod sync;
pub mod webhook;

pub use api::client::{AuthKind, GitHubClient, Session};
pub use api::repo::RepoName;
pub use api::reporter::GitHubReporter;
