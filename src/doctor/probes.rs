//! `DryRun=true` probes of every EC2 call a build makes, in the account and region it
//! makes them, with the tags bakery applies: AWS answers `DryRunOperation` when IAM
//! would allow the call and `UnauthorizedOperation` when it would not, and creates
//! nothing. CreateImage and GetConsoleOutput act on a builder instance: they are probed
//! on one tagged `bakery:build-id` when one exists (a running build's), and skipped
//! otherwise, since doctor launches nothing.

use aws_sdk_ec2::types::{
    Filter, HttpTokensState, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceType, ResourceType,
};

use super::{Area, Check, DryRun};
use crate::aws::error::SdkResultExt;
use crate::aws::{access, policy, tags, AwsSession, Target};
use crate::plan::model::{tag_keys, BuildFacts, BuildPlan};

/// The build id doctor's probes carry in their tags (nothing is created with it).
pub const PROBE_BUILD_ID: &str = "doctor-probe";

/// What a probe's failure asks for, by the statement of the shipped policy that grants it.
fn fix_for(action: &str, home: bool) -> String {
    let file = if home {
        "deploy/aws/builder-policy.json"
    } else {
        "deploy/aws/target-account-role-policy.json"
    };
    let tagged = matches!(
        action,
        "RunInstances" | "CreateSecurityGroup" | "ImportKeyPair" | "CreateImage" | "CopyImage"
    );
    if tagged {
        format!(
            "allow ec2:{action} when the request tags bakery:build-id, and ec2:CreateTags with \
             ec2:CreateAction = {action} ({file})"
        )
    } else if action.starts_with("Describe") || action.starts_with("GetEbs") {
        format!("allow ec2:{action} on * ({file})")
    } else {
        format!("allow ec2:{action} on resources tagged bakery:build-id ({file})")
    }
}

fn outcome(action: &str, target: &Target, home: bool, result: DryRun) -> Check {
    let name = format!("ec2:{action}");
    match result {
        DryRun::Allowed => Check::pass(
            Area::Permissions,
            name,
            target.to_string(),
            "DryRun: would be allowed",
        ),
        DryRun::Denied(e) => Check::fail(
            Area::Permissions,
            name,
            target.to_string(),
            format!("DryRun: denied ({e})"),
            fix_for(action, home),
        ),
        DryRun::Error(e) => Check::fail(
            Area::Permissions,
            name,
            target.to_string(),
            format!("DryRun: {e}"),
            "fix what the answer names, then run doctor again",
        ),
    }
}

/// The Describe calls a build, its cleanup and the janitor make in the home account.
const HOME_DESCRIBES: [&str; 6] = [
    "DescribeImages",
    "DescribeInstances",
    "DescribeSnapshots",
    "DescribeSubnets",
    "DescribeSecurityGroups",
    "DescribeKeyPairs",
];

/// The Describe calls made with a target account's role (copies, cleanup, janitor).
const TARGET_DESCRIBES: [&str; 5] = [
    "DescribeImages",
    "DescribeSnapshots",
    "DescribeInstances",
    "DescribeKeyPairs",
    "DescribeSecurityGroups",
];

async fn describe(ec2: &aws_sdk_ec2::Client, action: &str) -> DryRun {
    let what = format!("DryRun {action}");
    macro_rules! probe {
        ($call:ident) => {
            DryRun::of(
                policy::call(&what, || async {
                    ec2.$call().dry_run(true).send().await.aws()
                })
                .await,
            )
        };
    }
    match action {
        "DescribeImages" => probe!(describe_images),
        "DescribeInstances" => probe!(describe_instances),
        "DescribeSnapshots" => probe!(describe_snapshots),
        "DescribeSubnets" => probe!(describe_subnets),
        "DescribeSecurityGroups" => probe!(describe_security_groups),
        "DescribeKeyPairs" => probe!(describe_key_pairs),
        other => DryRun::Error(format!("no probe for {other}")),
    }
}

