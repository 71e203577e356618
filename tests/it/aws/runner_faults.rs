//! The runner against faults moto does not make by itself, injected through the
//! recording proxy: a pull request's image is discarded before its builder's cleanup,
//! a release that fails after distribution keeps its copies and a retry resumes it, and
//! TerminateInstances' NotFound right after launch is eventual consistency, not "gone".

use super::*;
use bakery::aws::instance::TerminateUnseen;
use bakery::aws::resource::{self, Deleted, ResourceRef};
use bakery::build::runner::CopiesKept;

/// A pull request's build deregisters its image (with its snapshots) as soon as the
/// copy is verified, before the cleanup step deletes its builder's security group (which
/// waits while the terminating builder holds it, up to minutes on EC2): the image never
/// outlives the build's own work, whatever happens after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_image_is_discarded_before_its_builder_is_cleaned_up() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let t = target(HOME, "us-east-1");
    let mut pr = plan("pr-9", copies(&["us-east-1"], &[None]));
    pr.image.ephemeral = true;
    let (outcome, log) = build(
        &w,
        &store,
        pr.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let BuildOutcome::Built {
        build_id, manifest, ..
    } = outcome.unwrap_or_else(|e| panic!("{e:#}\n{}", log.text()))
    else {
        panic!("expected a build")
    };
    let ami = manifest.builds[0].copies[0].ami.clone();
    let calls = w.proxy.requests();
    let discard = calls
        .iter()
        .find(|c| c.action == "DeregisterImage" && c.param("ImageId") == Some(ami.as_str()))
        .unwrap_or_else(|| {
            panic!(
                "the build returned without deregistering the pull request's image {ami}\n{}",
                log.text()
            )
        });
    assert_eq!(discard.param("DeleteAssociatedSnapshots"), Some("true"));
    let cleanup = calls
        .iter()
        .find(|c| c.action == "DeleteSecurityGroup")
        .expect("the builder's security group was deleted");
    assert!(
        discard.seq < cleanup.seq,
        "the pull request's image {ami} was deregistered (call {}) only after its builder's \
         cleanup (call {})",
        discard.seq,
        cleanup.seq
    );
    assert!(images_named(&w, &t, &pr.image.name).await.is_empty());
    let left = leftovers(&w, &plan_targets(&pr), &build_id, false).await;
    assert!(left.is_empty(), "{left:#?}");
}

