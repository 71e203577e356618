//! AWS clients for every (account, region) a build touches, sharing one retry
//! configuration. Each client is sent to the endpoint configured for its service and
//! region, else to the one fallback URL, else to AWS's own (see [`super::endpoints`]).
//!
//! The home account uses the default credential chain (or the credentials given in
//! [`AwsSettings`]). Every other account is reached through STS AssumeRole with
//! `aws_config::sts::AssumeRoleProvider`, which inherits the endpoint, and a shared lazy
//! identity cache that refreshes the role's credentials before they expire, so a
//! three-hour copy outlives a one-hour role session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_types::sdk_config::SharedCredentialsProvider;
use serde::{Deserialize, Serialize};

use super::endpoints::{EndpointsConfig, Service};
use super::error::SdkResultExt;
use super::policy;
use super::wait::PollSettings;
use crate::plan::model::AccountTarget;

/// Attempts per call for throttling and 5xx answers; the SDK's default is 3.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// How bakery talks to AWS.
#[derive(Clone)]
pub struct AwsSettings {
    /// Send every call without an endpoint of its own in `endpoints` here (a test
    /// server).
    pub endpoint_url: Option<String>,
    /// An endpoint per service and region (VPC interface endpoints).
    pub endpoints: EndpointsConfig,
    /// Home-account credentials. `None` uses the default credential chain.
    pub credentials: Option<SharedCredentialsProvider>,
    pub max_attempts: u32,
    /// How long waits poll.
    pub poll: PollSettings,
    /// This installation's id, the `bakery:installation` tag on everything it creates
    /// and the only resources its cleanup and janitor touch ([`super::tags::INSTALLATION`]).
    pub installation: String,
    /// The home account's clients, shared by every session made from these settings or
    /// their clones (a server's builds). Set the fields above before the first session.
    pub home_clients: Arc<Clients>,
}

/// SDK clients by account and region: one per (account, region), as AWS throttles per
/// account and region, and each carries that pair's adaptive retry rate limiter.
///
/// The home account's are shared by every build of the process ([`AwsSettings`]): its
/// credentials are the same for all of them, and each client set is about 100 KB, which
/// many builds at once would otherwise each hold (`bench/concurrent`). An assumed role's
/// stay with the session that assumed it, whose role session name carries its build id.
#[derive(Default)]
pub struct Clients {
    ec2: Mutex<HashMap<Target, aws_sdk_ec2::Client>>,
    kms: Mutex<HashMap<Target, aws_sdk_kms::Client>>,
    ssm: Mutex<HashMap<Target, aws_sdk_ssm::Client>>,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            endpoint_url: None,
            endpoints: EndpointsConfig::default(),
            credentials: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            poll: PollSettings::default(),
            installation: super::tags::DEFAULT_INSTALLATION.to_string(),
            home_clients: Arc::default(),
        }
    }
}

impl std::fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSettings")
            .field("endpoint_url", &self.endpoint_url)
            .field("endpoints", &self.endpoints)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<explicit, redacted>"),
            )
            .field("max_attempts", &self.max_attempts)
            .field("poll", &self.poll)
            .field("installation", &self.installation)
            .finish()
    }
}

/// One account in one region: where a resource lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    pub account: String,
    pub region: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} for account {}", self.region, self.account)
    }
}

/// Clients for the home account and every assumed account.
pub struct AwsSession {
    settings: AwsSettings,
    home_account: String,
    /// Where STS is called (the home session's region).
    home_region: String,
    /// Account id → config carrying that account's credentials.
    accounts: Mutex<HashMap<String, SdkConfig>>,
    /// Clients of the accounts this session assumed a role in.
    assumed: Clients,
}

impl std::fmt::Debug for AwsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSession")
            .field("home_account", &self.home_account)
            .field("settings", &self.settings)
            .finish()
    }
}

