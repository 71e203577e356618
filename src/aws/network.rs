//! Where the builder launches, checked in pre-flight before anything is created:
//!
//! - the recipe's `builder.subnet_id` exists; without one, the region has a default VPC
//!   (accounts under Control Tower often have none, and RunInstances then fails);
//! - when bakery connects over the builder's public IP, the subnet maps public IPs on
//!   launch (otherwise the builder would run without the address bakery waits for, until
//!   the time budget runs out);
//! - the subnets a launch may try, in order: the recipe's one, or the default VPC's
//!   default subnets, one per Availability Zone, so that a launch refused for capacity
//!   (`InsufficientInstanceCapacity`) or for an instance type not offered in that zone
//!   (`Unsupported`) is tried in the next zone ([`is_zone_refusal`]).
//!
//! Decision: a recipe's `builder.subnet_id` pins one subnet, so one zone. bakery never
//! moves such a builder to another zone (another subnet may be another network, with
//! other routes and rules the recipe did not choose): a capacity refusal there fails the
//! launch, and the error says to pick a subnet in another zone, leave the key out (the
//! default VPC's zones are then tried in turn), or pick another instance type.
//!
//! Reads only: DescribeSubnets.

use aws_sdk_ec2::types::{Filter, Subnet};

use super::error::{aws_error, SdkResultExt};
use super::policy;
use super::session::{AwsSession, Target};
use crate::plan::model::{BuildPlan, ConnectVia};

/// Why the builder cannot launch where the plan says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkRefusal {
    #[error("subnet {subnet} not found in {target}: fix builder.subnet_id in the recipe")]
    SubnetNotFound { subnet: String, target: Target },
    #[error(
        "{target} has no default VPC and the recipe sets no builder.subnet_id: set \
         builder.subnet_id, or create a default VPC (aws ec2 create-default-vpc)"
    )]
    NoDefaultVpc { target: Target },
    #[error(
        "subnet {} in {target} does not map public IPs on launch, and bakery connects to \
         the builder's public IP: the builder would never get that address. Fix: aws ec2 \
         modify-subnet-attribute --subnet-id {} --map-public-ip-on-launch, or another \
         builder.subnet_id, or connect = \"private_ip\" with a route from bakery",
        .subnets.join(", "),
        .subnets.join(" / ")
    )]
    NoPublicIp {
        subnets: Vec<String>,
        target: Target,
    },
}

/// The subnets the builder may launch into, in the order they are tried.
pub async fn launch_subnets(
    session: &AwsSession,
    target: &Target,
    plan: &BuildPlan,
) -> anyhow::Result<Vec<String>> {
    let ec2 = session.ec2(target)?;
    let wanted = plan.builder.subnet_id.clone();
    let found = policy::call(
        &format!("describe the builder's subnets in {target}"),
        || {
            let req = ec2.describe_subnets();
            let req = match &wanted {
                Some(id) => req.subnet_ids(id),
                None => req.filters(
                    Filter::builder()
                        .name("default-for-az")
                        .values("true")
                        .build(),
                ),
            };
            async move { req.send().await.aws() }
        },
    )
    .await;
    let mut subnets: Vec<Subnet> = match found {
        Ok(out) => out.subnets().to_vec(),
        Err(e) if super::error::is_not_found(&e) => vec![],
        Err(e) => return Err(e),
    };
    let need_public = matches!(plan.builder.connect, ConnectVia::PublicIp);
    let chosen = choose(&mut subnets, need_public).map_err(|refusal| match refusal {
        Choice::None => match &wanted {
            Some(id) => NetworkRefusal::SubnetNotFound {
                subnet: id.clone(),
                target: target.clone(),
            },
            None => NetworkRefusal::NoDefaultVpc {
                target: target.clone(),
            },
        },
        Choice::NoPublicIp(subnets) => NetworkRefusal::NoPublicIp {
            subnets,
            target: target.clone(),
        },
    })?;
    Ok(chosen)
}

enum Choice {
    None,
    NoPublicIp(Vec<String>),
}

/// Keeps the subnets the builder can use, one per zone, ordered by zone.
fn choose(subnets: &mut [Subnet], need_public: bool) -> Result<Vec<String>, Choice> {
    if subnets.is_empty() {
        return Err(Choice::None);
    }
    subnets.sort_by(|a, b| {
        (a.availability_zone(), a.subnet_id()).cmp(&(b.availability_zone(), b.subnet_id()))
    });
    let mut zones = std::collections::BTreeSet::new();
    let usable: Vec<String> = subnets
        .iter()
        .filter(|s| !need_public || s.map_public_ip_on_launch() == Some(true))
        .filter(|s| zones.insert(s.availability_zone().unwrap_or_default().to_string()))
        .filter_map(|s| s.subnet_id().map(str::to_string))
        .collect();
    if usable.is_empty() {
        return Err(Choice::NoPublicIp(
            subnets
                .iter()
                .filter_map(|s| s.subnet_id().map(str::to_string))
                .collect(),
        ));
    }
    Ok(usable)
}

/// RunInstances refused the zone, not the request: no capacity for the instance type
/// there now, or the type is not offered in that zone. Another zone may take it.
pub fn is_zone_refusal(err: &anyhow::Error) -> bool {
    aws_error(err).is_some_and(|e| {
        !e.transient
            && matches!(
                e.code(),
                "InsufficientInstanceCapacity" | "Unsupported" | "InsufficientCapacity"
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::AwsError;

    fn subnet(id: &str, zone: &str, public: bool) -> Subnet {
        Subnet::builder()
            .subnet_id(id)
            .availability_zone(zone)
            .map_public_ip_on_launch(public)
            .build()
    }

    #[test]
    fn one_subnet_per_zone_in_zone_order_and_only_public_ones_when_needed() {
        let mut s = vec![
            subnet("subnet-c", "eu-west-1c", true),
            subnet("subnet-a", "eu-west-1a", true),
            subnet("subnet-b", "eu-west-1b", false),
            subnet("subnet-a2", "eu-west-1a", true),
        ];
        assert_eq!(
            choose(&mut s, true).ok().unwrap(),
            vec!["subnet-a", "subnet-c"]
        );
        assert_eq!(
            choose(&mut s, false).ok().unwrap(),
            vec!["subnet-a", "subnet-b", "subnet-c"]
        );
        let mut private = vec![subnet("subnet-p", "eu-west-1a", false)];
        match choose(&mut private, true) {
            Err(Choice::NoPublicIp(ids)) => assert_eq!(ids, vec!["subnet-p"]),
            _ => panic!("a private subnet is refused when the public IP is needed"),
        }
        assert!(matches!(choose(&mut [], true), Err(Choice::None)));
    }

    #[test]
    fn capacity_and_unsupported_zones_are_zone_refusals_and_nothing_else_is() {
        let err = |code: &str, transient: bool| {
            anyhow::Error::new(AwsError {
                code: Some(code.into()),
                message: "x".into(),
                transient,
            })
            .context("cannot launch")
        };
        assert!(is_zone_refusal(&err("InsufficientInstanceCapacity", false)));
        assert!(is_zone_refusal(&err("Unsupported", false)));
        assert!(!is_zone_refusal(&err("UnauthorizedOperation", false)));
        assert!(!is_zone_refusal(&err("InvalidParameterValue", false)));
        assert!(!is_zone_refusal(&anyhow::anyhow!("Unsupported")));
    }
}
