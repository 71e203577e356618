//! The builder instance: launched with tags, IMDSv2 and an idempotency token; waited on
//! until it runs and has an address; terminated, with EC2's eventual consistency in mind.
//! (CreateImage shuts it down before the image is taken, see [`super::image`].)

use anyhow::Context;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceStateName, InstanceType, ResourceType, VolumeType,
};
use serde_json::json;

use super::error::{AwsError, SdkResultExt};
use super::preflight::SourceImage;
use super::resource::{ResourceKind, ResourceRef};
use super::session::Target;
use super::wait::{self, Poll};
use super::{policy, tags, EngineCtx};

/// TerminateInstances on an instance EC2 does not show yet (launched a moment ago)
/// answers `InvalidInstanceID.NotFound`. That is not "already gone": the call is retried,
/// at most 8 attempts over about half a minute, and only then does DescribeInstances
/// decide.
pub const TERMINATE_UNSEEN: crate::retry::RetryPolicy = crate::retry::RetryPolicy::new(
    "aws-terminate-unseen",
    8,
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(8),
    std::time::Duration::from_secs(300),
);

/// TerminateInstances kept answering NotFound for an instance DescribeInstances still
/// shows alive: neither terminated nor "already gone".
#[derive(Debug, thiserror::Error)]
#[error(
    "TerminateInstances answered NotFound for instance {id} in {target} for {attempts} attempts, \
     but DescribeInstances shows it {state}"
)]
pub struct TerminateUnseen {
    pub id: String,
    pub target: Target,
    pub attempts: u32,
    pub state: String,
}

/// What terminating found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminated {
    /// TerminateInstances took it: it is shutting down.
    Requested,
    /// It was already gone: TerminateInstances and then DescribeInstances say so.
    AlreadyGone,
}

/// Asks EC2 to terminate instance `id` (without waiting for it). A NotFound answer is
/// retried under [`TERMINATE_UNSEEN`]; if it persists, the instance counts as gone only
/// when DescribeInstances agrees (NotFound, or `terminated`); otherwise [`TerminateUnseen`].
pub async fn terminate(
    ec2: &aws_sdk_ec2::Client,
    target: &Target,
    id: &str,
) -> anyhow::Result<Terminated> {
    let what = format!("terminate instance {id} in {target}");
    let out = crate::retry::retry_with(
        &TERMINATE_UNSEEN,
        &what,
        |e: &AwsError| e.transient || e.is_not_found(),
        || async {
            ec2.terminate_instances()
                .instance_ids(id)
                .send()
                .await
                .aws()
        },
    )
    .await;
    match out {
        Ok(_) => Ok(Terminated::Requested),
        Err(e) if super::error::is_not_found(&e) => {
            let described = policy::call(&format!("describe instance {id}"), || async {
                ec2.describe_instances().instance_ids(id).send().await.aws()
            })
            .await;
            let state = match described {
                Ok(out) => out
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .find_map(|i| i.state().and_then(|s| s.name()).cloned()),
                Err(d) if super::error::is_not_found(&d) => None,
                Err(d) => return Err(d.context(e.to_string())),
            };
            match state {
                None | Some(InstanceStateName::Terminated) => Ok(Terminated::AlreadyGone),
                Some(s) => Err(anyhow::Error::new(TerminateUnseen {
                    id: id.to_string(),
                    target: target.clone(),
                    attempts: TERMINATE_UNSEEN.max_attempts,
                    state: s.as_str().to_string(),
                })),
            }
        }
        Err(e) => Err(e),
    }
}

/// A running builder and its addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct Builder {
    pub id: String,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
}

/// RunInstances' idempotency token: the same build never launches twice.
pub fn client_token(build_id: &str) -> String {
    format!("bakery-{build_id}").chars().take(64).collect()
}

