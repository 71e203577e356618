//! A build: the orchestration of one recipe's plan into images, shared by `bakery build`
//! and release jobs (which reach it through the `ImageEngine` seam, `engine.rs`). The log
//! handle (`BuildLog`) lives here so that every layer (AWS engine, SSH provisioner, GitHub
//! reporting) writes to one place.

mod engine;
pub mod hooks;
pub mod journal;
pub mod liveness;
pub mod log;
pub mod manifest;
pub(crate) mod progress;
pub mod runner;

pub use engine::{AwsEngine, BuildRequest, EngineRun, ImageEngine};
pub use log::{BuildLog, LogSink, OutputStream};
pub use manifest::Manifest;
pub use runner::{BuildOptions, BuildOutcome, BuildRunner, Cancelled, HandedOver, Recovery, Step};

/// A build step failed (the context of the step's error: the chain below it says why).
/// Reports name the failing step from this type, never from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("step {step} failed")]
pub struct StepFailed {
    pub step: &'static str,
}
