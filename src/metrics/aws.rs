//! Counts every AWS SDK attempt (the SDK's own retries included) by service, operation
//! and outcome: an interceptor added to every EC2, KMS and STS client bakery builds
//! (`aws/session.rs`). Touches nothing but the metrics.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use super::metrics;

/// The interceptor. Stateless: everything goes to [`metrics()`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CallMetrics;

/// Error codes AWS answers a rate limit with (EC2's in XML, STS's and KMS's in their
/// bodies too).
const THROTTLE_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
];

impl Intercept for CallMetrics {
    fn name(&self) -> &'static str {
        "bakery-call-metrics"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| "unknown".into());
        let retry = cfg
            .load::<RequestAttempts>()
            .is_some_and(|a| a.attempts() > 1);
        let outcome = match context.response() {
            None => "no_answer",
            Some(response) => {
                let status = response.status().as_u16();
                let body = response.body().bytes().unwrap_or_default();
                if status == 429 || throttle_code(body) {
                    "throttled"
                } else if status < 400 {
                    "ok"
                } else if status < 500 {
                    "client_error"
                } else {
                    "server_error"
                }
            }
        };
        metrics().call("aws", &operation, outcome, retry);
        Ok(())
    }
}

/// Does an error body carry one of the throttling codes (`<Code>…</Code>` in XML,
/// `"__type":"…"` or `"code":"…"` in JSON)?
fn throttle_code(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    THROTTLE_CODES.iter().any(|code| {
        text.contains(&format!("<Code>{code}</Code>"))
            || text.contains(&format!("\"{code}\""))
            || text.contains(&format!("#{code}\""))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_codes_are_found_in_xml_and_json() {
        assert!(throttle_code(
            b"<Response><Errors><Error><Code>RequestLimitExceeded</Code></Error></Errors></Response>"
        ));
        assert!(throttle_code(
            br#"{"__type":"com.amazonaws.kms#ThrottlingException","message":"slow"}"#
        ));
        assert!(!throttle_code(
            b"<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code></Error></Errors></Response>"
        ));
    }
}
