//! AWS credentials registered with the process's redactor when they are resolved: the
//! home account's (static, from a profile, or from instance metadata) and every assumed
//! role's, each time they are fetched or refreshed. Touches no AWS resource.

use aws_config::SdkConfig;
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_types::sdk_config::SharedCredentialsProvider;

use crate::redact::Redactor;

/// A credentials provider whose answers are masked in everything bakery writes.
#[derive(Debug)]
pub struct Registered<P>(pub P);

impl<P: ProvideCredentials> ProvideCredentials for Registered<P> {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let creds = self.0.provide_credentials().await?;
            let r = Redactor::global();
            r.add_expiring(creds.access_key_id());
            r.add_expiring(creds.secret_access_key());
            if let Some(token) = creds.session_token() {
                r.add_expiring(token);
            }
            Ok(creds)
        })
    }
}

/// `config` with its credentials provider wrapped in [`Registered`].
pub fn register_credentials(config: SdkConfig) -> SdkConfig {
    match config.credentials_provider() {
        Some(provider) => config
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(Registered(provider)))
            .build(),
        None => config,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;

    #[tokio::test]
    async fn resolved_credentials_are_masked() {
        let provider = Registered(Credentials::new(
            "AKIDREGISTEREDTEST1",
            "registered-secret-access-key-value",
            Some("registered-session-token-value".into()),
            None,
            "test",
        ));
        provider.provide_credentials().await.unwrap();
        assert_eq!(
            Redactor::global().redact(
                "AKIDREGISTEREDTEST1 registered-secret-access-key-value registered-session-token-value"
            ),
            "*** *** ***"
        );
    }

    /// The build's SSH key is masked from the moment it is generated.
    #[test]
    fn the_build_key_is_masked_once_generated() {
        let key = crate::aws::access::generate_key().unwrap();
        let text = key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .unwrap();
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!body.is_empty());
        for line in body {
            assert_eq!(Redactor::global().redact(line), "***", "{line}");
        }
    }
}
