//! Local git work on the repository with git2: the checkout of the commit a job builds
//! (a cached mirror per repository, a workspace per job) and release notes from history.
//! Touches the work directory only; fetches over git.

pub mod checkout;
pub(crate) mod release_notes;
#[cfg(test)]
pub(crate) mod testutil;