/// The copies exist in every region and account, then one publishing call fails (the
/// launch permission for an account the API refuses). The release is not thrown away:
/// the copies stay, unreleased; the builder and the unencrypted intermediate go. The
/// next attempt of the same tag resumes that build: no new builder, no new copy, the
/// missing launch permission is set and the copies are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_distribution_keeps_the_copies_and_a_retry_resumes_them() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let plan = plan(
        "release-kept",
        copies(&REGIONS[..2], &[None, Some(other_account())]),
    );
    let targets: Vec<Target> = plan_targets(&plan)
        .into_iter()
        .filter(|t| t.region != "ap-southeast-2")
        .collect();
    w.proxy.fail(
        "ModifyImageAttribute",
        "InvalidParameterValue",
        1,
        |r: &Recorded| r.params.values().any(|v| v == "333333333333"),
    );
    let (first, log) = build(
        &w,
        &store,
        plan.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let err = first.expect_err("the launch permission was refused");
    let kept = err
        .downcast_ref::<CopiesKept>()
        .unwrap_or_else(|| panic!("not a kept release: {err:#}\n{}", log.text()));
    assert_eq!(kept.copies, 4);
    let build_id = kept.build_id.clone();
    let record = store.get_build(&build_id).await.unwrap().unwrap();
    assert_eq!(record.state, BuildState::Failed);
    assert!(
        record.error.as_deref().unwrap_or_default().contains("kept"),
        "{:?}",
        record.error
    );
    let mut kept_ids = BTreeSet::new();
    for t in &targets {
        let images = images_named(&w, t, &plan.image.name).await;
        assert_eq!(
            images.len(),
            1,
            "the copy in {t} was thrown away\n{}",
            log.text()
        );
        assert!(
            !tag_map(images[0].tags()).contains_key(tags::RELEASED),
            "a failed release's copy in {t} was marked released"
        );
        kept_ids.insert(images[0].image_id().unwrap().to_string());
    }
    // Nothing but the copies and their snapshots: the builder and the intermediate went.
    let left = leftovers(&w, &targets, &build_id, true).await;
    assert!(left.is_empty(), "{left:#?}\n{}", log.text());
    no_builder_resources(&w, &target(HOME, "us-east-1")).await;

    w.proxy.clear();
    let (second, log) = build(
        &w,
        &store,
        plan.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let BuildOutcome::Built {
        build_id: resumed_id,
        manifest,
        resumed,
    } = second.unwrap_or_else(|e| panic!("the retry failed: {e:#}\n{}", log.text()))
    else {
        panic!("expected a build")
    };
    assert_eq!(resumed_id, build_id, "the retry built anew\n{}", log.text());
    assert!(resumed);
    for action in ["RunInstances", "CreateImage", "CopyImage"] {
        assert!(
            w.proxy.calls(action).is_empty(),
            "the retry called {action}\n{}",
            log.text()
        );
    }
    assert!(
        w.proxy
            .calls("ModifyImageAttribute")
            .iter()
            .any(|r| r.params.values().any(|v| v == "333333333333")),
        "the missing launch permission was not set"
    );
    let released: BTreeSet<String> = manifest.builds[0]
        .copies
        .iter()
        .map(|c| c.ami.clone())
        .collect();
    assert_eq!(released, kept_ids);
    for t in &targets {
        let images = images_named(&w, t, &plan.image.name).await;
        assert_eq!(images.len(), 1);
        assert!(tag_map(images[0].tags()).contains_key(tags::RELEASED));
    }
    let record = store.get_build(&build_id).await.unwrap().unwrap();
    assert_eq!(record.state, BuildState::Succeeded);
    let left = leftovers(&w, &targets, &build_id, true).await;
    assert!(left.is_empty(), "{left:#?}");
}

/// EC2 may answer `InvalidInstanceID.NotFound` to TerminateInstances for an instance it
/// launched a moment ago. Deleting it retries for a bounded window and terminates it; a
/// NotFound that lasts is "gone" only when DescribeInstances agrees, never for an
/// instance it still shows running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_not_found_right_after_launch_is_retried_not_taken_as_gone() {
    let w = world().await;
    w.proxy.judge_by_hand();
    let t = target(HOME, "us-east-1");
    let session = AwsSession::connect(settings(&w.proxy.endpoint), "us-east-1")
        .await
        .unwrap();
    let ec2 = session.ec2(&t).unwrap();
    let image = w
        .check
        .ec2(&t)
        .unwrap()
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .unwrap()
        .images()[0]
        .image_id()
        .unwrap()
        .to_string();
    // Launched through the proxy, which then hides the instance for two seconds.
    w.proxy.unseen_after_create(Duration::from_secs(2));
    let fresh = ec2
        .run_instances()
        .image_id(image)
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(
                    Tag::builder()
                        .key(tag_keys::BUILD_ID)
                        .value("b-fresh")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    let deleted = resource::delete(
        &session,
        &ResourceRef::new(ResourceKind::Instance, &fresh, &t),
    )
    .await
    .unwrap();
    let unseen = w
        .proxy
        .calls("TerminateInstances")
        .iter()
        .filter(|c| c.response.contains("InvalidInstanceID.NotFound"))
        .count();
    assert!(unseen > 0, "the proxy hid nothing");
    assert_eq!(deleted, Deleted::Now { snapshots: vec![] });
    assert!(
        !instance_alive(&w, &t, &fresh).await,
        "a NotFound right after launch was taken as gone: instance {fresh} still runs"
    );

    // A NotFound that never ends: the instance still runs, so it is an error; an
    // instance DescribeInstances does not know either is gone.
    let alive = run_instance(&w, &t, &[(tag_keys::BUILD_ID, "b-alive")]).await;
    w.proxy.fail(
        "TerminateInstances",
        "InvalidInstanceID.NotFound",
        usize::MAX,
        |_| true,
    );
    let unknown = "i-0123456789abcdef0";
    let (alive_ref, unknown_ref) = (
        ResourceRef::new(ResourceKind::Instance, &alive, &t),
        ResourceRef::new(ResourceKind::Instance, unknown, &t),
    );
    let (alive_result, unknown_result) = tokio::join!(
        resource::delete(&session, &alive_ref),
        resource::delete(&session, &unknown_ref),
    );
    let e = alive_result.expect_err("an instance DescribeInstances shows running is not gone");
    assert!(e.chain().any(|c| c.is::<TerminateUnseen>()), "{e:#}");
    assert!(instance_alive(&w, &t, &alive).await);
    assert_eq!(unknown_result.unwrap(), Deleted::AlreadyGone);
    let attempts = w
        .proxy
        .calls("TerminateInstances")
        .iter()
        .filter(|c| c.param("InstanceId.1") == Some(unknown))
        .count();
    assert_eq!(
        attempts as u32,
        bakery::aws::instance::TERMINATE_UNSEEN.max_attempts,
        "the window has an explicit maximum"
    );
    // The bot's own calls on the instances it knows (not the test's RunInstances, nor
    // the made-up instance) are all allowed.
    let calls: Vec<Recorded> = w
        .proxy
        .requests()
        .into_iter()
        .filter(|c| c.action != "RunInstances" && !c.params.values().any(|v| v == unknown))
        .collect();
    iam_oracle::assert_allows_all(&calls, &iam_oracle::Policies::deployed());
}
