//! Helpers shared by the integration tests; not every test module uses every helper.
#![allow(dead_code)]

pub mod aws_proxy;
pub mod moto;
