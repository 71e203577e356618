//! Shared test harness: stores, signed deliveries, GitHub's example payloads, and the
//! real `bakery` binary.

#![allow(dead_code)]

pub mod bakery_process;
pub mod examples;
pub mod stores;
