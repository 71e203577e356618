//! Real components the integration tests start, and helpers to drive them: stores,
//! signed deliveries from GitHub's example payloads, the real `bakery` binary, a fake
//! GitHub and git repositories.

#![allow(dead_code)]

pub mod bakery_process;
pub mod examples;
pub mod fake_github;
pub mod git;
pub mod stores;
