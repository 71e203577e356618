//! One error type for every AWS call: the service's code and message, kept readable.

use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::retry::Retryable;

/// An AWS call's failure, with the service's error code when there is one.
#[derive(Debug, Clone)]
pub struct AwsError {
    /// e.g. `InvalidAMIID.NotFound`. `None` for failures before a response (network, timeout).
    pub code: Option<String>,
    pub message: String,
    /// The request never got an answer (connection refused, timeout). Worth another try.
    pub transient: bool,
}

impl AwsError {
    pub fn from_sdk<E, R>(err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let transient = matches!(
            err,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        );
        let code = err.code().map(str::to_string);
        let message = match err.message() {
            Some(m) => m.to_string(),
            None => DisplayErrorContext(&err).to_string(),
        };
        AwsError {
            code,
            message,
            transient,
        }
    }

    pub fn code(&self) -> &str {
        self.code.as_deref().unwrap_or("")
    }

    /// The resource named in the call does not exist (any `*.NotFound` / `*NotFound` code).
    pub fn is_not_found(&self) -> bool {
        let c = self.code();
        c.ends_with(".NotFound")
            || c.ends_with("NotFound")
            || c.ends_with("NotFoundException")
            || c == "InvalidAMIID.Unavailable"
    }

    pub fn is_code(&self, code: &str) -> bool {
        self.code() == code
    }
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for AwsError {}

impl Retryable for AwsError {
    fn is_retryable(&self) -> bool {
        self.transient
    }
}

/// Converts an SDK result into one with [`AwsError`]; use inside retry closures.
pub trait SdkResultExt<T> {
    fn aws(self) -> Result<T, AwsError>;
}

impl<T, E, R> SdkResultExt<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    fn aws(self) -> Result<T, AwsError> {
        self.map_err(AwsError::from_sdk)
    }
}

/// Finds the [`AwsError`] in an error chain, to decide on codes after retries gave up.
pub fn aws_error(err: &anyhow::Error) -> Option<&AwsError> {
    err.chain().find_map(|e| e.downcast_ref::<AwsError>())
}

/// Whether an error chain holds an AWS "not found" answer.
pub fn is_not_found(err: &anyhow::Error) -> bool {
    aws_error(err).is_some_and(AwsError::is_not_found)
}
