//! Where the builder runs and what its volume is encrypted with: the builder region's
//! default EBS encryption (an intermediate under the AWS managed `aws/ebs` key cannot go
//! to other accounts), and the subnet and VPC the builder launches into, with a public IP
//! mapping and a route to an internet gateway when bakery connects over the public IP.
//! Reads only.

use aws_sdk_ec2::types::{Filter, RouteTable};

use super::{Area, Check};
use crate::aws::error::SdkResultExt;
use crate::aws::{policy, AwsSession, Target};
use crate::plan::model::{BuildPlan, ConnectVia};

/// The region's default EBS encryption, as the intermediate will get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultEncryption {
    Off,
    /// On, under this key (`alias/aws/ebs` when EC2 names none).
    On(String),
}

/// Reads the builder region's default EBS encryption. `other_accounts` are the accounts
/// copies go to: an intermediate under `aws/ebs` cannot be shared with them.
pub async fn default_encryption(
    session: &AwsSession,
    builder: &Target,
    other_accounts: &[String],
) -> (Check, Option<DefaultEncryption>) {
    let name = "ec2:GetEbsEncryptionByDefault";
    let Ok(ec2) = session.ec2(builder) else {
        return (
            Check::fail(
                Area::Encryption,
                name,
                builder.to_string(),
                "no client",
                "check the region",
            ),
            None,
        );
    };
    let on = match policy::call("read EBS encryption by default", || async {
        ec2.get_ebs_encryption_by_default().send().await.aws()
    })
    .await
    {
        Ok(o) => o.ebs_encryption_by_default().unwrap_or(false),
        Err(e) => {
            return (
                Check::fail(
                    Area::Encryption,
                    name,
                    builder.to_string(),
                    format!("{e:#}"),
                    "allow ec2:GetEbsEncryptionByDefault and ec2:GetEbsDefaultKmsKeyId on * \
                     (deploy/aws/builder-policy.json)",
                ),
                None,
            )
        }
    };
    if !on {
        return (
            Check::pass(
                Area::Encryption,
                name,
                builder.to_string(),
                "off: the intermediate image is unencrypted",
            ),
            Some(DefaultEncryption::Off),
        );
    }
    let key = match policy::call("read the default EBS key", || async {
        ec2.get_ebs_default_kms_key_id().send().await.aws()
    })
    .await
    {
        Ok(o) => o.kms_key_id().unwrap_or("alias/aws/ebs").to_string(),
        Err(e) => {
            return (
                Check::fail(
                    Area::Encryption,
                    "ec2:GetEbsDefaultKmsKeyId",
                    builder.to_string(),
                    format!("{e:#}"),
                    "allow ec2:GetEbsDefaultKmsKeyId on * (deploy/aws/builder-policy.json)",
                ),
                None,
            )
        }
    };
    let check = if key.ends_with("alias/aws/ebs") && !other_accounts.is_empty() {
        Check::fail(
            Area::Encryption,
            name,
            builder.to_string(),
            format!(
                "on, with the AWS managed key aws/ebs: the intermediate image cannot be shared \
                 with {}",
                other_accounts.join(", ")
            ),
            "set builder.kms_key in the recipe to a customer managed key aliased alias/ami* \
             (the builder's volume is then encrypted under it), or set the region's default \
             EBS key to one (aws ec2 modify-ebs-default-kms-key-id), or turn encryption by \
             default off",
        )
    } else {
        Check::pass(
            Area::Encryption,
            name,
            builder.to_string(),
            format!("on, with {key}"),
        )
    };
    (check, Some(DefaultEncryption::On(key)))
}

