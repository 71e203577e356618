//! Everything that speaks GitHub: typed webhook events (intake), and the API client,
//! checkout and reporting used by jobs.

pub mod webhook;