impl AwsSession {
    /// Loads the home account's configuration and asks STS who it is.
    pub async fn connect(settings: AwsSettings, home_region: &str) -> anyhow::Result<Self> {
        let base = base_config(&settings, home_region).await;
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&with_endpoint(
                &base,
                settings.endpoints.get(Service::Sts, home_region),
            ))
            .interceptor(crate::metrics::aws::CallMetrics)
            .build(),
        );
        let me = policy::call("sts GetCallerIdentity", || async {
            sts.get_caller_identity().send().await.aws()
        })
        .await
        .context(
            "cannot identify the AWS account: configure credentials (AWS_PROFILE, \
             AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or an instance role)",
        )?;
        let home_account = me
            .account()
            .context("STS GetCallerIdentity returned no account id")?
            .to_string();
        let mut accounts = HashMap::new();
        accounts.insert(home_account.clone(), base);
        Ok(AwsSession {
            settings,
            home_account,
            home_region: home_region.to_string(),
            accounts: Mutex::new(accounts),
            assumed: Clients::default(),
        })
    }

    pub fn home_account(&self) -> &str {
        &self.home_account
    }

    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }

    /// This installation's `bakery:installation` marker.
    pub fn installation(&self) -> &str {
        &self.settings.installation
    }

    /// The account a copy goes to: its target account, or the home account.
    pub fn account_of(&self, target: Option<&AccountTarget>) -> String {
        target
            .map(|t| t.account_id.clone())
            .unwrap_or_else(|| self.home_account.clone())
    }

    /// Makes `target`'s account reachable through its role, and checks the role can be
    /// assumed and lands in the expected account. `session_name` carries the build id.
    pub async fn assume_role(
        &self,
        target: &AccountTarget,
        session_name: &str,
    ) -> anyhow::Result<()> {
        if self
            .accounts
            .lock()
            .expect("session lock")
            .contains_key(&target.account_id)
        {
            return Ok(());
        }
        let base = self.config_for(&self.home_account)?;
        let sts_url = self.settings.endpoints.get(Service::Sts, &self.home_region);
        let mut builder = AssumeRoleProvider::builder(target.role_arn.clone())
            .session_name(session_name_safe(session_name))
            .session_length(Duration::from_secs(3600))
            .configure(&with_endpoint(&base, sts_url));
        if let Some(ext) = &target.external_id {
            builder = builder.external_id(ext.clone());
        }
        let provider = super::registered::Registered(builder.build().await);
        let config = base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .identity_cache(
                IdentityCache::lazy()
                    .load_timeout(Duration::from_secs(30))
                    .buffer_time(Duration::from_secs(600))
                    .build(),
            )
            .build();
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&with_endpoint(&config, sts_url))
                .interceptor(crate::metrics::aws::CallMetrics)
                .build(),
        );
        let me = policy::call("sts GetCallerIdentity (assumed role)", || async {
            sts.get_caller_identity().send().await.aws()
        })
        .await
        .with_context(|| {
            format!(
                "cannot assume role {} for account {}: check the role's trust policy allows \
                 account {} (and the external id, if the role requires one)",
                target.role_arn, target.account_id, self.home_account
            )
        })?;
        let got = me.account().unwrap_or_default();
        anyhow::ensure!(
            got == target.account_id,
            "role {} belongs to account {got}, not {}: fix the role ARN or the account id",
            target.role_arn,
            target.account_id
        );
        self.accounts
            .lock()
            .expect("session lock")
            .insert(target.account_id.clone(), config);
        Ok(())
    }

    fn config_for(&self, account: &str) -> anyhow::Result<SdkConfig> {
        self.accounts
            .lock()
            .expect("session lock")
            .get(account)
            .cloned()
            .with_context(|| {
                format!(
                    "no credentials for account {account}: add it to the recipe's targets with a role_arn"
                )
            })
    }

    /// Where `target`'s clients are kept: the home account's are shared ([`Clients`]).
    fn clients_for(&self, target: &Target) -> &Clients {
        if target.account == self.home_account {
            &self.settings.home_clients
        } else {
            &self.assumed
        }
    }

    pub fn ec2(&self, target: &Target) -> anyhow::Result<aws_sdk_ec2::Client> {
        let clients = self.clients_for(target);
        if let Some(c) = clients.ec2.lock().expect("session lock").get(target) {
            return Ok(c.clone());
        }
        let config = self.config_for(&target.account)?;
        let mut conf = aws_sdk_ec2::config::Builder::from(&config)
            .region(Region::new(target.region.clone()))
            .interceptor(crate::metrics::aws::CallMetrics);
        if let Some(url) = self.settings.endpoints.get(Service::Ec2, &target.region) {
            conf = conf.endpoint_url(url);
        }
        let conf = conf.build();
        let client = aws_sdk_ec2::Client::from_conf(conf);
        clients
            .ec2
            .lock()
            .expect("session lock")
            .insert(target.clone(), client.clone());
        Ok(client)
    }

    pub fn kms(&self, target: &Target) -> anyhow::Result<aws_sdk_kms::Client> {
        let clients = self.clients_for(target);
        if let Some(c) = clients.kms.lock().expect("session lock").get(target) {
            return Ok(c.clone());
        }
        let config = self.config_for(&target.account)?;
        let mut conf = aws_sdk_kms::config::Builder::from(&config)
            .region(Region::new(target.region.clone()))
            .interceptor(crate::metrics::aws::CallMetrics);
        if let Some(url) = self.settings.endpoints.get(Service::Kms, &target.region) {
            conf = conf.endpoint_url(url);
        }
        let conf = conf.build();
        let client = aws_sdk_kms::Client::from_conf(conf);
        clients
            .kms
            .lock()
            .expect("session lock")
            .insert(target.clone(), client.clone());
        Ok(client)
    }

    /// Parameter Store in one account and region: the release's version parameters.
    pub fn ssm(&self, target: &Target) -> anyhow::Result<aws_sdk_ssm::Client> {
        let clients = self.clients_for(target);
        if let Some(c) = clients.ssm.lock().expect("session lock").get(target) {
            return Ok(c.clone());
        }
        let config = self.config_for(&target.account)?;
        let mut conf = aws_sdk_ssm::config::Builder::from(&config)
            .region(Region::new(target.region.clone()))
            .interceptor(crate::metrics::aws::CallMetrics);
        if let Some(url) = self.settings.endpoints.get(Service::Ssm, &target.region) {
            conf = conf.endpoint_url(url);
        }
        let client = aws_sdk_ssm::Client::from_conf(conf.build());
        clients
            .ssm
            .lock()
            .expect("session lock")
            .insert(target.clone(), client.clone());
        Ok(client)
    }
}

