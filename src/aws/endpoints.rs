//! Where each AWS call is sent. VPC interface endpoints exist per service and per
//! region, so `aws.endpoints` names one URL per (service, region); `aws.endpoint_url`,
//! when set, is the fallback for every call without its own (a test server, or a proxy
//! that routes by the request's signing scope). Without either, the SDK's regional
//! public endpoints are used.
//!
//! Touches nothing: configuration and its checks. [`super::session`] applies it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The services bakery calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Ec2,
    Sts,
    Kms,
    Ssm,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Ec2 => "ec2",
            Service::Sts => "sts",
            Service::Kms => "kms",
            Service::Ssm => "ssm",
        })
    }
}

/// `[aws.endpoints]`: for each service, region → URL, e.g.
/// `ec2 = { "eu-west-1" = "https://vpce-0abc-ec2.ec2.eu-west-1.vpce.amazonaws.com" }`.
/// A service other than these four is refused by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointsConfig {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ec2: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kms: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ssm: BTreeMap<String, String>,
}

/// A configured endpoint that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "aws.endpoints.{service}.\"{region}\": {region:?} is not an AWS region name \
         (like \"eu-west-1\")"
    )]
    BadRegion { service: Service, region: String },
    #[error(
        "aws.endpoints.{service}.\"{region}\": {url:?} is not an http(s) URL with a host \
         (like \"https://vpce-0abc.{service}.{region}.vpce.amazonaws.com\")"
    )]
    BadUrl {
        service: Service,
        region: String,
        url: String,
    },
    #[error("aws.endpoint_url: {url:?} is not an http(s) URL with a host")]
    BadFallback { url: String },
}

impl EndpointsConfig {
    fn of(&self, service: Service) -> &BTreeMap<String, String> {
        match service {
            Service::Ec2 => &self.ec2,
            Service::Sts => &self.sts,
            Service::Kms => &self.kms,
            Service::Ssm => &self.ssm,
        }
    }

    /// The URL configured for exactly this service and region.
    pub fn get(&self, service: Service, region: &str) -> Option<&str> {
        self.of(service).get(region).map(String::as_str)
    }

    /// Every problem, each naming its key.
    pub fn validate(&self, fallback: Option<&str>) -> Result<(), Vec<EndpointError>> {
        let mut errors = vec![];
        if let Some(url) = fallback {
            if !is_http_url(url) {
                errors.push(EndpointError::BadFallback { url: url.into() });
            }
        }
        for service in [Service::Ec2, Service::Sts, Service::Kms, Service::Ssm] {
            for (region, url) in self.of(service) {
                if !is_region(region) {
                    errors.push(EndpointError::BadRegion {
                        service,
                        region: region.clone(),
                    });
                } else if !is_http_url(url) {
                    errors.push(EndpointError::BadUrl {
                        service,
                        region: region.clone(),
                        url: url.clone(),
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// `xx-name-N`, `xx-name-name-N`: lower-case words then a number (`us-gov-west-1`).
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

fn is_http_url(s: &str) -> bool {
    let Ok(uri) = s.parse::<http::Uri>() else {
        return false;
    };
    matches!(uri.scheme_str(), Some("http") | Some("https"))
        && uri.host().is_some_and(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_endpoints_pass_and_are_found_per_service_and_region() {
        let c: EndpointsConfig = toml::from_str(
            "ec2 = { \"eu-west-1\" = \"https://vpce-1.ec2.eu-west-1.vpce.amazonaws.com\" }\n\
             sts = { \"us-gov-west-1\" = \"http://127.0.0.1:4566\" }",
        )
        .unwrap();
        assert_eq!(c.validate(Some("http://127.0.0.1:5000")), Ok(()));
        assert_eq!(
            c.get(Service::Ec2, "eu-west-1"),
            Some("https://vpce-1.ec2.eu-west-1.vpce.amazonaws.com")
        );
        assert_eq!(c.get(Service::Kms, "eu-west-1"), None);
        assert_eq!(c.get(Service::Ec2, "us-east-1"), None);
    }

    #[test]
    fn bad_regions_urls_and_services_are_refused_by_key() {
        let c: EndpointsConfig = toml::from_str(
            "ec2 = { \"eu-west\" = \"https://x\" }\nkms = { \"us-east-1\" = \"vpce-1.kms\" }",
        )
        .unwrap();
        let errors = c.validate(Some("ftp://x")).unwrap_err();
        assert_eq!(
            errors,
            vec![
                EndpointError::BadFallback {
                    url: "ftp://x".into()
                },
                EndpointError::BadRegion {
                    service: Service::Ec2,
                    region: "eu-west".into()
                },
                EndpointError::BadUrl {
                    service: Service::Kms,
                    region: "us-east-1".into(),
                    url: "vpce-1.kms".into()
                },
            ]
        );
        assert!(errors[1]
            .to_string()
            .starts_with("aws.endpoints.ec2.\"eu-west\": "));
        let unknown = toml::from_str::<EndpointsConfig>("s3 = { \"us-east-1\" = \"https://x\" }")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("unknown field `s3`"), "{unknown}");
    }
}
