//! Integration tests against real components started by the project's own scripts.

mod support;

mod ssh;