/// The builder's subnet and VPC. Returns the check and the VPC id.
pub async fn subnet(
    session: &AwsSession,
    plan: &BuildPlan,
    builder: &Target,
) -> (Vec<Check>, Option<String>) {
    let name = "subnet";
    let ec2 = match session.ec2(builder) {
        Ok(c) => c,
        Err(e) => {
            return (
                vec![Check::fail(
                    Area::Network,
                    name,
                    builder.to_string(),
                    format!("{e:#}"),
                    "check the region",
                )],
                None,
            )
        }
    };
    let wanted = plan.builder.subnet_id.clone();
    let found = policy::call("describe the builder's subnet", || async {
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
        req.send().await.aws()
    })
    .await;
    let subnets = match found {
        Ok(o) => o.subnets().to_vec(),
        Err(e) if crate::aws::error::is_not_found(&e) => vec![],
        Err(e) => {
            return (
                vec![Check::fail(
                    Area::Network,
                    name,
                    builder.to_string(),
                    format!("{e:#}"),
                    "allow ec2:DescribeSubnets on * (deploy/aws/builder-policy.json)",
                )],
                None,
            )
        }
    };
    let Some(subnet) = subnets.first() else {
        let (detail, fix) = match &plan.builder.subnet_id {
            Some(id) => (
                format!("subnet {id} not found"),
                "fix builder.subnet_id in the recipe".to_string(),
            ),
            None => (
                "no builder.subnet_id and no default VPC".to_string(),
                "set builder.subnet_id in the recipe, or create a default VPC \
                 (aws ec2 create-default-vpc)"
                    .to_string(),
            ),
        };
        return (
            vec![Check::fail(
                Area::Network,
                name,
                builder.to_string(),
                detail,
                fix,
            )],
            None,
        );
    };
    let subnet_id = subnet.subnet_id().unwrap_or_default().to_string();
    let vpc_id = subnet.vpc_id().map(str::to_string);
    let mut checks = vec![Check::pass(
        Area::Network,
        name,
        builder.to_string(),
        format!(
            "{subnet_id} in {}{}",
            vpc_id.as_deref().unwrap_or("an unknown VPC"),
            if plan.builder.subnet_id.is_none() {
                " (the default VPC)"
            } else {
                ""
            }
        ),
    )];
    match &plan.builder.connect {
        ConnectVia::PublicIp => {
            checks.push(if subnet.map_public_ip_on_launch() == Some(true) {
                Check::pass(
                    Area::Network,
                    "public IP",
                    builder.to_string(),
                    format!("{subnet_id} maps a public IP on launch"),
                )
            } else {
                Check::fail(
                    Area::Network,
                    "public IP",
                    builder.to_string(),
                    format!(
                        "{subnet_id} does not map public IPs on launch: the builder would never \
                         get the address bakery connects to"
                    ),
                    format!(
                        "aws ec2 modify-subnet-attribute --subnet-id {subnet_id} \
                         --map-public-ip-on-launch, or connect = \"private_ip\" with a route \
                         from the bot"
                    ),
                )
            });
            checks.push(route(&ec2, builder, &subnet_id, vpc_id.as_deref()).await);
        }
        ConnectVia::PrivateIp => checks.push(Check::skip(
            Area::Network,
            "route",
            builder.to_string(),
            "connect = private_ip: the route from the bot to the subnet is yours to check",
        )),
        ConnectVia::Explicit { host, port } => checks.push(Check::skip(
            Area::Network,
            "route",
            builder.to_string(),
            format!("connect = {host}:{port}: bakery connects through it"),
        )),
    }
    (checks, vpc_id)
}

/// A default route (`0.0.0.0/0`) to an internet gateway in the subnet's route table (or
/// the VPC's main table when the subnet has none of its own).
async fn route(
    ec2: &aws_sdk_ec2::Client,
    builder: &Target,
    subnet_id: &str,
    vpc_id: Option<&str>,
) -> Check {
    let name = "route";
    let tables = |filter: Vec<Filter>| async move {
        policy::call("describe route tables", || async {
            ec2.describe_route_tables()
                .set_filters(Some(filter.clone()))
                .send()
                .await
                .aws()
        })
        .await
        .map(|o| o.route_tables().to_vec())
    };
    let own = tables(vec![Filter::builder()
        .name("association.subnet-id")
        .values(subnet_id)
        .build()])
    .await;
    let found: anyhow::Result<Vec<RouteTable>> = match own {
        Ok(t) if t.is_empty() => match vpc_id {
            Some(vpc) => {
                tables(vec![
                    Filter::builder().name("vpc-id").values(vpc).build(),
                    Filter::builder()
                        .name("association.main")
                        .values("true")
                        .build(),
                ])
                .await
            }
            None => Ok(vec![]),
        },
        other => other,
    };
    let tables = match found {
        Ok(t) => t,
        Err(e) => {
            return Check::fail(
                Area::Network,
                name,
                builder.to_string(),
                format!("{e:#}"),
                "allow ec2:DescribeRouteTables on * (deploy/aws/builder-policy.json)",
            )
        }
    };
    let gateway = tables.iter().flat_map(|t| t.routes()).find_map(|r| {
        let default = r.destination_cidr_block() == Some("0.0.0.0/0");
        let igw = r.gateway_id().filter(|g| g.starts_with("igw-"));
        default.then_some(igw).flatten()
    });
    match gateway {
        Some(igw) => Check::pass(
            Area::Network,
            name,
            builder.to_string(),
            format!("{subnet_id} routes 0.0.0.0/0 to {igw}"),
        ),
        None => Check::fail(
            Area::Network,
            name,
            builder.to_string(),
            format!("{subnet_id} has no route 0.0.0.0/0 to an internet gateway: its public IP is unreachable"),
            format!(
                "add a route 0.0.0.0/0 to the VPC's internet gateway in {subnet_id}'s route \
                 table, or pick a public subnet (builder.subnet_id)"
            ),
        ),
    }
}
