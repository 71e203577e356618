//! Everything that speaks GitHub: typed webhook events (intake); the API client and the
//! reporting facade jobs use; checkout of the tagged commit; release notes; comment
//! commands; and `bakery sync`.

pub mod auth;
pub mod checkout;
pub(crate) mod client;
pub mod commands;
pub mod publish;
pub(crate) mod release_notes;
pub mod render;
pub(crate) mod repo;
pub mod reporter;
pub(crate) mod retry;
pub(crate) mod sync;
pub(crate) mod sync_floor;
#[cfg(test)]
pub(crate) mod testutil;
pub mod webhook;

pub use client::{AuthKind, GitHubClient, Session};
pub use repo::RepoName;
pub use reporter::GitHubReporter;
