//! A build: the orchestration of one recipe's plan into images, shared by `bakery build`
//! and release jobs. The log handle (`BuildLog`) lives here so that every layer (AWS
//! engine, SSH provisioner, GitHub reporting) writes to one place.

pub mod hooks;
pub mod journal;
pub mod liveness;
pub mod log;
pub mod manifest;
pub mod progress;
pub mod runner;

pub use log::{BuildLog, LogSink, OutputStream};
pub use manifest::Manifest;
pub use runner::{BuildOptions, BuildOutcome, BuildRunner, Cancelled, HandedOver, Recovery, Step};
