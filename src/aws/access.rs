//! The builder's temporary access: an ed25519 key pair and a security group that lets
//! only the configured CIDR reach port 22.

use std::sync::Arc;

use anyhow::Context;
use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::PrivateKey;
use serde_json::json;

use super::error::SdkResultExt;
use super::resource::{ResourceKind, ResourceRef};
use super::session::Target;
use super::{policy, tags, EngineCtx};

/// A fresh ed25519 key. The private half stays in this process: it is never logged,
/// written to disk or sent anywhere.
pub fn generate_key() -> anyhow::Result<PrivateKey> {
    let seed: [u8; 32] = rand::random();
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .context("cannot encode the builder's private key")?;
    crate::redact::Redactor::global().add_multiline_expiring(&text);
    Ok(key)
}

/// The key pair's name for a build.
pub fn key_pair_name(build_id: &str) -> String {
    format!("bakery-{build_id}")
}

/// The security group's name for a build.
pub fn security_group_name(build_id: &str) -> String {
    format!("bakery-{build_id}")
}

/// Imports a fresh key pair's public half into the builder region, tagged from creation.
pub async fn create_key_pair(
    ctx: EngineCtx<'_>,
    target: &Target,
) -> anyhow::Result<(String, Arc<PrivateKey>)> {
    let key = generate_key()?;
    let public = key
        .public_key()
        .to_openssh()
        .context("cannot encode the builder's public key")?;
    let name = key_pair_name(ctx.build_id);
    let tags = tags::builder_tags(ctx.plan, ctx.build_id, ctx.installation(), &ctx.now());
    let ec2 = ctx.session.ec2(target)?;
    ctx.journal
        .creating(ResourceKind::KeyPair, target, json!({ "name": name }))
        .await?;
    policy::call(&format!("import key pair {name} in {target}"), || async {
        ec2.import_key_pair()
            .key_name(&name)
            .public_key_material(aws_sdk_ec2::primitives::Blob::new(public.as_bytes()))
            .tag_specifications(tags::spec(ResourceType::KeyPair, &tags))
            .send()
            .await
            .aws()
    })
    .await
    .with_context(|| {
        format!("cannot import the builder's key pair in {target}: the role needs ec2:ImportKeyPair and ec2:CreateTags")
    })?;
    ctx.journal
        .created(
            &ResourceRef::new(ResourceKind::KeyPair, &name, target),
            json!({}),
        )
        .await?;
    ctx.log
        .info("access", format!("key pair {name} imported (ed25519)"));
    Ok((name, Arc::new(key)))
}

/// Creates the builder's security group (in the subnet's VPC when a subnet is set) and
/// opens port 22 to `plan.builder.ssh_cidr` only.
pub async fn create_security_group(ctx: EngineCtx<'_>, target: &Target) -> anyhow::Result<String> {
    let ec2 = ctx.session.ec2(target)?;
    let plan = ctx.plan;
    let vpc_id = match &plan.builder.subnet_id {
        Some(subnet) => {
            let out = policy::call(&format!("describe subnet {subnet} in {target}"), || async {
                ec2.describe_subnets().subnet_ids(subnet).send().await.aws()
            })
            .await
            .with_context(|| {
                format!("subnet {subnet} not found in {target}: fix builder.subnet_id")
            })?;
            out.subnets()
                .first()
                .and_then(|s| s.vpc_id())
                .map(str::to_string)
        }
        None => None,
    };
    let name = security_group_name(ctx.build_id);
    let tags = tags::builder_tags(plan, ctx.build_id, ctx.installation(), &ctx.now());
    ctx.journal
        .creating(ResourceKind::SecurityGroup, target, json!({ "name": name }))
        .await?;
    let out = policy::call(
        &format!("create security group {name} in {target}"),
        || async {
            ec2.create_security_group()
                .group_name(&name)
                .description(format!(
                    "bakery builder for {} {} (temporary)",
                    plan.recipe, plan.version
                ))
                .set_vpc_id(vpc_id.clone())
                .tag_specifications(tags::spec(ResourceType::SecurityGroup, &tags))
                .send()
                .await
                .aws()
        },
    )
    .await
    .with_context(|| format!("cannot create the builder's security group in {target}"))?;
    let group_id = out
        .group_id()
        .context("CreateSecurityGroup returned no group id")?
        .to_string();
    ctx.journal
        .created(
            &ResourceRef::new(ResourceKind::SecurityGroup, &group_id, target),
            json!({}),
        )
        .await?;
    let cidr = &plan.builder.ssh_cidr;
    policy::call_fresh(&format!("open port 22 to {cidr} on {group_id}"), || async {
        ec2.authorize_security_group_ingress()
            .group_id(&group_id)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .ip_ranges(
                        IpRange::builder()
                            .cidr_ip(cidr)
                            .description("bakery SSH")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .aws()
    })
    .await
    .with_context(|| {
        format!("cannot open port 22 to {cidr} in {target}: check builder.ssh_cidr")
    })?;
    ctx.log.info(
        "access",
        format!("security group {group_id} allows SSH from {cidr} only"),
    );
    Ok(group_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh_ed25519_and_never_show_the_private_half() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_eq!(a.algorithm(), russh::keys::Algorithm::Ed25519);
        assert_ne!(a.public_key(), b.public_key());
        let public = a.public_key().to_openssh().unwrap();
        assert!(public.starts_with("ssh-ed25519 "));
        let private = a.to_openssh(russh::keys::ssh_key::LineEnding::LF).unwrap();
        assert!(!public.contains(private.as_str()));
    }
}