/// Launches the builder from `source`, with the key pair and security group, its root
/// volume encrypted under `volume_key` when the recipe names one (`builder.kms_key`,
/// resolved to an ARN by pre-flight), into the first of `subnets` (pre-flight's, one per zone; empty lets EC2 choose) that takes it: a
/// zone without capacity for the instance type, or that does not offer it, passes the
/// launch to the next subnet's zone, with a new idempotency token.
pub async fn launch(
    ctx: EngineCtx<'_>,
    target: &Target,
    source: &SourceImage,
    subnets: &[String],
    volume_key: Option<&str>,
    key_name: &str,
    security_group: &str,
) -> anyhow::Result<String> {
    // On the heap: the build future runs on a worker thread's stack in the server.
    Box::pin(launch_in_a_zone(
        ctx,
        target,
        source,
        subnets,
        volume_key,
        key_name,
        security_group,
    ))
    .await
}

async fn launch_in_a_zone(
    ctx: EngineCtx<'_>,
    target: &Target,
    source: &SourceImage,
    subnets: &[String],
    volume_key: Option<&str>,
    key_name: &str,
    security_group: &str,
) -> anyhow::Result<String> {
    let plan = &ctx.plan.builder;
    let ec2 = ctx.session.ec2(target)?;
    let tags = tags::builder_tags(ctx.plan, ctx.build_id, ctx.installation(), &ctx.now());
    anyhow::ensure!(
        volume_key.is_none() || source.root_device_name.is_some(),
        "source image {} names no root device: the builder's volume cannot be encrypted under builder.kms_key",
        source.id
    );
    let root = source.root_device_name.as_ref().map(|device| {
        let ebs = EbsBlockDevice::builder()
            .volume_size(plan.volume_size_gb as i32)
            .volume_type(VolumeType::from(plan.volume_type.as_str()))
            .delete_on_termination(true);
        let ebs = match volume_key {
            Some(key) => ebs.encrypted(true).kms_key_id(key),
            None => ebs,
        };
        BlockDeviceMapping::builder()
            .device_name(device)
            .ebs(ebs.build())
            .build()
    });
    let metadata = InstanceMetadataOptionsRequest::builder()
        .http_endpoint(InstanceMetadataEndpointState::Enabled)
        .http_tokens(if plan.imdsv2_required {
            HttpTokensState::Required
        } else {
            HttpTokensState::Optional
        })
        .build();
    let candidates: Vec<Option<String>> = if subnets.is_empty() {
        vec![plan.subnet_id.clone()]
    } else {
        subnets.iter().cloned().map(Some).collect()
    };
    let mut refused = vec![];
    let mut launched = None;
    for (n, subnet) in candidates.iter().enumerate() {
        let token = if n == 0 {
            client_token(ctx.build_id)
        } else {
            client_token(&format!("{}-{n}", ctx.build_id))
        };
        ctx.journal
            .creating(
                ResourceKind::Instance,
                target,
                json!({ "client_token": token }),
            )
            .await?;
        let out = policy::call(&format!("launch the builder in {target}"), || async {
            ec2.run_instances()
                .image_id(&source.id)
                .instance_type(InstanceType::from(plan.instance_type.as_str()))
                .min_count(1)
                .max_count(1)
                .key_name(key_name)
                .security_group_ids(security_group)
                .set_subnet_id(subnet.clone())
                .set_block_device_mappings(root.clone().map(|r| vec![r]))
                .metadata_options(metadata.clone())
                .client_token(&token)
                .tag_specifications(tags::spec(ResourceType::Instance, &tags))
                .tag_specifications(tags::spec(ResourceType::Volume, &tags))
                .send()
                .await
                .aws()
        })
        .await;
        match out {
            Ok(out) => {
                launched = Some(out);
                break;
            }
            Err(e) if super::network::is_zone_refusal(&e) => {
                super::owned::settle_refused(ctx.journal, ResourceKind::Instance, target, &e)
                    .await?;
                let here = subnet.as_deref().unwrap_or("EC2's choice of subnet");
                let why = super::error::aws_error(&e)
                    .map(|a| a.code().to_string())
                    .unwrap_or_default();
                if let Some(Some(next)) = candidates.get(n + 1) {
                    ctx.log.info(
                        "instance",
                        format!("{here} refused the builder ({why}): trying {next} in another zone"),
                    );
                }
                refused.push(format!("{here} ({why})"));
                if n + 1 == candidates.len() {
                    // The recipe's subnet is in one zone: bakery tries other zones only
                    // among the default VPC's subnets, which it picks itself.
                    let fix = if plan.subnet_id.is_some() {
                        "builder.subnet_id pins the builder to that subnet's zone: set it to a \
                         subnet in another zone, or leave it out so that bakery tries each zone \
                         of the default VPC, or pick another instance type"
                    } else {
                        "try another instance type, or later"
                    };
                    return Err(e.context(format!(
                        "cannot launch a {} builder in {target}: no zone took it (tried {}); {fix}",
                        plan.instance_type,
                        refused.join(", ")
                    )));
                }
            }
            Err(e) => {
                return Err(e.context(format!(
                    "cannot launch a {} builder from {} in {target}: check the instance type is offered there and the role may ec2:RunInstances",
                    plan.instance_type, source.id
                )))
            }
        }
    }
    let out = launched.context("RunInstances was never called")?;
    let id = out
        .instances()
        .first()
        .and_then(|i| i.instance_id())
        .context("RunInstances returned no instance")?
        .to_string();
    ctx.journal
        .created(
            &ResourceRef::new(ResourceKind::Instance, &id, target),
            json!({}),
        )
        .await?;
    ctx.log.info(
        "instance",
        format!(
            "builder {id} launched ({}) from {}",
            plan.instance_type, source.id
        ),
    );
    Ok(id)
}

