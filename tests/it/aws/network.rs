//! Where the builder launches, against moto with the proxy answering as AWS does where
//! moto is kinder: a subnet that maps no public IPs, a region without a default VPC, and
//! zones without capacity for the instance type (or that do not offer it).

use super::*;

/// The default VPC's default subnets in us-east-1, as moto has them.
async fn default_subnets(w: &World) -> Vec<(String, String)> {
    let out = w
        .check
        .ec2(&target(HOME, "us-east-1"))
        .unwrap()
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("default-for-az")
                .values("true")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut s: Vec<(String, String)> = out
        .subnets()
        .iter()
        .map(|s| {
            (
                s.availability_zone().unwrap().to_string(),
                s.subnet_id().unwrap().to_string(),
            )
        })
        .collect();
    s.sort();
    assert!(
        s.len() >= 2,
        "moto's default VPC has a subnet per zone: {s:?}"
    );
    s
}

/// The recipe's subnet does not map public IPs, and bakery connects to the builder's
/// public IP. On AWS the builder would run without one and the build would wait out its
/// 15-minute budget, then blame the budget. Pre-flight refuses it at once, naming the
/// subnet and the fix, before anything is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subnet_without_public_ips_fails_preflight_before_any_launch() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let (_, subnet) = default_subnets(&w).await.remove(0);
    w.proxy.rewrite(
        "DescribeSubnets",
        usize::MAX,
        |_| true,
        |body| {
            *body = body.replace(
                "<mapPublicIpOnLaunch>true</mapPublicIpOnLaunch>",
                "<mapPublicIpOnLaunch>false</mapPublicIpOnLaunch>",
            )
        },
    );
    let mut p = plan("release-private-subnet", copies(&["us-east-1"], &[None]));
    p.builder.subnet_id = Some(subnet.clone());
    let (outcome, _log) = build(&w, &store, p, Arc::new(RecordingProvisioner::default())).await;
    let err = format!("{:#}", outcome.expect_err("pre-flight must fail"));
    assert!(err.contains("pre-flight"), "{err}");
    assert!(err.contains(&subnet), "{err}");
    assert!(err.contains("does not map public IPs"), "{err}");
    assert!(err.contains("--map-public-ip-on-launch"), "{err}");
    for created in ["RunInstances", "ImportKeyPair", "CreateSecurityGroup"] {
        assert!(w.proxy.calls(created).is_empty(), "{created} was called");
    }
}

/// No `builder.subnet_id` and no default VPC (as under Control Tower): pre-flight says to
/// set the subnet, before anything is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_default_vpc_and_no_subnet_fails_preflight() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    w.proxy.rewrite(
        "DescribeSubnets",
        usize::MAX,
        |r| r.params.values().any(|v| v == "default-for-az"),
        |body| {
            if let (Some(start), Some(end)) = (body.find("<subnetSet>"), body.find("</subnetSet>"))
            {
                body.replace_range(start..end + "</subnetSet>".len(), "<subnetSet/>");
            }
        },
    );
    let p = plan("release-no-default-vpc", copies(&["us-east-1"], &[None]));
    let (outcome, _log) = build(&w, &store, p, Arc::new(RecordingProvisioner::default())).await;
    let err = format!("{:#}", outcome.expect_err("pre-flight must fail"));
    assert!(err.contains("pre-flight"), "{err}");
    assert!(err.contains("no default VPC"), "{err}");
    assert!(err.contains("builder.subnet_id"), "{err}");
    for created in ["RunInstances", "ImportKeyPair", "CreateSecurityGroup"] {
        assert!(w.proxy.calls(created).is_empty(), "{created} was called");
    }
}

/// The first zone has no capacity for the instance type: the launch goes to the next
/// zone's default subnet, with a new idempotency token, and the build completes with one
/// builder. With the recipe's own subnet, there is no other zone (a decision: the recipe
/// chose the zone): the build fails naming what was tried and what to change, and leaves
/// nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_without_capacity_passes_the_launch_to_the_next_zone() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let subnets = default_subnets(&w).await;
    w.proxy
        .fail("RunInstances", "InsufficientInstanceCapacity", 1, |_| true);
    let p = plan("release-capacity", copies(&["us-east-1"], &[None]));
    let (outcome, log) = build(
        &w,
        &store,
        p.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    outcome.unwrap_or_else(|e| panic!("build failed: {e:#}\n{}", log.text()));
    let launches = w.proxy.calls("RunInstances");
    assert_eq!(launches.len(), 2, "{launches:#?}");
    assert_eq!(launches[0].param("SubnetId"), Some(subnets[0].1.as_str()));
    assert_eq!(launches[1].param("SubnetId"), Some(subnets[1].1.as_str()));
    assert_ne!(
        launches[0].param("ClientToken"),
        launches[1].param("ClientToken")
    );
    assert!(
        log.text().contains("InsufficientInstanceCapacity"),
        "{}",
        log.text()
    );

    w.proxy.clear();
    w.proxy
        .fail("RunInstances", "Unsupported", usize::MAX, |_| true);
    let mut own = plan("release-unsupported", copies(&["us-east-1"], &[None]));
    own.builder.subnet_id = Some(subnets[0].1.clone());
    let (outcome, _log) = build(&w, &store, own, Arc::new(RecordingProvisioner::default())).await;
    let err = format!("{:#}", outcome.expect_err("no zone takes it"));
    assert!(err.contains("no zone took it"), "{err}");
    assert!(
        err.contains("builder.subnet_id pins the builder to that subnet's zone"),
        "the fix for a pinned subnet is named: {err}"
    );
    assert!(
        err.contains(&format!("{} (Unsupported)", subnets[0].1)),
        "{err}"
    );
    assert_eq!(w.proxy.calls("RunInstances").len(), 1);
    w.proxy.clear_failures();
    no_builder_resources(&w, &target(HOME, "us-east-1")).await;
}