/// The Describe probes in the home account's builder region.
pub async fn home_describes(session: &AwsSession, builder: &Target) -> Vec<Check> {
    let Ok(ec2) = session.ec2(builder) else {
        return vec![];
    };
    let mut out = vec![];
    for action in HOME_DESCRIBES {
        out.push(outcome(action, builder, true, describe(&ec2, action).await));
    }
    out
}

/// The Describe probes with a target account's role.
pub async fn target_describes(session: &AwsSession, target: &Target) -> Vec<Check> {
    let Ok(ec2) = session.ec2(target) else {
        return vec![];
    };
    let mut out = vec![];
    for action in TARGET_DESCRIBES {
        out.push(outcome(action, target, false, describe(&ec2, action).await));
    }
    out
}

/// RunInstances, CreateSecurityGroup and ImportKeyPair in the builder region, as the
/// build sends them (tags on create, IMDS options, the recipe's subnet and type).
pub async fn builder_calls(
    session: &AwsSession,
    plan: &BuildPlan,
    builder: &Target,
    source_image: &str,
    vpc_id: Option<&str>,
) -> anyhow::Result<Vec<Check>> {
    let ec2 = session.ec2(builder)?;
    let now = chrono::Utc::now().to_rfc3339();
    let tags = tags::builder_tags(plan, PROBE_BUILD_ID, session.installation(), &now);
    let mut out = vec![];

    let metadata = InstanceMetadataOptionsRequest::builder()
        .http_endpoint(InstanceMetadataEndpointState::Enabled)
        .http_tokens(if plan.builder.imdsv2_required {
            HttpTokensState::Required
        } else {
            HttpTokensState::Optional
        })
        .build();
    let run = policy::call("DryRun RunInstances", || async {
        ec2.run_instances()
            .dry_run(true)
            .image_id(source_image)
            .instance_type(InstanceType::from(plan.builder.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .set_subnet_id(plan.builder.subnet_id.clone())
            .metadata_options(metadata.clone())
            .tag_specifications(tags::spec(ResourceType::Instance, &tags))
            .tag_specifications(tags::spec(ResourceType::Volume, &tags))
            .send()
            .await
            .aws()
    })
    .await;
    out.push(outcome("RunInstances", builder, true, DryRun::of(run)));

    let sg = policy::call("DryRun CreateSecurityGroup", || async {
        ec2.create_security_group()
            .dry_run(true)
            .group_name(access::security_group_name(PROBE_BUILD_ID))
            .description("bakery doctor probe")
            .set_vpc_id(vpc_id.map(str::to_string))
            .tag_specifications(tags::spec(ResourceType::SecurityGroup, &tags))
            .send()
            .await
            .aws()
    })
    .await;
    out.push(outcome(
        "CreateSecurityGroup",
        builder,
        true,
        DryRun::of(sg),
    ));

    let key = access::generate_key()?;
    let public = key.public_key().to_openssh()?;
    let import = policy::call("DryRun ImportKeyPair", || async {
        ec2.import_key_pair()
            .dry_run(true)
            .key_name(access::key_pair_name(PROBE_BUILD_ID))
            .public_key_material(aws_sdk_ec2::primitives::Blob::new(public.as_bytes()))
            .tag_specifications(tags::spec(ResourceType::KeyPair, &tags))
            .send()
            .await
            .aws()
    })
    .await;
    out.push(outcome("ImportKeyPair", builder, true, DryRun::of(import)));
    Ok(out)
}

/// A builder instance to probe CreateImage and GetConsoleOutput on: any instance tagged
/// `bakery:build-id` in the builder region, running or stopped.
async fn a_builder(ec2: &aws_sdk_ec2::Client) -> anyhow::Result<Option<String>> {
    let out = policy::call("find a bakery builder", || async {
        ec2.describe_instances()
            .filters(
                Filter::builder()
                    .name("tag-key")
                    .values(tag_keys::BUILD_ID)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("running")
                    .values("stopped")
                    .build(),
            )
            .send()
            .await
            .aws()
    })
    .await?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.instance_id().map(str::to_string)))
}

