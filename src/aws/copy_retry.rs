//! When a copy EC2 failed is worth issuing again, and how often.
//!
//! A copy into another account reads the intermediate through the KMS grant bakery made
//! on its key moments before. KMS grants are eventually consistent: bakery waits until
//! the key's grant list shows the grant (see [`super::grants`]), but EC2, which copies
//! asynchronously, may still not be able to use it, and the copy ends `failed` with a
//! `Client.InvalidKMSKey.*` StateReason. Such a copy is deregistered and issued again
//! (a new idempotency token), at most [`COPY_ATTEMPTS`] times in all, after a pause that
//! grows with each attempt. EC2's own `Server.InternalError` gets the same treatment.
//! Any other reason, or the same one after the last attempt, fails the build, whose
//! cleanup then removes every copy and revokes the grants.
//!
//! Decisions are on EC2's StateReason code ([`CopyFailure::of`]), never on its message.
//! Touches nothing: `distribute.rs` makes the calls.

use std::time::Duration;

use super::image::ImageNotAvailable;
use super::wait::PollSettings;

/// Copies issued for one target at most, the first included.
pub const COPY_ATTEMPTS: u32 = 3;

/// Why EC2 failed a copy, as far as issuing it again is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFailure {
    /// EC2 could not use a KMS key (`Client.InvalidKMSKey.*`): for a copy into another
    /// account, a grant that has not reached EC2 yet.
    KeyNotUsable,
    /// EC2 failed on its side (`Server.InternalError`).
    Internal,
    /// Anything else: another copy would fail the same way.
    Final,
}

impl CopyFailure {
    /// The class of a copy's failure; `None` when the error is not an image EC2 gave up
    /// on (a call that failed, a budget that ran out).
    pub fn of(err: &anyhow::Error) -> Option<CopyFailure> {
        let failed = err
            .chain()
            .find_map(|e| e.downcast_ref::<ImageNotAvailable>())?;
        if failed.state != "failed" {
            return Some(CopyFailure::Final);
        }
        let code = failed.code.as_deref().unwrap_or("");
        Some(if code.starts_with("Client.InvalidKMSKey.") {
            CopyFailure::KeyNotUsable
        } else if code == "Server.InternalError" {
            CopyFailure::Internal
        } else {
            CopyFailure::Final
        })
    }

    /// Whether another copy may succeed. A key EC2 cannot use in the copy's own account
    /// will not become usable by waiting: only a grant from another account does.
    pub fn worth_reissuing(self, cross_account: bool) -> bool {
        match self {
            CopyFailure::KeyNotUsable => cross_account,
            CopyFailure::Internal => true,
            CopyFailure::Final => false,
        }
    }
}

/// The pause before issuing attempt `attempt + 1` (after `attempt` failed copies): four
/// of the wait's longest poll intervals per failed attempt (2 and 4 minutes with the
/// default polling), time for a grant to reach EC2.
pub fn pause_before_reissue(attempt: u32, poll: PollSettings) -> Duration {
    poll.max_interval.saturating_mul(4 * attempt.max(1))
}

/// A copy EC2 failed on every attempt.
#[derive(Debug, thiserror::Error)]
#[error(
    "the copy into {target} failed {attempts} time(s); the last copy {image_id} says why \
     below. For a Client.InvalidKMSKey code: check that the intermediate's key lets \
     account {account} create grants and decrypt (key policy), and that the copy's own key \
     is enabled and usable by the role"
)]
pub struct CopyKeepsFailing {
    pub target: super::session::Target,
    pub account: String,
    pub image_id: String,
    pub attempts: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::session::Target;

    fn failed(state: &str, code: Option<&str>) -> anyhow::Error {
        anyhow::Error::new(ImageNotAvailable {
            image_id: "ami-1".into(),
            target: Target {
                account: "222222222222".into(),
                region: "eu-west-1".into(),
            },
            state: state.into(),
            code: code.map(str::to_string),
            message: Some("whatever EC2 says".into()),
        })
        .context("while waiting for image ami-1")
    }

    #[test]
    fn kms_failures_are_reissued_only_across_accounts_and_internal_errors_always() {
        let kms = CopyFailure::of(&failed("failed", Some("Client.InvalidKMSKey.InvalidState")));
        assert_eq!(kms, Some(CopyFailure::KeyNotUsable));
        assert!(kms.unwrap().worth_reissuing(true));
        assert!(!kms.unwrap().worth_reissuing(false));
        let internal = CopyFailure::of(&failed("failed", Some("Server.InternalError")));
        assert_eq!(internal, Some(CopyFailure::Internal));
        assert!(internal.unwrap().worth_reissuing(false));
        for (state, code) in [
            ("failed", Some("Client.UnsupportedOperation")),
            ("failed", None),
            ("invalid", Some("Client.InvalidKMSKey.InvalidState")),
        ] {
            let c = CopyFailure::of(&failed(state, code)).unwrap();
            assert_eq!(c, CopyFailure::Final, "{state} {code:?}");
            assert!(!c.worth_reissuing(true));
        }
        assert_eq!(
            CopyFailure::of(&anyhow::anyhow!("Client.InvalidKMSKey.InvalidState")),
            None
        );
    }

    #[test]
    fn the_pause_grows_with_each_failed_attempt() {
        let poll = PollSettings::default();
        assert_eq!(pause_before_reissue(1, poll), Duration::from_secs(120));
        assert_eq!(pause_before_reissue(2, poll), Duration::from_secs(240));
    }
}
