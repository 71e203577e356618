//! KMS keys where moto is kinder than AWS: the builder's volume under `builder.kms_key`
//! (moto ignores the key; the proxy records it and the IAM oracle judges the KMS use it
//! implies), and copies into another account that EC2 fails because the grant on the
//! intermediate's key has not reached it yet (the proxy answers `failed` as EC2 does).

use super::*;

/// The build id of the build of `version`.
async fn build_id_of(store: &DynStore, version: &str) -> String {
    store
        .list_builds(&BuildFilter::default())
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.version == version)
        .unwrap()
        .build_id
}

fn with_builder_key(mut p: BuildPlan, key: &str) -> BuildPlan {
    p.builder.kms_key = Some(key.into());
    p
}

/// EBS encryption by default under the AWS managed key would make an intermediate no
/// other account can copy. With `builder.kms_key`, the builder's root volume is created
/// encrypted under the recipe's key instead: RunInstances carries `Encrypted=true` and
/// the key's ARN (resolved in pre-flight), the region's default key is not consulted,
/// and the build copies into the other account. The IAM oracle (when the proxy is
/// dropped) judges the KMS actions EC2 takes on the key for the launch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_kms_key_encrypts_the_builders_volume_under_the_recipes_key() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let ns = "xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"";
    w.proxy.answer(
        "GetEbsEncryptionByDefault",
        &format!("<GetEbsEncryptionByDefaultResponse {ns}><requestId>proxy</requestId><ebsEncryptionByDefault>true</ebsEncryptionByDefault><sseType>sse-ebs</sseType></GetEbsEncryptionByDefaultResponse>"),
    );
    w.proxy.answer(
        "GetEbsDefaultKmsKeyId",
        &format!("<GetEbsDefaultKmsKeyIdResponse {ns}><requestId>proxy</requestId><kmsKeyId>arn:aws:kms:us-east-1:{HOME}:alias/aws/ebs</kmsKeyId></GetEbsDefaultKmsKeyIdResponse>"),
    );
    let key = w.keys[&target(HOME, "us-east-1")].clone();
    let p = with_builder_key(
        plan(
            "release-builder-key",
            copies(&REGIONS[..1], &[None, Some(other_account())]),
        ),
        "alias/ami",
    );
    let (outcome, log) = build(
        &w,
        &store,
        p.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    outcome.unwrap_or_else(|e| panic!("build failed: {e:#}\n{}", log.text()));

    let runs = w.proxy.calls("RunInstances");
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = &runs[0];
    assert_eq!(
        run.param("BlockDeviceMapping.1.Ebs.Encrypted"),
        Some("true")
    );
    assert_eq!(
        run.param("BlockDeviceMapping.1.Ebs.KmsKeyId"),
        Some(key.as_str()),
        "the key's ARN, as pre-flight resolved it"
    );
    assert!(run.param("BlockDeviceMapping.1.DeviceName").is_some());
    assert_eq!(
        run.before.kms_aliases,
        vec!["alias/ami".to_string()],
        "the proxy resolved the key, so the IAM oracle judged EC2's use of it"
    );
    assert!(
        w.proxy.calls("GetEbsDefaultKmsKeyId").is_empty(),
        "the recipe's key overrides the region's default"
    );
    let described: Vec<_> = w
        .proxy
        .calls("DescribeKey")
        .into_iter()
        .filter(|c| c.access_key == ACCESS_KEY && c.param("KeyId") == Some("alias/ami"))
        .collect();
    // The builder's key is also the home copy's key in the same region: one answer
    // serves both checks.
    assert_eq!(
        described.len(),
        1,
        "pre-flight checks the builder key, once: {described:#?}"
    );
    let build_id = build_id_of(&store, "release-builder-key").await;
    let left = leftovers(&w, &plan_targets(&p), &build_id, true).await;
    assert!(left.is_empty(), "{left:#?}");
}

