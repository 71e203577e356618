//! Real components the integration tests start, and helpers to drive them: stores,
//! signed deliveries from GitHub's example payloads, the real `bakery` binary, moto and
//! a recording proxy in front of it, a sandboxed sshd, a fake GitHub and git repositories.

#![allow(dead_code)]

pub mod aws_proxy;
pub mod bakery_process;
pub mod conversation;
pub mod examples;
pub mod fake_engine;
pub mod fake_github;
pub mod flaky_store;
pub mod git;
pub mod iam_oracle;
pub mod moto;
pub mod push_event;
pub mod sandbox;
pub mod stores;
pub mod story;