/// The HTTP client (connection pools, TLS configuration with its root certificates) every
/// session of the process shares. Each build has its own session; a client config without
/// one of its own gets a new default client, whose first call builds a TLS configuration
/// and copies every trusted root certificate: about 1.5 MB a build at once
/// (`bench/concurrent`). This is the SDK's default client, built once: rustls on aws-lc,
/// the proxy from the environment, each connector with its own timeouts and sleep.
fn shared_http_client() -> SharedHttpClient {
    static HTTP_CLIENT: std::sync::OnceLock<SharedHttpClient> = std::sync::OnceLock::new();
    HTTP_CLIENT
        .get_or_init(|| {
            use aws_smithy_http_client::{proxy::ProxyConfig, tls, ConnectorBuilder};
            aws_smithy_http_client::Builder::new().build_with_connector_fn(
                |settings, components| {
                    let mut connector = ConnectorBuilder::default().tls_provider(
                        tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc),
                    );
                    connector.set_connector_settings(settings.cloned());
                    if let Some(components) = components {
                        connector.set_sleep_impl(components.sleep_impl());
                    }
                    connector.set_proxy_config(Some(ProxyConfig::from_env()));
                    connector.build()
                },
            )
        })
        .clone()
}

async fn base_config(settings: &AwsSettings, region: &str) -> SdkConfig {
    let retry = RetryConfig::adaptive()
        .with_max_attempts(settings.max_attempts)
        .with_initial_backoff(Duration::from_millis(500))
        .with_max_backoff(Duration::from_secs(20));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(120))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(retry)
        .timeout_config(timeouts);
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    if let Some(creds) = &settings.credentials {
        loader = loader.credentials_provider(creds.clone());
    }
    let config = loader.http_client(shared_http_client()).load().await;
    super::registered::register_credentials(config)
}

