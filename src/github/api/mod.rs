//! What bakery asks GitHub: the octocrab client and its authentication, the one retry loop
//! every call goes through, route pieces, and the reporting facade jobs use. Touches
//! GitHub's REST API only.

pub mod auth;
pub(crate) mod client;
pub(crate) mod deployments;
pub(crate) mod repo;
pub mod reporter;
pub(crate) mod retry;
