//! The recipe parser and planner, compiled from the main crate's sources.

#[path = "../../src/plan/mod.rs"]
pub mod plan;
#[path = "../../src/recipe/mod.rs"]
pub mod recipe;

/// The webhook event parser, compiled from the main crate's sources.
#[path = "../../src/github/webhook/mod.rs"]
pub mod webhook;
