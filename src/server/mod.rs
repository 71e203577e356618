//! The HTTP front door: webhook intake and health endpoints.

pub mod signature;