/// Waits until the builder runs and has the address the plan connects through.
pub async fn wait_running(
    ctx: EngineCtx<'_>,
    target: &Target,
    id: &str,
) -> anyhow::Result<Builder> {
    let ec2 = ctx.session.ec2(target)?;
    let need_public = matches!(
        ctx.plan.builder.connect,
        crate::plan::model::ConnectVia::PublicIp
    );
    wait::until(
        &format!("builder {id} to run"),
        ctx.budgets.instance_running,
        ctx.session.settings().poll,
        || async {
            let out = policy::call_fresh(&format!("describe builder {id}"), || async {
                ec2.describe_instances().instance_ids(id).send().await.aws()
            })
            .await?;
            let inst = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .next()
                .with_context(|| format!("builder {id} is gone from {target}"))?;
            let state = inst.state().and_then(|s| s.name()).cloned();
            match state {
                Some(InstanceStateName::Running) => {
                    let b = Builder {
                        id: id.to_string(),
                        public_ip: inst.public_ip_address().map(str::to_string),
                        private_ip: inst.private_ip_address().map(str::to_string),
                    };
                    if need_public && b.public_ip.is_none() {
                        return Ok(Poll::Pending("running, no public address yet".into()));
                    }
                    Ok(Poll::Ready(b))
                }
                Some(InstanceStateName::Pending) | None => Ok(Poll::Pending("pending".into())),
                Some(other) => {
                    let reason = inst
                        .state_reason()
                        .and_then(|r| r.message())
                        .unwrap_or("no reason given");
                    let code = inst.state_reason().and_then(|r| r.code());
                    // EC2's code for a launch that failed on the volume's KMS key.
                    let hint = if code == Some("Client.InternalError") {
                        "; EC2 could not use the KMS key of the builder's volume (builder.kms_key, \
                         the source image's key or the region's default EBS key): the home \
                         identity needs kms:CreateGrant, kms:Decrypt, kms:DescribeKey, \
                         kms:GenerateDataKeyWithoutPlaintext and kms:ReEncrypt* on it, which the \
                         builder policy allows for keys aliased alias/ami*"
                    } else {
                        ""
                    };
                    anyhow::bail!(
                        "builder {id} is {} instead of running: {}{reason}{hint}",
                        other.as_str(),
                        code.map(|c| format!("{c}: ")).unwrap_or_default()
                    )
                }
            }
        },
    )
    .await
}