/// A plan whose copies all stay in the home account encrypts the builder's volume under
/// the key of its copy in the builder's region, without `builder.kms_key`: RunInstances
/// carries `Encrypted=true` and that key's ARN, so the intermediate is never unencrypted,
/// and the region's EBS encryption by default is not read (it cannot matter under an
/// explicit key). With a copy into another account the volume stays as the source and the
/// region say: the intermediate is shared, and pre-flight reads the region's default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_stays_home_encrypts_the_builders_volume_under_its_copy_key() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let key = w.keys[&target(HOME, "us-east-1")].clone();
    let home = plan("release-home-key", copies(&REGIONS[..2], &[None]));
    w.proxy.clear();
    let (outcome, log) = build(
        &w,
        &store,
        home.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    outcome.unwrap_or_else(|e| panic!("build failed: {e:#}\n{}", log.text()));
    let runs = w.proxy.calls("RunInstances");
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(
        runs[0].param("BlockDeviceMapping.1.Ebs.Encrypted"),
        Some("true")
    );
    assert_eq!(
        runs[0].param("BlockDeviceMapping.1.Ebs.KmsKeyId"),
        Some(key.as_str()),
        "the us-east-1 copy's key, as pre-flight resolved it"
    );
    assert_eq!(
        runs[0].before.kms_aliases,
        vec!["alias/ami".to_string()],
        "the proxy resolved the key, so the IAM oracle judged EC2's use of it"
    );
    assert!(
        w.proxy.calls("GetEbsEncryptionByDefault").is_empty(),
        "under an explicit key the region's default does not matter"
    );
    let build_id = build_id_of(&store, "release-home-key").await;
    let left = leftovers(&w, &plan_targets(&home), &build_id, true).await;
    assert!(left.is_empty(), "{left:#?}");

    let shared = plan(
        "release-shared-key",
        copies(&REGIONS[..1], &[None, Some(other_account())]),
    );
    w.proxy.clear();
    let (outcome, log) = build(
        &w,
        &store,
        shared,
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    outcome.unwrap_or_else(|e| panic!("build failed: {e:#}\n{}", log.text()));
    let runs = w.proxy.calls("RunInstances");
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].param("BlockDeviceMapping.1.Ebs.KmsKeyId"), None);
    assert_eq!(w.proxy.calls("GetEbsEncryptionByDefault").len(), 1);
}

/// A `builder.kms_key` that does not exist, or that cannot encrypt EBS volumes (an
/// asymmetric key), fails pre-flight naming `builder.kms_key`, before any launch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_kms_key_that_cannot_encrypt_fails_preflight() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let t = target(HOME, "us-east-1");
    let rsa = w
        .check
        .kms(&t)
        .unwrap()
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::Rsa2048)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    w.check
        .kms(&t)
        .unwrap()
        .create_alias()
        .alias_name("alias/ami-signing")
        .target_key_id(&rsa)
        .send()
        .await
        .unwrap();
    for (version, key, why) in [
        ("release-key-missing", "alias/ami-missing", "not found"),
        ("release-key-rsa", "alias/ami-signing", "RSA_2048"),
    ] {
        let p = with_builder_key(plan(version, copies(&REGIONS[..1], &[None])), key);
        let (outcome, _log) = build(&w, &store, p, Arc::new(RecordingProvisioner::default())).await;
        let err = format!("{:#}", outcome.expect_err("pre-flight must fail"));
        assert!(err.contains("pre-flight"), "{err}");
        assert!(err.contains("builder.kms_key"), "{err}");
        assert!(err.contains(key), "{err}");
        assert!(err.contains(why), "{err}");
        assert!(w.proxy.calls("RunInstances").is_empty());
    }
}

/// The copy into the other account, made with the grant bakery just created on the
/// intermediate's key, ends `failed` with `Client.InvalidKMSKey.InvalidState` `failures`
/// times: the proxy answers so, as EC2 does while the grant has not reached it.
fn copy_fails_on_its_key(w: &World, failures: usize) {
    w.proxy.rewrite(
        "DescribeImages",
        failures,
        |r| r.access_key.starts_with("ASIA") && r.param("ImageId.1").is_some(),
        |body| {
            *body = body.replace(
                "<imageState>available</imageState>",
                "<imageState>failed</imageState><stateReason><code>Client.InvalidKMSKey.InvalidState</code><message>The KMS key provided is in an incorrect state</message></stateReason>",
            );
        },
    );
}

fn encrypted_intermediate(w: &World) {
    let (_, edit) = encrypted_snapshots(w);
    w.proxy.rewrite(
        "DescribeSnapshots",
        10_000,
        |r| {
            r.access_key == ACCESS_KEY
                && r.region == "us-east-1"
                && r.param("SnapshotId.1").is_some()
        },
        edit,
    );
}

/// The copies into the other account, in order.
fn other_account_copies(w: &World) -> Vec<Recorded> {
    w.proxy
        .calls("CopyImage")
        .into_iter()
        .filter(|c| c.access_key.starts_with("ASIA"))
        .collect()
}

