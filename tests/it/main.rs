//! bakery's integration tests: one binary, one module per area. Each test starts the
//! real components it needs (the store, the HTTP router, the `bakery` binary, moto, a
//! sandboxed OpenSSH server, a fake GitHub that follows GitHub's REST description, real
//! git repositories).

mod ansible;
mod aws;
mod channels;
mod dashboard;
mod dashboard_browser;
mod dashboard_people;
mod deploy;
mod doctor;
mod fast;
mod github;
mod hardening;
mod intake;
mod inventory;
mod job_pages;
mod lifecycle;
mod metrics;
mod package_stories;
mod pr_stories;
mod provenance;
mod qemu;
mod qemu_release;
mod recipes;
mod registry;
mod replicas;
mod secrets;
mod serve;
mod ssh;
mod store;
mod stories;
mod support;
mod worker;
