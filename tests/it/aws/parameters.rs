//! A release's version parameters in Parameter Store, read back through moto in every
//! target account and region: written at release with the copy's AMI id and data type
//! `aws:ec2:image`, tagged with the build id from creation, deleted with the rest when
//! the release fails after them, and never written over another's parameter.

use super::*;
use bakery::build::runner::CopiesKept;

const NAME: &str = "/bakery/acme/images/base/versions/release-ssm";

/// Parameter `name` in `t`, read straight from moto; `None` when it does not exist.
pub(super) async fn parameter(
    w: &World,
    t: &Target,
    name: &str,
) -> Option<aws_sdk_ssm::types::Parameter> {
    match w
        .check
        .ssm(t)
        .unwrap()
        .get_parameter()
        .name(name)
        .send()
        .await
    {
        Ok(out) => out.parameter().cloned(),
        Err(e) => {
            let code = aws_sdk_ssm::error::ProvideErrorMetadata::code(&e).map(str::to_string);
            assert_eq!(code.as_deref(), Some("ParameterNotFound"), "{e:?}");
            None
        }
    }
}

async fn parameter_tags(w: &World, t: &Target, name: &str) -> BTreeMap<String, String> {
    w.check
        .ssm(t)
        .unwrap()
        .list_tags_for_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await
        .unwrap()
        .tag_list()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

fn copy_targets(plan: &BuildPlan) -> Vec<Target> {
    plan_targets(plan)
        .into_iter()
        .filter(|t| plan.distribute.copies.iter().any(|c| c.region == t.region))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_writes_its_version_parameter_in_every_target() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let plan = plan(
        "release-ssm",
        copies(&REGIONS[..2], &[None, Some(other_account())]),
    );
    let (outcome, log) = build(
        &w,
        &store,
        plan.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let BuildOutcome::Built {
        build_id, manifest, ..
    } = outcome.unwrap_or_else(|e| panic!("{e:#}\n{}", log.text()))
    else {
        panic!("expected a build")
    };
    let copies = &manifest.builds[0].copies;
    assert_eq!(copies.len(), 4);
    for copy in copies {
        let t = target(&copy.account, &copy.region);
        let p = parameter(&w, &t, NAME)
            .await
            .unwrap_or_else(|| panic!("no version parameter in {t}\n{}", log.text()));
        assert_eq!(p.value(), Some(copy.ami.as_str()), "in {t}");
        assert_eq!(p.data_type(), Some("aws:ec2:image"), "in {t}");
        let tags = parameter_tags(&w, &t, NAME).await;
        assert_eq!(
            tags.get("bakery:build-id").map(String::as_str),
            Some(build_id.as_str())
        );
        assert_eq!(
            tags.get("ImageVersion").map(String::as_str),
            Some("release-ssm")
        );
        assert_eq!(
            tags.get("bakery:repo").map(String::as_str),
            Some("acme/images")
        );
    }
    // Each write went to its own account and region, tagged as it was created.
    let puts = w.proxy.calls("PutParameter");
    assert_eq!(puts.len(), 4, "{puts:#?}");
    for put in &puts {
        assert_eq!(put.service, "ssm");
        assert_eq!(put.param("Overwrite"), Some("false"));
        assert!(
            put.params
                .iter()
                .any(|(k, v)| k.ends_with(".Key") && v == "bakery:build-id"),
            "{put:#?}"
        );
    }
}

/// The parameters exist, then marking the copies released fails: the copies are kept for
/// the next attempt, but nothing may resolve the unreleased version meanwhile, so the
/// parameters go with the builder. The retry writes them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_fails_after_its_parameters_deletes_them() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let plan = plan(
        "release-ssm",
        copies(&REGIONS[..2], &[None, Some(other_account())]),
    );
    let targets = copy_targets(&plan);
    assert_eq!(targets.len(), 4);
    w.proxy
        .fail("CreateTags", "InvalidParameterValue", 4, |r: &Recorded| {
            r.params.values().any(|v| v == tags::RELEASED)
        });
    let (first, log) = build(
        &w,
        &store,
        plan.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let err = first.expect_err("marking the release failed");
    assert!(
        err.downcast_ref::<CopiesKept>().is_some(),
        "not a kept release: {err:#}\n{}",
        log.text()
    );
    assert_eq!(
        w.proxy.calls("PutParameter").len(),
        4,
        "the parameters were written before the release was marked\n{}",
        log.text()
    );
    for t in &targets {
        assert!(
            parameter(&w, t, NAME).await.is_none(),
            "the failed release's parameter is left in {t}\n{}",
            log.text()
        );
    }

    // The policies in deploy/aws/ hold exactly what these calls need: without the write
    // statement the writes are denied, without the delete statement the cleanup is.
    let calls = w.proxy.requests();
    for (sid, action) in [
        ("WriteVersionParametersTagged", "ssm:PutParameter"),
        ("WriteVersionParametersTagged", "ssm:AddTagsToResource"),
        ("DeleteOnlyBakeryParameters", "ssm:DeleteParameter"),
    ] {
        let mut policies = iam_oracle::Policies::deployed();
        for p in [&mut policies.home, &mut policies.target] {
            p["Statement"]
                .as_array_mut()
                .unwrap()
                .retain(|s| s["Sid"] != sid);
        }
        let verdict = iam_oracle::evaluate(&calls, &policies);
        assert!(
            verdict.denials.iter().any(|d| d.action == action),
            "without {sid}, {action} is still allowed: {:#?}",
            verdict.denials
        );
    }

    w.proxy.clear();
    let (second, log) = build(
        &w,
        &store,
        plan.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let BuildOutcome::Built {
        manifest, resumed, ..
    } = second.unwrap_or_else(|e| panic!("the retry failed: {e:#}\n{}", log.text()))
    else {
        panic!("expected a build")
    };
    assert!(resumed);
    for copy in &manifest.builds[0].copies {
        let t = target(&copy.account, &copy.region);
        let p = parameter(&w, &t, NAME).await.expect("written again");
        assert_eq!(p.value(), Some(copy.ami.as_str()));
    }
}

/// Someone else's parameter already has the version's name in one target: bakery never
/// writes over it and never deletes it; its own parameters in the other targets go with
/// the failed attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_bakery_did_not_write_is_never_overwritten_nor_deleted() {
    let w = world().await;
    let (store, _store_dir) = temp_store().await;
    let plan = plan("release-ssm", copies(&REGIONS[..2], &[None]));
    let theirs = target(HOME, "eu-west-1");
    w.check
        .ssm(&theirs)
        .unwrap()
        .put_parameter()
        .name(NAME)
        .value("ami-0123456789abcdef0")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .data_type("aws:ec2:image")
        .send()
        .await
        .unwrap();
    let (outcome, log) = build(
        &w,
        &store,
        plan.clone(),
        Arc::new(RecordingProvisioner::default()),
    )
    .await;
    let err = outcome.expect_err("the parameter is taken");
    assert!(
        err.downcast_ref::<CopiesKept>().is_some(),
        "not a kept release: {err:#}\n{}",
        log.text()
    );
    assert!(
        log.text().contains("was not written by this build"),
        "{}",
        log.text()
    );
    let p = parameter(&w, &theirs, NAME).await.expect("theirs is kept");
    assert_eq!(p.value(), Some("ami-0123456789abcdef0"));
    assert_eq!(p.version(), 1, "it was written over");
    assert!(parameter(&w, &target(HOME, "us-east-1"), NAME)
        .await
        .is_none());
    assert!(
        w.proxy
            .calls("DeleteParameter")
            .iter()
            .all(|c| c.region != "eu-west-1"),
        "bakery tried to delete a parameter it did not write"
    );
}