/// The SSH host key fingerprints (`SHA256:...`) the builder printed to its console, as
/// cloud-init does between `-----BEGIN SSH HOST KEY FINGERPRINTS-----` and `-----END…`.
///
/// cloud-init prints them 30–90 s after the instance is `running`, and the console EC2
/// buffers by default lags, so the latest output (`Latest=true`) is read until the block
/// appears, cloud-init says it finished without one, or [`super::Budgets::console_fingerprints`]
/// runs out. An empty list means trust on first use; the build log says why.
pub async fn console_host_key_fingerprints(
    ctx: EngineCtx<'_>,
    target: &Target,
    id: &str,
) -> Vec<String> {
    let Ok(ec2) = ctx.session.ec2(target) else {
        return vec![];
    };
    let read = wait::until(
        &format!("builder {id}'s host key fingerprints on its console"),
        ctx.budgets.console_fingerprints,
        ctx.session.settings().poll,
        || async {
            let out = policy::call(&format!("read builder {id}'s console"), || async {
                ec2.get_console_output()
                    .instance_id(id)
                    .latest(true)
                    .send()
                    .await
                    .aws()
            })
            .await?;
            let text = decode_console(out.output().unwrap_or_default());
            let pins = parse_host_key_fingerprints(&text);
            if !pins.is_empty() {
                Ok(Poll::Ready(pins))
            } else if cloud_init_finished(&text) {
                Ok(Poll::Ready(vec![]))
            } else {
                Ok(Poll::Pending(
                    "no fingerprints on the console yet".to_string(),
                ))
            }
        },
    )
    .await;
    match read {
        Ok(pins) => {
            if pins.is_empty() {
                ctx.log.info(
                    "provision",
                    format!("cloud-init on builder {id} finished without printing host key fingerprints"),
                );
            }
            pins
        }
        Err(e) => {
            ctx.log.info(
                "provision",
                format!("no host key fingerprints from builder {id}'s console: {e:#}"),
            );
            vec![]
        }
    }
}

fn decode_console(encoded: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|_| encoded.to_string())
}

/// Pure: cloud-init's last word on the console (`Cloud-init v. 23.1 finished at ...`).
pub fn cloud_init_finished(console: &str) -> bool {
    console
        .lines()
        .any(|l| l.contains("Cloud-init v.") && l.contains(" finished at "))
}

/// Pure: the fingerprints in cloud-init's block of a console output.
pub fn parse_host_key_fingerprints(console: &str) -> Vec<String> {
    let mut inside = false;
    let mut found = vec![];
    for line in console.lines() {
        let line = line.trim();
        if line.contains("-----BEGIN SSH HOST KEY FINGERPRINTS-----") {
            inside = true;
        } else if line.contains("-----END SSH HOST KEY FINGERPRINTS-----") {
            inside = false;
        } else if inside {
            found.extend(
                line.split_whitespace()
                    .filter(|w| w.starts_with("SHA256:") && w.len() > 7)
                    .map(str::to_string),
            );
        }
    }
    found
}

#[cfg(test)]
mod console_tests {
    use super::parse_host_key_fingerprints;

    #[test]
    fn reads_cloud_inits_fingerprint_block() {
        let console = "\
[   12.3] cloud-init[987]: Generating public/private ed25519 key pair.
ec2: #############################################################
ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
ec2: 256 SHA256:3f0bQkYVmKXk8bHc2lXq0sC1nZgD0pQk9Yh1eKq7b8s root@ip-10-0-0-5 (ECDSA)
ec2: 256 SHA256:Jm2x1r1vY3GkQ0p8n3sT6a0Qe7cQm5mV0dQh2mJ8kA0 root@ip-10-0-0-5 (ED25519)
ec2: -----END SSH HOST KEY FINGERPRINTS-----
SHA256:notinsidetheblock
";
        assert_eq!(
            parse_host_key_fingerprints(console),
            vec![
                "SHA256:3f0bQkYVmKXk8bHc2lXq0sC1nZgD0pQk9Yh1eKq7b8s",
                "SHA256:Jm2x1r1vY3GkQ0p8n3sT6a0Qe7cQm5mV0dQh2mJ8kA0"
            ]
        );
        assert!(parse_host_key_fingerprints("Linux version 6.1").is_empty());
    }
}