/// KMS grants take time to reach EC2. The first copy into the other account fails on
/// the key; bakery deregisters it and issues the copy again with a new idempotency
/// token, and the release succeeds with one copy there. The grant is revoked as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_failed_on_a_grant_not_yet_usable_is_issued_again() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let (key, _) = encrypted_snapshots(&w);
    encrypted_intermediate(&w);
    copy_fails_on_its_key(&w, 1);
    let p = plan(
        "release-grant-late",
        copies(&["us-east-1"], &[None, Some(other_account())]),
    );
    let (outcome, log) = build(
        &w,
        &store,
        p.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    outcome.unwrap_or_else(|e| panic!("build failed: {e:#}\n{}", log.text()));
    let copied = other_account_copies(&w);
    assert_eq!(copied.len(), 2, "one copy issued again: {copied:#?}");
    assert_ne!(
        copied[0].param("ClientToken"),
        copied[1].param("ClientToken"),
        "a new token, or EC2 would answer with the failed copy"
    );
    let first = copied[0].response_field("imageId").unwrap();
    let second = copied[1].response_field("imageId").unwrap();
    assert_ne!(first, second);
    assert!(
        w.proxy
            .calls("DeregisterImage")
            .iter()
            .any(|d| d.param("ImageId") == Some(first.as_str())),
        "the failed copy is deregistered"
    );
    assert!(log.text().contains("issued again"), "{}", log.text());
    let there = images_named(&w, &target(OTHER, "us-east-1"), "base-release-grant-late").await;
    assert_eq!(
        there
            .iter()
            .filter_map(|i| i.image_id())
            .collect::<Vec<_>>(),
        vec![second.as_str()]
    );
    assert_eq!(bakery_grants(&w, &key).await, vec![], "no grant is left");
}

/// A copy that fails on its key every time is issued three times in all, then the
/// build fails naming the attempts, the code and what to check; cleanup leaves nothing
/// of the build (no copy anywhere, no grant).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_keeps_failing_on_its_key_fails_after_three_attempts_and_cleans_up() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let (key, _) = encrypted_snapshots(&w);
    encrypted_intermediate(&w);
    copy_fails_on_its_key(&w, usize::MAX);
    let p = plan(
        "release-grant-never",
        copies(&["us-east-1"], &[None, Some(other_account())]),
    );
    let (outcome, log) = build(
        &w,
        &store,
        p.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let err = format!("{:#}", outcome.expect_err("the copy never succeeds"));
    assert!(err.contains("failed 3 time(s)"), "{err}\n{}", log.text());
    assert!(err.contains("Client.InvalidKMSKey.InvalidState"), "{err}");
    assert!(err.contains("key policy"), "{err}");
    assert_eq!(other_account_copies(&w).len(), 3);
    let build_id = build_id_of(&store, "release-grant-never").await;
    let left = leftovers(&w, &plan_targets(&p), &build_id, false).await;
    assert!(left.is_empty(), "{left:#?}");
    assert_eq!(bakery_grants(&w, &key).await, vec![], "no grant is left");
}

/// A builder whose volume EC2 cannot encrypt or decrypt (a KMS key the identity may not
/// use) is terminated during launch with `Client.InternalError`, which says nothing of
/// KMS. The proxy answers so; the build fails naming the code and the key to check, and
/// cleans up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_ec2_terminates_at_launch_for_its_key_names_the_kms_fix() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    w.proxy.rewrite(
        "DescribeInstances",
        usize::MAX,
        |r| r.access_key == ACCESS_KEY && r.param("InstanceId.1").is_some(),
        |body| {
            *body = body.replace(
                "<name>running</name></instanceState>",
                "<name>terminated</name></instanceState><stateReason><code>Client.InternalError</code><message>Client.InternalError: Client error on launch</message></stateReason>",
            );
        },
    );
    let p = with_builder_key(
        plan("release-key-launch", copies(&REGIONS[..1], &[None])),
        "alias/ami",
    );
    let (outcome, log) = build(
        &w,
        &store,
        p.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    w.proxy.clear_rewrites();
    let err = format!("{:#}", outcome.expect_err("the builder never runs"));
    assert!(
        err.contains("is terminated instead of running"),
        "{err}\n{}",
        log.text()
    );
    assert!(err.contains("Client.InternalError: "), "{err}");
    assert!(err.contains("builder.kms_key"), "{err}");
    assert!(err.contains("kms:CreateGrant"), "{err}");
    let build_id = build_id_of(&store, "release-key-launch").await;
    let left = leftovers(&w, &plan_targets(&p), &build_id, false).await;
    assert!(left.is_empty(), "{left:#?}");
}
