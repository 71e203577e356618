//! Named retry policies for AWS calls.
//!
//! The SDK itself retries throttling (`RequestLimitExceeded`) and 5xx answers with its
//! adaptive retry mode (see [`super::session`]). These policies sit above it and cover
//! what the SDK cannot know about: calls that never got an answer, EC2's eventual
//! consistency right after a resource was created, and dependencies that clear on their
//! own (a security group still attached to a terminating instance).

use std::future::Future;
use std::time::Duration;

use super::error::AwsError;
use crate::retry::{retry_with, RetryPolicy};

/// Ordinary EC2/KMS/STS calls: retried only when no answer came back.
pub const AWS_CALL: RetryPolicy = RetryPolicy::new(
    "aws-call",
    4,
    Duration::from_secs(1),
    Duration::from_secs(8),
    Duration::from_secs(300),
);

/// Calls on a resource created a moment ago, which EC2 may not show everywhere yet:
/// `*.NotFound` is retried for a while before it counts.
pub const EVENTUAL_CONSISTENCY: RetryPolicy = RetryPolicy::new(
    "aws-eventual-consistency",
    8,
    Duration::from_millis(500),
    Duration::from_secs(8),
    Duration::from_secs(300),
);

/// Deletes that wait for another resource to go first (`DependencyViolation`,
/// `InvalidGroup.InUse`): retried for about five minutes.
pub const DEPENDENCY: RetryPolicy = RetryPolicy::new(
    "aws-dependency",
    24,
    Duration::from_secs(1),
    Duration::from_secs(15),
    Duration::from_secs(300),
);

/// Runs an AWS call under [`AWS_CALL`].
pub async fn call<T, F, Fut>(what: &str, op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    retry_with(&AWS_CALL, what, |e: &AwsError| e.transient, op).await
}

/// Runs a call on a just-created resource under [`EVENTUAL_CONSISTENCY`].
pub async fn call_fresh<T, F, Fut>(what: &str, op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    retry_with(
        &EVENTUAL_CONSISTENCY,
        what,
        |e: &AwsError| e.transient || e.is_not_found(),
        op,
    )
    .await
}

/// Runs a delete that may wait on a dependency under [`DEPENDENCY`].
pub async fn call_dependent<T, F, Fut>(what: &str, op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    retry_with(
        &DEPENDENCY,
        what,
        |e: &AwsError| {
            e.transient
                || e.is_code("DependencyViolation")
                || e.is_code("InvalidGroup.InUse")
                || e.is_code("IncorrectState")
                || e.is_code("InvalidSnapshot.InUse")
        },
        op,
    )
    .await
}