/// `config` sent to `url` instead of its own endpoint, when there is one.
fn with_endpoint(config: &SdkConfig, url: Option<&str>) -> SdkConfig {
    match url {
        Some(url) => config.to_builder().endpoint_url(url).build(),
        None => config.clone(),
    }
}

/// STS session names allow `[\w+=,.@-]` and at most 64 characters.
fn session_name_safe(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    cleaned.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_session_is_given_the_one_shared_http_client() {
        let settings = AwsSettings {
            endpoint_url: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        // A config without a client of its own leaves each SDK client to build a default
        // one, with its own TLS set-up and copy of the trusted roots.
        for region in ["us-east-1", "eu-west-1"] {
            let config = base_config(&settings, region).await;
            assert!(config.http_client().is_some(), "{region}: no shared client");
        }
    }

    /// A session by hand, as `connect` makes it, without asking STS.
    async fn session(settings: &AwsSettings, home: &str, others: &[&str]) -> AwsSession {
        let base = base_config(settings, "us-east-1").await;
        let mut accounts = HashMap::new();
        for account in std::iter::once(&home).chain(others) {
            accounts.insert(account.to_string(), base.clone());
        }
        AwsSession {
            settings: settings.clone(),
            home_account: home.to_string(),
            home_region: "us-east-1".into(),
            accounts: Mutex::new(accounts),
            assumed: Clients::default(),
        }
    }

    #[tokio::test]
    async fn builds_share_the_home_accounts_clients_but_not_an_assumed_roles() {
        let settings = AwsSettings {
            endpoint_url: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        let (home, other) = ("111111111111", "222222222222");
        let first = session(&settings, home, &[other]).await;
        let second = session(&settings, home, &[other]).await;
        let at = |account: &str, region: &str| Target {
            account: account.into(),
            region: region.into(),
        };
        for s in [&first, &second] {
            s.ec2(&at(home, "eu-west-1")).unwrap();
            s.kms(&at(home, "eu-west-1")).unwrap();
            s.ssm(&at(home, "eu-west-1")).unwrap();
            s.ec2(&at(other, "eu-west-1")).unwrap();
        }
        second.ec2(&at(home, "us-west-2")).unwrap();
        let shared = &settings.home_clients;
        // One client per home (account, region), whichever build asked first.
        assert_eq!(shared.ec2.lock().unwrap().len(), 2);
        assert_eq!(shared.kms.lock().unwrap().len(), 1);
        assert_eq!(shared.ssm.lock().unwrap().len(), 1);
        // The assumed account's clients carry the session's own role: never shared.
        assert!(!shared
            .ec2
            .lock()
            .unwrap()
            .contains_key(&at(other, "eu-west-1")));
        for s in [&first, &second] {
            assert_eq!(s.assumed.ec2.lock().unwrap().len(), 1);
            assert!(s.assumed.kms.lock().unwrap().is_empty());
        }
    }

    #[test]
    fn session_names_fit_sts_rules() {
        let n =
            session_name_safe("bakery-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/extra long tail here");
        assert!(n.len() <= 64);
        assert!(n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c)));
        assert!(n.starts_with("bakery-0190a1b2"));
    }
}
