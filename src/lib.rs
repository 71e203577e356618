//! bakery: turns a git tag into finished, versioned, encrypted VM images.
//!
//! See `docs/ARCHITECTURE.md` for the map of these modules and the flow of a build.

pub mod aws;
pub mod build;
pub mod cli;
pub mod config;
pub mod database;
mod doctor;
pub mod github;
pub mod inventory;
pub mod jobs;
mod metrics;
pub mod plan;
mod policy;
pub mod provenance;
pub mod provision;
pub mod qemu;
pub mod recipe;
pub mod redact;
mod registry;
pub mod retry;
pub mod server;
mod telemetry;
pub mod worker;
