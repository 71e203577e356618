//! Real components the integration tests start, and helpers to drive them.

pub mod fake_github;
pub mod git;
