//! Integration tests: real components (moto, git, sshd) started by the project's scripts.

mod aws;
mod support;
