//! A build: the orchestration of one recipe's plan into images, shared by `bakery build`
//! and release jobs. The log handle (`BuildLog`) lives here so that every layer (AWS
//! engine, SSH provisioner, GitHub reporting) writes to one place.

pub mod log;

pub use log::{BuildLog, LogSink, OutputStream};