/// CreateImage (image and snapshots tagged) and GetConsoleOutput on a builder instance.
pub async fn instance_calls(
    session: &AwsSession,
    plan: &BuildPlan,
    builder: &Target,
) -> anyhow::Result<Vec<Check>> {
    let ec2 = session.ec2(builder)?;
    let Some(instance) = a_builder(&ec2).await? else {
        let why = "no instance tagged bakery:build-id to probe on (doctor launches nothing): \
                   run doctor while a build runs to probe it";
        return Ok(vec![
            Check::skip(
                Area::Permissions,
                "ec2:CreateImage",
                builder.to_string(),
                why,
            ),
            Check::skip(
                Area::Permissions,
                "ec2:GetConsoleOutput",
                builder.to_string(),
                why,
            ),
        ]);
    };
    let facts = BuildFacts {
        build_id: PROBE_BUILD_ID.to_string(),
        source_ami: "doctor".to_string(),
    };
    let mut image_tags = plan.image_tags(&facts);
    image_tags.insert(tags::INSTALLATION.into(), session.installation().into());
    let mut snapshot_tags = plan.snapshot_tags(&facts);
    snapshot_tags.insert(tags::INSTALLATION.into(), session.installation().into());
    let create = policy::call("DryRun CreateImage", || async {
        ec2.create_image()
            .dry_run(true)
            .instance_id(&instance)
            .name(format!("{}-doctor", plan.image.name))
            .tag_specifications(tags::spec(ResourceType::Image, &image_tags))
            .tag_specifications(tags::spec(ResourceType::Snapshot, &snapshot_tags))
            .send()
            .await
            .aws()
    })
    .await;
    let console = policy::call("DryRun GetConsoleOutput", || async {
        ec2.get_console_output()
            .dry_run(true)
            .instance_id(&instance)
            .latest(true)
            .send()
            .await
            .aws()
    })
    .await;
    let mut create = outcome("CreateImage", builder, true, DryRun::of(create));
    let mut console = outcome("GetConsoleOutput", builder, true, DryRun::of(console));
    for c in [&mut create, &mut console] {
        c.detail = format!("{} (on builder {instance})", c.detail);
    }
    Ok(vec![create, console])
}

/// CopyImage into `target` from the builder region, as distribution sends it (encrypted
/// under the copy's key, image and snapshots tagged), with the source image standing in
/// for the intermediate.
pub async fn copy_image(
    session: &AwsSession,
    plan: &BuildPlan,
    builder: &Target,
    target: &Target,
    source_image: &str,
    kms_key: Option<&str>,
) -> anyhow::Result<Check> {
    let ec2 = session.ec2(target)?;
    let facts = BuildFacts {
        build_id: PROBE_BUILD_ID.to_string(),
        source_ami: source_image.to_string(),
    };
    let mut image_tags = plan.image_tags(&facts);
    image_tags.insert(tags::ROLE.to_string(), tags::role::FINAL.to_string());
    image_tags.insert(tags::INSTALLATION.into(), session.installation().into());
    let mut snapshot_tags = plan.snapshot_tags(&facts);
    snapshot_tags.insert(tags::INSTALLATION.into(), session.installation().into());
    let encrypted = plan.distribute.encrypted;
    let copy = policy::call("DryRun CopyImage", || async {
        ec2.copy_image()
            .dry_run(true)
            .source_image_id(source_image)
            .source_region(&builder.region)
            .name(format!("{}-doctor", plan.image.name))
            .encrypted(encrypted)
            .set_kms_key_id(if encrypted {
                kms_key.map(str::to_string)
            } else {
                None
            })
            .copy_image_tags(false)
            .tag_specifications(tags::spec(ResourceType::Image, &image_tags))
            .tag_specifications(tags::spec(ResourceType::Snapshot, &snapshot_tags))
            .send()
            .await
            .aws()
    })
    .await;
    Ok(outcome(
        "CopyImage",
        target,
        target.account == session.home_account(),
        DryRun::of(copy),
    ))
}
